"""An option's value beyond what oslo.config says of it: where it came
from, for errors a user reads and for paths relative to their file."""

from __future__ import annotations

import os
import re

from oslo_config import cfg

_LOCATION_INFO = re.compile(
    r"from LocationInfo\(location=<Locations\.(?P<kind>\w+):[^>]*>, "
    r"detail=(?P<detail>'[^']*'|\"[^\"]*\"|None)\)"
)


def option_error(exc: BaseException) -> str:
    """``exc``'s message, a ``LocationInfo`` in it named as the file (or
    the kind of place) the value was read from."""

    def where(match: re.Match[str]) -> str:
        detail = match["detail"]
        if detail != "None" and detail[1:-1]:
            return f"in {detail[1:-1]}"
        return {"opt_default": "as its default", "set_default": "as its default"}.get(
            match["kind"], f"from the {match['kind'].replace('_', ' ')}"
        )

    return _LOCATION_INFO.sub(where, str(exc))


def file_of(conf: cfg.ConfigOpts, name: str, group: str | None) -> str | None:
    """The configuration file that set option ``group.name`` (None:
    ``[DEFAULT]``), or None when no file did (its default, an override).

    :param conf: the parsed configuration, the option registered in it
    """
    try:
        where = conf.get_location(name, group)
    except cfg.Error:
        return None
    if where is None or where.location != cfg.Locations.user or not where.detail:
        return None
    return str(where.detail)


def beside(path: str, config_file: str | None) -> str:
    """``path`` as a configuration file means it: a relative path is taken
    from the file's directory, so that a file means the same wherever the
    command or service is started from; an absolute one (or one set
    elsewhere than in a file, ``config_file`` None) is left as it is."""
    if not path or os.path.isabs(path) or config_file is None:
        return path
    return os.path.join(os.path.dirname(os.path.abspath(config_file)), path)


def path_value(
    conf: cfg.ConfigOpts, name: str, group: str | None, value: str | None
) -> str:
    """The path option ``group.name``'s ``value`` (read by the caller) as
    the file that set it means it ("" when unset; see ``beside``)."""
    return beside(value or "", file_of(conf, name, group))
