"""The cache directory: the image cache's on-disk layout and locking protocol.

Layout (Glance's, so that a cache directory Glance wrote is adopted as is)::

    <image_cache_dir>/
        <image_id>              a published entry: complete and verified
        incomplete/<image_id>   being written; its writer holds a flock on it
        invalid/<image_id>      a write that failed (stream error, bad checksum)
        queue/<image_id>        queued for prefetching (see fsstore.cache.queue)
        .fsstore-cache.lock     serializes commits, evictions and deletes
        cache.db                the sqlite driver's records (and -wal, -shm)
        image_cache_db_init     Glance's sqlite lock file, if Glance ran here

Only a regular file directly in the directory whose name is a valid image id
and not one of the names above (nor one the records driver reserves) is an
entry; nothing else is ever listed, counted, pruned or deleted as an image.
The records of the entries (size, hits, access times) are the records
driver's (fsstore.cache.records): this module decides when they change.

Locking protocol:

* One writer per image. A writer opens ``incomplete/<id>`` with ``O_CREAT``
  and never ``O_TRUNC``, then takes ``flock(LOCK_EX | LOCK_NB)``. Failing to
  get the lock means another writer is live: this reader streams without
  caching. Having it, the writer checks that the name still refers to the file
  it locked (a finished writer or ``clean()`` may have removed it in between)
  and only then truncates and writes.
* Publish. The writer (fsstore.cache.writer) hashes what it writes and
  compares with the expected checksum or multihash; then ``publish`` fsyncs
  and, holding ``.fsstore-cache.lock``: evicts least-recently-used entries
  until the new one fits under ``image_cache_max_size``, records the entry,
  and links it into place with ``link(2)`` (never replacing anything). A
  failed or mismatching write moves to ``invalid/``. Because every change to
  the set of entries happens under the lock, and space is freed before it is
  used, the total size of published entries never exceeds the limit, as seen
  by any process at any moment.
* Crashed writers. A writer's flock dies with it, so ``clean()`` removes every
  ``incomplete/`` file whose lock it can take, however young, and never one a
  live writer holds.
* Readers open an entry and keep reading it even if it is evicted meanwhile:
  eviction unlinks, and an open file lives on. A hit may be recorded after
  its entry was evicted; drivers make that a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from oslo_config import cfg

from fsstore import exceptions, locking
from fsstore.cache.hits import HitCountingReader, log_lost_hit
from fsstore.cache.records import CachedImage, Problem, RecordsDriver
from fsstore.cache.writer import CacheWriter
from fsstore.store import RESERVED_PREFIX, image_id_problem, validate_image_id

LOG = logging.getLogger(__name__)

INCOMPLETE = "incomplete"
INVALID = "invalid"
QUEUE = "queue"
CACHE_LOCK = ".fsstore-cache.lock"
GLANCE_DB_LOCK = "image_cache_db_init"
SUBDIRS = (INCOMPLETE, INVALID, QUEUE)


def _lru_order(entry: CachedImage) -> tuple[float, str]:
    return entry.last_accessed, entry.image_id


class CacheDirectory:
    """One cache directory (``[DEFAULT] image_cache_*``) and its records."""

    def __init__(self, conf: cfg.ConfigOpts, records: RecordsDriver) -> None:
        self.records = records
        self.name = records.NAME
        self._reserved: frozenset[str] = frozenset()
        self._held = threading.local()  # this thread's depth in lock()
        try:
            base_dir: str | None = conf.image_cache_dir
            self.max_size: int = conf.image_cache_max_size
            self.stall_time: int = conf.image_cache_stall_time
            self.db_name: str = conf.image_cache_sqlite_db
        except (cfg.Error, ValueError) as exc:
            raise exceptions.BadDriverConfiguration(self.name, str(exc)) from None
        if not base_dir:
            raise exceptions.BadDriverConfiguration(
                self.name, "image_cache_dir is not set"
            )
        self.base_dir = os.path.abspath(base_dir)
        self.db_path = os.path.join(self.base_dir, self.db_name)
        self._max_id_length = records.max_id_length

    # -- configuration ---------------------------------------------------

    def configure(self) -> None:
        """Create the layout where missing, then let the records driver
        open its records."""
        self._check_db_path()
        try:
            for sub in ("", *SUBDIRS):
                os.makedirs(os.path.join(self.base_dir, sub), exist_ok=True)
        except OSError as exc:
            raise exceptions.BadDriverConfiguration(
                self.name, f"cannot create {self.base_dir}: {exc.strerror}"
            ) from None
        for sub in ("", *SUBDIRS):
            path = os.path.join(self.base_dir, sub)
            if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise exceptions.BadDriverConfiguration(
                    self.name, f"{path} is not readable and writable"
                )
        self._reserved = frozenset(self._reserved_names())
        self.records.configure(self)

    def _check_db_path(self) -> None:
        """Refuse an ``image_cache_sqlite_db`` where the cache's own files
        live: ``clean()`` empties ``invalid/`` and reaps ``incomplete/``, and
        ``queue/`` is read as image ids."""
        db_dir = os.path.realpath(os.path.dirname(self.db_path))
        for sub in SUBDIRS:
            inside = os.path.realpath(os.path.join(self.base_dir, sub))
            if db_dir == inside or db_dir.startswith(inside + os.sep):
                raise exceptions.BadDriverConfiguration(
                    self.name,
                    f"image_cache_sqlite_db {self.db_name!r} is inside the cache's "
                    f"{sub}/ directory; put it in the cache directory or elsewhere",
                )

    def _reserved_names(self) -> set[str]:
        """Names in the cache directory that are never images.

        The sqlite database's files are reserved for every driver (a cache
        directory may have been run with the other one before), however
        ``image_cache_sqlite_db`` names them: ``cache.db``, ``./cache.db`` or
        an absolute path into the cache directory.
        """
        names = {*SUBDIRS, CACHE_LOCK, GLANCE_DB_LOCK, *self.records.reserved_names()}
        db_dir, db_file = os.path.split(os.path.normpath(self.db_path))
        if os.path.realpath(db_dir) == os.path.realpath(self.base_dir):
            names |= {db_file + s for s in ("", "-wal", "-shm", "-journal")}
        return names

    # -- names and paths -------------------------------------------------

    def _is_refused(self, name: str) -> bool:
        """Whether a valid image id still cannot name an entry: a name the
        cache or its driver reserves, or too long for the driver's records."""
        return name in self._reserved or (
            self._max_id_length is not None and len(name) > self._max_id_length
        )

    def is_entry_name(self, name: str) -> bool:
        return image_id_problem(name) is None and not self._is_refused(name)

    def _is_entry_file_name(self, name: str) -> bool:
        """is_entry_name for a name read from the directory, cheaper: the
        kernel already guarantees it non-empty, free of '/' and NUL, not '.'
        or '..', and at most 255 bytes long."""
        if name.startswith(RESERVED_PREFIX) or self._is_refused(name):
            return False
        return name.isascii() or image_id_problem(name) is None

    def path(self, image_id: str, sub: str = "") -> str:
        return os.path.join(self.base_dir, sub, image_id)

    def checked(self, image_id: str) -> str:
        validate_image_id(image_id)
        return image_id

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The cache-wide lock around every change to the set of entries.

        Re-entrant within a thread: a driver repairing its records under the
        lock (see ``sqlite``) takes it again. Another thread of the process
        opens its own descriptor, whose flock waits like any other process's.
        """
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        fd = os.open(
            self.path(CACHE_LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
        )
        try:
            with locking.flocked(fd):
                self._held.depth = 1
                try:
                    yield
                finally:
                    self._held.depth = 0
        finally:
            os.close(fd)

    # -- queries -----------------------------------------------------------

    def is_cached(self, image_id: str) -> bool:
        if not self.is_entry_name(self.checked(image_id)):
            return False
        path = self.path(image_id)
        try:
            is_file = stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False
        return is_file and self.records.is_entry(path)

    def is_being_cached(self, image_id: str) -> bool:
        return locking.is_held(self.path(self.checked(image_id), INCOMPLETE))

    def entries(self) -> list[CachedImage]:
        """The records of every entry, in any order."""
        is_entry_name = self.is_entry_name
        return [e for e in self.records.entries() if is_entry_name(e.image_id)]

    def entry_files(self) -> dict[str, os.stat_result]:
        """The entry files in the directory, by image id."""
        return dict(self.scan_entry_files())

    def scan_entry_files(self) -> Iterator[tuple[str, os.stat_result]]:
        """``(image id, lstat result)`` of each entry file, in directory order."""
        is_entry_name = self._is_entry_file_name
        # By descriptor: each lstat is relative, no walk of the directory's path.
        dir_fd = os.open(self.base_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(dir_fd) as found:
                for entry in found:
                    if not is_entry_name(entry.name):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        yield entry.name, st
        finally:
            os.close(dir_fd)

    # -- reading -------------------------------------------------------------

    def _open_entry(self, image_id: str) -> int:
        # One id check (Invalid), then the entry name's (NotFound): a hit
        # pays for each once.
        problem = image_id_problem(image_id)
        if problem is not None:
            raise exceptions.Invalid(problem)
        if self._is_refused(image_id):
            raise exceptions.NotFound(f"image {image_id} is not cached")
        try:
            # O_NONBLOCK: a FIFO planted under an entry's name must not hang
            # the reader in open(); it is refused below.
            fd = os.open(
                self.path(image_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            )
        except OSError:  # missing, or a symlink planted under its name
            raise exceptions.NotFound(f"image {image_id} is not cached") from None
        try:
            is_entry = stat.S_ISREG(os.fstat(fd).st_mode) and self.records.is_entry(fd)
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
        """
        fd = self._open_entry(image_id)
        try:
            return HitCountingReader(fd, self.records.hit, image_id)
        except BaseException:
            os.close(fd)
            raise

    # -- writing -------------------------------------------------------------

    def _open_incomplete(self, image_id: str) -> int | None:
        """Our locked ``incomplete/`` file, or None if another writer is live."""
        try:
            fd = locking.hold(self.path(image_id, INCOMPLETE), mode=0o644, wait=False)
        except locking.LockHeld:
            return None  # one writer per image: someone else has it
        os.ftruncate(fd, 0)  # a crashed writer's leftovers
        return fd

    def start_write(
        self,
        image_id: str,
        checksum: str | None,
        multihash: str | None,
        hashing_algo: str,
        size: int = 0,
    ) -> CacheWriter | None:
        """A writer for ``image_id``, or None when it must not be cached now:
        it is cached, another writer has it, its name is not an entry's, or
        ``size`` exceeds the cache."""
        if (
            not self.is_entry_name(self.checked(image_id))
            or self.is_cached(image_id)
            or size > self.max_size
        ):
            return None
        try:
            fd = self._open_incomplete(image_id)
        except OSError as exc:
            LOG.warning("not caching %s: %s", image_id, exc)
            return None
        if fd is None:
            return None
        if self.is_cached(image_id):  # published while we took the lock
            self.discard(image_id)
            os.close(fd)
            return None
        try:
            return CacheWriter(self, image_id, fd, checksum, multihash, hashing_algo)
        except BaseException:  # an unknown hashing_algo: nothing was written
            self.discard(image_id)
            os.close(fd)
            raise

    def publish(self, writer: CacheWriter) -> bool:
        """Commit a verified writer's file as an entry; False if an entry
        of that name appeared meanwhile (the file is dropped)."""
        image_id = writer.image_id
        os.fsync(writer.fd)
        with self.lock():
            if self.is_cached(image_id):
                self.discard(image_id)
                return False
            self._evict_until(self.max_size - writer.size)
            self.records.commit(
                image_id, writer.size, writer.checksum or None, writer.fd
            )
            try:
                os.link(self.path(image_id, INCOMPLETE), self.path(image_id))
            except FileExistsError:
                # An unrecorded file under this name (left by hand, or by a
                # crash of Glance): keep it, drop ours; check() reconciles.
                self.records.delete([image_id])
                self.discard(image_id)
                return False
            self.discard(image_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(image_id, QUEUE))
        return True

    def discard(self, image_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(image_id, INCOMPLETE))

    def invalidate(self, image_id: str, reason: str) -> None:
        """Move a failed write to ``invalid/`` (an empty file if there is
        none), recording why where the file system allows it."""
        self.checked(image_id)
        try:
            os.replace(self.path(image_id, INCOMPLETE), self.path(image_id, INVALID))
        except FileNotFoundError:
            with open(self.path(image_id, INVALID), "wb"):
                pass
        with contextlib.suppress(OSError):
            os.setxattr(
                self.path(image_id, INVALID), "user.error", reason.encode()[:1024]
            )

    # -- removal -------------------------------------------------------------

    def _remove(self, image_ids: list[str]) -> int:
        """Unlink, then forget: records overstate the files, never understate.
        Caller holds the lock. The number of files removed."""
        removed = 0
        for image_id in image_ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(image_id))
                removed += 1
        if image_ids:
            self.records.delete(image_ids)
        return removed

    def _evict_until(self, budget: int) -> tuple[int, int]:
        """Evict least-recently-used entries until the total is <= ``budget``.

        Caller holds the lock. One pass over a snapshot: always terminates.
        """
        total = self.records.total_size()
        if total <= budget:
            return 0, 0
        victims, freed = [], 0
        for entry in sorted(self.entries(), key=_lru_order):
            if total - freed <= budget:
                break
            victims.append(entry.image_id)
            freed += entry.size
        self._remove(victims)
        LOG.debug("evicted %d entries (%d bytes)", len(victims), freed)
        return len(victims), freed

    def delete(self, image_id: str) -> bool:
        if not self.is_entry_name(self.checked(image_id)):
            return False
        with self.lock():
            return self._remove([image_id]) == 1

    def delete_all(self) -> int:
        with self.lock():
            return self._remove([e.image_id for e in self.entries()])

    def prune(self) -> tuple[int, int]:
        """Evict LRU entries until the cache fits its limit: (files, bytes)."""
        with self.lock():
            return self._evict_until(self.max_size)

    def clean(self, stall_time: int | None = None) -> tuple[int, int]:
        """Reap ``invalid/`` and crashed writers' ``incomplete/`` files.

        Returns (invalid files, incomplete files) removed. A file whose writer
        is alive (holds its flock) is never removed; one older than
        ``stall_time`` (default ``image_cache_stall_time``) is logged.
        """
        stall_time = self.stall_time if stall_time is None else stall_time
        invalid = 0
        invalid_dir = self.path("", INVALID)
        for name in os.listdir(invalid_dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(invalid_dir, name))
                invalid += 1
        incomplete = 0
        incomplete_dir = self.path("", INCOMPLETE)
        now = time.time()
        for name in os.listdir(incomplete_dir):
            path = os.path.join(incomplete_dir, name)
            reaped = locking.reap(path)
            if reaped == "reaped":
                incomplete += 1
            elif reaped == "held":
                with contextlib.suppress(FileNotFoundError):
                    age = now - os.lstat(path).st_mtime
                    if age > stall_time:
                        LOG.warning("%s: live writer stalled for %d s", path, age)
        return invalid, incomplete

    # -- repair ----------------------------------------------------------------

    def check(self, fix: bool = False) -> list[Problem]:
        """Reconcile records with files; with ``fix``, repair what differs."""
        with self.lock():
            problems = self.records.check(fix)
            if any(p.kind == "damaged-records" for p in problems) and not fix:
                return problems  # nothing more can be read from them
            total = self.records.total_size()
            if total > self.max_size:
                problems.append(
                    Problem(
                        "over-limit",
                        None,
                        f"{total} bytes cached, limit {self.max_size}",
                    )
                )
                if fix:
                    self._evict_until(self.max_size)
        return problems
