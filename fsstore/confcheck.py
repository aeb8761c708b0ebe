"""Options a configuration file sets that fsstore does not read.

oslo.config ignores a name nobody registered, so a typo in an option's
name (``filesystem_store_datdir``) silently leaves the default in force.
This check reads the files as oslo.config does (its own ini parser) and
names, with file and line, every option set in fsstore's groups that is
none of fsstore's: ``[glance_store]``, ``[backend_defaults]`` and each
enabled backend's group, where every name belongs to fsstore or its
drivers. ``[DEFAULT]`` is shared with the service (Glance's hundreds of
options live there), so only two mistakes are named in it: a store's
option, which is read from ``[glance_store]`` or a backend's group and never
from ``[DEFAULT]``, and an ``image_cache_*`` name that is not one of the
cache's. Other groups are the service's or a library's and are not read.

The names known are those ``fsstore.opts.list_opts`` lists (what
oslo-config-generator shows), deprecated names included.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

from oslo_config import cfg, iniparser

from fsstore import exceptions, opts
from fsstore.store import SHARED_GROUP, STORE_GROUP


@dataclasses.dataclass(frozen=True)
class UnknownOption:
    """One option set where fsstore does not read it."""

    file: str
    line: int
    group: str
    name: str
    hint: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.group}] {self.name}: {self.hint}"


class _Assignments(iniparser.BaseParser):
    """Every ``(group, name, line)`` a file sets, as oslo.config parses it."""

    def __init__(self) -> None:
        super().__init__()
        self.group = "DEFAULT"
        self.found: list[tuple[str, str, int]] = []
        self._key_line = 0

    def new_section(self, section: str) -> None:
        # oslo.config's rule: DEFAULT as written, other groups in lower case.
        self.group = section if section == "DEFAULT" else section.lower()

    def _split_key_value(self, line: str) -> tuple[str, list[str]]:
        # The line a name is on: assignment() is called only once the
        # value's continuation lines are read.
        self._key_line = self.lineno
        return super()._split_key_value(line)

    def assignment(self, key: str, value: list[str]) -> None:
        self.found.append((self.group, key.replace("-", "_"), self._key_line))


def _names(options: list[cfg.Opt], group: str) -> set[str]:
    names = set()
    for opt in options:
        names.add(opt.dest)
        for old in opt.deprecated_opts:
            if old.name and old.group in (None, group):
                names.add(old.name.replace("-", "_"))
    return names


def known_options(
    skipped: Callable[[exceptions.DriverLoadFailure], None] | None = None,
) -> dict[str, set[str]]:
    """The option names fsstore reads, by group, as ``list_opts`` lists
    them; a backend's group and ``[backend_defaults]`` take its drivers'.

    :param skipped: told each installed driver that cannot be loaded (its
        options are not known); None: DriverLoadFailure is raised
    """
    known: dict[str, set[str]] = {"DEFAULT": set()}
    for group, opt in [*opts.own_options(), *opts.driver_options(skipped=skipped)]:
        name = group or "DEFAULT"
        known.setdefault(name, set()).update(_names([opt], name))
    store = known.get(STORE_GROUP, set())
    own = {opt.dest for opt in opts.STORE_OPTS}
    known[SHARED_GROUP] = (store - own) | {opt.dest for opt in opts.BACKEND_OPTS}
    return known


def _hint(name: str, names: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    return f"not an option fsstore reads{suggestion}"


def _problem(
    group: str, name: str, known: dict[str, set[str]], backends: set[str]
) -> str | None:
    """What is wrong with ``name`` set in ``group``, or None."""
    if group == "DEFAULT":
        if name in known.get(STORE_GROUP, set()) and name not in known["DEFAULT"]:
            return (
                "a store option, read from [glance_store] (or a backend's group), "
                "never from [DEFAULT]"
            )
        if name.startswith("image_cache_") and name not in known["DEFAULT"]:
            return _hint(
                name, {n for n in known["DEFAULT"] if n.startswith("image_cache_")}
            )
        return None
    names = known.get(STORE_GROUP, set()) if group == STORE_GROUP else None
    if group == SHARED_GROUP or group in backends:
        names = known[SHARED_GROUP]
    if names is None or name in names:
        return None
    return _hint(name, names)


def unknown_options(
    files: list[str],
    backends: list[str],
    skipped: Callable[[exceptions.DriverLoadFailure], None] | None = None,
) -> list[UnknownOption]:
    """Every option ``files`` set in fsstore's groups that fsstore does not
    read, in file and line order.

    :param files: the configuration files, as read
    :param backends: the names of ``enabled_backends`` (their groups are fsstore's)
    :param skipped: see known_options
    :raises OSError: when a file cannot be read
    :raises oslo_config.iniparser.ParseError: when one is not an ini file
    """
    known = known_options(skipped)
    found = []
    for path in files:
        parser = _Assignments()
        with open(path, encoding="utf-8") as f:
            parser.parse(f)
        for group, name, line in parser.found:
            hint = _problem(group, name, known, set(backends))
            if hint is not None:
                found.append(UnknownOption(path, line, group, name, hint))
    return found
