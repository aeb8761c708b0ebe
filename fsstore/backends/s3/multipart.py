"""One S3 multipart upload, as an object: ``upload_part``, ``complete``,
``abort``.

Parts go up in a pool of ``threads`` threads; ``upload_part`` blocks while
that many are in flight, which bounds memory at ``threads`` parts in flight
and the one being filled, whatever the image's size (glance_store's part
queue is unbounded). The part being filled holds no slot: with one thread,
reading the next part still overlaps sending the last. ``send`` fills the
buffers of parts already sent again, so an add allocates at most
``threads + 1`` of them: with a fresh buffer per part, the allocator keeps
a freed part's memory beside them (about one part more at the peak, measured
on Swift).

A failed part fails the next ``upload_part`` or the ``complete``; whoever
sees a failure calls ``abort``, so no failed upload is left behind to be
billed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from fsstore import exceptions
from fsstore.backends.s3.errors import ErrorMapper

LOG = logging.getLogger(__name__)

MAX_PARTS = 10000

# How far an add's digests may fall behind its reader (plus the batch not
# yet handed over, fsstore.hashing.HASH_BATCH). The parts hold the image
# already; the hasher's 16 MiB default beside ten parts of 10 MiB takes an
# add past its bound, and a reader this far ahead loses the upload nothing.
DIGEST_QUEUE = 4 << 20

# The checksum headers for a part's body (Content-MD5, or none).
BodyChecksum = Callable[[bytearray], dict[str, str]]


class MultipartUpload:
    """An upload of ``key`` to ``bucket``, started on construction."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        threads: int,
        what: str,
        error: ErrorMapper,
        body_checksum: BodyChecksum,
    ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.what = what
        self._error = error
        self._body_checksum = body_checksum
        try:
            response = client.create_multipart_upload(Bucket=bucket, Key=key)
        except Exception as exc:
            raise error(exc, what) from None
        self.upload_id: str = response["UploadId"]
        self._slots = threading.BoundedSemaphore(threads)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="fsstore-s3-part"
        )
        self._parts: list[concurrent.futures.Future[dict[str, Any]]] = []
        # The buffers of parts sent, for send() to fill again.
        self._sent: queue.SimpleQueue[bytearray] = queue.SimpleQueue()

    @property
    def part_count(self) -> int:
        return len(self._parts)

    def upload_part(self, body: bytearray) -> None:
        """Send the next part; raises the error of any part that failed."""
        for done in self._parts:
            if done.done():
                failed = done.exception()
                if failed is not None:
                    raise failed
        if len(self._parts) >= MAX_PARTS:
            raise exceptions.Invalid(
                f"{self.what}: more than {MAX_PARTS} parts of {len(body)} bytes "
                "are needed; raise s3_store_large_object_chunk_size"
            )
        self._slots.acquire()  # the bound on memory: see the module docstring
        number = len(self._parts) + 1
        self._parts.append(self._pool.submit(self._send, number, body))

    def _send(self, number: int, body: bytearray) -> dict[str, Any]:
        try:
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,
                **self._body_checksum(body),
            )
        except Exception as exc:
            raise self._error(exc, f"{self.what}: part {number}") from exc
        finally:
            # Back before the slot: whoever takes the slot finds it there,
            # so the buffers never outnumber the slots and the one filled.
            self._sent.put(body)
            self._slots.release()
        return {"PartNumber": number, "ETag": response["ETag"]}

    def send(
        self, chunks: Iterable[bytes], part_size: int, before_part: Callable[[], None]
    ) -> int:
        """Cut ``chunks`` into parts of ``part_size`` and send them; the
        bytes sent. ``before_part`` runs before each part goes (the claim's
        renewal).

        Each part's buffer is allocated whole and filled in place: growing
        it by appends would reallocate, and for a moment hold two copies.
        """
        sent = 0
        buf, filled = self._empty_buffer(part_size), 0
        for chunk in chunks:
            sent += len(chunk)
            view = memoryview(chunk)
            while view:
                n = min(part_size - filled, len(view))
                buf[filled : filled + n] = view[:n]
                filled += n
                view = view[n:]
                if filled == part_size:
                    before_part()
                    self.upload_part(buf)
                    buf, filled = self._empty_buffer(part_size), 0
        if filled or not self.part_count:
            # The last part may be short, or the only one empty. Cut in
            # place, or copied while something still holds a view of this
            # refilled buffer (an SSL send's error keeps the slice it sent).
            try:
                del buf[filled:]
            except BufferError:
                buf = buf[:filled]
            before_part()
            self.upload_part(buf)
        return sent

    def _empty_buffer(self, part_size: int) -> bytearray:
        """A sent part's buffer, or a new one while none is back yet."""
        try:
            buf = self._sent.get_nowait()
        except queue.Empty:
            return bytearray(part_size)
        # A body of another size (one a caller gave upload_part itself) is
        # never refilled; send()'s own short last part is never followed.
        return buf if len(buf) == part_size else bytearray(part_size)

    def complete(self, **conditions: str) -> None:
        """Wait for every part, then complete the upload (``conditions``:
        ``IfNoneMatch="*"``). The caller maps a refused completion."""
        parts = [part.result() for part in self._parts]
        self._pool.shutdown(wait=True)
        self._sent = queue.SimpleQueue()  # no part is sent again
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
            **conditions,
        )

    def abort(self) -> None:
        """Cancel the parts not yet sent, wait for those in flight, and
        abort the upload; a failure to abort is logged."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Not held by whoever keeps the error, and its traceback, after.
        self._sent = queue.SimpleQueue()
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except Exception as exc:
            LOG.error(
                "could not abort multipart upload of %s in bucket %s: %s",
                self.key,
                self.bucket,
                type(exc).__name__,
            )
