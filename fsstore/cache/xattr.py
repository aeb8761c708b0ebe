"""The xattr cache driver: records in the cached files themselves.

Hits live in the ``user.hits`` attribute (a decimal string) and the failure
reason of an invalid entry in ``user.error``, as in Glance; the checksum the
entry was verified against in ``user.checksum`` (none: it was not verified).
A file is an entry only if it has ``user.hits``: Glance's driver and this one
set it on every entry when it is committed, so a stray ``README``, a lock
file or a copy made without its attributes is never listed, counted, served,
pruned or deleted. Least-recently-used is by
``st_atime``, which a hit sets explicitly, so ``relatime`` and ``noatime``
mounts order entries correctly too. A hit's read-modify-write of
``user.hits`` runs under an exclusive ``flock`` on the file, so concurrent
hits are never lost.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator, Sequence

from oslo_config import cfg

from fsstore import exceptions, locking, safefiles
from fsstore.cache.records import (
    INCOMPLETE,
    CachedImage,
    Directory,
    Problem,
    RecordsDriver,
)

HITS = "user.hits"
CHECKSUM = "user.checksum"


_NOT_AN_ENTRY = -1  # no user.hits at all
# Longer than any kernel's coarse clock tick (HZ=100: 10 ms).
_CLOCK_TICK_NS = 50_000_000
# An entry's (hits, checksum).
_Record = tuple[int, str | None]


def _read_hits(target: int | str) -> int | None:
    """The hit count; None if ``user.hits`` is not a number, _NOT_AN_ENTRY
    if there is none."""
    try:
        if isinstance(target, int):
            value = os.getxattr(target, HITS)
        else:
            # Race: an entry swapped for a link since it was found is read
            # as the link (no user.hits: not an entry), never its target.
            value = os.getxattr(target, HITS, follow_symlinks=False)
    except OSError:
        return _NOT_AN_ENTRY
    try:
        hits = int(value)
    except ValueError:
        return None
    return hits if hits >= 0 else None


def _read_checksum(path: str) -> str | None:
    try:
        value = os.getxattr(path, CHECKSUM, follow_symlinks=False)
        return value.decode("ascii", "replace")
    except OSError:
        return None


def _read_record(path: str) -> _Record | None:
    """(hits, checksum) of the entry file at ``path``; None if it is no
    entry."""
    hits = _read_hits(path)
    if hits == _NOT_AN_ENTRY:
        return None
    return hits or 0, _read_checksum(path)


class XattrDriver(RecordsDriver):
    NAME = "xattr"
    lists_entry_files = True

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        # The cache directory's (st_dev, st_ino), and the records read there
        # by (inode, ctime): see _records.
        self._known: tuple[tuple[int, int], dict[tuple[int, int], _Record]] = (
            (-1, -1),
            {},
        )

    def configure(self, directory: Directory) -> None:
        super().configure(directory)
        probe = directory.path(
            f".fsstore-xattr-probe-{secrets.token_hex(8)}", INCOMPLETE
        )
        try:
            fd = safefiles.create_new(probe)
        except OSError as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME, f"cannot create {probe}: {exc.strerror}"
            ) from None
        try:
            os.setxattr(fd, HITS, b"0")
        except OSError as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME,
                f"the file system of {directory.base_dir} does not support user "
                f"extended attributes ({exc.strerror})",
            ) from None
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)

    def commit(self, image_id: str, size: int, checksum: str | None, fd: int) -> None:
        os.setxattr(fd, HITS, b"0")
        if checksum:
            os.setxattr(fd, CHECKSUM, checksum.encode())

    def delete(self, image_ids: Sequence[str]) -> None:
        pass  # the records went with the file

    def _scan(self) -> Iterator[tuple[str, os.stat_result, int | None]]:
        """(image id, lstat result, hits) of every entry: every entry file
        that has ``user.hits``. getxattr has no *at() form: it takes the
        path."""
        base = self.directory.base_dir
        for name, st in self.directory.scan_entry_files():
            hits = _read_hits(f"{base}/{name}")
            if hits != _NOT_AN_ENTRY:
                yield name, st, hits

    def entries(self) -> list[CachedImage]:
        """Every entry, the records of one unchanged since the last listing
        remembered.

        Why remembering is exact: every write of an attribute, and the
        hit's utime, sets the file's ctime to the file system's clock. A
        record is remembered by (inode, ctime) only if that ctime is older
        than the clock when it was read, so any later write, or a new file
        reusing the inode, has another ctime and is read again. The clock is
        taken twice, as the directory's mtime (the file system's own clock,
        also on a network file system) and as now less a coarse clock tick
        (a directory whose mtime was set ahead). Unremembered, an entry
        costs two getxattr calls besides its lstat: twice a listing's cost.
        """
        base = self.directory.base_dir
        top = os.stat(base)
        settled = min(top.st_mtime_ns, time.time_ns() - _CLOCK_TICK_NS)
        where = (top.st_dev, top.st_ino)
        known = self._known[1] if self._known[0] == where else {}
        seen: dict[tuple[int, int], _Record] = {}
        listed, new = [], tuple.__new__
        for name, st in self.directory.scan_entry_files():
            key = (st.st_ino, st.st_ctime_ns)
            record = known.get(key)
            if record is None:
                record = _read_record(f"{base}/{name}")
                if record is None:
                    continue
                if st.st_ctime_ns < settled:
                    seen[key] = record
            else:
                seen[key] = record
            hits, checksum = record
            entry = (name, st.st_size, hits, st.st_atime, st.st_mtime, checksum)
            listed.append(new(CachedImage, entry))
        self._known = (where, seen)
        return listed

    def total_size(self) -> int:
        return sum(entry.size for entry in self.entries())

    def is_entry(self, target: int | str) -> bool:
        return _read_hits(target) != _NOT_AN_ENTRY

    def hit(self, image_id: str, fd: int) -> None:
        with locking.flocked(fd):
            hits = max(_read_hits(fd) or 0, 0) + 1
            os.setxattr(fd, HITS, str(hits).encode())
            os.utime(fd, ns=(time.time_ns(), os.fstat(fd).st_mtime_ns))

    def hits(self, image_id: str) -> int:
        return max(_read_hits(self.directory.path(image_id)) or 0, 0)

    def check(self, fix: bool) -> list[Problem]:
        problems = []
        for image_id, _, hits in sorted(self._scan()):
            if hits is None:
                path = self.directory.path(image_id)
                problems.append(Problem("bad-hits", image_id, f"no valid {HITS}"))
                if fix:
                    # By name, never through a link swapped in since the scan.
                    os.setxattr(path, HITS, b"0", follow_symlinks=False)
        return problems
