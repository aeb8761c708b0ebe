"""The staging file an image of the filesystem store is written to before
it is published (see fsstore.backends.filesystem for the protocol).

Anonymous (``O_TMPFILE``) where the file system offers it: a crash leaves
nothing with a name. Elsewhere a named file in ``.fsstore-staging/``, which
its writer holds an exclusive ``flock`` on (locking.hold), so that
``remove_stale_staging`` reaps what a crashed writer left, however young,
and never a live writer's file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from typing import TYPE_CHECKING

from fsstore import exceptions, locking, safefiles
from fsstore.backends.filesystem.digests import forget_record
from fsstore.store import RESERVED_PREFIX
from fsstore.writepath import write_error

if TYPE_CHECKING:
    from fsstore.backends.filesystem.datadirs import DataDir

LOG = logging.getLogger(__name__)

STAGING_DIR = RESERVED_PREFIX + "staging"


class Staging:
    """The file ``image_id`` is written to in ``datadir`` before it is
    published; a context manager: made on entry (a failure is a store
    error naming the directory), gone on exit unless it was published."""

    def __init__(self, datadir: DataDir, image_id: str) -> None:
        self.datadir = datadir
        self.image_id = image_id
        self.fd = -1
        self.name: str | None = None  # None: anonymous O_TMPFILE
        self.staging_fd = -1
        # The inode whose digest record was written (digests.py), on
        # file systems without user xattrs; removed unless the link succeeds.
        self.record_inode: int | None = None
        self.published = False

    def __enter__(self) -> Staging:
        try:
            self._open()
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise write_error(exc, self.datadir.described, self.image_id) from None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        if self.datadir.tmpfile:
            try:
                self.fd = os.open(
                    ".", os.O_TMPFILE | os.O_WRONLY, 0o666, dir_fd=self.datadir.fd
                )
                return
            except OSError as exc:
                if exc.errno not in safefiles.NO_TMPFILE:
                    raise
                LOG.info(
                    "%s: no O_TMPFILE, using named staging files", self.datadir.path
                )
                self.datadir.tmpfile = False
        self._open_named()

    def _open_named(self) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(STAGING_DIR, 0o700, dir_fd=self.datadir.fd)
        self.staging_fd = safefiles.open_directory(STAGING_DIR, dir_fd=self.datadir.fd)
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

    def link(self) -> None:
        """Publish under its image id: Duplicate if it is taken, which is
        never replaced (safefiles.link_new)."""
        image_id = self.image_id
        try:
            safefiles.link_new(
                self.fd,
                image_id,
                dst_dir_fd=self.datadir.fd,
                src=self.name,
                src_dir_fd=self.staging_fd if self.name is not None else None,
            )
        except FileExistsError:
            raise exceptions.Duplicate(
                f"image {image_id} already exists in {self.datadir.path}"
            ) from None
        except OSError as exc:
            raise write_error(exc, self.datadir.described, image_id) from None
        self.published = True

    def close(self) -> None:
        if self.record_inode is not None and not self.published:
            forget_record(self.datadir.fd, self.record_inode)
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


def remove_stale_staging(datadir: DataDir) -> None:
    """Remove named staging files that no live writer holds."""
    try:
        staging_fd = safefiles.open_directory(STAGING_DIR, dir_fd=datadir.fd)
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
