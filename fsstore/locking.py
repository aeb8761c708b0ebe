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
  cache lock) is opened once per process and held with ``flocked`` around
  the work it guards. A descriptor inherited across ``fork()`` shares its
  lock with the parent, so each process must open its own.

``flock`` locks belong to the open file description, so two descriptors of
one file in one process exclude each other like two processes do.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from typing import Literal

from fsstore.safefiles import open_regular

ATTEMPTS = 8


class LockHeld(Exception):
    """Another holder has the lock (or the name kept being replaced)."""


def same_file(name: str, fd: int, dir_fd: int | None = None) -> bool:
    """Whether ``name`` still refers to the file open as ``fd``."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def hold(
    name: str,
    *,
    dir_fd: int | None = None,
    flags: int = os.O_RDWR,
    mode: int = 0o600,
    wait: bool = True,
    between: Callable[[], None] | None = None,
) -> int:
    """Open ``name`` (created if missing) and lock it: its descriptor.

    ``wait=False`` raises LockHeld at once if a live holder has it. The
    name is re-checked after the lock (see the module docstring) and the
    open retried when it moved on; LockHeld after ATTEMPTS tries. ``flags``
    adds to ``O_CREAT | O_NOFOLLOW`` (``O_EXCL`` for a name that must be
    new). ``between`` runs between the open and the flock: a test's hook to
    force the race. A link or anything but a regular file at ``name`` is
    refused (``safefiles.NotRegularFile``): a FIFO would block the open.
    """
    for _ in range(ATTEMPTS):
        fd = open_regular(name, flags | os.O_CREAT, dir_fd=dir_fd, mode=mode)
        try:
            if between is not None:
                between()
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
    between: Callable[[], None] | None = None,
) -> Literal["reaped", "held", "gone"]:
    """Unlink ``name`` unless a live holder has it.

    "reaped": it was unlinked; "held": a live holder has it; "gone": there
    was nothing to reap (missing, not openable, or replaced meanwhile).
    ``between`` runs between the lock and the unlink: a test's hook.
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
        if between is not None:
            between()
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
