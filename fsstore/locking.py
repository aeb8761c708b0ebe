"""Lock files: files whose holder keeps an exclusive ``flock`` on them.

The store's named staging files and publish lock and the cache's
``incomplete/`` files and cache lock follow one protocol, written here once:

* Holding. Open the name (creating it), take ``flock(LOCK_EX)``, then check
  that the name still refers to the inode just locked. Race: between the
  open and the flock, a reaper (or the previous holder, finishing) may have
  unlinked the name, and a lock on an unlinked inode excludes nobody. If the
  name moved on, close and try again.
* Reaping. Open the name, take ``flock(LOCK_EX | LOCK_NB)``: failing means a
  live holder, which is left alone. Holding the lock, unlink the name only
  if it still refers to the locked inode (the same race, seen from the other
  side). A holder's lock dies with its process, so what a killed process
  held is reapable at once, however young.
* A mutex. A lock file that is never removed (the store's publish lock, the
  cache lock) is a ``LockFile``: opened once per process, held with its
  ``held()`` around the work it guards. A descriptor inherited across
  ``fork()`` shares its lock with the parent, so each process opens its
  own; threads of one process share it, and a thread lock orders them.

``flock`` locks belong to the open file description, so two descriptors of
one file in one process exclude each other like two processes do.

The races are trace points (fsstore.tracing) where they are open:
``locking.hold.opened`` (between a holder's open and its flock) and
``locking.reap.locked`` (between a reaper's flock and its unlink).
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import weakref
from typing import Literal

from fsstore.safefiles import open_regular, same_inode
from fsstore.tracing import trace

ATTEMPTS = 8


class LockHeld(Exception):
    """Another holder has the lock (or the name kept being replaced)."""


def same_file(name: str, fd: int, dir_fd: int | None = None) -> bool:
    """Whether ``name`` still refers to the file open as ``fd``."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return same_inode(st, os.fstat(fd))


def hold(
    name: str,
    *,
    dir_fd: int | None = None,
    flags: int = os.O_RDWR,
    mode: int = 0o600,
    wait: bool = True,
) -> int:
    """Open ``name`` (created if missing) and lock it: its descriptor.

    ``wait=False`` raises LockHeld at once if a live holder has it. The
    name is re-checked after the lock (see the module docstring) and the
    open retried when it moved on; LockHeld after ATTEMPTS tries. ``flags``
    adds to ``O_CREAT | O_NOFOLLOW`` (``O_EXCL`` for a name that must be
    new). A link or anything but a regular file at ``name`` is
    refused (``safefiles.NotRegularFile``): a FIFO would block the open.
    """
    for _ in range(ATTEMPTS):
        fd = open_regular(name, flags | os.O_CREAT, dir_fd=dir_fd, mode=mode)
        try:
            trace("locking.hold.opened")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise LockHeld(name) from None
            if same_file(name, fd, dir_fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise LockHeld(f"{name} kept being replaced while it was locked")


def reap(
    name: str,
    *,
    dir_fd: int | None = None,
) -> Literal["reaped", "held", "gone"]:
    """Unlink ``name`` unless a live holder has it.

    "reaped": it was unlinked; "held": a live holder has it; "gone": there
    was nothing to reap (missing, not openable, or replaced meanwhile).
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return "gone"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held"
        trace("locking.reap.locked")
        # A directory planted at the name is no holder's, and unlink(2)
        # cannot remove it: left for the caller to report.
        if stat.S_ISDIR(os.fstat(fd).st_mode) or not same_file(name, fd, dir_fd):
            return "gone"
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return "gone"
        return "reaped"
    finally:
        os.close(fd)


def is_held(name: str, *, dir_fd: int | None = None) -> bool:
    """Whether a live holder has ``name`` locked (a shared probe: two
    probes never mistake each other for a holder)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class flocked:  # noqa: N801 - used as a function: ``with flocked(fd):``
    """Hold an exclusive flock on ``fd`` for the ``with`` block (a class,
    not a generator: a cache hit pays for it)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class LockFile:
    """A mutex across processes and the threads of each: an exclusive
    ``flock`` on the lock file ``name`` (in ``dir_fd``, if given; created
    with ``mode`` if missing), a file that is never removed.

    Protocol. Each process opens the file once, with ``hold``, and keeps
    the descriptor; each ``held()`` then takes a thread lock (``flock``
    does not order threads sharing one open file description) and the
    ``flock``, and re-checks that ``name`` still refers to the locked
    inode. Races, each handled here:

    * The lock file removed or replaced while a process keeps it open (an
      operator cleaning up, a directory replaced): a lock on the old inode
      excludes nobody who opens the name now. The re-check sees it, and
      the name is opened and locked anew.
    * ``fork()`` while a thread of the parent holds it: the child would
      share the parent's lock (and its thread lock's state). In the child
      the inherited descriptor is closed and the thread lock renewed
      before any of its code runs (``os.register_at_fork``), so it opens
      its own; a block the child inherited mid-way leaves the parent's
      lock alone when it ends.

    Re-entrant within a thread: a block that takes it again (a cache
    driver repairing its records under the cache lock) just goes on.
    """

    def __init__(self, name: str, *, dir_fd: int | None = None, mode: int = 0o600):
        self.name = name
        self.dir_fd = dir_fd
        self.mode = mode
        self._fd = -1
        self._opened: os.stat_result | None = None  # of _fd, once open
        self._threads = threading.Lock()
        self._local = threading.local()  # this thread's depth in held()
        self._generation = 0  # one more in each forked child
        _LOCK_FILES.add(self)

    def held(self) -> _Held:
        """Hold the lock for the ``with`` block (waiting for it). An error
        opening the lock file (OSError, NotRegularFile) or a name that kept
        being replaced (LockHeld) is raised before the block runs."""
        return _Held(self)

    def _acquire(self, held: _Held) -> None:
        local = held.local = self._local
        held.generation = self._generation
        depth: int = getattr(local, "depth", 0)
        if depth:
            local.depth = depth + 1
            held.threads = None  # an inner block: the outer one unlocks
            return
        threads = held.threads = self._threads
        threads.acquire()
        try:
            held.fd = self._lock()
        except BaseException:
            threads.release()
            raise
        local.depth = 1

    def _release(self, held: _Held) -> None:
        assert held.local is not None
        held.local.depth -= 1
        if held.threads is None:
            return
        try:
            if held.generation == self._generation:  # not a forked child's
                fcntl.flock(held.fd, fcntl.LOCK_UN)
        finally:
            held.threads.release()

    def _lock(self) -> int:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            except BaseException:
                # Never left held by a check that failed (EACCES, EIO): the
                # caller is told, and nobody else waits on a lock it lost.
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                raise
            if st is not None and self._opened and same_inode(st, self._opened):
                return self._fd
            # Race: removed or replaced since we opened it (see above).
            fd, self._fd = self._fd, -1
            os.close(fd)
        # Forgotten before the open: a failed one leaves no closed (and
        # soon reused) number behind to be flocked or closed again.
        fd = hold(self.name, dir_fd=self.dir_fd, mode=self.mode)
        self._opened = os.fstat(fd)
        self._fd = fd
        return fd

    def close(self) -> None:
        """Close this process's descriptor (no thread may hold the lock);
        a later ``held()`` opens it again."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _forked(self) -> None:
        self._generation += 1
        self._threads = threading.Lock()
        self._local = threading.local()
        self.close()  # the parent's lock stays the parent's


class _Held:
    """A ``with lock.held():`` block, and what it took: the thread's depth
    counter, the generation (process) it took it in, and, for the outermost
    block of a thread, the thread lock and the flock'ed descriptor. (A
    class, not a generator: a store with several data directories enters
    one per add.)"""

    __slots__ = ("fd", "generation", "local", "lock", "threads")

    def __init__(self, lock: LockFile) -> None:
        self.lock = lock
        self.local: threading.local | None = None
        self.fd = -1
        self.generation = 0
        self.threads: threading.Lock | None = None

    def __enter__(self) -> None:
        self.lock._acquire(self)

    def __exit__(self, *exc: object) -> None:
        self.lock._release(self)


_LOCK_FILES: weakref.WeakSet[LockFile] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock_file in list(_LOCK_FILES):
        lock_file._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
