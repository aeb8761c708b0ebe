"""The cache directory: the image cache's on-disk layout and locking protocol.

``CacheDirectory`` is the one object the cache facade (fsstore.cache.image_cache)
and the prefetch queue work through; its class docstring draws the layout
and states the protocol. The steps live beside it, one concept a module:
``layout`` (names and paths), ``policy`` (the size limit and the eviction
order), ``publish`` (one writer per image, publishing, ``invalid/``),
``eviction`` (removing entries), ``clean`` (reaping) and ``reconcile``
(``check``). The records of the entries (size, hits, access times) are the
records driver's (fsstore.cache.records): this module decides when they
change.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import weakref
from contextlib import AbstractContextManager
from typing import BinaryIO

from oslo_config import cfg

from fsstore import exceptions, locking, safefiles
from fsstore.cache import clean as _clean
from fsstore.cache import eviction as _eviction
from fsstore.cache import publish as _publish
from fsstore.cache import reconcile as _reconcile
from fsstore.cache.clean import Cleaned
from fsstore.cache.hits import HitCountingReader, log_lost_hit
from fsstore.cache.layout import (
    CACHE_LOCK,
    GLANCE_DB_LOCK,
    INCOMPLETE,
    INVALID,
    QUEUE,
    SUBDIRS,
    CacheLayout,
    regular_files,
)
from fsstore.cache.policy import CachePolicy, EvictionPolicy
from fsstore.cache.records import CachedImage, Problem, RecordsDriver
from fsstore.cache.writer import CacheWriter
from fsstore.confvalues import option_error, path_value
from fsstore.hashing import Expected
from fsstore.store import image_id_problem

LOG = logging.getLogger(__name__)
# Ids image_id_problem always takes: ASCII, at most 255 bytes, no '/', NUL
# or '.', so neither '.', '..' nor the reserved prefix.
_PLAIN_ID = re.compile(r"[0-9A-Za-z_-]{1,255}").fullmatch

__all__ = [
    "CACHE_LOCK",
    "GLANCE_DB_LOCK",
    "INCOMPLETE",
    "INVALID",
    "QUEUE",
    "SUBDIRS",
    "CacheDirectory",
    "Cleaned",
    "regular_files",
]


class CacheDirectory(CacheLayout):
    """One cache directory (``[DEFAULT] image_cache_*``) and its records.

    Layout (Glance's, so that a cache directory Glance wrote is adopted as
    is)::

        <image_cache_dir>/
            <image_id>              a published entry: complete and verified
            incomplete/<image_id>   being written; its writer holds a flock on it
            invalid/<image_id>      a write that failed (stream error, bad checksum)
            queue/<image_id>        queued for prefetching (see fsstore.cache.queue)
            .fsstore-cache.lock     serializes commits, evictions and deletes
            cache.db                the sqlite driver's records (and -wal, -shm)
            image_cache_db_init     Glance's sqlite lock file, if Glance ran here

    Only a regular file directly in the directory whose name is a valid
    image id and not one of the names above (nor one the records driver
    reserves) is an entry (see fsstore.cache.layout).

    Locking protocol:

    * One writer per image. A writer opens ``incomplete/<id>`` with
      ``O_CREAT`` and never ``O_TRUNC``, then takes ``flock(LOCK_EX |
      LOCK_NB)``. Failing to get the lock means another writer is live: this
      reader streams without caching. Having it, the writer checks that the
      name still refers to the file it locked (a finished writer or
      ``clean()`` may have removed it in between) and only then truncates
      and writes.
    * Admission. An entry is admitted while its size, declared or streamed
      so far, is within ``image_cache_max_size`` (``policy.admits``: the
      limit's one check); a larger one is given up as it is written.
    * Publish. The writer (fsstore.cache.writer) hashes what it writes and
      compares with the expected checksum or multihash; then ``publish``
      fsyncs and, holding ``.fsstore-cache.lock``: evicts entries in the
      policy's order (least recently used first) until the new one fits
      under the limit, records the entry, and links it into place with
      ``link(2)`` (never replacing anything). A failed or mismatching write
      moves to ``invalid/``. Because every change to the set of entries
      happens under the lock, and space is freed before it is used, the
      total size of published entries never exceeds the limit, as seen by
      any process at any moment.
    * Crashed writers. A writer's flock dies with it, so ``clean()`` removes
      every ``incomplete/`` file whose lock it can take, however young, and
      never one a live writer holds.
    * Planted names. Anyone who can write to the directory may put a
      symbolic link, a FIFO, a directory or a hard link where the cache
      expects one of its files. Every file the cache writes goes through
      fsstore.safefiles: it never follows a link, never blocks on a FIFO,
      never truncates a file with other names, and never replaces what it
      did not create (a new name appears by ``link(2)`` or ``O_EXCL``). The
      subdirectories are opened with ``O_NOFOLLOW`` and worked on by
      descriptor. ``clean()`` unlinks names in ``invalid/`` and
      ``incomplete/`` (never what they point to) and reports the
      directories it finds there instead of failing on them.
    * Readers open an entry and keep reading it even if it is evicted
      meanwhile: eviction unlinks, and an open file lives on. A hit may be
      recorded after its entry was evicted; drivers make that a no-op.

    :param conf: the configuration with ``[DEFAULT] image_cache_*``.
    :param records: the records driver keeping the entries' records.
    :param eviction: which entries go first when room is needed
        (fsstore.cache.policy); least recently used by default.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        records: RecordsDriver,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        name = records.NAME
        try:
            base_dir: str | None = path_value(
                conf, "image_cache_dir", None, conf.image_cache_dir
            )
            self.policy = CachePolicy(conf.image_cache_max_size, eviction)
            self.stall_time: int = conf.image_cache_stall_time
            db_name: str = conf.image_cache_sqlite_db
        except (cfg.Error, ValueError) as exc:
            raise exceptions.BadDriverConfiguration(name, option_error(exc)) from None
        if not base_dir:
            raise exceptions.BadDriverConfiguration(name, "image_cache_dir is not set")
        super().__init__(name, base_dir, db_name, records)
        # One descriptor per process, kept while the directory is in use;
        # closed with it, or a process making many caches runs out.
        self._lock_file = locking.LockFile(self.path(CACHE_LOCK))
        weakref.finalize(self, self._lock_file.close)
        # The ids entries() took at its last call: see there.
        self._entry_names: frozenset[str] = frozenset()

    def configure(self) -> None:
        """Create the layout where missing (BadDriverConfiguration if it
        cannot be), then let the records driver open its records."""
        self.make()
        self.records.configure(self)

    @property
    def max_size(self) -> int:
        """``image_cache_max_size``, the limit the policy keeps."""
        return self.policy.max_size

    def admits(self, size: int) -> bool:
        """Whether ``size`` bytes may be cached (``CachePolicy.admits``).

        :param size: an entry's size, declared or streamed so far.
        """
        return self.policy.admits(size)

    def lock(self) -> AbstractContextManager[None]:
        """The cache-wide lock around every change to the set of entries
        (``.fsstore-cache.lock``, a ``locking.LockFile``).

        Re-entrant within a thread: a driver repairing its records under the
        lock (see ``sqlite``) takes it again. Other threads of the process
        wait for it as other processes do.
        """
        return self._lock_file.held()

    # -- queries -----------------------------------------------------------

    def is_cached(self, image_id: str) -> bool:
        """Whether ``image_id`` is a published entry (Invalid if no id)."""
        if not self.is_entry_name(self.checked(image_id)):
            return False
        path = self.path(image_id)
        try:
            is_file = stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False
        return is_file and self.records.is_entry(path)

    def is_being_cached(self, image_id: str) -> bool:
        """Whether a live writer holds ``image_id``'s ``incomplete/`` file."""
        return locking.is_held(self.path(self.checked(image_id), INCOMPLETE))

    def entries(self) -> list[CachedImage]:
        """The records of every entry, in any order."""
        if self.records.lists_entry_files:
            return self.records.entries()
        # An id taken last time is not checked again: the check is a third of
        # a sqlite listing, a set lookup a twentieth of it. Which names are
        # entries' never changes while the directory is configured.
        known, is_entry_name = self._entry_names, self.is_entry_name
        listed = [
            e
            for e in self.records.entries()
            if e.image_id in known or is_entry_name(e.image_id)
        ]
        self._entry_names = frozenset(e.image_id for e in listed)
        return listed

    # -- reading -------------------------------------------------------------

    def _open_entry(self, image_id: str) -> int:
        # One id check (Invalid), then the entry name's (NotFound): a hit
        # pays for each once. An id of letters, digits, '-' and '_' (a UUID)
        # is valid as it is, and one match costs a third of the full check.
        if not isinstance(image_id, str) or _PLAIN_ID(image_id) is None:
            problem = image_id_problem(image_id)
            if problem is not None:
                raise exceptions.Invalid(problem)
        if self.is_refused(image_id):
            raise exceptions.NotFound(f"image {image_id} is not cached")
        try:
            # Not self.path: os.path.join is a tenth of the open, right after
            # a read has flushed the processor's caches; a checked id has no
            # '/' to join.
            fd = safefiles.open_regular(f"{self.base_dir}/{image_id}")
        except OSError:  # missing, or a link, FIFO or directory in its place
            raise exceptions.NotFound(f"image {image_id} is not cached") from None
        try:
            is_entry = self.records.is_entry(fd)
        except BaseException:
            os.close(fd)
            raise
        if not is_entry:
            os.close(fd)
            raise exceptions.NotFound(f"image {image_id} is not cached")
        return fd

    def open_entry(self, image_id: str) -> int:
        """A file descriptor of the cached image; counts a hit first.

        A hit that cannot be recorded (a full disk, damaged records) is
        logged, and the image is served all the same.

        :param image_id: the image (NotFound if it is not cached).
        """
        fd = self._open_entry(image_id)
        try:
            self.records.hit(image_id, fd)
        except Exception as exc:
            log_lost_hit(image_id, exc)
        return fd

    def open_for_read(self, image_id: str) -> BinaryIO:
        """The cached image as a file open for reading (a context manager).

        Closing the file records the hit (see ``hits``); a hit that cannot
        be recorded is logged, never raised.

        :param image_id: the image (NotFound if it is not cached).
        """
        fd = self._open_entry(image_id)
        try:
            return HitCountingReader(fd, self.records.hit, image_id)
        except BaseException:
            os.close(fd)
            raise

    # -- writing (fsstore.cache.publish) ---------------------------------------

    def start_write(self, image_id: str, expected: Expected) -> CacheWriter | None:
        """A writer for ``image_id``, or None when it must not be cached now:
        it is cached, another writer has it, its name is not an entry's, or
        ``expected.size`` is not admitted by the policy.

        :param image_id: the image to cache.
        :param expected: what the data must match to be published (its
            digests, and its size if given), checked by the writer.
        """
        return _publish.start_write(self, image_id, expected)

    def publish(self, writer: CacheWriter) -> bool:
        """Commit a verified writer's file as an entry; False if an entry
        of that name appeared meanwhile, or something else is at its name
        (the file is dropped, what is there is left as it is).

        :param writer: the writer, verified, holding its ``incomplete/`` lock.
        """
        return _publish.publish(self, writer)

    def discard(self, image_id: str) -> None:
        """Drop our ``incomplete/`` file (the caller holds its lock).

        :param image_id: the image being written.
        """
        _publish.discard(self, image_id)

    def invalidate(self, image_id: str, reason: str, fd: int) -> None:
        """Move a failed write (our locked ``incomplete/`` file, open as
        ``fd``) to ``invalid/``, recording why where the file system allows
        it. A file already at ``invalid/<id>`` (an earlier failure's, or
        planted) is kept, never replaced: ours is dropped.

        :param image_id: the image being written.
        :param reason: why it failed, kept in ``user.error``.
        :param fd: the writer's file.
        """
        _publish.invalidate(self, image_id, reason, fd)

    def mark_invalid(self, image_id: str, reason: str) -> None:
        """Record in ``invalid/`` an image that failed to cache with no file
        of its own (its store read failed): an empty file, created new. One
        already there (the failed writer's, or planted) is kept as it is.

        :param image_id: the image that failed.
        :param reason: why, kept in ``user.error``.
        """
        _publish.mark_invalid(self, image_id, reason)

    # -- removal (fsstore.cache.eviction, .clean, .reconcile) ------------------

    def delete(self, image_id: str) -> bool:
        """Remove one entry; whether there was one to remove."""
        if not self.is_entry_name(self.checked(image_id)):
            return False
        with self.lock():
            return _eviction.remove(self, [image_id]) == 1

    def delete_all(self) -> int:
        """Remove every entry: the number of files removed."""
        with self.lock():
            return _eviction.remove(self, [e.image_id for e in self.entries()])

    def prune(self) -> tuple[int, int]:
        """Evict, in the policy's order (least recently used first), until
        the cache fits its limit: (files, bytes)."""
        with self.lock():
            return _eviction.evict_for(self, 0)

    def clean(self, stall_time: int | None = None) -> Cleaned:
        """Reap ``invalid/`` and crashed writers' ``incomplete/`` files.

        A file whose writer is alive (holds its flock) is never removed; one
        older than ``stall_time`` is logged. A name that cannot be removed
        (a directory put there) is logged, listed in ``Cleaned.left``, and
        the rest is reaped all the same. Names are unlinked, never followed.

        :param stall_time: seconds; default ``image_cache_stall_time``.
        """
        stall_time = self.stall_time if stall_time is None else stall_time
        return _clean.clean(self, stall_time)

    def check(self, fix: bool = False) -> list[Problem]:
        """Reconcile records with files, and the total with the limit; with
        ``fix``, repair what differs and evict down to the limit.

        :param fix: repair, rather than only report.
        """
        return _reconcile.check(self, fix)
