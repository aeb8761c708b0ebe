"""The prefetch queue: ``queue/<image_id>`` in the cache directory.

A queued image is a file named by its id; its mtime is the queue order and
its content, optionally, JSON ``{"location", "checksum", "multihash",
"hashing_algo", "unverified"}`` (Glance's queue files are empty). A new
entry appears whole: it is written under ``.fsstore-queue-<random>`` and
linked into place, which also refuses an id that is queued already. The
cache directory's ``publish`` dequeues what it publishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from typing import Any

from fsstore import exceptions
from fsstore.cache.directory import QUEUE, CacheDirectory

TEMPORARY_PREFIX = ".fsstore-queue-"


class PrefetchQueue:
    """The queue of one cache directory."""

    def __init__(self, directory: CacheDirectory) -> None:
        self.directory = directory
        self.queue_dir = directory.path("", QUEUE)

    def is_queued(self, image_id: str) -> bool:
        return os.path.lexists(self.directory.path(self._checked(image_id), QUEUE))

    def _checked(self, image_id: str) -> str:
        return self.directory.checked(image_id)

    def images(self) -> list[str]:
        """The queued ids, oldest first."""
        is_entry_name = self.directory.is_entry_name
        found = []
        for name in os.listdir(self.queue_dir):
            if not is_entry_name(name):
                continue
            try:
                found.append(
                    (os.lstat(os.path.join(self.queue_dir, name)).st_mtime_ns, name)
                )
            except FileNotFoundError:
                continue
        return [name for _, name in sorted(found)]

    def info(self, image_id: str) -> dict[str, Any]:
        """What ``add`` recorded about a queued image ({} if nothing)."""
        try:
            with open(self.directory.path(self._checked(image_id), QUEUE), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {image_id} is not queued") from None
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
        # appears whole: written under a temporary name, then linked into
        # place (link(2) also refuses an id that is queued already).
        tmp = os.path.join(self.queue_dir, TEMPORARY_PREFIX + secrets.token_hex(8))
        # 0600: it may name a location, which is nobody else's business.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.write(fd, body)
                # The mtime is the queue order; the kernel's timestamp
                # granularity (a clock tick) would tie quick successions.
                now = time.time_ns()
                os.utime(fd, ns=(now, now))
            finally:
                os.close(fd)
            os.link(tmp, directory.path(image_id, QUEUE))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def remove(self, image_id: str) -> bool:
        try:
            os.unlink(self.directory.path(self._checked(image_id), QUEUE))
        except FileNotFoundError:
            return False
        return True

    def clear(self) -> int:
        return sum(self.remove(image_id) for image_id in self.images())

    def clean(self, stall_time: int) -> None:
        """Remove temporary files left by a crash inside ``add``: one lives
        for microseconds, so one older than ``stall_time`` is a leftover."""
        now = time.time()
        for name in os.listdir(self.queue_dir):
            if name.startswith(TEMPORARY_PREFIX):
                path = os.path.join(self.queue_dir, name)
                with contextlib.suppress(FileNotFoundError):
                    if now - os.lstat(path).st_mtime > stall_time:
                        os.unlink(path)
