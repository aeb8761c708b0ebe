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


class XattrDriver(RecordsDriver):
    NAME = "xattr"

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
        base, new = self.directory.base_dir, tuple.__new__
        return [
            new(
                CachedImage,
                (
                    name,
                    st.st_size,
                    hits or 0,
                    st.st_atime,
                    st.st_mtime,
                    _read_checksum(f"{base}/{name}"),
                ),
            )
            for name, st, hits in self._scan()
        ]

    def total_size(self) -> int:
        return sum(st.st_size for _, st, _ in self._scan())

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
