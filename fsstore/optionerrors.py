"""What oslo.config's errors about an option's value say, in words a user
reads: its ``ConfigFileValueError`` quotes a ``LocationInfo(...)`` repr
where the file the value came from belongs."""

from __future__ import annotations

import re

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
