"""Reading an object's body, resuming where a dropped connection left off.

A GET's body arrives over one connection; if it drops (reset, read timeout,
a body shorter than its Content-Length), the reader asks again for the
bytes from the next one on (``Range: bytes=<next>-<last>``), pinned to the
object it started with (``If-Match: <ETag>``), at most ``resumes`` times in
one read. The caller gets exactly the object's bytes or an error: nothing
is repeated, nothing skipped, and a different object (replaced between two
requests) is never spliced in, it fails with 412 and that is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from fsstore import exceptions
from fsstore.backends.s3.errors import error_code
from fsstore.streams import ImageChunks, no_chunks

LOG = logging.getLogger(__name__)

# fetch(first byte, last byte or None, ETag to match or None) -> GetObject response
Fetch = Callable[[int, "int | None", "str | None"], dict[str, Any]]


class ResumingBody:
    """Chunks of bytes ``[start, end]`` of one object; closes when done or closed.

    ``response`` is the first GET's; ``end`` is the last byte wanted (None:
    to the end of the object).
    """

    def __init__(
        self,
        response: dict[str, Any],
        fetch: Fetch,
        start: int,
        end: int | None,
        read_size: int,
        resumes: int,
        what: str,
    ) -> None:
        self._fetch = fetch
        self._next = start  # the offset of the next byte the caller gets
        self._end = end
        self._read_size = read_size
        self._resumes_left = resumes
        self._what = what
        self._etag: str | None = response.get("ETag")
        self._remaining = int(response["ContentLength"])
        self._open(response)

    @property
    def etag(self) -> str | None:
        """The ETag of the object read (every resumed request is pinned to
        it), as the first response gave it."""
        return self._etag

    def _open(self, response: dict[str, Any]) -> None:
        self._body: Any = response["Body"]
        self._chunks = self._body.iter_chunks(self._read_size)

    def __iter__(self) -> ResumingBody:
        return self

    def __next__(self) -> bytes:
        while True:
            try:
                chunk: bytes = next(self._chunks)
            except StopIteration:
                self.close()
                if self._remaining > 0:  # ended early without an error
                    self._resume(EOFError("body ended early"))
                    continue
                raise
            except Exception as exc:
                self._resume(exc)
                continue
            except BaseException:
                self.close()
                raise
            if len(chunk) > self._remaining:  # more than was asked for
                self.close()
                raise exceptions.BackendException(
                    f"{self._what}: the server sent more bytes than asked for"
                )
            self._next += len(chunk)
            self._remaining -= len(chunk)
            return chunk

    def _resume(self, cause: BaseException) -> None:
        self.close()
        reason = type(cause).__name__
        if self._resumes_left <= 0:
            raise exceptions.BackendException(
                f"{self._what}: reading the body failed ({reason})"
            ) from None
        self._resumes_left -= 1
        LOG.info(
            "%s: reading failed at byte %d (%s); resuming",
            self._what,
            self._next,
            reason,
        )
        try:
            response = self._fetch(self._next, self._end, self._etag)
        except exceptions.FsstoreError:
            raise
        except Exception as exc:
            raise exceptions.BackendException(
                f"{self._what}: resuming the read at byte {self._next} failed "
                f"({type(exc).__name__})"
            ) from None
        if int(response["ContentLength"]) != self._remaining:
            response["Body"].close()
            raise exceptions.BackendException(
                f"{self._what}: the resumed read returned a different length"
            )
        self._open(response)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class Span(NamedTuple):
    """What to read of an object: from ``offset``, ``limit`` bytes (None: to
    the end), in reads of ``read_size``, resuming at most ``resumes`` times."""

    offset: int
    limit: int | None
    read_size: int
    resumes: int


def open_object(
    client: Any, bucket: str, key: str, span: Span, uri: str
) -> tuple[ImageChunks, int, dict[str, Any]]:
    """The chunks of ``span`` of object ``key``, their length, and the first
    GET's response (ETag, Metadata).

    A range of an empty object reads as nothing; an offset past the end is
    Invalid. Other engine errors are raised as they are, for the store to
    map.
    """
    what = f"image {uri}"
    last = None if span.limit is None else span.offset + span.limit - 1

    def fetch(first: int, last: int | None, etag: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if first or last is not None:
            kwargs["Range"] = f"bytes={first}-{'' if last is None else last}"
        if etag:
            kwargs["IfMatch"] = etag.strip('"')
        try:
            response: dict[str, Any] = client.get_object(
                Bucket=bucket, Key=key, **kwargs
            )
        except Exception as exc:
            if etag and error_code(exc) == "PreconditionFailed":
                raise exceptions.BackendException(
                    f"{what} was replaced while it was read"
                ) from None
            raise
        return response

    try:
        response = fetch(span.offset, last, None)
    except exceptions.FsstoreError:
        raise
    except Exception as exc:
        if error_code(exc) != "InvalidRange":
            raise
        if span.offset == 0:  # a range of an empty object
            return no_chunks(), 0, {}
        raise exceptions.Invalid(
            f"offset {span.offset} is past the end of {uri}"
        ) from None
    body = ResumingBody(
        response, fetch, span.offset, last, span.read_size, span.resumes, what
    )
    return body, int(response["ContentLength"]), response
