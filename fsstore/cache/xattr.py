"""The xattr cache driver: records in the cached files themselves.

Hits live in the ``user.hits`` attribute (a decimal string) and the failure
reason of an invalid entry in ``user.error``, as in Glance; the checksum the
entry was verified against in ``user.checksum``. Least-recently-used is by
``st_atime``, which a hit sets explicitly, so ``relatime`` and ``noatime``
mounts order entries correctly too. A hit's read-modify-write of
``user.hits`` runs under an exclusive ``flock`` on the file, so concurrent
hits are never lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time

from fsstore import exceptions
from fsstore.cache.base import INCOMPLETE, CachedImage, CacheDriver, Problem

HITS = "user.hits"
CHECKSUM = "user.checksum"


def _read_hits(target: int | str) -> int | None:
    try:
        return int(os.getxattr(target, HITS))
    except OSError:
        return None
    except ValueError:
        return None


class XattrDriver(CacheDriver):
    NAME = "xattr"

    def configure(self) -> None:
        super().configure()
        probe = self.path(f".fsstore-xattr-probe-{secrets.token_hex(8)}", INCOMPLETE)
        try:
            with open(probe, "wb") as f:
                os.setxattr(f.fileno(), HITS, b"0")
        except OSError as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME,
                f"the file system of {self.base_dir} does not support user "
                f"extended attributes ({exc.strerror})",
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)

    def _record_commit(self, image_id: str, size: int, checksum: str, fd: int) -> None:
        os.setxattr(fd, HITS, b"0")
        if checksum:
            os.setxattr(fd, CHECKSUM, checksum.encode())

    def _record_delete(self, image_id: str) -> None:
        pass  # the records went with the file

    def _entries(self) -> list[CachedImage]:
        # One pass, one lstat and one getxattr per entry: listings of tens of
        # thousands must stay fast, so the checksum attribute is not read here
        # (checksum=None). getxattr has no *at() form, so it takes the path.
        base, new = self.base_dir, tuple.__new__
        return [
            new(
                CachedImage,
                (
                    name,
                    st.st_size,
                    _read_hits(f"{base}/{name}") or 0,
                    st.st_atime,
                    st.st_mtime,
                    None,
                ),
            )
            for name, st in self.scan_entry_files()
        ]

    def _total_size(self) -> int:
        return sum(st.st_size for _, st in self.scan_entry_files())

    def _count_hit(self, image_id: str, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            hits = (_read_hits(fd) or 0) + 1
            os.setxattr(fd, HITS, str(hits).encode())
            os.utime(fd, ns=(time.time_ns(), os.fstat(fd).st_mtime_ns))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def get_hit_count(self, image_id: str) -> int:
        if not self.is_cached(image_id):
            return 0
        return _read_hits(self.path(image_id)) or 0

    def _check_records(self, fix: bool) -> list[Problem]:
        problems = []
        for image_id in sorted(self.entry_files()):
            path = self.path(image_id)
            if _read_hits(path) is None:
                problems.append(Problem("bad-hits", image_id, f"no valid {HITS}"))
                if fix:
                    os.setxattr(path, HITS, b"0")
        return problems
