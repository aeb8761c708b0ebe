"""Files fsstore creates and opens in directories others may write to.

A data directory, a cache directory or the directory of a scrub checkpoint
may hold names planted by someone else: a symbolic link to a file worth
destroying, a FIFO that blocks whoever opens it, a directory where a file is
expected. Every file fsstore writes is made through this module, which
holds to three rules:

* Never follow a link at the last component (``O_NOFOLLOW``; ``O_EXCL``
  for a name that must be new), and never open a FIFO or device in a way
  that can block (``O_NONBLOCK`` until the file is known to be regular).
* Refuse anything that is not a regular file: ``NotRegularFile``, an
  ``OSError`` (errno ``EINVAL``) that names the path, so callers that
  already handle a failed open handle it too.
* Never replace a file fsstore did not create. A new file appears by
  ``link(2)`` or ``O_EXCL``, which fail on an existing name; the one
  exception, ``replace_contents``, renames over its own state file only
  while the name holds a regular file or nothing (a link or a directory
  there is refused, not replaced).

A name given with ``dir_fd`` is relative to that directory's descriptor, so
a directory swapped for a link above it cannot redirect the write either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# linkat(2) of /proc/self/fd/N with AT_SYMLINK_FOLLOW links the open file
# itself (an O_TMPFILE file too); without /proc, a file is linked by name.
HAVE_PROC_FD = os.path.isdir("/proc/self/fd")

__all__ = [
    "HAVE_PROC_FD",
    "NotRegularFile",
    "create_new",
    "ensure_regular",
    "link_new",
    "open_regular",
    "replace_contents",
    "write_all",
]


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    """Write all of ``data`` to ``fd`` (at ``offset``, if given), however
    short each write(2) is."""
    view = memoryview(data).cast("B")
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        view = view[written:]


class NotRegularFile(OSError):
    """A name fsstore would open or write holds a link, a directory, a FIFO
    or a device."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(errno.EINVAL, f"{what} where a regular file belongs", path)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def ensure_regular(fd: int, path: str) -> os.stat_result:
    """``fd``'s status if it is a regular file; NotRegularFile (``fd`` left
    open: the caller closes it) otherwise."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, _kind(st.st_mode))
    return st


def _opened(fd: int, path: str) -> int:
    try:
        ensure_regular(fd, path)
        # O_NONBLOCK was only for the open: reads of a regular file ignore
        # it, but a descriptor handed on should say what it is.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_link(exc: OSError, path: str) -> OSError:
    # O_NOFOLLOW on a link at the last component fails with ELOOP; a
    # directory opened for writing with EISDIR.
    if exc.errno == errno.ELOOP:
        return NotRegularFile(path, "a symbolic link")
    if exc.errno == errno.EISDIR:
        return NotRegularFile(path, "a directory")
    # A FIFO opened for writing without a reader, with O_NONBLOCK: ENXIO.
    if exc.errno == errno.ENXIO:
        return NotRegularFile(path, "a FIFO or device")
    return exc


def open_regular(
    path: str,
    flags: int = os.O_RDONLY,
    *,
    dir_fd: int | None = None,
    mode: int = 0o600,
) -> int:
    """Open ``path`` (``flags`` may add ``O_CREAT``, never ``O_TRUNC``: a
    file is emptied only once it is known to be regular and the caller's)
    without following a link, and only if it is a regular file."""
    assert not flags & os.O_TRUNC, "truncate with os.ftruncate after the check"
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise _refuse_link(exc, path) from None
    return _opened(fd, path)


def create_new(
    path: str,
    *,
    dir_fd: int | None = None,
    mode: int = 0o600,
    flags: int = os.O_WRONLY,
) -> int:
    """Create ``path``, which must not exist (FileExistsError if anything,
    a dangling link included, is there): a descriptor of the new file."""
    fd = os.open(
        path, flags | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, mode, dir_fd=dir_fd
    )
    os.set_blocking(fd, True)  # a new file is regular: as open_regular's are
    return fd


def link_new(
    fd: int,
    dst: str,
    *,
    dst_dir_fd: int | None = None,
    src: str | None = None,
    src_dir_fd: int | None = None,
) -> None:
    """Give the file open as ``fd`` the new name ``dst``: FileExistsError
    if anything is there, which is never replaced. This is how every image,
    cache entry and queue entry is published.

    ``src`` (in ``src_dir_fd``) is the file's name, if it has one; an
    ``O_TMPFILE`` file has none and needs /proc.

    Race: whoever can write to ``src``'s directory may swap ``src`` for a
    link or another file after we opened it. Linked by its descriptor, the
    file we wrote is what gets the name, whatever ``src`` names now.
    Without /proc the name is linked (never a link's target) and then
    checked, and a stranger linked in our stead is unlinked again.
    """
    if HAVE_PROC_FD:
        # The absolute source ignores a dir_fd, but giving one makes Python
        # call linkat(2), which follows /proc's link; link(2) cannot.
        any_dir = src_dir_fd if src_dir_fd is not None else dst_dir_fd
        own = os.open("/", os.O_RDONLY | os.O_DIRECTORY) if any_dir is None else None
        try:
            os.link(
                f"/proc/self/fd/{fd}",
                dst,
                src_dir_fd=any_dir if own is None else own,
                dst_dir_fd=dst_dir_fd,
                follow_symlinks=True,
            )
        finally:
            if own is not None:
                os.close(own)
        return
    if src is None:
        raise OSError(errno.ENOTSUP, "linking an unnamed file needs /proc", dst)
    os.link(
        src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False
    )
    st = os.stat(dst, dir_fd=dst_dir_fd, follow_symlinks=False)
    held = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (held.st_dev, held.st_ino):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst, dir_fd=dst_dir_fd)
        raise NotRegularFile(src, "something other than the file written")


def _check_replaceable(name: str, dir_fd: int | None) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(name, _kind(st.st_mode))


def replace_contents(
    path: str,
    data: bytes,
    *,
    mode: int = 0o600,
    fsync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Make ``path`` hold ``data``, whole or not at all: a state file
    (a checkpoint, a digest record) that only fsstore writes.

    ``data`` goes to a new temporary file beside ``path`` (exclusive
    create, ``mode``), is flushed, and is renamed over ``path``; then the
    directory is flushed. A link, directory or other non-regular file at
    ``path`` is refused (NotRegularFile), never replaced. Race: something
    planted between that check and the rename is replaced, never followed:
    rename(2) acts on the name, not on a link's target.
    """
    directory, name = os.path.split(path)
    if dir_fd is None:
        own_dir = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    else:
        own_dir = dir_fd
    try:
        _check_replaceable(name, own_dir)
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = create_new(temporary, dir_fd=own_dir, mode=mode)
        try:
            try:
                write_all(fd, data)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, name, src_dir_fd=own_dir, dst_dir_fd=own_dir)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=own_dir)
            raise
        if fsync:
            os.fsync(own_dir)
    finally:
        if dir_fd is None:
            os.close(own_dir)
