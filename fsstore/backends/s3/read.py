"""Reading an object's body, resuming where a dropped connection left off.

A GET's body arrives over one connection; if it drops (reset, read timeout,
a body shorter than its Content-Length), the reader asks again for the
bytes from the next one on (``Range: bytes=<next>-<last>``), pinned to the
object it started with (``If-Match: <ETag>``), at most ``resumes`` times in
one read. The caller gets exactly the object's bytes or an error: nothing
is repeated, nothing skipped, and a different object (replaced between two
requests) is never spliced in, it fails with 412 and that is an error.

A read longer than one part is read as parts in parallel (s3/parallel.py),
each a body of its own resuming as above, all drawing on one budget of
resumes and pinned to the ETag of the first response.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from fsstore import exceptions
from fsstore.backends.s3.errors import error_code
from fsstore.backends.s3.parallel import OpenPart, PartReader
from fsstore.streams import ImageChunks, no_chunks

LOG = logging.getLogger(__name__)

# The reads of a part's body: each is one call into the HTTP client, whose
# Python runs under the GIL that every part's thread and the caller share;
# 64 KiB reads from ten threads cost more than the engine saves, on two
# cores. A dropped connection loses at most one read, resumed from its start.
PART_READ = 1024 * 1024

# fetch(first byte, last byte or None, ETag to match or None) -> GetObject response
Fetch = Callable[[int, "int | None", "str | None"], dict[str, Any]]


class Resumes:
    """The resumes one read may still make, shared by its parts' threads."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


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
        resumes: Resumes,
        what: str,
    ) -> None:
        self._fetch = fetch
        self._next = start  # the offset of the next byte the caller gets
        self._end = end
        self._read_size = read_size
        self._resumes = resumes
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
        if not self._resumes.take():
            raise exceptions.BackendException(
                f"{self._what}: reading the body failed ({reason})"
            ) from None
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
    the end), in reads of ``read_size``, resuming at most ``resumes`` times;
    past one part of ``part_size`` bytes, in parts fetched by ``threads``
    threads at once (one thread: one stream)."""

    offset: int
    limit: int | None
    read_size: int
    resumes: int
    part_size: int = 0
    threads: int = 1


def _fetcher(client: Any, bucket: str, key: str, what: str) -> Fetch:
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

    return fetch


def _part_opener(
    fetch: Fetch, etag: str | None, span: Span, resumes: Resumes, what: str
) -> OpenPart:
    """Requests of the parts after the first, pinned to the first's ETag;
    any failure is one BackendException."""

    def open_part(first: int, last: int) -> ResumingBody:
        try:
            response = fetch(first, last, etag)
        except exceptions.FsstoreError:
            raise
        except Exception as exc:
            raise exceptions.BackendException(
                f"{what}: reading bytes {first}-{last} failed ({type(exc).__name__})"
            ) from None
        if int(response["ContentLength"]) != last - first + 1:
            response["Body"].close()
            raise exceptions.BackendException(
                f"{what}: bytes {first}-{last} came back with another length"
            )
        return ResumingBody(response, fetch, first, last, PART_READ, resumes, what)

    return open_part


def _object_size(response: dict[str, Any]) -> int | None:
    """The whole object's size, from a ranged response's Content-Range."""
    content_range = response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _first(
    fetch: Fetch, offset: int, last: int | None, uri: str, asked: int | None
) -> dict[str, Any] | None:
    """The first GET's response, of bytes ``offset`` to ``last``; None for
    a range of an empty object, Invalid for an offset past the end.

    ``asked``: the end of the read as the caller asked for it. When the
    first part's range of an empty object is not satisfiable and that is
    not what was asked, the object is read as asked (unranged for a whole
    read), which brings its ETag and metadata: a scrub pins and checks them.
    """
    try:
        return fetch(offset, last, None)
    except exceptions.FsstoreError:
        raise
    except Exception as exc:
        if error_code(exc) != "InvalidRange":
            raise
        if offset != 0:
            raise exceptions.Invalid(
                f"offset {offset} is past the end of {uri}"
            ) from None
    return None if last == asked else _first(fetch, offset, asked, uri, asked)


def open_object(
    client: Any, bucket: str, key: str, span: Span, uri: str
) -> tuple[ImageChunks, int, dict[str, Any]]:
    """The chunks of ``span`` of object ``key``, their length, and the first
    GET's response (ETag, Metadata).

    The first request asks for the first part only when the span may be
    longer than one; if the object turns out longer, the rest is read in
    parts (s3/parallel.py). A range of an empty object reads as nothing;
    an offset past the end is Invalid. Other engine errors are raised as
    they are, for the store to map.
    """
    what = f"image {uri}"
    last = None if span.limit is None else span.offset + span.limit - 1
    in_parts = span.threads > 1 and span.part_size > 0
    first_last = last
    if in_parts and (span.limit is None or span.limit > span.part_size):
        first_last = span.offset + span.part_size - 1
    fetch = _fetcher(client, bucket, key, what)
    response = _first(fetch, span.offset, first_last, uri, last)
    if response is None:  # a range of an empty object
        return no_chunks(), 0, {}
    resumes = Resumes(span.resumes)
    length = int(response["ContentLength"])
    body = ResumingBody(
        response,
        fetch,
        span.offset,
        first_last,
        PART_READ if in_parts else span.read_size,
        resumes,
        what,
    )
    size = _object_size(response)
    if first_last == last or size is None:
        return body, length, response
    end = size - 1 if last is None else min(last, size - 1)
    if end < span.offset + length:  # the first part was all of it
        return body, length, response
    parts = PartReader(
        body,
        _part_opener(fetch, response.get("ETag"), span, resumes, what),
        (span.offset, end),
        span.part_size,
        span.threads,
    )
    return parts, end - span.offset + 1, response
