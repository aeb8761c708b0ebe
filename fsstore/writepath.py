"""How an image's bytes reach its file: the one place that picks the path
by size, writes a whole buffer, and maps write errors to store errors.

Paths, by what is known of the image's size::

    declared size <= one_read_limit(chunk size),
    a file-like source                     read whole, hashed inline, one write
    declared size <= PIPELINE_THRESHOLD,
    or writing thin (sparse) files         chunk by chunk: hash, write
    larger, or unknown                     the first PIPELINE_THRESHOLD bytes are
                                           held back (copied: a caller may reuse
                                           its buffer); past them the rest goes
                                           through the WritePipeline; a stream
                                           that ends first is written inline

The filesystem store and the image cache's writer both write through
``ImageFileWriter``. A failed write raises ``WriteFailed`` (its cause the
OSError), so that it is never confused with an OSError of the caller's own
stream; ``write_errors`` maps both kinds of target failure to store errors.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from fsstore import exceptions
from fsstore.hashing import THREADED_THRESHOLD, ImageHasher
from fsstore.pipeline import WriteFailed, WritePipeline
from fsstore.safefiles import write_all

if TYPE_CHECKING:
    from fsstore.streams import CheckedSource

# Streams past this size are worth the pipeline's threads and buffers.
PIPELINE_THRESHOLD = 4 * 1024 * 1024

_STORAGE_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_WRITE_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}

WriteChunk = Callable[[int, bytes], None]

__all__ = [
    "PIPELINE_THRESHOLD",
    "ImageFileWriter",
    "WriteFailed",
    "one_read_limit",
    "write_all",
    "write_error",
    "write_errors",
]


def one_read_limit(io_size: int) -> int:
    """Up to this declared size an image from a file is read whole and
    hashed inline: past it, digest threads pay for themselves."""
    return min(io_size, THREADED_THRESHOLD)


def write_error(exc: OSError, where: str, image_id: str) -> exceptions.FsstoreError:
    """The store error for a failed write of ``image_id`` to ``where``."""
    if exc.errno in _STORAGE_FULL:
        return exceptions.StorageFull(f"{where} has no room for image {image_id}")
    if exc.errno in _WRITE_DENIED:
        return exceptions.StorageWriteDenied(
            f"writing image {image_id} to {where} was denied: {exc.strerror}"
        )
    return exceptions.BackendException(
        f"writing image {image_id} to {where} failed: {exc.strerror}"
    )


class write_errors:  # noqa: N801 - used as a function: ``with write_errors(...):``
    """Map a failed write (WriteFailed) and, unless the caller's stream runs
    inside the block (``stream_inside``: its OSErrors are its own), a failed
    OS call on the target (OSError) to StorageFull, StorageWriteDenied or
    BackendException, naming ``where`` and ``image_id``. (A class, not a
    generator: every small add enters it.)"""

    __slots__ = ("image_id", "stream_inside", "where")

    def __init__(
        self, where: str, image_id: str, *, stream_inside: bool = False
    ) -> None:
        self.where = where
        self.image_id = image_id
        self.stream_inside = stream_inside

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, WriteFailed):
            raise write_error(exc.oserror, self.where, self.image_id) from None
        if isinstance(exc, OSError) and not self.stream_inside:
            raise write_error(exc, self.where, self.image_id) from None


class ImageFileWriter:
    """Hashes one image's chunks and writes them to ``fd`` along the path
    its size calls for (see the module docstring).

    ``inline``: the caller knows the image is small (or writes thin files):
    every chunk is hashed and written at once, with ``write``. Otherwise
    chunks are held back until PIPELINE_THRESHOLD, then pipelined.
    ``drain`` hands the rest of
    a source to the pipeline (read straight into its buffers); ``finish``
    writes out what is held back. Write errors raise WriteFailed.
    """

    def __init__(
        self,
        fd: int,
        hasher: ImageHasher,
        *,
        inline: bool = False,
        write: WriteChunk = write_all,
    ) -> None:
        self.fd = fd
        self.hasher = hasher
        self.inline = inline
        self._write = write
        self._head: list[bytes] = []
        self._held = 0
        self.pipeline: WritePipeline | None = None

    def add(self, chunk: bytes | memoryview) -> None:
        """Hash and write (or hold back) ``chunk``, a byte view or bytes;
        what is held back is copied unless it is ``bytes``."""
        if self.pipeline is not None:
            self.pipeline.feed(chunk)
        elif self.inline:
            # The digest threads keep what they are given: never a view of a
            # buffer the caller may reuse.
            self._write_inline(chunk if type(chunk) is bytes else bytes(chunk))
        else:
            self._head.append(chunk if type(chunk) is bytes else bytes(chunk))
            self._held += len(chunk)
            if self._held > PIPELINE_THRESHOLD:
                self.pipeline = WritePipeline(self.fd, self.hasher.digests(), True)
                head, self._head = self._head, []
                for piece in head:
                    self.pipeline.feed(piece)

    def drain(self, source: CheckedSource) -> None:
        """The rest of ``source`` through the pipeline (which must run)."""
        assert self.pipeline is not None
        self.pipeline.drain(source)

    def _write_inline(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        try:
            self._write(self.fd, chunk)
        except OSError as exc:
            raise WriteFailed(exc) from exc

    def finish(self) -> None:
        """Write out what is held back, or finish the pipeline."""
        if self.pipeline is not None:
            self.pipeline.finish()
            return
        head, self._head = self._head, []
        for piece in head:
            self._write_inline(piece)

    def close(self) -> None:
        """Stop any threads (after ``finish``, or to abandon the image)."""
        if self.pipeline is not None:
            self.pipeline.close()
        self._head = []
        self.hasher.close()
