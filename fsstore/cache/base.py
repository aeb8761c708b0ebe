"""The image cache's on-disk layout, locking protocol and driver base class.

Layout (Glance's, so that a cache directory Glance wrote is adopted as is)::

    <image_cache_dir>/
        <image_id>              a published entry: complete and verified
        incomplete/<image_id>   being written; its writer holds a flock on it
        invalid/<image_id>      a write that failed (stream error, bad checksum)
        queue/<image_id>        queued for prefetching; mtime is queue order,
                                content optionally JSON {"location", ...}
        .fsstore-cache.lock     serializes commits, evictions and deletes
        cache.db                the sqlite driver's records (and -wal, -shm)
        image_cache_db_init     Glance's sqlite lock file, if Glance ran here

Only a regular file directly in the directory whose name is a valid image id
and not one of the names above is an entry; nothing else is ever listed,
counted, pruned or deleted as an image.

Locking protocol:

* One writer per image. A writer opens ``incomplete/<id>`` with ``O_CREAT``
  and never ``O_TRUNC``, then takes ``flock(LOCK_EX | LOCK_NB)``. Failing to
  get the lock means another writer is live: this reader streams without
  caching. Having it, the writer checks that the name still refers to the file
  it locked (a finished writer or ``clean()`` may have removed it in between)
  and only then truncates and writes.
* Publish. The writer hashes what it writes, compares with the expected
  checksum or multihash, fsyncs, and then, holding ``.fsstore-cache.lock``:
  evicts least-recently-used entries until the new one fits under
  ``image_cache_max_size``, records the entry, and links it into place with
  ``link(2)`` (never replacing anything). A failed or mismatching write moves to
  ``invalid/``. Because every change to the set of entries happens under the
  lock, and space is freed before it is used, the total size of published
  entries never exceeds the limit, as seen by any process at any moment.
* Crashed writers. A writer's flock dies with it, so ``clean()`` removes every
  ``incomplete/`` file whose lock it can take, however young, and never one a
  live writer holds.
* Readers open an entry and keep reading it even if it is evicted meanwhile:
  eviction unlinks, and an open file lives on. A hit may be recorded after
  its entry was evicted; drivers make that a no-op.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import operator
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache.hits import HitCountingReader, log_lost_hit
from fsstore.hashing import DEFAULT_HASHING_ALGO, ImageHasher
from fsstore.pipeline import PIPELINE_THRESHOLD, WriteFailed, WritePipeline
from fsstore.store import RESERVED_PREFIX, image_id_problem, validate_image_id
from fsstore.streams import byte_view

LOG = logging.getLogger(__name__)

INCOMPLETE = "incomplete"
INVALID = "invalid"
QUEUE = "queue"
CACHE_LOCK = ".fsstore-cache.lock"
GLANCE_DB_LOCK = "image_cache_db_init"
SUBDIRS = (INCOMPLETE, INVALID, QUEUE)
_BY_IMAGE_ID = operator.itemgetter(0)  # CachedImage.image_id, without a lambda


class CachedImage(NamedTuple):
    """One cached image, as get_cached_images() lists it."""

    image_id: str
    size: int
    hits: int
    last_accessed: float
    last_modified: float
    checksum: str | None = None

    @property
    def verified(self) -> bool:
        """Whether the entry was checked against a known digest before it was
        published (its checksum is recorded); adopted entries and those cached
        with ``allow_unverified`` were not."""
        return self.checksum is not None

    def as_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "verified": self.verified}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One disagreement between a driver's records and the files."""

    # missing-file | unrecorded-file | wrong-size | bad-hits | over-limit |
    # damaged-records
    kind: str
    image_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CacheWriter:
    """Receives one image's bytes for the cache; see CacheDriver.open_for_write."""

    def __init__(
        self,
        driver: CacheDriver,
        image_id: str,
        fd: int,
        checksum: str | None,
        multihash: str | None,
        hashing_algo: str,
    ) -> None:
        self.driver = driver
        self.image_id = image_id
        self.fd = fd
        self.expected_checksum = checksum.lower() if checksum else None
        self.expected_multihash = multihash.lower() if multihash else None
        self.hasher = ImageHasher(hashing_algo)
        self.size = 0
        self.abandoned: str | None = None  # why caching was given up, if it was
        self.checksum = ""
        self.published = False
        self.rejected: str | None = None  # why verification refused the data
        self._head: list[bytes] = []
        self._pipeline: WritePipeline | None = None

    def write(self, chunk: Any) -> None:
        """Add ``chunk`` (bytes-like); never raises for a cache problem
        (caching stops instead), Invalid for a chunk that is not bytes-like.

        The first PIPELINE_THRESHOLD bytes are held back (copied: the caller
        may reuse its buffer); a larger image then goes through the
        WritePipeline (digests and an O_DIRECT writer in threads of their
        own), a smaller one is written at the end.
        """
        view = byte_view(chunk, self.image_id)
        if self.abandoned:
            return
        self.size += view.nbytes
        if self.size > self.driver.max_size:
            self.abandon("larger than image_cache_max_size")
            return
        try:
            if self._pipeline is not None:
                self._pipeline.feed(view)
                return
            self._head.append(chunk if type(chunk) is bytes else bytes(view))
            if self.size > PIPELINE_THRESHOLD:
                self._pipeline = WritePipeline(self.fd, self.hasher.digests(), True)
                head, self._head = self._head, []
                for piece in head:
                    self._pipeline.feed(piece)
        except WriteFailed as exc:
            self.abandon(f"write failed: {exc}")

    def finish(self) -> None:
        """Write out whatever is held back; abandons on a write error."""
        try:
            if self._pipeline is not None:
                self._pipeline.finish()
                return
            for piece in self._head:
                self.hasher.update(piece)
                view = memoryview(piece)
                while view:
                    view = view[os.write(self.fd, view) :]
            self._head = []
        except (WriteFailed, OSError) as exc:
            self.abandon(f"write failed: {exc}")

    def abandon(self, reason: str) -> None:
        self.abandoned = reason
        self.close()

    def close(self) -> None:
        """Stop any threads; the data written so far is left to the caller."""
        if self._pipeline is not None:
            self._pipeline.close()
        self._head = []
        self.hasher.close()

    def verify(self) -> str | None:
        """Why the data may not be published, or None when it may."""
        checksum, multihash = self.hasher.hexdigests()
        if self.expected_checksum and checksum != self.expected_checksum:
            return f"checksum {checksum} does not match {self.expected_checksum}"
        if self.expected_multihash and multihash != self.expected_multihash:
            return f"multihash {multihash} does not match {self.expected_multihash}"
        # Recorded only when it was checked against something: an entry
        # without a checksum says it is unverified.
        verified = self.expected_checksum or self.expected_multihash
        self.checksum = checksum if verified else ""
        return None


class CacheDriver:
    """Base class of cache drivers: the layout and protocol above.

    A driver keeps the entries' records (size, hits, access times) its own way
    by implementing the ``_record_*`` hooks, ``_entries``, ``_total_size``,
    ``_count_hit``, ``get_hit_count`` and ``_check_records``.
    """

    NAME = "base"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self._reserved: frozenset[str] = frozenset()
        self._held = threading.local()  # this thread's depth in lock()
        try:
            self.base_dir: str | None = conf.image_cache_dir
            self.max_size: int = conf.image_cache_max_size
            self.stall_time: int = conf.image_cache_stall_time
            self.db_name: str = conf.image_cache_sqlite_db
            self.db_path = ""
        except (cfg.Error, ValueError) as exc:
            raise exceptions.BadDriverConfiguration(self.NAME, str(exc)) from None

    # -- configuration ---------------------------------------------------

    def configure(self) -> None:
        if not self.base_dir:
            raise exceptions.BadDriverConfiguration(
                self.NAME, "image_cache_dir is not set"
            )
        self.base_dir = os.path.abspath(self.base_dir)
        self.db_path = os.path.join(self.base_dir, self.db_name)
        self._check_db_path()
        self._reserved = frozenset(self.reserved_names())
        try:
            for sub in ("", *SUBDIRS):
                os.makedirs(os.path.join(self.base_dir, sub), exist_ok=True)
        except OSError as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME, f"cannot create {self.base_dir}: {exc.strerror}"
            ) from None
        for sub in ("", *SUBDIRS):
            path = os.path.join(self.base_dir, sub)
            if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise exceptions.BadDriverConfiguration(
                    self.NAME, f"{path} is not readable and writable"
                )

    def _check_db_path(self) -> None:
        """Refuse an ``image_cache_sqlite_db`` where the cache's own files
        live: ``clean()`` empties ``invalid/`` and reaps ``incomplete/``, and
        ``queue/`` is read as image ids."""
        assert self.base_dir is not None
        db_dir = os.path.realpath(os.path.dirname(self.db_path))
        for sub in SUBDIRS:
            inside = os.path.realpath(os.path.join(self.base_dir, sub))
            if db_dir == inside or db_dir.startswith(inside + os.sep):
                raise exceptions.BadDriverConfiguration(
                    self.NAME,
                    f"image_cache_sqlite_db {self.db_name!r} is inside the cache's "
                    f"{sub}/ directory; put it in the cache directory or elsewhere",
                )

    def reserved_names(self) -> set[str]:
        """Names in the cache directory that are never images.

        The sqlite database's files are reserved for every driver (a cache
        directory may have been run with the other one before), however
        ``image_cache_sqlite_db`` names them: ``cache.db``, ``./cache.db`` or
        an absolute path into the cache directory.
        """
        assert self.base_dir is not None
        names = {*SUBDIRS, CACHE_LOCK, GLANCE_DB_LOCK}
        db_dir, db_file = os.path.split(os.path.normpath(self.db_path))
        if os.path.realpath(db_dir) == os.path.realpath(self.base_dir):
            names |= {db_file + s for s in ("", "-wal", "-shm", "-journal")}
        return names

    def is_entry_name(self, name: str) -> bool:
        return name not in self._reserved and image_id_problem(name) is None

    def is_entry_file_name(self, name: str) -> bool:
        """is_entry_name for a name read from the directory, cheaper: the
        kernel already guarantees it non-empty, free of '/' and NUL, not '.'
        or '..', and at most 255 bytes long."""
        if name.startswith(RESERVED_PREFIX) or name in self._reserved:
            return False
        return name.isascii() or image_id_problem(name) is None

    def path(self, image_id: str, sub: str = "") -> str:
        assert self.base_dir is not None
        return os.path.join(self.base_dir, sub, image_id)

    def _checked(self, image_id: str) -> str:
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
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
        finally:
            os.close(fd)

    # -- queries -----------------------------------------------------------

    def is_cached(self, image_id: str) -> bool:
        if not self.is_entry_name(self._checked(image_id)):
            return False
        try:
            return stat.S_ISREG(os.lstat(self.path(image_id)).st_mode)
        except FileNotFoundError:
            return False

    def is_queued(self, image_id: str) -> bool:
        return os.path.lexists(self.path(self._checked(image_id), QUEUE))

    def is_being_cached(self, image_id: str) -> bool:
        try:
            fd = os.open(
                self.path(self._checked(image_id), INCOMPLETE),
                os.O_RDONLY | os.O_NOFOLLOW,
            )
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def is_cacheable(self, image_id: str) -> bool:
        return (
            self.is_entry_name(self._checked(image_id))
            and not self.is_cached(image_id)
            and not self.is_being_cached(image_id)
        )

    def get_cache_size(self) -> int:
        return self._total_size()

    def get_cached_images(self) -> list[CachedImage]:
        return sorted(self._entries(), key=_BY_IMAGE_ID)

    def get_queued_images(self) -> list[str]:
        queue_dir = self.path("", QUEUE)
        found = []
        for name in os.listdir(queue_dir):
            if not self.is_entry_name(name):
                continue
            try:
                found.append(
                    (os.lstat(os.path.join(queue_dir, name)).st_mtime_ns, name)
                )
            except FileNotFoundError:
                continue
        return [name for _, name in sorted(found)]

    def queued_image_info(self, image_id: str) -> dict[str, Any]:
        """What ``queue_image`` recorded about a queued image ({} if nothing)."""
        try:
            with open(self.path(self._checked(image_id), QUEUE), "rb") as f:
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

    # -- queue -------------------------------------------------------------

    def queue_image(self, image_id: str, **info: Any) -> bool:
        """Queue for prefetching; False if cached, being cached or queued."""
        if not self.is_entry_name(self._checked(image_id)):
            return False
        if self.is_cached(image_id) or self.is_being_cached(image_id):
            return False
        body = json.dumps({k: v for k, v in info.items() if v is not None}).encode()
        # Race: a prefetcher may read the entry the moment it appears, so it
        # appears whole: written under a temporary name, then linked into
        # place (link(2) also refuses an id that is queued already).
        tmp = self.path(f".fsstore-queue-{secrets.token_hex(8)}", QUEUE)
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
            os.link(tmp, self.path(image_id, QUEUE))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def delete_queued_image(self, image_id: str) -> bool:
        try:
            os.unlink(self.path(self._checked(image_id), QUEUE))
        except FileNotFoundError:
            return False
        return True

    def delete_all_queued_images(self) -> int:
        return sum(self.delete_queued_image(i) for i in self.get_queued_images())

    # -- reading -------------------------------------------------------------

    def _open_entry(self, image_id: str) -> int:
        if not self.is_entry_name(self._checked(image_id)):
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
            is_entry = stat.S_ISREG(os.fstat(fd).st_mode) and self._is_entry_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        if not is_entry:
            os.close(fd)
            raise exceptions.NotFound(f"image {image_id} is not cached")
        return fd

    def _is_entry_fd(self, fd: int) -> bool:
        """Whether an open file with an entry's name is an entry (a driver
        whose records live in the files says so by them)."""
        return True

    def open_entry(self, image_id: str) -> int:
        """A file descriptor of the cached image; counts a hit first.

        A hit that cannot be recorded (a full disk, damaged records) is
        logged, and the image is served all the same.
        """
        fd = self._open_entry(image_id)
        try:
            self._count_hit(image_id, fd)
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
            return HitCountingReader(fd, self._count_hit, image_id)
        except BaseException:
            os.close(fd)
            raise

    # -- writing -------------------------------------------------------------

    def _open_incomplete(self, image_id: str) -> int | None:
        """Our locked ``incomplete/`` file, or None if another writer is live."""
        path = self.path(image_id, INCOMPLETE)
        for _ in range(8):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None  # one writer per image: someone else has it
            # Race: between our open and our flock, the previous holder may
            # have published (linked and unlinked) the file, or clean() may
            # have reaped it. Write only to a file the name still refers to.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)  # a crashed writer's leftovers
                return fd
            os.close(fd)
        return None

    @contextlib.contextmanager
    def open_for_write(
        self,
        image_id: str,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        size: int = 0,
        allow_unverified: bool = False,
    ) -> Iterator[CacheWriter | None]:
        """A writer for ``image_id``, or None when it must not be cached now.

        None when: the image is cached, another writer has it, its name is
        reserved, or ``size`` exceeds the cache. The entry is published on a
        clean exit if the data matched ``checksum`` / ``multihash``; an
        exception moves it to ``invalid/``; ``GeneratorExit`` (a consumer that
        stopped reading) discards it. Without either digest there is nothing
        to verify against: Invalid, unless ``allow_unverified`` says so by
        name, and then the entry is recorded without a checksum
        (``CachedImage.verified`` is False).
        """
        self._checked(image_id)
        if not (checksum or multihash or allow_unverified):
            raise exceptions.Invalid(
                f"image {image_id} has no checksum or multihash to verify it "
                "against; give one, or allow unverified caching explicitly"
            )
        if (
            not self.is_entry_name(image_id)
            or self.is_cached(image_id)
            or size > self.max_size
        ):
            yield None
            return
        try:
            fd = self._open_incomplete(image_id)
        except OSError as exc:
            LOG.warning("not caching %s: %s", image_id, exc)
            fd = None
        if fd is None:
            yield None
            return
        try:
            if self.is_cached(image_id):  # published while we took the lock
                self._discard(image_id)
                yield None
                return
            writer = CacheWriter(self, image_id, fd, checksum, multihash, hashing_algo)
            try:
                yield writer
            except GeneratorExit:
                writer.close()
                self._quietly(self._discard, image_id)
                raise
            except BaseException as exc:
                writer.close()
                self._quietly(self._invalidate, image_id, f"stream failed: {exc!r}")
                raise
            try:
                self._publish(writer)
            except Exception as exc:
                # A fault in the cache (its records' file system is full, its
                # database is damaged) never reaches the reader, who has had
                # every byte: the image is simply not cached.
                writer.abandoned = f"caching failed: {exc}"
                LOG.warning("not caching %s: %s", image_id, exc)
                self._quietly(self._invalidate, image_id, writer.abandoned)
        finally:
            os.close(fd)

    def _publish(self, writer: CacheWriter) -> None:
        """Verify and commit a writer whose stream ended."""
        image_id = writer.image_id
        writer.finish()
        if writer.abandoned:
            LOG.info("not caching %s: %s", image_id, writer.abandoned)
            self._discard(image_id)
            return
        reason = writer.verify()
        if reason is not None:
            writer.rejected = reason
            LOG.warning("not caching %s: %s", image_id, reason)
            self._invalidate(image_id, reason)
            return
        writer.published = self._commit(writer)

    def _quietly(self, cleanup: Any, *args: Any) -> None:
        # Race: a cleanup after a failure may itself fail (the directory was
        # removed, the disk is full); the first error is the one to report.
        try:
            cleanup(*args)
        except Exception as exc:
            LOG.warning("cache cleanup %s%r failed: %s", cleanup.__name__, args, exc)

    def _discard(self, image_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(image_id, INCOMPLETE))

    def _invalidate(self, image_id: str, reason: str) -> None:
        try:
            os.replace(self.path(image_id, INCOMPLETE), self.path(image_id, INVALID))
        except FileNotFoundError:
            with open(self.path(image_id, INVALID), "wb"):
                pass
        self._note_error(self.path(image_id, INVALID), reason)

    def _note_error(self, path: str, reason: str) -> None:
        """Record why an entry is invalid, where the file system allows it."""
        with contextlib.suppress(OSError):
            os.setxattr(path, "user.error", reason.encode()[:1024])

    def mark_invalid(self, image_id: str, reason: str) -> None:
        """Put a failed image (e.g. of the prefetcher) in ``invalid/``."""
        self._invalidate(self._checked(image_id), reason)

    def _commit(self, writer: CacheWriter) -> bool:
        image_id = writer.image_id
        os.fsync(writer.fd)
        with self.lock():
            if self.is_cached(image_id):
                self._discard(image_id)
                return False
            self._evict_until(self.max_size - writer.size)
            self._record_commit(
                image_id, writer.size, writer.checksum or None, writer.fd
            )
            try:
                os.link(self.path(image_id, INCOMPLETE), self.path(image_id))
            except FileExistsError:
                # An unrecorded file under this name (left by hand, or by a
                # crash of Glance): keep it, drop ours; check() reconciles.
                self._record_delete(image_id)
                self._discard(image_id)
                return False
            self._discard(image_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(image_id, QUEUE))
        return True

    # -- removal -------------------------------------------------------------

    def _remove_entry(self, image_id: str) -> bool:
        """Unlink, then forget: records overstate the files, never understate."""
        try:
            os.unlink(self.path(image_id))
            removed = True
        except FileNotFoundError:
            removed = False
        self._record_delete(image_id)
        return removed

    def _evict_until(self, budget: int) -> tuple[int, int]:
        """Evict least-recently-used entries until the total is <= ``budget``.

        Caller holds the lock. One pass over a snapshot: always terminates.
        """
        total = self._total_size()
        files = freed = 0
        if total <= budget:
            return 0, 0
        for entry in sorted(
            self._entries(), key=lambda e: (e.last_accessed, e.image_id)
        ):
            if total <= budget:
                break
            self._remove_entry(entry.image_id)
            total -= entry.size
            files += 1
            freed += entry.size
            LOG.debug("evicted %s (%d bytes)", entry.image_id, entry.size)
        return files, freed

    def delete_cached_image(self, image_id: str) -> bool:
        if not self.is_entry_name(self._checked(image_id)):
            return False
        with self.lock():
            return self._remove_entry(image_id)

    def delete_all_cached_images(self) -> int:
        with self.lock():
            return sum(self._remove_entry(e.image_id) for e in self._entries())

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
        now = time.time()
        # A queue entry's temporary file lives for microseconds; one that is
        # older than the stall time was left by a crash inside queue_image().
        queue_dir = self.path("", QUEUE)
        for name in os.listdir(queue_dir):
            if name.startswith(".fsstore-queue-"):
                with contextlib.suppress(FileNotFoundError):
                    path = os.path.join(queue_dir, name)
                    if now - os.lstat(path).st_mtime > stall_time:
                        os.unlink(path)
        incomplete = 0
        incomplete_dir = self.path("", INCOMPLETE)
        for name in os.listdir(incomplete_dir):
            path = os.path.join(incomplete_dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                age = now - os.fstat(fd).st_mtime
                if age > stall_time:
                    LOG.warning("%s: live writer stalled for %d s", path, age)
                os.close(fd)
                continue
            try:
                # Holding the lock: only our inode goes (see _open_incomplete).
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
                    incomplete += 1
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
        return invalid, incomplete

    # -- repair ----------------------------------------------------------------

    def entry_files(self) -> dict[str, os.stat_result]:
        """The entry files in the directory, by image id."""
        return dict(self.scan_entry_files())

    def scan_entry_files(self) -> Iterator[tuple[str, os.stat_result]]:
        """``(image id, lstat result)`` of each entry file, in directory order."""
        is_entry_name = self.is_entry_file_name
        assert self.base_dir is not None
        # By descriptor: each lstat is relative, no walk of the directory's path.
        dir_fd = os.open(self.base_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(dir_fd) as entries:
                for entry in entries:
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

    def check(self, fix: bool = False) -> list[Problem]:
        """Reconcile records with files; with ``fix``, repair what differs."""
        with self.lock():
            problems = self._check_records(fix)
            if any(p.kind == "damaged-records" for p in problems) and not fix:
                return problems  # nothing more can be read from them
            total = self._total_size()
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

    def _reconcile(self, records: dict[str, CachedImage], fix: bool) -> list[Problem]:
        """The records against the entry files, for drivers whose records
        live apart from the files: recorded without a file, a file without a
        record, sizes that differ. With ``fix``, the records are made to
        match the files (``_record_delete``, ``_record_adopt``,
        ``_record_size``)."""
        files = self.entry_files()
        problems = []
        for image_id in sorted(records.keys() - files.keys()):
            problems.append(Problem("missing-file", image_id, "recorded, no file"))
            if fix:
                self._record_delete(image_id)
        unrecorded = sorted(files.keys() - records.keys())
        for image_id in unrecorded:
            size = files[image_id].st_size
            problems.append(
                Problem("unrecorded-file", image_id, f"{size} bytes, no record")
            )
        if fix and unrecorded:
            self._record_adopt({image_id: files[image_id] for image_id in unrecorded})
        for image_id in sorted(records.keys() & files.keys()):
            recorded, actual = records[image_id].size, files[image_id].st_size
            if recorded != actual:
                problems.append(
                    Problem(
                        "wrong-size",
                        image_id,
                        f"recorded {recorded} bytes, file has {actual}",
                    )
                )
                if fix:
                    self._record_size(image_id, actual)
        return problems

    # -- driver hooks ------------------------------------------------------------

    def _record_adopt(self, files: dict[str, os.stat_result]) -> None:
        """Record entry files that have no record (for ``_reconcile``)."""
        raise NotImplementedError

    def _record_size(self, image_id: str, size: int) -> None:
        """Correct a record's size to the file's (for ``_reconcile``)."""
        raise NotImplementedError

    def _record_commit(
        self, image_id: str, size: int, checksum: str | None, fd: int
    ) -> None:
        raise NotImplementedError

    def _record_delete(self, image_id: str) -> None:
        raise NotImplementedError

    def _entries(self) -> list[CachedImage]:
        raise NotImplementedError

    def _total_size(self) -> int:
        raise NotImplementedError

    def _count_hit(self, image_id: str, fd: int) -> None:
        raise NotImplementedError

    def get_hit_count(self, image_id: str) -> int:
        raise NotImplementedError

    def _check_records(self, fix: bool) -> list[Problem]:
        raise NotImplementedError
