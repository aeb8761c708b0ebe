"""Store locations: the URIs that name stored images, parsed per scheme.

A location is what ``add`` returns and what ``get``, ``get_size`` and
``delete`` take. The registry only splits off the scheme to find the store that
owns it; the store's own location class parses the rest, so each scheme's
rules live in one place.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from fsstore.exceptions import BadStoreUri

# RFC 3986: a letter, then letters, digits, "+", "-" or ".", all ASCII.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


def _valid_scheme(scheme: str) -> bool:
    return _SCHEME.fullmatch(scheme) is not None


def split_scheme(uri: str) -> tuple[str, str]:
    """``(scheme, rest)`` of ``uri``, the scheme in lowercase.

    :param uri: a location, as a caller gave it
    :raises BadStoreUri: when it is no string, holds a NUL byte, or has no
        valid ``scheme://``; the message never shows its credentials
    """
    if not isinstance(uri, str):
        raise BadStoreUri(f"location must be a string, not {type(uri).__name__}")
    # redact() only where a message shows the location: every get, delete
    # and size of an image parses one.
    if "\0" in uri:
        raise BadStoreUri(f"location {redact(uri)!r} contains a NUL byte")
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise BadStoreUri(
            f"location {redact(uri)!r} is not a URI of the form scheme://..."
        )
    if not _valid_scheme(scheme):
        # Not the scheme itself: before the first "://" may be credentials.
        raise BadStoreUri(f"location {redact(uri)!r} has an invalid scheme")
    return scheme.lower(), rest


@dataclasses.dataclass(frozen=True)
class Location:
    """A parsed location; ``uri`` is its canonical string form.

    Each store's subclass parses its scheme's URIs (``from_uri``) and
    builds ``uri`` back.
    """

    scheme: str

    @property
    def uri(self) -> str:
        """The canonical URI, which an add returns and get, get_size and
        delete take."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.uri


@dataclasses.dataclass(frozen=True)
class FileLocation(Location):
    """``file:///absolute/path``: an image file of the filesystem store.

    The path is taken as written, never percent-decoded: a location names
    exactly the file the store wrote, and decoding would give ``%2e%2e`` a
    second meaning.
    """

    path: str

    @classmethod
    def from_uri(cls, uri: str) -> FileLocation:
        """The location of a ``file://`` (or ``filesystem://``) URI.

        :param uri: ``file:///absolute/path``; the path is kept as written
        :raises BadStoreUri: for another scheme, or a host part
        """
        scheme, rest = split_scheme(uri)
        # filesystem:// is glance_store's legacy spelling: the same location.
        if scheme not in ("file", "filesystem"):
            raise BadStoreUri(f"location {redact(uri)!r} is not a file:// URI")
        # file://host/path is a remote file; only the empty host is local.
        if not rest.startswith("/"):
            raise BadStoreUri(
                f"location {redact(uri)!r} must be file:///absolute/path (no host part)"
            )
        # No query or fragment either: "?" and "#" are part of the path, as
        # they are of the image id (or data directory) the store wrote.
        return cls(scheme="file", path=rest)

    @classmethod
    def from_path(cls, path: str) -> FileLocation:
        """The location of the file at ``path``, taken as written (absolute)."""
        return cls(scheme="file", path=path)

    @property
    def uri(self) -> str:
        """``file://`` and the path, as written."""
        return f"file://{self.path}"


def _split_credentials(rest: str) -> tuple[str | None, str]:
    """``(credentials or None, what follows them)`` of a URI after ``://``.

    Credentials end at the last ``@``, not at the first ``/``: a secret may
    hold ``/`` (about half of AWS secret keys do), ``@``, ``:``, ``+`` or
    ``%``, and splitting anywhere else would leave part of it in the host or
    the path, and so in messages. No location fsstore writes has a raw ``@``
    after its host (keys are percent-encoded), and an empty authority
    (``file:///``) has no credentials at all.
    """
    if rest.startswith("/") or "@" not in rest:
        return None, rest
    credentials, _, tail = rest.rpartition("@")
    return credentials, tail


def redact(uri: str) -> str:
    """``uri`` without any ``user:password@`` part, fit for messages and logs.

    :param uri: any string; one that does not start with a valid
        ``scheme://`` but has a ``:`` before an ``@`` (a mistyped location,
        such as ``s3:/key:secret@host/...``) is shown from its last ``@`` on
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or not _valid_scheme(scheme):
        before, at, tail = uri.rpartition("@")
        return "***@" + tail if at and ":" in before else uri
    credentials, tail = _split_credentials(rest)
    return uri if credentials is None else f"{scheme}{sep}***@{tail}"


def without_credentials(uri: str) -> str:
    """``uri`` with any ``user:password@`` part dropped: what to keep of a
    location given with credentials, which fsstore never uses (a store uses
    its configured ones).

    :param uri: any string; one without ``://`` is returned as it is
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    return f"{scheme}{sep}{_split_credentials(rest)[1]}"


@dataclasses.dataclass(frozen=True)
class S3Location(Location):
    """``s3[+http|+https]://host[:port]/bucket/key``: never any credentials.

    Locations written by glance_store may carry ``access:secret@`` before the
    host; they are accepted and the credentials dropped, never echoed.
    """

    host: str
    bucket: str
    key: str

    @classmethod
    def from_uri(cls, uri: str) -> S3Location:
        """The location of an S3 URI; its key is percent-decoded.

        :param uri: ``s3://``, ``s3+http://`` or ``s3+https://`` host/bucket/key,
            perhaps with glance_store's ``access:secret@``, which is dropped
        :raises BadStoreUri: for another scheme, or no host, bucket or key;
            the message never shows the credentials
        """
        scheme, rest = split_scheme(uri)
        shown = redact(uri)
        if scheme not in ("s3", "s3+http", "s3+https"):
            raise BadStoreUri(f"location {shown!r} is not an s3:// URI")
        host, _, path = _split_credentials(rest)[1].partition("/")
        bucket, _, key = path.partition("/")
        if not host or not bucket or not key:
            raise BadStoreUri(f"location {shown!r} must be {scheme}://host/bucket/key")
        return cls(
            scheme=scheme, host=host, bucket=bucket, key=urllib.parse.unquote(key)
        )

    @property
    def uri(self) -> str:
        """The URI, without credentials, its key percent-encoded (``/`` too)."""
        key = urllib.parse.quote(self.key, safe="")
        return f"{self.scheme}://{self.host}/{self.bucket}/{key}"


@dataclasses.dataclass(frozen=True)
class HttpLocation(Location):
    """``http://`` or ``https://`` URL of an image served by a web server."""

    url: str

    @classmethod
    def from_uri(cls, uri: str) -> HttpLocation:
        """The location of an ``http://`` or ``https://`` URL, kept as given.

        :raises BadStoreUri: for another scheme, credentials in the URL (they
            are refused, not dropped), an invalid port, or no host
        """
        scheme, rest = split_scheme(uri)
        shown = redact(uri)
        if scheme not in ("http", "https"):
            raise BadStoreUri(f"location {shown!r} is not an http(s):// URL")
        before_query = rest.split("?", 1)[0].split("#", 1)[0]
        if _split_credentials(before_query)[0] is not None:
            raise BadStoreUri(
                f"location {shown!r} carries credentials, which are not supported"
            )
        try:
            parsed = urllib.parse.urlsplit(uri)
            parsed.port  # noqa: B018 - raises for a port that is no number
        except ValueError as exc:
            raise BadStoreUri(f"location {shown!r} is not a valid URL: {exc}") from None
        if not parsed.hostname:
            raise BadStoreUri(f"location {shown!r} has no host")
        return cls(scheme=scheme, url=uri)

    @property
    def uri(self) -> str:
        """The URL, as given."""
        return self.url


@dataclasses.dataclass(frozen=True)
class RbdLocation(Location):
    """``rbd://fsid/pool/image/snapshot`` (each part percent-encoded), or
    glance_store's legacy ``rbd://image`` (fsid, pool and snapshot empty)."""

    fsid: str
    pool: str
    image: str
    snapshot: str

    @classmethod
    def from_uri(cls, uri: str) -> RbdLocation:
        """The location of an ``rbd://`` URI; its parts are percent-decoded.

        :raises BadStoreUri: for another scheme, or neither one part nor four
            non-empty ones
        """
        scheme, rest = split_scheme(uri)
        shown = redact(uri)
        if scheme != "rbd":
            raise BadStoreUri(f"location {shown!r} is not an rbd:// URI")
        parts = [urllib.parse.unquote(part) for part in rest.split("/")]
        if len(parts) == 1 and parts[0]:
            return cls(scheme="rbd", fsid="", pool="", image=parts[0], snapshot="")
        if len(parts) != 4 or not all(parts):
            raise BadStoreUri(
                f"location {shown!r} must be rbd://fsid/pool/image/snapshot "
                "or rbd://image"
            )
        return cls("rbd", *parts)

    @property
    def uri(self) -> str:
        """The URI, each part percent-encoded (``/`` too)."""
        if not self.pool:
            return f"rbd://{urllib.parse.quote(self.image, safe='')}"
        parts = (self.fsid, self.pool, self.image, self.snapshot)
        return "rbd://" + "/".join(urllib.parse.quote(p, safe="") for p in parts)
