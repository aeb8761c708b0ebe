"""The digests the filesystem store keeps with each image: extended
attributes of the image file, set on the staging file before it is linked,
so that a published image never exists without them.

    user.fsstore.md5            MD5, hex (Glance's checksum)
    user.fsstore.multihash      the multihash, hex (Glance's os_hash_value)
    user.fsstore.hashing_algo   its algorithm (Glance's os_hash_algo)
    user.fsstore.size           the size in bytes, decimal

Where the file system has no user extended attributes (ENOTSUP), the image
is stored without them and a scrub reports it unverifiable; this is logged
once per process.
"""

from __future__ import annotations

import errno
import logging
import os

from fsstore.hashing import KeptDigests

LOG = logging.getLogger(__name__)

PREFIX = "user.fsstore."
_FIELDS = ("md5", "multihash", "hashing_algo", "size")
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP}
_warned = False


def keep_digests(fd: int, kept: KeptDigests, required: bool = False) -> None:
    """Set the attributes on ``fd``; where the file system has none, log it
    once, or raise the OSError when they are ``required``."""
    global _warned
    values = (kept.checksum, kept.multihash, kept.hashing_algo, str(kept.size))
    try:
        for field, value in zip(_FIELDS, values, strict=True):
            os.setxattr(fd, PREFIX + field, value.encode("ascii"))
    except OSError as exc:
        if required or exc.errno not in _NO_XATTRS:
            raise
        if not _warned:
            LOG.warning(
                "the file system has no user extended attributes: images are "
                "stored without their digests, and a scrub cannot verify them"
            )
            _warned = True


def read_kept_digests(fd: int) -> KeptDigests | None:
    """What ``keep_digests`` kept on the open file ``fd``; None when any of
    it is missing or unreadable."""
    try:
        values = [os.getxattr(fd, PREFIX + field).decode("ascii") for field in _FIELDS]
        return KeptDigests(values[0], values[1], values[2], int(values[3]))
    except (OSError, ValueError):
        return None
