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
* Planted names. Anyone who can write to the directory may put a symbolic
  link, a FIFO, a directory or a hard link where the cache expects one of
  its files. Every file the cache writes goes through fsstore.safefiles: it
  never follows a link, never blocks on a FIFO, never truncates a file with
  other names, and never replaces what it did not create (a new name appears
  by ``link(2)`` or ``O_EXCL``). The subdirectories are opened with
  ``O_NOFOLLOW`` and worked on by descriptor. ``clean()`` unlinks names in
  ``invalid/`` and ``incomplete/`` (never what they point to) and reports the
  directories it finds there instead of failing on them.
* Readers open an entry and keep reading it even if it is evicted meanwhile:
  eviction unlinks, and an open file lives on. A hit may be recorded after
  its entry was evicted; drivers make that a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from oslo_config import cfg

from fsstore import exceptions, locking, safefiles
from fsstore.cache.hits import HitCountingReader, log_lost_hit
from fsstore.cache.policy import CachePolicy, EvictionPolicy
from fsstore.cache.records import INCOMPLETE, CachedImage, Problem, RecordsDriver
from fsstore.cache.writer import CacheWriter
from fsstore.store import RESERVED_PREFIX, image_id_problem, validate_image_id

LOG = logging.getLogger(__name__)

INVALID = "invalid"
QUEUE = "queue"
CACHE_LOCK = ".fsstore-cache.lock"
GLANCE_DB_LOCK = "image_cache_db_init"
SUBDIRS = (INCOMPLETE, INVALID, QUEUE)


def regular_files(
    dir_fd: int, accept: Callable[[str], bool]
) -> Iterator[tuple[str, os.stat_result]]:
    """``(name, lstat result)`` of each regular file in the directory open
    as ``dir_fd`` whose name ``accept`` takes: links, FIFOs and directories
    planted among entries are never one."""
    with os.scandir(dir_fd) as found:
        for entry in found:
            if not accept(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield entry.name, st


class Cleaned(NamedTuple):
    """What ``clean()`` did: files removed from ``invalid/`` and crashed
    writers' files from ``incomplete/``, and what it could not remove, one
    line each (``invalid/x: a directory``)."""

    invalid: int
    incomplete: int
    left: tuple[str, ...] = ()


class CacheDirectory:
    """One cache directory (``[DEFAULT] image_cache_*``) and its records."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        records: RecordsDriver,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        """Read the ``image_cache_*`` options; ``configure`` makes the layout.

        :param conf: the configuration with ``[DEFAULT] image_cache_*``.
        :param records: the records driver keeping the entries' records.
        :param eviction: which entries go first when room is needed
            (``fsstore.cache.policy``); least recently used by default.
        """
        self.records = records
        self.name = records.NAME
        self._reserved: frozenset[str] = frozenset()
        self._held = threading.local()  # this thread's depth in lock()
        try:
            base_dir: str | None = conf.image_cache_dir
            self.policy = CachePolicy(conf.image_cache_max_size, eviction)
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

    @property
    def max_size(self) -> int:
        """``image_cache_max_size``, the limit the policy keeps."""
        return self.policy.max_size

    def admits(self, size: int) -> bool:
        """Whether ``size`` bytes may be cached (``CachePolicy.admits``)."""
        return self.policy.admits(size)

    # -- configuration ---------------------------------------------------

    def configure(self) -> None:
        """Create the layout where missing, then let the records driver
        open its records. A subdirectory that is a link or not a directory
        is refused: the cache would write, and clean, wherever it leads."""
        self._check_db_path()
        for sub in ("", *SUBDIRS):
            path = os.path.join(self.base_dir, sub)
            try:
                if sub:
                    os.mkdir(path)
                else:
                    os.makedirs(path, exist_ok=True)
            except FileExistsError:
                pass
            except OSError as exc:
                raise exceptions.BadDriverConfiguration(
                    self.name, f"cannot create {path}: {exc.strerror}"
                ) from None
            # The configured directory itself may be a link the operator
            # made; the cache's own subdirectories may not.
            if sub and not stat.S_ISDIR(os.lstat(path).st_mode):
                what = "a symbolic link" if os.path.islink(path) else "not a directory"
                raise exceptions.BadDriverConfiguration(
                    self.name,
                    f"{path} is {what}; the cache's {sub}/ must be a directory",
                )
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
    def subdir(self, sub: str) -> Iterator[int]:
        """A descriptor of the cache's ``sub/`` directory, opened without
        following a link: names are worked on relative to it, so a
        subdirectory swapped for a link never redirects a write or a clean."""
        path = os.path.join(self.base_dir, sub)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            # O_NOFOLLOW | O_DIRECTORY on a link: ELOOP or ENOTDIR.
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
                raise OSError(
                    exc.errno, "a symbolic link where a directory belongs", path
                ) from None
            raise
        try:
            yield fd
        finally:
            os.close(fd)

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
        fd = safefiles.open_regular(self.path(CACHE_LOCK), os.O_RDWR | os.O_CREAT)
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
        # By descriptor: each lstat is relative, no walk of the directory's path.
        dir_fd = os.open(self.base_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield from regular_files(dir_fd, self._is_entry_file_name)
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
            fd = safefiles.open_regular(self.path(image_id))
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
        with self.subdir(INCOMPLETE) as dir_fd:
            try:
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
                    self.path(image_id, INCOMPLETE),
                )
            os.ftruncate(fd, 0)  # a crashed writer's leftovers
        except BaseException:
            os.close(fd)  # and its lock: held, nobody could cache the image
            raise
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
            or not self.policy.admits(size)
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
        of that name appeared meanwhile, or something else is at its name
        (the file is dropped, what is there is left as it is)."""
        image_id = writer.image_id
        os.fsync(writer.fd)
        with self.lock():
            if self.is_cached(image_id):
                self.discard(image_id)
                return False
            self._evict_for(writer.size)
            self.records.commit(
                image_id, writer.size, writer.checksum or None, writer.fd
            )
            try:
                with self.subdir(INCOMPLETE) as incomplete_fd:
                    safefiles.link_new(
                        writer.fd,
                        self.path(image_id),
                        src=image_id,
                        src_dir_fd=incomplete_fd,
                    )
            except FileExistsError:
                # A file under this name that is no entry (left by hand, by
                # a crash of Glance, or planted): kept as it is, ours
                # dropped; check() reconciles.
                self.records.delete([image_id])
                self.discard(image_id)
                writer.abandoned = f"{self.path(image_id)} is taken by another file"
                return False
            except BaseException:
                with contextlib.suppress(Exception):
                    self.records.delete([image_id])
                raise
            self._quietly(self.discard, image_id)
        self._quietly(self._dequeue, image_id)
        return True

    @staticmethod
    def _quietly(cleanup: Callable[[str], None], image_id: str) -> None:
        # Published already: failing to tidy up after must not say otherwise.
        try:
            cleanup(image_id)
        except OSError as exc:
            LOG.warning("cached %s, but %s failed: %s", image_id, cleanup.__name__, exc)

    def _dequeue(self, image_id: str) -> None:
        with self.subdir(QUEUE) as queue_fd, contextlib.suppress(FileNotFoundError):
            os.unlink(image_id, dir_fd=queue_fd)

    def discard(self, image_id: str) -> None:
        """Drop our ``incomplete/`` file (the caller holds its lock)."""
        with self.subdir(INCOMPLETE) as dir_fd, contextlib.suppress(FileNotFoundError):
            os.unlink(image_id, dir_fd=dir_fd)

    def invalidate(self, image_id: str, reason: str, fd: int) -> None:
        """Move a failed write (our locked ``incomplete/`` file, open as
        ``fd``) to ``invalid/``, recording why where the file system allows
        it. A file already at ``invalid/<id>`` (an earlier failure's, or
        planted) is kept, never replaced: ours is dropped."""
        self.checked(image_id)
        with contextlib.suppress(OSError):
            os.setxattr(fd, "user.error", reason.encode()[:1024])
        with self.subdir(INCOMPLETE) as incomplete_fd, self.subdir(INVALID) as inv_fd:
            try:
                safefiles.link_new(
                    fd,
                    image_id,
                    dst_dir_fd=inv_fd,
                    src=image_id,
                    src_dir_fd=incomplete_fd,
                )
            except FileExistsError:
                LOG.info("%s is there already; kept", self.path(image_id, INVALID))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(image_id, dir_fd=incomplete_fd)

    def mark_invalid(self, image_id: str, reason: str) -> None:
        """Record in ``invalid/`` an image that failed to cache with no file
        of its own (its store read failed): an empty file, created new. One
        already there (the failed writer's, or planted) is kept as it is."""
        self.checked(image_id)
        with self.subdir(INVALID) as dir_fd:
            try:
                fd = safefiles.create_new(image_id, dir_fd=dir_fd, mode=0o644)
            except FileExistsError:
                return
            try:
                with contextlib.suppress(OSError):
                    os.setxattr(fd, "user.error", reason.encode()[:1024])
            finally:
                os.close(fd)

    # -- removal -------------------------------------------------------------

    def _remove(self, image_ids: list[str]) -> int:
        """Unlink, then forget: records overstate the files, never understate.
        Caller holds the lock. The number of files removed. Only an entry
        file is unlinked: whatever else is under an entry's name (a
        directory, a link, a stray the records driver does not count) is
        left, and its record, if any, forgotten."""
        removed = 0
        for image_id in image_ids:
            path = self.path(image_id)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                if not self.records.is_entry(path):
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            removed += 1
        if image_ids:
            self.records.delete(image_ids)
        return removed

    def _evict_for(self, incoming: int) -> tuple[int, int]:
        """Evict, in the policy's order, until the entries and ``incoming``
        bytes fit the limit together: (files, bytes).

        Caller holds the lock. One pass over a snapshot: always terminates.
        """
        total = self.records.total_size()
        if self.policy.admits(total + incoming):
            return 0, 0  # the common case reads no records but the total
        victims = self.policy.victims(self.entries(), total, incoming)
        freed = sum(entry.size for entry in victims)
        self._remove([entry.image_id for entry in victims])
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
        """Evict, in the policy's order (least recently used first), until
        the cache fits its limit: (files, bytes)."""
        with self.lock():
            return self._evict_for(0)

    def clean(self, stall_time: int | None = None) -> Cleaned:
        """Reap ``invalid/`` and crashed writers' ``incomplete/`` files.

        A file whose writer is alive (holds its flock) is never removed; one
        older than ``stall_time`` (default ``image_cache_stall_time``) is
        logged. A name that cannot be removed (a directory put there) is
        logged, listed in ``Cleaned.left``, and the rest is reaped all the
        same. Names are unlinked, never followed: a link put there goes, its
        target stays.
        """
        stall_time = self.stall_time if stall_time is None else stall_time
        left: list[str] = []

        def cannot(sub: str, name: str, exc: OSError) -> None:
            why = "a directory" if exc.errno == errno.EISDIR else exc.strerror
            left.append(f"{sub}/{name}: {why}")
            LOG.warning("cache clean left %s/%s in place: %s", sub, name, why)

        invalid = 0
        with self.subdir(INVALID) as dir_fd:
            for name in os.listdir(dir_fd):
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    cannot(INVALID, name, exc)
                    continue
                invalid += 1
        incomplete = 0
        now = time.time()
        with self.subdir(INCOMPLETE) as dir_fd:
            for name in os.listdir(dir_fd):
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        reaped = locking.reap(name, dir_fd=dir_fd)
                    else:
                        # A writer's lock file is always a regular file: a
                        # link or FIFO here is nobody's, and unlinking the
                        # name leaves whatever it points to alone.
                        os.unlink(name, dir_fd=dir_fd)
                        reaped = "reaped"
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    cannot(INCOMPLETE, name, exc)
                    continue
                if reaped == "reaped":
                    incomplete += 1
                elif reaped == "held" and now - st.st_mtime > stall_time:
                    LOG.warning(
                        "%s: live writer stalled for %d s",
                        self.path(name, INCOMPLETE),
                        now - st.st_mtime,
                    )
        return Cleaned(invalid, incomplete, tuple(left))

    # -- repair ----------------------------------------------------------------

    def check(self, fix: bool = False) -> list[Problem]:
        """Reconcile records with files; with ``fix``, repair what differs."""
        with self.lock():
            problems = self.records.check(fix)
            if any(p.kind == "damaged-records" for p in problems) and not fix:
                return problems  # nothing more can be read from them
            total = self.records.total_size()
            if not self.policy.admits(total):
                problems.append(
                    Problem(
                        "over-limit",
                        None,
                        f"{total} bytes cached, limit {self.max_size}",
                    )
                )
                if fix:
                    self._evict_for(0)
        return problems
