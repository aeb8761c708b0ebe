"""The prefetch queue: ``queue/<image_id>`` in the cache directory.

A queued image is a file named by its id; its mtime is the queue order and
its content, optionally, JSON ``{"location", "checksum", "multihash",
"hashing_algo", "unverified"}`` (Glance's queue files are empty). A new
entry appears whole: it is a ``safefiles.atomic_file``, linked into place
only when written, which also refuses an id that is queued already. The
cache directory's ``publish`` dequeues what it publishes.

Only a regular file is a queue entry: a link, FIFO or directory put in
``queue/`` is never listed, read or followed (a FIFO would block the
prefetcher's open forever), and a queue file is read only up to
MAX_QUEUE_FILE bytes.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from typing import Any

from fsstore import exceptions, safefiles
from fsstore.cache.directory import CacheDirectory
from fsstore.cache.layout import QUEUE, regular_files
from fsstore.safefiles import write_all

# A location, digests and a flag: far below this. Anything longer was not
# written by queue_image.
MAX_QUEUE_FILE = 64 * 1024

#: The names of the temporary files a crashed queue write leaves: atomic_file's
#: (``safefiles.TEMPORARY_PREFIX``), and the previous release's own queue
#: temporaries (``.fsstore-queue-<hex>``), which an upgrade may find.
LEFTOVER_PREFIXES = (safefiles.TEMPORARY_PREFIX, ".fsstore-queue-")


class PrefetchQueue:
    """The queue of one cache directory."""

    def __init__(self, directory: CacheDirectory) -> None:
        self.directory = directory

    def is_queued(self, image_id: str) -> bool:
        path = self.directory.path(self._checked(image_id), QUEUE)
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def _checked(self, image_id: str) -> str:
        return self.directory.checked(image_id)

    def images(self) -> list[str]:
        """The queued ids, oldest first."""
        with self.directory.subdir(QUEUE) as dir_fd:
            found = [
                (st.st_mtime_ns, name)
                for name, st in regular_files(dir_fd, self.directory.is_entry_name)
            ]
        return [name for _, name in sorted(found)]

    def info(self, image_id: str) -> dict[str, Any]:
        """What ``add`` recorded about a queued image ({} if nothing)."""
        self._checked(image_id)
        try:
            with self.directory.subdir(QUEUE) as dir_fd:
                fd = safefiles.open_regular(image_id, dir_fd=dir_fd)
        except OSError as exc:
            # Missing, or something that is not a queue file in its place.
            if exc.errno not in (errno.ENOENT, errno.EINVAL):
                raise
            raise exceptions.NotFound(f"image {image_id} is not queued") from None
        with os.fdopen(fd, "rb") as f:
            text = f.read(MAX_QUEUE_FILE + 1)
        if len(text) > MAX_QUEUE_FILE:
            return {}
        if not text.strip():
            return {}  # Glance's queue files are empty
        try:
            info = json.loads(text)
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def add(self, image_id: str, **info: Any) -> bool:
        """Queue for prefetching; False if cached, being cached or queued."""
        directory = self.directory
        if not directory.is_entry_name(self._checked(image_id)):
            return False
        if directory.is_cached(image_id) or directory.is_being_cached(image_id):
            return False
        body = json.dumps({k: v for k, v in info.items() if v is not None}).encode()
        # Race: a prefetcher may read the entry the moment it appears, so it
        # appears whole: written first, then linked into place (link(2) also
        # refuses an id that is queued already, and anything else at its
        # name).
        with directory.subdir(QUEUE) as dir_fd:
            try:
                # 0600: it may name a location, which is nobody else's business.
                with safefiles.atomic_file(
                    dir_fd, image_id, replace=False, fsync=False
                ) as fd:
                    write_all(fd, body)
                    # The mtime is the queue order; the kernel's timestamp
                    # granularity (a clock tick) would tie quick successions.
                    now = time.time_ns()
                    os.utime(fd, ns=(now, now))
            except FileExistsError:
                return False
        return True

    def remove(self, image_id: str) -> bool:
        """Dequeue; False if not queued. Whatever is at the id's name in
        ``queue/`` but a directory is unlinked (a link itself, never its
        target)."""
        self._checked(image_id)
        with self.directory.subdir(QUEUE) as dir_fd:
            try:
                os.unlink(image_id, dir_fd=dir_fd)
            except (FileNotFoundError, IsADirectoryError):
                return False
        return True

    def clear(self) -> int:
        return sum(self.remove(image_id) for image_id in self.images())

    def clean(self, stall_time: int) -> list[str]:
        """Remove temporary files left by a crash inside ``add`` (names
        starting with one of ``LEFTOVER_PREFIXES``): one lives for
        microseconds, so one older than ``stall_time`` is a leftover.
        What cannot be removed is returned, one line each.

        :param stall_time: the age in seconds past which a temporary file
            is a crash's leftover, not a write in progress.
        """
        now = time.time()
        left = []
        with self.directory.subdir(QUEUE) as dir_fd:
            for name in os.listdir(dir_fd):
                if not name.startswith(LEFTOVER_PREFIXES):
                    continue
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if now - st.st_mtime > stall_time:
                        os.unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    why = "a directory" if exc.errno == errno.EISDIR else exc.strerror
                    left.append(f"{QUEUE}/{name}: {why}")
        return left
