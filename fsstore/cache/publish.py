"""Writing an entry: one writer per image, publish, and ``invalid/``.

The protocol is stated in fsstore.cache.directory; these are its steps, each
race named where it is handled. Every function takes the cache directory
whose files it works on.

Trace points (fsstore.tracing), where a test opens a race window:
``cache.start_write.locked`` (a writer has its ``incomplete/`` lock and has
not yet checked again that the image is not cached) and
``cache.publish.recorded`` (under the cache lock, the entry recorded and not
yet linked into place).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from fsstore import locking, safefiles
from fsstore.cache.eviction import evict_for
from fsstore.cache.layout import INCOMPLETE, INVALID, QUEUE
from fsstore.cache.writer import CacheWriter
from fsstore.tracing import trace

if TYPE_CHECKING:
    from fsstore.cache.directory import CacheDirectory
    from fsstore.hashing import Expected

LOG = logging.getLogger(__name__)

# How much of a failure's reason is kept in invalid/<id>'s user.error.
MAX_REASON = 1024


def open_incomplete(directory: CacheDirectory, image_id: str) -> int | None:
    """Our locked, emptied ``incomplete/`` file, or None if another writer
    is live.

    :param directory: the cache directory.
    :param image_id: the image to write, an entry's name.
    """
    with directory.subdir(INCOMPLETE) as dir_fd:
        try:
            # locking.hold handles the race of a finished writer or clean()
            # unlinking the name between our open and our flock.
            fd = locking.hold(image_id, dir_fd=dir_fd, mode=0o644, wait=False)
        except locking.LockHeld:
            return None  # one writer per image: someone else has it
    # A writer's file has one name (two, under the lock, while it is
    # published). More is a hard link planted to a file elsewhere:
    # truncating it would empty that file.
    try:
        if os.fstat(fd).st_nlink != 1:
            raise OSError(
                errno.EMLINK,
                "has other hard links; never truncated",
                directory.path(image_id, INCOMPLETE),
            )
        os.ftruncate(fd, 0)  # a crashed writer's leftovers
    except BaseException:
        os.close(fd)  # and its lock: held, nobody could cache the image
        raise
    return fd


def start_write(
    directory: CacheDirectory, image_id: str, expected: Expected
) -> CacheWriter | None:
    """A writer for ``image_id``, or None when it must not be cached now
    (see ``CacheDirectory.start_write``).

    :param directory: the cache directory.
    :param image_id: the image to cache.
    :param expected: what the data must match to be published, handed to
        the writer as it is; its ``size``, if given, must be admitted.
    """
    if (
        not directory.is_entry_name(directory.checked(image_id))
        or directory.is_cached(image_id)
        or not directory.policy.admits(expected.size or 0)
    ):
        return None
    try:
        fd = open_incomplete(directory, image_id)
    except OSError as exc:
        LOG.warning("not caching %s: %s", image_id, exc)
        return None
    if fd is None:
        return None
    # Race: another writer published the image between our is_cached and
    # our lock (it held the lock until then); ours would be a second copy.
    trace("cache.start_write.locked")
    if directory.is_cached(image_id):
        discard(directory, image_id)
        os.close(fd)
        return None
    try:
        return CacheWriter(directory, image_id, fd, expected)
    except BaseException:  # no writer to end: nothing was written
        discard(directory, image_id)
        os.close(fd)
        raise


def publish(directory: CacheDirectory, writer: CacheWriter) -> bool:
    """Commit a verified writer's file as an entry (see
    ``CacheDirectory.publish``); whether it was published.

    :param directory: the cache directory.
    :param writer: the writer, verified, holding its ``incomplete/`` lock.
    """
    image_id = writer.image_id
    os.fsync(writer.fd)
    with directory.lock():
        # Race: an entry of this name appeared since start_write (added by
        # hand, or by a writer of a cache that does not lock like ours).
        if directory.is_cached(image_id):
            discard(directory, image_id)
            return False
        # Room first, under the lock: the limit holds at every moment.
        evict_for(directory, writer.size)
        # Recorded before it is linked: the records never understate.
        directory.records.commit(
            image_id, writer.size, writer.checksum or None, writer.fd
        )
        trace("cache.publish.recorded")
        if not _link_entry(directory, writer):
            return False
        _quietly(discard, directory, image_id)
    _quietly(dequeue, directory, image_id)
    return True


def _link_entry(directory: CacheDirectory, writer: CacheWriter) -> bool:
    """Link the writer's file in as its entry (caller holds the lock and
    has recorded it); False, its record forgotten, if the name is taken."""
    image_id = writer.image_id
    try:
        with directory.subdir(INCOMPLETE) as incomplete_fd:
            safefiles.link_new(
                writer.fd,
                directory.path(image_id),
                src=image_id,
                src_dir_fd=incomplete_fd,
            )
    except FileExistsError:
        # Race: a file under this name that is no entry (left by hand, by
        # a crash of Glance, or planted): kept as it is, ours dropped;
        # check() reconciles.
        directory.records.delete([image_id])
        discard(directory, image_id)
        writer.abandoned = f"{directory.path(image_id)} is taken by another file"
        return False
    except BaseException:
        with contextlib.suppress(Exception):
            directory.records.delete([image_id])
        raise
    return True


def _quietly(
    cleanup: Callable[[CacheDirectory, str], None],
    directory: CacheDirectory,
    image_id: str,
) -> None:
    # Published already: failing to tidy up after must not say otherwise.
    try:
        cleanup(directory, image_id)
    except OSError as exc:
        LOG.warning("cached %s, but %s failed: %s", image_id, cleanup.__name__, exc)


def dequeue(directory: CacheDirectory, image_id: str) -> None:
    """Take a published image off the prefetch queue, if it is on it.

    :param directory: the cache directory.
    :param image_id: the image published.
    """
    with directory.subdir(QUEUE) as queue_fd, contextlib.suppress(FileNotFoundError):
        os.unlink(image_id, dir_fd=queue_fd)


def discard(directory: CacheDirectory, image_id: str) -> None:
    """Drop our ``incomplete/`` file (the caller holds its lock).

    :param directory: the cache directory.
    :param image_id: the image being written.
    """
    with (
        directory.subdir(INCOMPLETE) as dir_fd,
        contextlib.suppress(FileNotFoundError),
    ):
        os.unlink(image_id, dir_fd=dir_fd)


def invalidate(directory: CacheDirectory, image_id: str, reason: str, fd: int) -> None:
    """Move a failed write to ``invalid/`` (see
    ``CacheDirectory.invalidate``).

    :param directory: the cache directory.
    :param image_id: the image being written.
    :param reason: why it failed, kept in ``user.error``.
    :param fd: the writer's file.
    """
    directory.checked(image_id)
    with contextlib.suppress(OSError):
        os.setxattr(fd, "user.error", reason.encode()[:MAX_REASON])
    with (
        directory.subdir(INCOMPLETE) as incomplete_fd,
        directory.subdir(INVALID) as inv_fd,
    ):
        try:
            safefiles.link_new(
                fd,
                image_id,
                dst_dir_fd=inv_fd,
                src=image_id,
                src_dir_fd=incomplete_fd,
            )
        except FileExistsError:
            # An earlier failure's file, or one planted: never replaced.
            LOG.info("%s is there already; kept", directory.path(image_id, INVALID))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(image_id, dir_fd=incomplete_fd)


def mark_invalid(directory: CacheDirectory, image_id: str, reason: str) -> None:
    """Record a failure with no file of its own in ``invalid/`` (see
    ``CacheDirectory.mark_invalid``).

    :param directory: the cache directory.
    :param image_id: the image that failed.
    :param reason: why, kept in ``user.error``.
    """
    directory.checked(image_id)
    with directory.subdir(INVALID) as dir_fd:
        try:
            fd = safefiles.create_new(image_id, dir_fd=dir_fd, mode=0o644)
        except FileExistsError:
            return
        try:
            with contextlib.suppress(OSError):
                os.setxattr(fd, "user.error", reason.encode()[:MAX_REASON])
        finally:
            os.close(fd)
