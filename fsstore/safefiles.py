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
  exception, ``atomic_file(replace=True)`` (``replace_contents``), renames
  over its own state file only while the name holds a regular file or
  nothing (a link or a directory there is refused, not replaced).

The mechanisms are each written once here: ``open_regular`` (the one safe
open), ``same_inode`` (the one check that two looks saw one file),
``link_new`` (the one atomic publish of an open file under a new name) and
``atomic_file`` (a file that appears whole under its name, or not at all).

A name given with ``dir_fd`` is relative to that directory's descriptor, so
a directory swapped for a link above it cannot redirect the write either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator

from fsstore.tracing import trace

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# linkat(2) of /proc/self/fd/N with AT_SYMLINK_FOLLOW links the open file
# itself (an O_TMPFILE file too); without /proc, a file is linked by name.
HAVE_PROC_FD = os.path.isdir("/proc/self/fd")

# What open(O_TMPFILE) fails with where the file system does not offer it.
NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})
#: The name of atomic_file's temporary, where it needs one: under the prefix
#: no image id may take (fsstore.store.RESERVED_PREFIX), so one a crash
#: leaves in a store's or the cache's directory is never taken for an image.
TEMPORARY_PREFIX = ".fsstore-tmp-"

__all__ = [
    "HAVE_PROC_FD",
    "NO_TMPFILE",
    "NotRegularFile",
    "atomic_file",
    "create_new",
    "ensure_regular",
    "link_new",
    "open_regular",
    "open_regular_stat",
    "replace_contents",
    "same_inode",
    "write_all",
]


def same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two looks (``stat``/``fstat`` results) saw one file: the
    same inode on the same device. The one check behind every "is the name
    still the file I opened" of fsstore."""
    return a.st_ino == b.st_ino and a.st_dev == b.st_dev


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    """Write all of ``data`` to ``fd`` (at ``offset``, if given), however
    short each write(2) is."""
    if offset is None and type(data) is bytes and data:
        # The usual whole small image: one write(2), and no view to make.
        written = os.write(fd, data)
        if written == len(data):
            return
        data = memoryview(data)[written:]
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
        self.what = what  # "a symbolic link", "a directory", ...


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


def _opened(fd: int, path: str) -> os.stat_result:
    try:
        st = ensure_regular(fd, path)
        # O_NONBLOCK was only for the open: reads of a regular file ignore
        # it, but a descriptor handed on should say what it is.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return st


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
    return open_regular_stat(path, flags, dir_fd=dir_fd, mode=mode)[0]


def open_regular_stat(
    path: str,
    flags: int = os.O_RDONLY,
    *,
    dir_fd: int | None = None,
    mode: int = 0o600,
) -> tuple[int, os.stat_result]:
    """``open_regular``, with the ``fstat`` it checked the file by."""
    assert not flags & os.O_TRUNC, "truncate with os.ftruncate after the check"
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise _refuse_link(exc, path) from None
    return fd, _opened(fd, path)


def open_directory(path: str, *, dir_fd: int | None = None) -> int:
    """Open the directory ``path`` (in ``dir_fd``, if given) for use as a
    ``dir_fd``, without following a link at its last component.

    :raises NotADirectoryError: for anything but a directory there; a
        symbolic link is named as one ("a symbolic link where a directory
        belongs"), as Linux reports it as ENOTDIR or ELOOP.
    :raises FileNotFoundError: when nothing is there.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            link = stat.S_ISLNK(
                os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode
            )
        except OSError:
            link = False
        what = "a symbolic link where a directory belongs" if link else exc.strerror
        raise NotADirectoryError(errno.ENOTDIR, what, path) from None


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
    if not same_inode(
        os.stat(dst, dir_fd=dst_dir_fd, follow_symlinks=False), os.fstat(fd)
    ):
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


@contextlib.contextmanager
def atomic_file(
    dir_fd: int | None,
    name: str,
    *,
    replace: bool,
    mode: int = 0o600,
    fsync: bool = True,
) -> Iterator[int]:
    """A new file, open for writing, that appears under ``name`` only when
    the ``with`` block succeeds: whole, or not at all.

    ``dir_fd``: the directory's descriptor (``name`` a plain name in it),
    or None (``name`` a path). ``replace``: False publishes by ``link(2)``,
    never replacing anything (FileExistsError when ``name`` is taken);
    True renames over ``name``, for a state file only fsstore writes.
    ``mode``: the new file's permissions (less the umask). ``fsync``: flush
    the file before it is published and the directory after.

    Protocol: the block writes to an anonymous ``O_TMPFILE`` file (when
    linking, where the file system has it) or to a new temporary name
    beside ``name``; then fsync, the link or rename, fsync of the
    directory. On failure no temporary is left and ``name`` is unchanged.
    Races: a name planted at ``name`` meanwhile is never replaced by a
    link and never followed by either; ``replace=True`` refuses a
    non-regular file found there first (NotRegularFile); a temporary name
    swapped by a stranger is harmless (``link_new`` links the open file).
    """
    with _in_directory(dir_fd, name) as (dir_fd, name):
        if replace:
            _check_replaceable(name, dir_fd)
        fd, temporary = _new_temporary(dir_fd, name, mode, anonymous=not replace)
        try:
            try:
                yield fd
                if fsync:
                    os.fsync(fd)  # before the name: never a name of a partial file
                trace("safefiles.atomic_file.publishing")
                _publish(fd, dir_fd, name, temporary, replace)
            finally:
                os.close(fd)
        except BaseException:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=dir_fd)
            raise
        if fsync:
            os.fsync(dir_fd)


@contextlib.contextmanager
def _in_directory(dir_fd: int | None, name: str) -> Iterator[tuple[int, str]]:
    """``(directory descriptor, plain name)`` for a name in ``dir_fd``, or
    for a path (its directory opened for the block)."""
    if dir_fd is not None:
        if "/" in name:
            raise ValueError(f"{name!r} is a path; with dir_fd, a name is wanted")
        yield dir_fd, name
        return
    directory, name = os.path.split(name)
    own = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield own, name
    finally:
        os.close(own)


def _publish(
    fd: int, dir_fd: int, name: str, temporary: str | None, replace: bool
) -> None:
    if temporary is not None and replace:
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    try:
        link_new(fd, name, dst_dir_fd=dir_fd, src=temporary, src_dir_fd=dir_fd)
    finally:
        if temporary is not None:  # a second name, whether linked or not
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)


def _new_temporary(
    dir_fd: int, name: str, mode: int, *, anonymous: bool
) -> tuple[int, str | None]:
    """A new file to be published as ``name``, and its temporary name
    (None: anonymous, ``O_TMPFILE``)."""
    if anonymous and HAVE_PROC_FD:
        try:
            return os.open(".", os.O_TMPFILE | os.O_WRONLY, mode, dir_fd=dir_fd), None
        except OSError as exc:
            if exc.errno not in NO_TMPFILE:
                raise
    temporary = TEMPORARY_PREFIX + secrets.token_hex(8)
    return create_new(temporary, dir_fd=dir_fd, mode=mode), temporary


def replace_contents(
    path: str,
    data: bytes,
    *,
    mode: int = 0o600,
    fsync: bool = True,
    dir_fd: int | None = None,
) -> None:
    """Make ``path`` (a name in ``dir_fd``, if given) hold ``data``, whole
    or not at all: a state file (a checkpoint, a digest record) that only
    fsstore writes. ``atomic_file(replace=True)`` with ``data`` written:
    see there for the protocol and the races."""
    with atomic_file(dir_fd, path, replace=True, mode=mode, fsync=fsync) as fd:
        write_all(fd, data)
