"""The data directories of a filesystem store, and the publish of an image
into one of them.

See fsstore.backends.filesystem for the on-disk layout and the writing
protocol; this module holds its mechanisms: opening the directories,
noticing one that was replaced, choosing where an image goes, and the
publish of a staging file (filesystem/staging.py) as an image
(``DataDirs.publish``: digests, fsync, the publish lock that makes an id
unique across directories, the link).

The race of two adds of one id into two directories is open at the trace
point ``filesystem.publish.locked`` (fsstore.tracing): between the check
across directories and the link, under the publish lock.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading

from fsstore import exceptions, locking, safefiles
from fsstore.backends.filesystem.digests import keep_digests
from fsstore.backends.filesystem.staging import Staging, remove_stale_staging
from fsstore.backends.filesystem.timed import TimedCalls
from fsstore.hashing import KeptDigests
from fsstore.location import FileLocation, Location
from fsstore.store import RESERVED_PREFIX, image_id_problem
from fsstore.tracing import trace
from fsstore.writepath import write_error

LOG = logging.getLogger(__name__)

PUBLISH_LOCK = RESERVED_PREFIX + "publish.lock"

# free_bytes() of a file system that reports no capacity at all.
UNKNOWN_ROOM = 2**63 - 1


@dataclasses.dataclass
class DataDir:
    path: str
    priority: int
    fd: int = -1
    tmpfile: bool = True
    ident: os.stat_result | None = None  # of the open directory
    # Whether configure found nothing at its path and made it: a data
    # directory on a file system that is not mounted, say (see
    # DataDirs.missing).
    created: bool = False
    # Whether images can be added to it and deleted from it (a read-only
    # mount, or a directory another user owns, is only read): as found when
    # it was opened. A remount in place is seen when the store is
    # configured again; until then a write there fails as the mount says.
    writable: bool = True
    path_prefix: str = dataclasses.field(init=False)  # + image id: its path
    uri_prefix: str = dataclasses.field(init=False)  # + image id: its location
    described: str = dataclasses.field(init=False)  # in messages

    def __post_init__(self) -> None:
        self.path_prefix = os.path.join(self.path, "")
        self.uri_prefix = FileLocation.from_path(self.path_prefix).uri
        self.described = f"data directory {self.path}"

    def free_bytes(self) -> int:
        st = os.statvfs(self.fd)
        if st.f_blocks == 0:
            # No capacity to report (ramfs): room is unknown, not none, and
            # only a failed write can tell.
            return UNKNOWN_ROOM
        return st.f_bavail * st.f_frsize


class DataDirs:
    """The open data directories of one store, by priority and by path."""

    def __init__(self, store_name: str, timed: TimedCalls) -> None:
        self.store_name = store_name
        self.timed = timed
        self.all: list[DataDir] = []
        self._by_priority: list[list[DataDir]] = []
        self._by_path: list[DataDir] = []
        self._reopen_lock = threading.Lock()
        self._retired_fds: list[int] = []
        # Held only to swap _lock_file, never across a publish: a fork
        # while another thread publishes must not leave it locked in the
        # child (the LockFile itself renews its locks there).
        self._lock_swap = threading.Lock()
        self._lock_file: locking.LockFile | None = None
        self._retired_locks: list[locking.LockFile] = []
        self.file_mode = 0
        self.fsync = True
        self.read_only = False

    def open(
        self, dirs: list[DataDir], file_mode: int, fsync: bool, read_only: bool = False
    ) -> None:
        """Open every directory of ``dirs``, give them the search bits
        ``file_mode`` asks for, and remove the staging files no live writer
        holds. ``file_mode`` and ``fsync`` are also what ``publish`` gives
        each image.

        A fresh store (none of its directories exists) gets them all made,
        as glance_store makes its own. Once any exists, a missing one is
        never made: it may be a file system that is not mounted, and an
        empty directory in its place would hide that from every later scrub
        (and take images that belong on the mount). It is skipped, and
        reported by ``missing``, until it is back.

        ``read_only``: the store is only read (Store.read_only): nothing is
        made or changed, and a missing directory is only missing.
        """
        self.read_only = read_only
        fresh = not read_only and not any(os.path.lexists(d.path) for d in dirs)
        try:
            for d in dirs:
                if not fresh and not os.path.lexists(d.path):
                    # Opened by available() once it is there.
                    if not read_only:
                        LOG.warning(
                            "data directory %s is missing; skipped until it "
                            "exists (it is never made while another data "
                            "directory exists)",
                            d.path,
                        )
                    continue
                d.created = fresh
                d.fd, d.writable = self._open_datadir(d.path, make=fresh)
                d.ident = os.fstat(d.fd)
                d.tmpfile = safefiles.HAVE_PROC_FD
        except BaseException:
            for d in dirs:
                if d.fd >= 0:
                    os.close(d.fd)
            raise
        self.all = dirs
        self.file_mode = file_mode
        self.fsync = fsync
        priorities = sorted({d.priority for d in dirs}, reverse=True)
        self._by_priority = [[d for d in dirs if d.priority == p] for p in priorities]
        self._by_path = sorted(dirs, key=lambda d: d.path)
        for d in dirs:
            if d.fd >= 0:
                self._tidy(d)

    def _tidy(self, datadir: DataDir) -> None:
        """What a store that writes does to a data directory it opens: the
        search bits, and the staging files of writers that died."""
        if self.read_only or not datadir.writable:
            return
        _let_readers_search(datadir, self.file_mode)
        remove_stale_staging(datadir)

    def _open_datadir(self, path: str, make: bool) -> tuple[int, bool]:
        """The directory at ``path`` opened (made first if ``make``), and
        whether images can be written in it."""

        def bad(reason: str) -> exceptions.BadStoreConfiguration:
            return exceptions.BadStoreConfiguration(
                self.store_name, f"data directory {path} {reason}"
            )

        try:
            if make:
                os.makedirs(path, mode=0o755, exist_ok=True)
        except FileExistsError:
            pass  # a file (or a dangling symlink) in its place: named below
        except OSError as exc:
            raise bad(f"cannot be created: {exc.strerror}") from None
        if not os.path.isdir(path):
            raise bad("is not a directory")
        if not os.access(path, os.R_OK | os.X_OK):
            raise bad("is not readable")
        writable = os.access(path, os.W_OK)
        if not writable and not self.read_only:
            # Not a fault: a read-only mount of older images is a layout
            # operators choose. An add that finds no other says so.
            LOG.info(
                "data directory %s is not writable: images are read from it, "
                "none are added to it or deleted from it",
                path,
            )
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY), writable

    def close(self) -> None:
        for d in self.all:
            if d.fd >= 0:
                os.close(d.fd)
                d.fd = -1
        self.all = []
        locks, self._retired_locks = self._retired_locks, []
        if self._lock_file is not None:
            locks.append(self._lock_file)
            self._lock_file = None
        for lock in locks:
            lock.close()
        fds, self._retired_fds = self._retired_fds, []
        for fd in fds:
            os.close(fd)

    def find(self, location: Location) -> tuple[DataDir, str] | None:
        """The data directory and image id ``location`` names, if it names
        a file directly inside one of them."""
        if not isinstance(location, FileLocation):
            return None
        path = location.path
        # The usual location, as an add wrote it: a directory's path as
        # configured (absolute, normalized), "/" and a valid id, which
        # find_path would take apart to the same directory and name.
        for d in self.all:
            if path.startswith(d.path_prefix):
                name = path[len(d.path_prefix) :]
                if "/" not in name and image_id_problem(name) is None:
                    return d, name
        return self.find_path(path)

    def find_path(self, path: str) -> tuple[DataDir, str] | None:
        """``find`` for any spelling of a path: normalized, then compared
        with each directory's path, then with each one resolved."""
        parent, name = os.path.split(os.path.normpath(path))
        if image_id_problem(name) is not None:
            return None
        for d in self.all:
            if parent == d.path:
                return d, name
        real_parent = os.path.realpath(parent)
        for d in self.all:
            if real_parent == os.path.realpath(d.path):
                return d, name
        return None

    def available(self, datadir: DataDir) -> bool:
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
            st = self.timed(os.stat, datadir.path)
        except OSError:
            return False
        if datadir.ident is not None and safefiles.same_inode(st, datadir.ident):
            return True
        with self._reopen_lock:
            try:
                st = os.stat(datadir.path)
                if datadir.ident is not None and safefiles.same_inode(
                    st, datadir.ident
                ):
                    return True  # another thread reopened it
                fd = os.open(datadir.path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                return False  # gone again
            LOG.warning("data directory %s was replaced; reopened it", datadir.path)
            # Other threads may be using the old descriptor right now: it is
            # closed with the store, not here. (None: missing at configure.)
            if datadir.fd >= 0:
                self._retired_fds.append(datadir.fd)
            # The publish lock, if it lived in the old one, moves with the
            # descriptor (see _publish_lock_file).
            datadir.fd, datadir.ident = fd, os.fstat(fd)
            datadir.tmpfile = safefiles.HAVE_PROC_FD
            datadir.writable = os.access(datadir.path, os.W_OK)
            self._tidy(datadir)
        return True

    def missing(self) -> list[str]:
        """The data directories missing now, and those a fresh store made
        at configure (none of its directories existed: see ``open``) that
        still hold no image: a scrub listing an empty directory made in
        place of an unmounted one would otherwise find nothing wrong. Not
        one below a directory that holds images: new images go to the
        highest priority first, so an empty one there is expected."""
        present = [d for d in self.all if self.available(d)]
        filled = [d.priority for d in present if _holds_images(d)]
        found = [
            f"data directory {d.path} is missing" for d in self.all if d not in present
        ]
        for d in present:
            if d.created and not any(p >= d.priority for p in filled):
                found.append(
                    f"data directory {d.path} was missing (made empty when the "
                    "store was configured: is its file system mounted?)"
                )
        return found

    def choose(self, image_id: str, size: int, *, small: bool = False) -> DataDir:
        """Where an image of ``size`` bytes (0: unknown) goes: the highest
        priority with room, and within it the most free space.

        ``small``: nothing large is streamed before a full file system
        shows (a failed write is StorageFull all the same), so a store with
        one data directory, which has no choice to make, skips asking it
        for its room."""
        if (
            small
            and len(self.all) == 1
            and self.available(self.all[0])
            and self.all[0].writable
        ):
            return self.all[0]
        missing, read_only = [], []
        for group in self._by_priority:
            present = [d for d in group if self.available(d)]
            missing += [d.path for d in group if d not in present]
            read_only += [d.path for d in present if not d.writable]
            present = [d for d in present if d.writable]
            if not present:
                continue
            if len(present) == 1:
                best, free = present[0], self.timed(present[0].free_bytes)
            else:
                free, i = max(
                    (self.timed(d.free_bytes), i) for i, d in enumerate(present)
                )
                best = present[i]
            if free > 0 and free >= size:
                return best
        if read_only and not any(d.writable for d in self.all if d.fd >= 0):
            raise exceptions.StorageWriteDenied(
                f"no data directory of store {self.store_name!r} can be written "
                f"(not writable: {', '.join(read_only)})"
            )
        raise exceptions.StorageFull(
            f"no data directory of store {self.store_name!r} has room for image "
            f"{image_id}"
            + (f" ({size} bytes)" if size else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )

    def preferred(self) -> DataDir:
        """Where an image of unknown size would go now (the first directory
        of the highest priority when none has room)."""
        try:
            return self.choose("of unknown size", 0)
        except exceptions.StorageFull:
            return self._by_priority[0][0]

    def check_absent(self, image_id: str, skip: DataDir | None = None) -> None:
        """Duplicate when ``image_id`` is in a data directory but ``skip``.

        Looked up by path, one call a directory: the directory at the path
        now is where the image would be found (one that replaced the
        directory opened at configure included), and a missing one holds
        nothing. (``image_id`` was validated: it has no ``/``.)"""
        for d in self.all:
            if d is skip:
                continue
            where = d.path_prefix + image_id
            if self.timed(os.access, where, os.F_OK, follow_symlinks=False):
                raise exceptions.Duplicate(
                    f"image {image_id} already exists in {d.path}"
                )

    def publish(self, staging: Staging, kept: KeptDigests) -> None:
        """Give the written staging file its image id as its name, in the
        order the store's promises need:

        1. its digests ``kept`` with it (digests.py): a published image
           always has them;
        2. its mode set and, with ``fsync``, its data flushed: a name never
           shows bytes a crash can take back;
        3. with several directories, under the publish lock, the id checked
           absent from the others (race: another process adding it to
           another directory; the lock orders the check and link of both);
        4. linked, never replacing (race: another add of the id to this
           directory; link(2) lets one win, the other gets Duplicate);
        5. with ``fsync``, the directory flushed: the name is durable before
           the add returns.
        """
        fd, datadir, image_id = staging.fd, staging.datadir, staging.image_id
        try:
            staging.record_inode = keep_digests(
                fd, kept, datadir.fd, image_id, self.fsync
            )
            if self.file_mode:
                os.fchmod(fd, self.file_mode)
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            raise write_error(exc, datadir.described, image_id) from None
        if len(self.all) > 1:
            with self.publish_lock():
                # Our own directory needs no check: link(2) refuses the name.
                self.check_absent(image_id, skip=datadir)
                trace("filesystem.publish.locked")
                staging.link()
        else:
            staging.link()
        if self.fsync:
            try:
                os.fsync(datadir.fd)
            except OSError as exc:
                raise write_error(exc, datadir.described, image_id) from None

    def publish_lock(self) -> _PublishLock:
        """Held while an id is checked absent from every directory and
        linked into one: a locking.LockFile, which orders this process's
        threads and other processes alike."""
        return _PublishLock(*self._publish_lock_file())

    def _publish_lock_file(self) -> tuple[locking.LockFile, str]:
        # The lock lives in the first directory by path that exists and
        # can be written (a read-only mount cannot take a lock file). Race:
        # while an operator removes or restores that directory, processes
        # (and for an instant threads) may disagree on where the lock is
        # (see available()); so may processes of users whom different
        # directories let write, which a store shared that way must avoid.
        lock_dir = next(
            (d for d in self._by_path if self.available(d) and d.writable),
            self._by_path[0],
        )
        path = os.path.join(lock_dir.path, PUBLISH_LOCK)
        lock = self._lock_file
        if lock is not None and lock.dir_fd == lock_dir.fd:
            return lock, path
        with self._lock_swap:
            lock = self._lock_file
            if lock is None or lock.dir_fd != lock_dir.fd:
                # Another directory, or the same one reopened: its own lock
                # file. The old one may be held by another thread right now:
                # it is closed with the store.
                if lock is not None:
                    self._retired_locks.append(lock)
                lock = locking.LockFile(PUBLISH_LOCK, dir_fd=lock_dir.fd)
                self._lock_file = lock
        return lock, path


class _PublishLock:
    """``with``: the publish lock held, or BackendException naming its file
    (a class, not a generator: every add to several directories enters one)."""

    __slots__ = ("held", "path")

    def __init__(self, lock: locking.LockFile, path: str) -> None:
        self.held, self.path = lock.held(), path

    def __enter__(self) -> None:
        try:
            self.held.__enter__()
        except (OSError, locking.LockHeld) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise exceptions.BackendException(
                f"cannot open the publish lock {self.path}: {why}"
            ) from None

    def __exit__(self, *exc: object) -> None:
        self.held.__exit__()


def _holds_images(datadir: DataDir) -> bool:
    with os.scandir(datadir.fd) as entries:
        return any(
            not e.name.startswith(RESERVED_PREFIX) and e.is_file(follow_symlinks=False)
            for e in entries
        )


def _let_readers_search(datadir: DataDir, perm: int) -> None:
    """Give the data directory the search (x) bit for the group and others
    when ``filesystem_store_file_perm`` lets them read images, as
    glance_store does: a readable file in a directory they cannot enter is
    no use to them. A failure is logged, as there."""
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
