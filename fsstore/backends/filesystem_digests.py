"""The digests the filesystem store keeps with each image, set on the staging
file before it is linked, so that a published image never exists without
them.

Where the file system has user extended attributes, they are attributes of
the image file itself::

    user.fsstore.md5            MD5, hex (Glance's checksum)
    user.fsstore.multihash      the multihash, hex (Glance's os_hash_value)
    user.fsstore.hashing_algo   its algorithm (Glance's os_hash_algo)
    user.fsstore.size           the size in bytes, decimal

Where it has none (ENOTSUP: vfat, ramfs, some NFS), a record file per image
in the data directory, named by the image file's inode number::

    <datadir>/.fsstore-digests/<inode>    {"id", "md5", "multihash",
                                           "hashing_algo", "size"}

Why by inode, not by image id: the record is written before the image is
linked, while two adds of one id may both be under way. Keyed by id, the
loser of the race (whose link fails) would already have replaced the
winner's record; keyed by the staging file's inode, each writer has its own,
since two live files never share an inode. The loser removes its record.

Protocol (record fallback). The record is written under a temporary name
and renamed over ``<inode>``: a record already there is stale (its file is
gone, or the inode would not be free), left by a crash or a failed removal.
With ``filesystem_store_fsync`` the record and its directory are flushed
before the image is linked, so no crash leaves a published image without its
record. Deleting an image removes its record after the file.

Races, each handled where named: a crash between the record and the link
leaves a record of an inode no image has (never read: records are only
looked up by the inode of an open image; replaced when the inode is reused
by an add); an inode reused by a file that no add wrote (copied in by hand)
meets a stale record, so a record also names its image id, and one naming
another id is not trusted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat

from fsstore.hashing import (
    MAX_RECORD_BYTES,
    KeptDigests,
    encode_record,
    kept_from_record,
    parse_record,
)
from fsstore.pipeline import write_all
from fsstore.store import RESERVED_PREFIX

LOG = logging.getLogger(__name__)

PREFIX = "user.fsstore."
RECORDS_DIR = RESERVED_PREFIX + "digests"
_FIELDS = ("md5", "multihash", "hashing_algo", "size")
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def keep_digests(
    fd: int, kept: KeptDigests, dir_fd: int, image_id: str, fsync: bool
) -> int | None:
    """Keep ``kept`` with the file ``fd`` that is, or is about to be linked
    as, ``image_id`` in the directory ``dir_fd``: as attributes, or where
    the file system has none, as a record. The inode whose record was
    written, or None when attributes were set."""
    values = (kept.checksum, kept.multihash, kept.hashing_algo, str(kept.size))
    try:
        for field, value in zip(_FIELDS, values, strict=True):
            os.setxattr(fd, PREFIX + field, value.encode("ascii"))
    except OSError as exc:
        if exc.errno not in _NO_XATTRS:
            raise
    else:
        return None
    inode = os.fstat(fd).st_ino
    _write_record(dir_fd, inode, image_id, kept, fsync)
    return inode


def read_kept_digests(fd: int, dir_fd: int, image_id: str) -> KeptDigests | None:
    """What ``keep_digests`` kept for the open image file ``fd``; None when
    any of it is missing or malformed."""
    try:
        values = [os.getxattr(fd, PREFIX + field).decode("ascii") for field in _FIELDS]
        return KeptDigests(values[0], values[1], values[2], int(values[3]))
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return _read_record(dir_fd, os.fstat(fd).st_ino, image_id)
        return None
    except ValueError:
        return None


def forget_record(dir_fd: int, inode: int) -> None:
    """Remove the record of ``inode``, if the data directory has records:
    after an add that did not publish, or the delete of its image. Never
    raises: it runs after the outcome is decided (while an add's error is
    being raised), and a record left behind is never read (see above)."""
    try:
        records = os.open(RECORDS_DIR, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        LOG.error("cannot open %s to remove a digest record: %s", RECORDS_DIR, exc)
        return
    try:
        os.unlink(str(inode), dir_fd=records)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOG.error("cannot remove the digest record %s/%d: %s", RECORDS_DIR, inode, exc)
    finally:
        os.close(records)


def _write_record(
    dir_fd: int, inode: int, image_id: str, kept: KeptDigests, fsync: bool
) -> None:
    body = encode_record(kept, id=image_id)
    try:
        os.mkdir(RECORDS_DIR, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        pass
    else:
        if fsync:  # its entry durable before any image linked beside it
            os.fsync(dir_fd)
    records = os.open(RECORDS_DIR, _DIR_FLAGS, dir_fd=dir_fd)
    temporary = f"{inode}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            0o644,
            dir_fd=records,
        )
        try:
            write_all(fd, body)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, str(inode), src_dir_fd=records, dst_dir_fd=records)
        if fsync:
            os.fsync(records)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=records)
        raise
    finally:
        os.close(records)


def _read_record(dir_fd: int, inode: int, image_id: str) -> KeptDigests | None:
    try:
        records = os.open(RECORDS_DIR, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        fd = os.open(
            str(inode), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=records
        )
    except OSError:
        return None
    finally:
        os.close(records)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        body = os.read(fd, MAX_RECORD_BYTES + 1)
    finally:
        os.close(fd)
    record = parse_record(body)
    # Race: a stale record of a reused inode (see the module docstring).
    if not isinstance(record, dict) or record.get("id") != image_id:
        return None
    return kept_from_record(record)
