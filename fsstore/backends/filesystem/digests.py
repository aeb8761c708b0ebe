"""The digests the filesystem store keeps with each image, set on the staging
file before it is linked, so that a published image never exists without
them.

Where the file system has user extended attributes, they are one
attribute of the image file itself::

    user.fsstore.digests        "<md5> <hashing_algo> <multihash> <size>":
                                MD5, hex (Glance's checksum), the multihash's
                                algorithm (os_hash_algo), the multihash, hex
                                (os_hash_value), the size in bytes, decimal

One attribute, set once: on ext4 a SHA-512 digest does not fit in the
inode's own attribute space, so the attributes take a block of their own,
and each further ``setxattr`` rewrites it (four separate attributes made
a 4 KiB add several times slower). Images kept by earlier releases carry
the four attributes ``user.fsstore.md5``, ``.multihash``,
``.hashing_algo`` and ``.size``; they are still read, never written.

Where it has none (ENOTSUP: vfat, ramfs, some NFS), a record file per image
in the data directory, named by the image file's inode number::

    <datadir>/.fsstore-digests/<inode>    {"id", "md5", "multihash",
                                           "hashing_algo", "size"}

Why by inode, not by image id: the record is written before the image is
linked, while two adds of one id may both be under way. Keyed by id, the
loser of the race (whose link fails) would already have replaced the
winner's record; keyed by the staging file's inode, each writer has its own,
since two live files never share an inode. The loser removes its record.

Protocol (record fallback). The record is written whole or not at all
(safefiles.replace_contents: a new file beside it, renamed over
``<inode>``): a record already there is stale (its file is gone, or the
inode would not be free), left by a crash or a failed removal. With
``filesystem_store_fsync`` the record and its directory are flushed before
the image is linked, so no crash leaves a published image without its
record. Deleting an image removes its record after the file.

Hard links. With attributes, every name of one file shares them. A record
names one image id, yet holds for every name of its inode: it is trusted
for another name as long as the id it names is still a link to that very
inode (so a second name made with ``ln`` verifies as the first does, and
``scrub --record`` never touches it). Deleting a name that has others
hands the record over to one of them; only the last name takes it along.

Races, each handled where named: a crash between the record and the link
leaves a record of an inode no image has (never read: records are only
looked up by the inode of an open image; replaced when the inode is reused
by an add); an inode reused by a file that no add wrote (copied in by hand)
meets a stale record, so a record also names its image id, and one naming
another id that is not a link to this inode is not trusted. A scrub that
keeps digests (``ScrubbedFile``) keeps them for the file it read, through
its open descriptor, and only if that file is still the one at the name,
unchanged, with nothing kept for it since it was opened.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from fsstore import exceptions
from fsstore.hashing import (
    MAX_RECORD_BYTES,
    KeptDigests,
    encode_record,
    kept_from_record,
    parse_record,
)
from fsstore.safefiles import open_directory, open_regular, replace_contents, same_inode
from fsstore.store import RESERVED_PREFIX, ImageRead
from fsstore.streams import FileChunkIterator

LOG = logging.getLogger(__name__)

PREFIX = "user.fsstore."
ATTRIBUTE = PREFIX + "digests"
RECORDS_DIR = RESERVED_PREFIX + "digests"
RECORD_MODE = 0o644
#: The attributes of earlier releases, read when ATTRIBUTE is absent.
LEGACY_FIELDS = ("md5", "multihash", "hashing_algo", "size")
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP}
# What kept_state reads, in order.
_STATE_NAMES = (ATTRIBUTE, *(PREFIX + field for field in LEGACY_FIELDS))


def keep_digests(
    fd: int,
    kept: KeptDigests,
    dir_fd: int,
    image_id: str,
    fsync: bool,
    first: bool = False,
) -> int | None:
    """Keep ``kept`` with the file ``fd`` that is, or is about to be linked
    as, ``image_id`` in the directory ``dir_fd``: as attributes, or where
    the file system has none, as a record. The inode whose record was
    written, or None when attributes were set.

    ``first``: the file has no digests, and another writer that gets there
    first wins (FileExistsError); for attributes the first one is set only
    if it is absent, which is atomic."""
    try:
        if first and _legacy(fd) is not None:
            raise OSError(errno.EEXIST, "digests are kept already")
        os.setxattr(
            fd, ATTRIBUTE, encode_attribute(kept), os.XATTR_CREATE if first else 0
        )
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(exc.errno, "digests are kept already") from None
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
        return parse_attribute(os.getxattr(fd, ATTRIBUTE))
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return _read_record(dir_fd, os.fstat(fd), image_id)
        if exc.errno != errno.ENODATA:
            return None
    try:
        legacy = _legacy(fd)
    except OSError:
        return None
    return None if legacy is None else parse_legacy(legacy)


def encode_attribute(kept: KeptDigests) -> bytes:
    """``kept`` as the value of ATTRIBUTE."""
    fields = (kept.checksum, kept.hashing_algo, kept.multihash, str(kept.size))
    return " ".join(fields).encode("ascii")


def parse_attribute(value: bytes) -> KeptDigests | None:
    """What ``encode_attribute`` wrote, or None for anything else."""
    try:
        fields = value.decode("ascii").split(" ")
    except UnicodeDecodeError:
        return None
    if len(fields) != 4 or not all(fields):
        return None
    md5, algo, multihash, size = fields
    if not size.isdigit():
        return None
    return KeptDigests(md5, multihash, algo, int(size))


def _legacy(fd: int) -> list[bytes | None] | None:
    """The four attributes of earlier releases (None for each one absent),
    or None when none is there."""
    values: list[bytes | None] = []
    for field in LEGACY_FIELDS:
        try:
            values.append(os.getxattr(fd, PREFIX + field))
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            values.append(None)
    return values if any(value is not None for value in values) else None


def parse_legacy(values: list[bytes | None]) -> KeptDigests | None:
    """The digests of the four attributes of earlier releases; None when
    any is missing or malformed."""
    if any(value is None for value in values):
        return None
    try:
        md5, multihash, algo, size = (bytes(v or b"").decode("ascii") for v in values)
    except UnicodeDecodeError:
        return None
    if not size.isdigit():
        return None
    return KeptDigests(md5, multihash, algo, int(size))


def kept_state(fd: int, dir_fd: int) -> tuple[object, ...]:
    """Everything kept for the open image file ``fd``, as it is stored (the
    attributes' values, or the record's bytes), to tell whether anything
    was kept for it between two looks."""
    values: list[object] = []
    for name in _STATE_NAMES:
        try:
            values.append(os.getxattr(fd, name))
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                return ("record", _record_body(dir_fd, os.fstat(fd).st_ino))
            values.append(None)
        if values[0] is not None:
            break  # kept: the legacy attributes are never written beside it
    return ("attributes", *values)


def kept_in_state(
    state: tuple[object, ...], dir_fd: int, st: os.stat_result, image_id: str
) -> KeptDigests | None:
    """What ``read_kept_digests`` would return, from the values one
    ``kept_state`` look of the file ``st`` read: no second look."""
    if state[0] == "record":
        body = state[1]
        return _record_digests(
            body if isinstance(body, bytes) else None, dir_fd, st, image_id
        )
    first = state[1]
    if isinstance(first, bytes):
        return parse_attribute(first)
    return parse_legacy([v if isinstance(v, bytes) else None for v in state[2:]])


def forget_record(dir_fd: int, inode: int) -> None:
    """Remove the record of ``inode``, if the data directory has records:
    after an add that did not publish, or the delete of its image. Never
    raises: it runs after the outcome is decided (while an add's error is
    being raised), and a record left behind is never read (see above)."""
    try:
        records = open_directory(RECORDS_DIR, dir_fd=dir_fd)
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


def forget_name(
    dir_fd: int, st: os.stat_result, image_id: str, fsync: bool = True
) -> None:
    """After the name ``image_id`` of the file ``st`` was deleted: remove
    the file's record if that was its last name in the directory, else hand
    it over to another name if it named this one. Never raises (see
    forget_record)."""
    if st.st_nlink <= 1:
        forget_record(dir_fd, st.st_ino)
        return
    try:
        record = parse_record(_record_body(dir_fd, st.st_ino) or b"")
        if not isinstance(record, dict) or record.get("id") != image_id:
            return  # another name's, or none: nothing to hand over
        kept = kept_from_record(record)
        other = _other_name(dir_fd, st)
        if kept is None or other is None:
            forget_record(dir_fd, st.st_ino)  # its other names are elsewhere
            return
        _write_record(dir_fd, st.st_ino, other, kept, fsync)
    except OSError as exc:
        LOG.error(
            "cannot hand the digest record %s/%d over to another name: %s",
            RECORDS_DIR,
            st.st_ino,
            exc,
        )


def _other_name(dir_fd: int, st: os.stat_result) -> str | None:
    # Only for a file with several links: a directory scan, which a delete
    # of a file with one link (every image an add wrote) never pays.
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.inode() == st.st_ino and not entry.name.startswith(
                RESERVED_PREFIX
            ):
                return entry.name
    return None


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
    records = open_directory(RECORDS_DIR, dir_fd=dir_fd)
    try:
        replace_contents(
            str(inode), body, mode=RECORD_MODE, fsync=fsync, dir_fd=records
        )
    finally:
        os.close(records)


def _record_body(dir_fd: int, inode: int) -> bytes | None:
    """The bytes of the record of ``inode`` (at most one more than a record
    can hold); None when there is none, or it is not a regular file."""
    try:
        records = open_directory(RECORDS_DIR, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        fd = open_regular(str(inode), dir_fd=records)
    except OSError:
        return None
    finally:
        os.close(records)
    try:
        return os.read(fd, MAX_RECORD_BYTES + 1)
    finally:
        os.close(fd)


def _read_record(dir_fd: int, st: os.stat_result, image_id: str) -> KeptDigests | None:
    return _record_digests(_record_body(dir_fd, st.st_ino), dir_fd, st, image_id)


def _record_digests(
    body: bytes | None, dir_fd: int, st: os.stat_result, image_id: str
) -> KeptDigests | None:
    """The digests of the record ``body`` of the file ``st``, if it is that
    file's record."""
    record = parse_record(body or b"")
    if not isinstance(record, dict):
        return None
    named = record.get("id")
    # Race: a stale record of a reused inode (see the module docstring).
    if named != image_id and not _links_to(dir_fd, named, st):
        return None
    return kept_from_record(record)


def _links_to(dir_fd: int, name: object, st: os.stat_result) -> bool:
    """Whether ``name`` is another name of the file ``st`` in the directory."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        return False
    if name.startswith(RESERVED_PREFIX):
        return False
    try:
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(there.st_mode) and same_inode(there, st)


def _unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether ``a`` and ``b`` are one file, its bytes unchanged between
    them (a write moves the modification time, any change the change
    time)."""
    return same_inode(a, b) and (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


class ScrubbedFile(ImageRead):
    """An image file opened for a scrub (FilesystemStore.read_image).

    It holds ``fd`` (and closes it) until closed: while it is open
    no other file can get its inode number, so the record it may write
    (keyed by inode) is this file's, and attributes set through it are
    this file's, whatever was linked at the name meanwhile.
    """

    def __init__(
        self,
        fd: int,
        opened: os.stat_result,
        dir_fd: int,
        image_id: str,
        uri: str,
        read_size: int,
        fsync: bool,
    ) -> None:
        """``opened``: ``fd``'s fstat, taken when it was opened."""
        self._fd, self._dir_fd, self._id, self._uri = fd, dir_fd, image_id, uri
        self._fsync = fsync
        self._opened = opened
        # The digests are taken from this one look: anything kept after it
        # is seen by keep() as kept since.
        self._state = kept_state(fd, dir_fd)
        kept = kept_in_state(self._state, dir_fd, opened, image_id)
        # Borrowed: fd stays open after the chunks, for keep().
        chunks = FileChunkIterator(fd, 0, opened.st_size, read_size, owned=False)
        super().__init__(chunks, kept)

    def kept_now(self) -> KeptDigests | None:
        return read_kept_digests(self._fd, self._dir_fd, self._id)

    def keep(self, kept: KeptDigests) -> None:
        changed = exceptions.Invalid(f"image {self._uri} changed while it was scrubbed")
        if kept.size != self._opened.st_size:
            raise changed
        if not _unchanged(self._opened, os.fstat(self._fd)):
            raise changed  # written to, or its attributes set, since it was opened
        try:
            there = os.stat(self._id, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise changed from None
        if not same_inode(there, self._opened):
            raise changed  # deleted, and maybe added again: not the file read
        kept_since = exceptions.Invalid(
            f"digests were kept for image {self._uri} while it was scrubbed"
        )
        if kept_state(self._fd, self._dir_fd) != self._state:
            raise kept_since
        # Race: another scrub keeping digests for this file between that
        # look and this write. Attributes: the first is only created, so one
        # of the two wins whole. A record: both are of these same unchanged
        # bytes, and the last rename wins whole.
        try:
            first = self._state[:2] == ("attributes", None)
            keep_digests(
                self._fd, kept, self._dir_fd, self._id, self._fsync, first=first
            )
        except FileExistsError:
            raise kept_since from None

    def close(self) -> None:
        super().close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
