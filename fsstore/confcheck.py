"""Options a configuration file sets that fsstore does not read.

oslo.config ignores a name nobody registered, so a typo in an option's
name (``filesystem_store_datdir``) silently leaves the default in force.
This check reads the files as oslo.config does (its own ini parser) and
names, with file and line, each of these:

* in ``[glance_store]``, ``[backend_defaults]`` and each enabled backend's
  group, where every name belongs to fsstore or its drivers: a name that
  is none of theirs; a store's option in ``[glance_store]`` in multi-store
  mode, or in ``[backend_defaults]`` in single-store mode, where it is not
  read;
* in ``[DEFAULT]``, shared with the service (Glance's hundreds of options
  live there): a store's option, never read from there, and an
  ``image_cache_*`` name that is not one of the cache's;
* in any other group (the service's or a library's): only a name of
  fsstore's, as a group fsstore does not read (``[glance_stores]``,
  ``[default]``, which oslo.config takes for a group of its own);
* a name written with dashes, which oslo.config does not read in a file.

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
        self.found.append((self.group, key, self._key_line))


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


@dataclasses.dataclass(frozen=True)
class _Groups:
    """What is read where, in the mode the configuration is in."""

    known: dict[str, set[str]]
    backends: set[str]  # enabled_backends' names, in oslo.config's lower case

    @property
    def multi(self) -> bool:
        return bool(self.backends)

    @property
    def drivers(self) -> set[str]:
        """The store drivers' options (not the registry's own)."""
        return self.known[SHARED_GROUP] - {o.dest for o in opts.BACKEND_OPTS}

    def ours(self) -> set[str]:
        return {"DEFAULT", STORE_GROUP, SHARED_GROUP} | self.backends


def _in_default(name: str, groups: _Groups) -> str | None:
    known = groups.known["DEFAULT"]
    if name in groups.drivers and name not in known:
        return (
            "a store option, read from [glance_store] (or a backend's group), "
            "never from [DEFAULT]"
        )
    if name.startswith("image_cache_") and name not in known:
        return _hint(name, {n for n in known if n.startswith("image_cache_")})
    return None


def _in_store_group(name: str, groups: _Groups) -> str | None:
    own = {o.dest for o in opts.STORE_OPTS}
    if name in own:
        return None
    if name in groups.drivers:
        if groups.multi:
            return (
                "a store option, not read from [glance_store] in multi-store "
                "mode: set it in the backend's group or [backend_defaults]"
            )
        return None
    return _hint(name, own | groups.drivers)


def _elsewhere(group: str, name: str, groups: _Groups) -> str | None:
    """A group fsstore does not read: only a name of fsstore's is named."""
    if name not in groups.drivers | groups.known["DEFAULT"]:
        return None  # the service's, or a library's
    ours = {g.lower(): g for g in groups.ours()}  # [default] is near [DEFAULT]
    close = difflib.get_close_matches(group.lower(), sorted(ours), n=1, cutoff=0.5)
    suggestion = f" (did you mean [{ours[close[0]]}]?)" if close else ""
    return f"[{group}] is not a group fsstore reads{suggestion}"


def _problem(group: str, name: str, groups: _Groups) -> str | None:
    """What is wrong with ``name`` set in ``group``, or None."""
    if "-" in name:
        underscored = name.replace("-", "_")
        if _problem(group, underscored, groups) is None and (
            underscored in groups.drivers | groups.known[STORE_GROUP]
            or underscored in groups.known["DEFAULT"]
        ):
            return f"oslo.config does not read a name with dashes: write {underscored}"
    if group == "DEFAULT":
        return _in_default(name, groups)
    if group == STORE_GROUP:
        return _in_store_group(name, groups)
    if group == SHARED_GROUP and not groups.multi:
        if name in groups.known[SHARED_GROUP]:
            return (
                "[backend_defaults] is read in multi-store mode only "
                "(enabled_backends); set it in [glance_store]"
            )
        return _hint(name, groups.known[SHARED_GROUP])
    if group == SHARED_GROUP or group in groups.backends:
        known = groups.known[SHARED_GROUP]
        return None if name in known else _hint(name, known)
    return _elsewhere(group, name, groups)


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
    groups = _Groups(known_options(skipped), {b.lower() for b in backends})
    found = []
    for path in files:
        parser = _Assignments()
        with open(path, encoding="utf-8") as f:
            parser.parse(f)
        for group, name, line in parser.found:
            hint = _problem(group, name, groups)
            if hint is not None:
                found.append(UnknownOption(path, line, group, name, hint))
    return found
