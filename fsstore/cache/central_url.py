"""What the centralized_db driver shows of its database URL: nothing from
``://`` to the last ``@``, no query, and no password in a driver's message.

The password may hold anything but an unescaped ``@``; see shown_url and
secrets_of for what is hidden, and misplaced_at for the URLs refused.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

_SCHEME = re.compile(r"[\w+]+://")

MISPLACED_AT = (
    "[database] connection has an '@' that does not end its user name and "
    "password: write each '@' in them as %40"
)
# What SQLAlchemy reads as user name, password and the rest, with one '@'.
_ONE_AT = re.compile(r"[\w+]+://[^:/@]*(?::[^@]*)?@[^@]*", re.DOTALL)


def _credentials_end(url: str) -> tuple[int, int] | None:
    """Where the text after the scheme starts and where its last ``@`` is,
    in a URL that may hold credentials; None if it holds none.

    The password may hold anything but an unescaped ``@`` (``/``, ``?``,
    ``#``, ``:`` included), so the credentials are taken to end at the last
    ``@`` of the whole URL: an ``@`` in the database name or the query hides
    more than it needs to, never less. An sqlite URL (``sqlite:////path``)
    names a file and has no credentials; any other may have a user name
    that starts with ``/``.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    start = scheme.end()
    at = url.rfind("@", start)
    if at < 0 or url.startswith("sqlite"):
        return None
    return start, at


def shown_url(url: str) -> str:
    """``url`` as messages show it: from ``://`` to its last ``@`` hidden,
    without its query, on one line."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return "(not a URL)"
    span = _credentials_end(url)
    rest = url[scheme.end() :] if span is None else "***" + url[span[1] :]
    rest = rest.partition("?")[0]
    return scheme.group() + "".join(c if c.isprintable() else "?" for c in rest)


def misplaced_at(url: str) -> bool:
    """Whether an ``@`` of ``url`` is not the one SQLAlchemy ends the
    credentials at: then part of the password (or user name) would be read
    as the host or the database, and named in the driver's errors."""
    return _credentials_end(url) is not None and _ONE_AT.fullmatch(url) is None


def secrets_of(url: str) -> list[str]:
    """The user name and password of ``url`` (as written and decoded) and
    any password in its query, longest first: what ``hide_secrets`` hides."""
    found: set[str] = set()
    span = _credentials_end(url)
    if span is not None:
        # The user name too: nothing from "://" to the last "@" is shown,
        # and a driver names the user it failed to log in.
        user, _, password = url[span[0] : span[1]].partition(":")
        for raw in (user, password):
            found |= {raw, urllib.parse.unquote(raw)}
        query = url[span[1] :].partition("?")[2]
    else:
        query = url.partition("?")[2]
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if "pass" in key.lower():
            found.add(value)
    return sorted((s for s in found if s), key=len, reverse=True)


def hide_secrets(text: str, secrets: Sequence[str]) -> str:
    """``text`` (a database driver's message) with each secret as ``***``:
    a driver may repeat what it was given."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def one_line(exc: BaseException) -> str:
    """A database error's first line, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
