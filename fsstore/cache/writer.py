"""``CacheWriter``: one image's bytes on their way into the cache.

A writer is handed out by the cache directory to the one process and thread
that holds the image's ``incomplete/`` lock (see fsstore.cache.directory).
Its owner ends it exactly once, explicitly:

* ``commit()`` when the stream ended: the data is verified and, if it
  matches, published (False when it was not: ``rejected`` or ``abandoned``
  says why);
* ``discard()`` when the consumer stopped early: the partial file goes;
* ``fail(reason)`` when the stream failed: the file moves to ``invalid/``.

Used as a context manager, a clean exit commits and an exception fails; an
owner that already ended it explicitly is left alone. Caching never raises
into the stream: a write error, a full disk or a failed commit only leave
the image uncached.
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import Any, Protocol

from fsstore.hashing import Expected, ImageHasher, KeptDigests, mismatch
from fsstore.streams import byte_view
from fsstore.writepath import ImageFileWriter, WriteFailed

LOG = logging.getLogger(__name__)


class Publisher(Protocol):
    """What a writer asks of its cache directory when it ends."""

    def admits(self, size: int) -> bool: ...

    def publish(self, writer: CacheWriter) -> bool: ...

    def discard(self, image_id: str) -> None: ...

    def invalidate(self, image_id: str, reason: str, fd: int) -> None: ...


class CacheWriter:
    """Receives one image's bytes for the cache; see the module docstring.

    :param directory: the cache directory it publishes to.
    :param image_id: the image's id.
    :param fd: its ``incomplete/`` file, locked; the writer closes it.
    :param expected: what the data must match to be published (see
        fsstore.hashing.Expected): its digests, and its size if given.
    """

    def __init__(
        self, directory: Publisher, image_id: str, fd: int, expected: Expected
    ) -> None:
        self._directory = directory
        self.image_id = image_id
        self.fd = fd
        self.expected = expected
        self.hasher = ImageHasher(expected.hashing_algo)
        self._file = ImageFileWriter(fd, self.hasher)
        self.size = 0
        self.abandoned: str | None = None  # why caching was given up, if it was
        self.checksum = ""
        self.published = False
        self.rejected: str | None = None  # why verification refused the data
        self.ended = False

    # -- data ------------------------------------------------------------------

    def write(self, chunk: Any) -> None:
        """Add ``chunk`` (bytes-like); never raises for a cache problem
        (caching stops instead), Invalid for a chunk that is not bytes-like.

        The path to the file is fsstore.writepath's: the first chunks are
        held back (copied: the caller may reuse its buffer), a large image
        then goes through the pipeline.
        """
        view = byte_view(chunk, self.image_id)
        if self.abandoned or self.ended:
            return
        self.size += view.nbytes
        if not self._directory.admits(self.size):
            self._abandon("larger than image_cache_max_size")
            return
        try:
            self._file.add(chunk if type(chunk) is bytes else view)
        except WriteFailed as exc:
            self._abandon(f"write failed: {exc}")

    def _flush(self) -> None:
        """Write out whatever is held back; abandons on a write error."""
        try:
            self._file.finish()
        except WriteFailed as exc:
            self._abandon(f"write failed: {exc}")

    def _abandon(self, reason: str) -> None:
        self.abandoned = reason
        self._stop()

    def _stop(self) -> None:
        """Stop any threads; the data written so far is left to the directory."""
        self._file.close()

    def verify(self) -> str | None:
        """Why the data may not be published (how it differs from what
        was expected, fsstore.hashing.mismatch), or None when it may."""
        checksum, multihash = self.hasher.hexdigests()
        algo = self.expected.hashing_algo
        reason = mismatch(
            self.expected, KeptDigests(checksum, multihash, algo, self.size)
        )
        if reason is not None:
            return reason
        # Recorded only when it was checked against something: an entry
        # without a checksum says it is unverified.
        self.checksum = checksum if self.expected.digests else ""
        return None

    # -- ending ----------------------------------------------------------------

    def commit(self) -> bool:
        """The stream ended: verify and publish; whether it was published."""
        if self._end():
            return self.published
        try:
            self._flush()
            if self.abandoned:
                LOG.info("not caching %s: %s", self.image_id, self.abandoned)
                self._quietly(self._directory.discard, self.image_id)
                return False
            reason = self.verify()
            if reason is not None:
                self.rejected = reason
                LOG.warning("not caching %s: %s", self.image_id, reason)
                self._quietly(
                    self._directory.invalidate, self.image_id, reason, self.fd
                )
                return False
            self.published = self._directory.publish(self)
        except Exception as exc:
            # A fault in the cache (its records' file system is full, its
            # database is damaged) never reaches the reader, who has had
            # every byte: the image is simply not cached.
            self.abandoned = f"caching failed: {exc}"
            LOG.warning("not caching %s: %s", self.image_id, exc)
            self._quietly(
                self._directory.invalidate, self.image_id, self.abandoned, self.fd
            )
        finally:
            self._close()
        return self.published

    def discard(self) -> None:
        """The consumer stopped early: the partial entry goes."""
        if not self._end():
            self._stop()
            self._quietly(self._directory.discard, self.image_id)
            self._close()

    def fail(self, reason: str) -> None:
        """The stream failed: the partial entry moves to ``invalid/``."""
        if not self._end():
            self._stop()
            self._quietly(self._directory.invalidate, self.image_id, reason, self.fd)
            self._close()

    def _end(self) -> bool:
        """Mark the writer ended; whether it already was."""
        ended, self.ended = self.ended, True
        return ended

    def _close(self) -> None:
        self._stop()
        os.close(self.fd)

    def _quietly(self, cleanup: Any, *args: Any) -> None:
        # Race: a cleanup after a failure may itself fail (the directory was
        # removed, the disk is full); the first error is the one to report.
        try:
            cleanup(*args)
        except Exception as exc:
            LOG.warning("cache cleanup %s%r failed: %s", cleanup.__name__, args, exc)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.commit()
        else:
            self.fail(f"stream failed: {exc!r}")
