"""The filesystem store: images as files in prioritized data directories.

On-disk layout, per data directory::

    <datadir>/
        <image_id>                 a published image: complete, fsync'ed
        .fsstore-publish.lock      (multi-directory stores) serializes publish
        .fsstore-staging/          named staging files, only on file systems
            <random>               without O_TMPFILE; each flock'ed by its writer

Writing protocol. An image is written to an anonymous ``O_TMPFILE`` file in
the chosen data directory (or, where the file system lacks it, to a named
staging file that its writer holds an exclusive ``flock`` on), hashed on the
way, fsync'ed (``filesystem_store_fsync``), and only then linked under its
final name with ``link(2)``, which is atomic and fails with ``EEXIST`` rather
than replace anything. So a reader sees either no file or a whole one, a
``kill -9`` at any moment leaves at most an anonymous file the kernel frees (or
an unlocked named staging file that the next ``configure()`` removes), and of
two concurrent adds of one id exactly one link succeeds.

With several data directories, an id must be unique across all of them. The
existence check and the link then run under an exclusive ``flock`` on
``.fsstore-publish.lock`` in the first directory (by path), which every process
sharing the store agrees on.

Reading protocol. A location names a file directly inside one of the data
directories. The file is opened relative to the directory's file descriptor
with ``O_NOFOLLOW``, so neither ``..``, an absolute path elsewhere, nor a
symlink planted in a data directory reaches outside it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from oslo_config import cfg

from fsstore import exceptions, locking
from fsstore.hashing import ImageHasher, new_multihash
from fsstore.location import FileLocation, Location
from fsstore.store import (
    RESERVED_PREFIX,
    AddResult,
    Store,
    image_id_problem,
    range_length,
)
from fsstore.streams import (
    CheckedSource,
    FileChunkIterator,
    ImageChunks,
    ImageData,
    Verifier,
)
from fsstore.writepath import (
    PIPELINE_THRESHOLD,
    ImageFileWriter,
    one_read_limit,
    write_all,
    write_error,
    write_errors,
)

LOG = logging.getLogger(__name__)
T = TypeVar("T")

STAGING_DIR = RESERVED_PREFIX + "staging"
PUBLISH_LOCK = RESERVED_PREFIX + "publish.lock"

# What open(O_TMPFILE) fails with where the file system does not offer it.
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT}

OPTIONS = [
    cfg.StrOpt(
        "filesystem_store_datadir",
        default="/var/lib/glance/images",
        help="Directory to which the filesystem backend store writes images. "
        "Mutually exclusive with filesystem_store_datadirs.",
    ),
    cfg.MultiStrOpt(
        "filesystem_store_datadirs",
        help="Directories and their priorities, as path:priority (priority an "
        "integer, 0 when omitted). Images go to the highest priority that has "
        "room; within a priority, to the directory with the most free space.",
    ),
    cfg.StrOpt(
        "filesystem_store_metadata_file",
        help="JSON file with the metadata returned for every image: a dict, or "
        'a list of dicts each with string "id" and "mountpoint" keys, matched '
        "against the image path on directory boundaries.",
    ),
    cfg.IntOpt(
        "filesystem_store_file_perm",
        default=0,
        help="File permissions of the image files, octal written as decimal "
        "(e.g. 640). 0 or less leaves them as created. Must keep owner-read.",
    ),
    cfg.IntOpt(
        "filesystem_store_chunk_size",
        default=64 * 1024,
        min=1,
        help="Chunk size, in bytes, for reading and writing image files.",
    ),
    cfg.BoolOpt(
        "filesystem_thin_provisioning",
        default=False,
        help="Write chunks that are all zero as holes (sparse files).",
    ),
    cfg.IntOpt(
        "filesystem_store_timeout",
        default=0,
        min=0,
        help="Seconds a file system call that can hang on a stalled network "
        "file system (stat, statvfs, open for reading, unlink) may take before "
        "the operation fails; 0: no limit, the calls run in the caller's "
        "thread.",
    ),
    cfg.IntOpt(
        "filesystem_store_thread_pool_size",
        default=10,
        min=1,
        help="Threads that run the calls filesystem_store_timeout limits.",
    ),
    cfg.IntOpt(
        "filesystem_store_threadpool_threshold",
        default=75,
        min=0,
        max=100,
        help="Busy share of those threads, in percent, from which a warning is logged.",
    ),
    cfg.BoolOpt(
        "filesystem_store_fsync",
        default=True,
        help="Flush each image to disk before it is published, so that a "
        "crash never leaves a published image incomplete.",
    ),
]


@dataclasses.dataclass
class DataDir:
    path: str
    priority: int
    fd: int = -1
    tmpfile: bool = True
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open directory
    uri_prefix: str = dataclasses.field(init=False)  # + image id: its location

    def __post_init__(self) -> None:
        self.uri_prefix = FileLocation.from_path(os.path.join(self.path, "")).uri

    @property
    def described(self) -> str:
        return f"data directory {self.path}"

    def free_bytes(self) -> int:
        st = os.statvfs(self.fd)
        return st.f_bavail * st.f_frsize


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def parse_datadirs(store_name: str, specs: list[str]) -> list[DataDir]:
    """``path:priority`` strings to DataDirs, refusing what glance_store refuses."""
    dirs: list[DataDir] = []
    seen: dict[str, tuple[str, int]] = {}
    for spec in specs:
        path, sep, priority_text = spec.strip().rpartition(":")
        if not sep:
            path, priority_text = spec.strip(), "0"
        path = path.strip()
        if not path:
            raise exceptions.BadStoreConfiguration(
                store_name,
                f"filesystem_store_datadirs entry {spec!r} has an empty path",
            )
        try:
            priority = int(priority_text.strip())
        except ValueError:
            raise exceptions.BadStoreConfiguration(
                store_name,
                f"filesystem_store_datadirs entry {spec!r}: priority "
                f"{priority_text!r} is not an integer",
            ) from None
        path = os.path.abspath(path)
        real = os.path.realpath(path)
        if real in seen:
            first, first_priority = seen[real]
            message = (
                f"data directory {path} is listed twice in filesystem_store_datadirs "
                f"(as {first!r} and {spec!r})"
            )
            # As glance_store: the same directory at two priorities is a
            # contradiction; at the same priority only a repetition.
            if priority != first_priority:
                raise exceptions.BadStoreConfiguration(store_name, message)
            LOG.warning("store %s: %s; using it once", store_name, message)
            continue
        seen[real] = (spec, priority)
        dirs.append(DataDir(path=path, priority=priority))
    return dirs


def parse_file_perm(store_name: str, perm: int) -> int:
    """``filesystem_store_file_perm`` (octal written as decimal) as a mode."""
    if perm <= 0:
        return 0
    try:
        mode = int(str(perm), 8)
    except ValueError:
        raise exceptions.BadStoreConfiguration(
            store_name, f"filesystem_store_file_perm {perm} is not an octal mode"
        ) from None
    if mode > 0o777:
        raise exceptions.BadStoreConfiguration(
            store_name, f"filesystem_store_file_perm {perm} is not a permission mode"
        )
    if not mode & stat.S_IRUSR:
        raise exceptions.BadStoreConfiguration(
            store_name,
            f"filesystem_store_file_perm {perm} does not let the owner read the images",
        )
    return mode


def load_metadata(store_name: str, path: str) -> list[dict[str, Any]]:
    """``filesystem_store_metadata_file``, checked as glance_store checks it.

    A dict or a list of dicts, each with string ``id`` and ``mountpoint``;
    every value anywhere in it a string, a list or a dict. A dict is a list
    of one. Errors are BadStoreConfiguration at configure time, never after
    an image was written.
    """

    def bad(reason: str) -> exceptions.BadStoreConfiguration:
        return exceptions.BadStoreConfiguration(
            store_name, f"filesystem_store_metadata_file {path}: {reason}"
        )

    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise bad(f"is not JSON: {exc}") from None
    entries = [metadata] if isinstance(metadata, dict) else metadata
    if not isinstance(entries, list):
        raise bad("must hold an object or a list of objects")
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("id"), str)
            and isinstance(entry.get("mountpoint"), str)
        ):
            raise bad(f'entry {i} must be an object with string "id" and "mountpoint"')
        key = _non_string_value(entry)
        if key is not None:
            raise bad(f"the value of {key} is not a string, a list or an object")
    return entries


def _non_string_value(value: Any, key: str = "") -> str | None:
    """The key of the first value that is not a string, list or dict."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None if isinstance(value, str) else key or "?"
    for name, item in items:
        found = _non_string_value(item, str(name))
        if found is not None:
            return found
    return None


class _TimedCalls:
    """Runs file system calls that can hang (a stalled NFS mount) with
    ``filesystem_store_timeout``, as glance_store does: in a pool of threads,
    waiting at most the timeout; with no timeout, in the caller's thread.

    Race: a call that timed out goes on in its thread until the file system
    answers; the pool is bounded, so a dead mount ties up at most its
    threads, and the threshold warns before they are all taken.
    """

    def __init__(
        self, store_name: str, timeout: int, size: int, threshold: int
    ) -> None:
        self.store_name, self.timeout = store_name, timeout
        self.size, self.threshold = size, threshold
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(size, "fsstore-fs-timed")
            if timeout
            else None
        )
        self._busy = 0
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            return fn(*args, **kwargs)
        with self._lock:
            self._busy += 1
            busy = self._busy
        if busy * 100 >= self.threshold * self.size:
            LOG.warning(
                "store %s: %d of %d threads busy with file system calls",
                self.store_name,
                busy,
                self.size,
            )
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise exceptions.StoreTimeout(
                f"store {self.store_name}: {getattr(fn, '__name__', 'a call')} did "
                f"not finish within filesystem_store_timeout ({self.timeout} s); "
                "check the storage's health",
                timeout=self.timeout,
            ) from None

    def _done(self, _future: object) -> None:
        with self._lock:
            self._busy -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class _Staging:
    """The file an image is written to before it is published."""

    def __init__(self, datadir: DataDir) -> None:
        self.datadir = datadir
        self.fd = -1
        self.name: str | None = None  # None: anonymous O_TMPFILE
        self.staging_fd = -1

    def open(self) -> None:
        if self.datadir.tmpfile:
            try:
                self.fd = os.open(
                    ".", os.O_TMPFILE | os.O_WRONLY, 0o666, dir_fd=self.datadir.fd
                )
                return
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
                LOG.info(
                    "%s: no O_TMPFILE, using named staging files", self.datadir.path
                )
                self.datadir.tmpfile = False
        self._open_named()

    def _open_named(self) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(STAGING_DIR, 0o700, dir_fd=self.datadir.fd)
        self.staging_fd = os.open(
            STAGING_DIR,
            os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
            dir_fd=self.datadir.fd,
        )
        while True:
            name = secrets.token_hex(16)
            try:
                self.fd = locking.hold(
                    name,
                    dir_fd=self.staging_fd,
                    flags=os.O_WRONLY | os.O_EXCL,
                    mode=0o666,
                )
            except (FileExistsError, locking.LockHeld):
                continue  # a name taken, or reaped again and again: another
            self.name = name
            return

    def link(self, image_id: str) -> None:
        """Publish under ``image_id``; FileExistsError if it is taken."""
        if self.name is None:
            os.link(
                f"/proc/self/fd/{self.fd}",
                image_id,
                dst_dir_fd=self.datadir.fd,
                follow_symlinks=True,  # linkat(AT_SYMLINK_FOLLOW): the file itself
            )
        else:
            os.link(
                self.name,
                image_id,
                src_dir_fd=self.staging_fd,
                dst_dir_fd=self.datadir.fd,
                follow_symlinks=False,
            )

    def close(self) -> None:
        if self.name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=self.staging_fd)
            self.name = None
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        fd, self.staging_fd = self.staging_fd, -1
        if fd >= 0:
            os.close(fd)


class FilesystemStore(Store):
    __doc__ = __doc__
    OPTIONS = OPTIONS
    # filesystem:// is glance_store's legacy spelling of file://.
    SCHEMES = ("file", "filesystem")
    DRIVER_NAME = "file"

    def __init__(self, conf: cfg.ConfigOpts, backend_group: str | None = None) -> None:
        super().__init__(conf, backend_group)
        self.datadirs: list[DataDir] = []
        self._by_priority: list[list[DataDir]] = []
        self.metadata: list[dict[str, Any]] = []
        self.file_mode = 0
        self.chunk_size = 64 * 1024
        self.thin = False
        self._one_read_limit = 0
        self._zero_block = b""
        self.fsync = True
        self._publish_lock = threading.Lock()
        self._reopen_lock = threading.Lock()
        self._timed = _TimedCalls(self.name, 0, 1, 100)
        self._retired_fds: list[int] = []
        self._by_path: list[DataDir] = []
        self._lock_dir: DataDir | None = None
        self._lock_fd = -1
        self._lock_pid = 0

    # -- configuration ---------------------------------------------------

    def _configured_datadirs(self) -> list[DataDir]:
        datadir = self.option("filesystem_store_datadir")
        specs = self.option("filesystem_store_datadirs") or []
        if specs:
            explicit = self.conf.get_location("filesystem_store_datadir", self.group)
            if datadir and explicit and explicit.location != cfg.Locations.opt_default:
                raise exceptions.BadStoreConfiguration(
                    self.name,
                    "set either filesystem_store_datadir or filesystem_store_datadirs, "
                    "not both",
                )
            return parse_datadirs(self.name, specs)
        if datadir:
            return parse_datadirs(self.name, [datadir + ":0"])
        raise exceptions.BadStoreConfiguration(
            self.name,
            "set filesystem_store_datadir or filesystem_store_datadirs",
        )

    def configure(self) -> None:
        dirs = self._configured_datadirs()
        self.file_mode = parse_file_perm(
            self.name, self.option("filesystem_store_file_perm")
        )
        metadata_file = self.option("filesystem_store_metadata_file")
        self.metadata = load_metadata(self.name, metadata_file) if metadata_file else []
        self.chunk_size = self.option("filesystem_store_chunk_size")
        self.thin = self.option("filesystem_thin_provisioning")
        self._one_read_limit = 0 if self.thin else one_read_limit(self.chunk_size)
        self._zero_block = bytes(self.chunk_size) if self.thin else b""
        self.fsync = self.option("filesystem_store_fsync")
        timed = (
            self.option("filesystem_store_timeout"),
            self.option("filesystem_store_thread_pool_size"),
            self.option("filesystem_store_threadpool_threshold"),
        )

        self.close()
        self._timed = _TimedCalls(self.name, *timed)
        try:
            for d in dirs:
                d.fd = self._open_datadir(d.path)
                d.ident = _identity(os.fstat(d.fd))
                d.tmpfile = os.path.isdir("/proc/self/fd")
        except BaseException:
            for d in dirs:
                if d.fd >= 0:
                    os.close(d.fd)
            raise
        self.datadirs = dirs
        for d in dirs:
            self._let_readers_search(d)
        priorities = sorted({d.priority for d in dirs}, reverse=True)
        self._by_priority = [[d for d in dirs if d.priority == p] for p in priorities]
        self._by_path = sorted(dirs, key=lambda d: d.path)
        for d in dirs:
            self._remove_stale_staging(d)

    def _open_datadir(self, path: str) -> int:
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise exceptions.BadStoreConfiguration(
                self.name, f"data directory {path} cannot be created: {exc.strerror}"
            ) from None
        if not os.path.isdir(path):
            raise exceptions.BadStoreConfiguration(
                self.name, f"data directory {path} is not a directory"
            )
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise exceptions.BadStoreConfiguration(
                self.name, f"data directory {path} is not readable and writable"
            )
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def _let_readers_search(self, datadir: DataDir) -> None:
        """Give the data directory the search (x) bit for the group and
        others when ``filesystem_store_file_perm`` lets them read images, as
        glance_store does: a readable file in a directory they cannot enter
        is no use to them. A failure is logged, as there."""
        perm = self.file_mode
        if not perm:
            return
        try:
            mode = stat.S_IMODE(os.fstat(datadir.fd).st_mode)
            wanted = mode
            if perm & stat.S_IRWXO:
                wanted |= stat.S_IXOTH
            if perm & stat.S_IRWXG:
                wanted |= stat.S_IXGRP
            if wanted != mode:
                os.fchmod(datadir.fd, wanted)
        except OSError as exc:
            LOG.warning(
                "cannot let other users search data directory %s: %s",
                datadir.path,
                exc.strerror,
            )

    def _remove_stale_staging(self, datadir: DataDir) -> None:
        """Remove named staging files that no live writer holds."""
        try:
            staging_fd = os.open(
                STAGING_DIR,
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                dir_fd=datadir.fd,
            )
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            for name in os.listdir(staging_fd):
                if locking.reap(name, dir_fd=staging_fd) == "reaped":
                    LOG.info(
                        "removed stale staging file %s/%s/%s",
                        datadir.path,
                        STAGING_DIR,
                        name,
                    )
        finally:
            os.close(staging_fd)

    def close(self) -> None:
        for d in self.datadirs:
            if d.fd >= 0:
                os.close(d.fd)
                d.fd = -1
        self.datadirs = []
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._lock_dir = None
        fds, self._retired_fds = self._retired_fds, []
        for fd in fds:
            os.close(fd)
        self._timed.close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["datadirs"] = [
            {"path": d.path, "priority": d.priority, "free_bytes": d.free_bytes()}
            for d in sorted(self.datadirs, key=lambda d: (-d.priority, d.path))
        ]
        return info

    # -- locations -------------------------------------------------------

    def parse_location(self, uri: str) -> FileLocation:
        return FileLocation.from_uri(uri)

    def _find(self, location: Location) -> tuple[DataDir, str] | None:
        if not isinstance(location, FileLocation):
            return None
        path = os.path.normpath(location.path)
        parent, name = os.path.split(path)
        if image_id_problem(name) is not None:
            return None
        for d in self.datadirs:
            if parent == d.path:
                return d, name
        real_parent = os.path.realpath(parent)
        for d in self.datadirs:
            if real_parent == os.path.realpath(d.path):
                return d, name
        return None

    def owns(self, location: Location) -> bool:
        return self._find(location) is not None

    def _resolve(self, location: Location) -> tuple[DataDir, str]:
        found = self._find(location)
        if found is None:
            raise exceptions.Forbidden(
                f"location {location.uri} is outside the data directories of "
                f"store {self.name!r}"
            )
        datadir, name = found
        if not self._available(datadir):
            raise exceptions.NotFound(
                f"image {location.uri} not found: data directory {datadir.path} "
                "is missing"
            )
        return datadir, name

    def _available(self, datadir: DataDir) -> bool:
        """Whether ``datadir`` exists, reopening it if it was replaced.

        Race: the directory at a data directory's path may be replaced while
        the store runs (a remount, an operator's ``rm -r`` and ``mkdir``).
        The descriptor opened at configure would then go on naming the old
        one: writes fail (a deleted directory takes no new files) or land
        where nobody sees them (a directory a new mount hides), and images
        put into the new one stay unreadable. So each operation compares the
        path's identity with the descriptor's and reopens on a difference. A
        missing directory is never recreated (it may be an unmounted mount
        point): it is skipped until it is back.
        """
        try:
            st = self._timed(os.stat, datadir.path)
        except OSError:
            return False
        if _identity(st) == datadir.ident:
            return True
        with self._reopen_lock:
            try:
                if _identity(os.stat(datadir.path)) == datadir.ident:
                    return True  # another thread reopened it
                fd = os.open(datadir.path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                return False  # gone again
            LOG.warning("data directory %s was replaced; reopened it", datadir.path)
            # Other threads may be using the old descriptor right now: it is
            # closed with the store, not here.
            self._retired_fds.append(datadir.fd)
            datadir.fd, datadir.ident = fd, _identity(os.fstat(fd))
            datadir.tmpfile = os.path.isdir("/proc/self/fd")
            if datadir is self._lock_dir:
                self._lock_pid = 0  # the publish lock lived in the old one
            self._remove_stale_staging(datadir)
        return True

    def _stat(self, location: Location) -> tuple[DataDir, str, os.stat_result]:
        datadir, name = self._resolve(location)
        try:
            st = self._timed(os.stat, name, dir_fd=datadir.fd, follow_symlinks=False)
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None
        except PermissionError:
            raise exceptions.Forbidden(f"access to {location.uri} denied") from None
        if stat.S_ISLNK(st.st_mode):
            raise exceptions.Forbidden(
                f"location {location.uri} is a symlink; images are never symlinks"
            )
        if not stat.S_ISREG(st.st_mode):
            raise exceptions.Forbidden(f"location {location.uri} is not an image file")
        return datadir, name, st

    # -- operations ------------------------------------------------------

    def _get(
        self, location: Location, offset: int, chunk_size: int | None
    ) -> tuple[ImageChunks, int]:
        datadir, name = self._resolve(location)
        try:
            fd = self._timed(
                os.open,
                name,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                dir_fd=datadir.fd,
            )
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise exceptions.Forbidden(
                    f"location {location.uri} is a symlink; images are never symlinks"
                ) from None
            raise exceptions.Forbidden(
                f"cannot open {location.uri}: {exc.strerror}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise exceptions.Forbidden(
                    f"location {location.uri} is not an image file"
                )
            length = range_length(st.st_size, offset, chunk_size, location.uri)
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_SEQUENTIAL)
        except BaseException:
            os.close(fd)
            raise
        return FileChunkIterator(fd, offset, length, self.chunk_size), length

    def _get_size(self, location: Location) -> int:
        return self._stat(location)[2].st_size

    def _delete(self, location: Location) -> None:
        datadir, name, _ = self._stat(location)
        try:
            self._timed(os.unlink, name, dir_fd=datadir.fd)
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None
        except OSError as exc:
            raise exceptions.Forbidden(
                f"cannot delete {location.uri}: {exc.strerror}"
            ) from None

    def _add(
        self,
        image_id: str,
        data: ImageData,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        source = CheckedSource(data, image_id, size, verifier, self.chunk_size)
        if 0 < size <= self._one_read_limit and hasattr(data, "read"):
            return self._add_one_read(image_id, source, size, hashing_algo)
        if not 0 < size <= PIPELINE_THRESHOLD:
            # Fail fast before streaming a large image; for a small one the
            # publish step (link(2), and the check under the publish lock)
            # finds a duplicate at no extra cost.
            self._check_absent(image_id)
        datadir = self._choose_datadir(image_id, size)
        staging = _Staging(datadir)
        writer = ImageFileWriter(
            -1,
            ImageHasher(hashing_algo),
            inline=self.thin or 0 < size <= PIPELINE_THRESHOLD,
            write=self._write,
        )
        try:
            with write_errors(datadir.described, image_id):
                staging.open()
            writer.fd = staging.fd
            with write_errors(datadir.described, image_id, stream_inside=True):
                written = self._write_stream(writer, source)
            checksum, multihash = writer.hasher.hexdigests()
            with write_errors(datadir.described, image_id):
                self._finish(staging.fd, written)
            self._publish(staging, image_id)
        finally:
            writer.close()
            staging.close()
        return self._added(datadir, image_id, written, checksum, multihash)

    def _add_one_read(
        self, image_id: str, source: CheckedSource, size: int, hashing_algo: str
    ) -> AddResult:
        """``_add`` for a file-like source small enough to read at once
        (writepath.one_read_limit): the same steps without the streaming
        machinery, which at a few KiB costs as much as the file system's
        own work."""
        chunk = source.read_whole()
        md5 = hashlib.md5(chunk, usedforsecurity=False)
        multihash = new_multihash(hashing_algo)
        multihash.update(chunk)
        if len(self.datadirs) == 1:
            # No choice to make, and nothing large to stream before a full
            # file system shows: a failed write is StorageFull all the same.
            datadir = self.datadirs[0]
            if not self._available(datadir):
                datadir = self._choose_datadir(image_id, size)
        else:
            datadir = self._choose_datadir(image_id, size)
        staging = _Staging(datadir)
        try:
            with write_errors(datadir.described, image_id):
                staging.open()
                self._write(staging.fd, chunk)
                self._finish(staging.fd, size)
            self._publish(staging, image_id)
        finally:
            staging.close()
        return self._added(
            datadir, image_id, size, md5.hexdigest(), multihash.hexdigest()
        )

    def _added(
        self, datadir: DataDir, image_id: str, size: int, checksum: str, multihash: str
    ) -> AddResult:
        LOG.debug("added %s (%d bytes) to %s", image_id, size, datadir.path)
        return AddResult(
            datadir.uri_prefix + image_id,
            size,
            checksum,
            multihash,
            self._metadata_for(datadir, image_id),
        )

    @staticmethod
    def _write_stream(writer: ImageFileWriter, source: CheckedSource) -> int:
        """Write and hash the checked stream (see fsstore.writepath); the
        bytes written. Once the pipeline runs, the rest of the source is
        read straight into its buffers."""
        for chunk in source.chunks():
            writer.add(chunk)
            if writer.pipeline is not None:
                writer.drain(source)
                break
        writer.finish()
        return source.finish()

    def _check_absent(self, image_id: str, skip: DataDir | None = None) -> None:
        for d in self.datadirs:
            if d is skip:
                continue
            if not os.access(image_id, os.F_OK, dir_fd=d.fd, follow_symlinks=False):
                continue
            raise exceptions.Duplicate(f"image {image_id} already exists in {d.path}")

    def preferred_datadir(self) -> DataDir:
        """Where an image of unknown size would go now (the first directory
        of the highest priority when none has room)."""
        try:
            return self._choose_datadir("of unknown size", 0)
        except exceptions.StorageFull:
            return self._by_priority[0][0]

    def _choose_datadir(self, image_id: str, size: int) -> DataDir:
        missing = []
        for group in self._by_priority:
            present = [d for d in group if self._available(d)]
            missing += [d.path for d in group if d not in present]
            if not present:
                continue
            if len(present) == 1:
                best, free = present[0], self._timed(present[0].free_bytes)
            else:
                free, i = max(
                    (self._timed(d.free_bytes), i) for i, d in enumerate(present)
                )
                best = present[i]
            if free > 0 and free >= size:
                return best
        raise exceptions.StorageFull(
            f"no data directory of store {self.name!r} has room for image "
            f"{image_id}"
            + (f" ({size} bytes)" if size else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )

    def _write(self, fd: int, chunk: bytes) -> None:
        if self.thin and chunk == self._zeros(len(chunk)):
            os.lseek(fd, len(chunk), os.SEEK_CUR)
            return
        write_all(fd, chunk)

    def _zeros(self, length: int) -> bytes:
        if len(self._zero_block) != length:
            return bytes(length)
        return self._zero_block

    def _finish(self, fd: int, written: int) -> None:
        if self.thin:
            os.ftruncate(fd, written)  # a trailing hole has no write to size it
        if self.file_mode:
            os.fchmod(fd, self.file_mode)
        if self.fsync:
            os.fsync(fd)

    def _publish(self, staging: _Staging, image_id: str) -> None:
        datadir = staging.datadir
        if len(self.datadirs) > 1:
            with self._publish_lock, self._flock_publish():
                # Under the lock no other process can link this id in another
                # directory between this check and our link. Our own
                # directory needs no check: link(2) refuses an existing name.
                self._check_absent(image_id, skip=datadir)
                self._link(staging, image_id)
        else:
            self._link(staging, image_id)
        if self.fsync:
            with write_errors(datadir.described, image_id):
                os.fsync(datadir.fd)

    def _link(self, staging: _Staging, image_id: str) -> None:
        try:
            staging.link(image_id)
        except FileExistsError:
            raise exceptions.Duplicate(
                f"image {image_id} already exists in {staging.datadir.path}"
            ) from None
        except OSError as exc:
            raise write_error(exc, staging.datadir.described, image_id) from None

    def _flock_publish(self) -> contextlib.AbstractContextManager[None]:
        # A lock fd inherited across fork() shares its flock with the parent,
        # so each process opens its own.
        # The lock lives in the first directory by path that exists. Race:
        # while an operator removes or restores that directory, processes may
        # for an instant disagree on where the lock is (see _available).
        lock_dir = next(
            (d for d in self._by_path if self._available(d)), self._by_path[0]
        )
        if (
            self._lock_fd < 0
            or self._lock_pid != os.getpid()
            or lock_dir is not self._lock_dir
        ):
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # the parent's, or a replaced directory's
            self._lock_dir = lock_dir
            self._lock_fd = os.open(
                PUBLISH_LOCK,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                0o600,
                dir_fd=lock_dir.fd,
            )
            self._lock_pid = os.getpid()
        return locking.flocked(self._lock_fd)

    def _metadata_for(self, datadir: DataDir, image_id: str) -> dict[str, Any]:
        # glance_store's rule: the first entry whose mountpoint the image's
        # path starts with; none: no metadata.
        path = os.path.join(datadir.path, image_id)
        for entry in self.metadata:
            if path.startswith(entry["mountpoint"]):
                return dict(entry)
        return {}
