"""The scrub of small images beside its references (bench/growth.py): a bare
loop reading and hashing the files, the system calls a scrub cannot do
without (its floor), those calls with the scrub's own checks between them,
and those checks made through the store's interface."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

# Never through a link, never blocking on a FIFO: as the store opens.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def bare_read_and_hash(datadir: Path, names: list[str]) -> None:
    """The reference: each file read whole and hashed, MD5 and SHA-512."""
    for name in names:
        with open(datadir / name, "rb") as f:
            data = f.read()
        hashlib.md5(data).hexdigest()
        hashlib.sha512(data).hexdigest()


def _listed_names(dir_fd: int) -> list[tuple[str, int]]:
    """The regular files but the store's own, in id order, with their
    sizes: one ``stat`` each, as ``images()``."""
    with os.scandir(dir_fd) as entries:
        return sorted(
            (e.name, st.st_size)
            for e in entries
            if not e.name.startswith(".fsstore-")
            and stat.S_ISREG((st := e.stat(follow_symlinks=False)).st_mode)
        )


def scrub_floor(datadir: str) -> None:
    """A bare loop of a scrub's own system calls: the directory listed
    with each entry's type and size, in id order; then for each image the
    data directory's identity checked, the file opened and its type
    checked, its kept digests read, the file read whole and hashed, and
    the digests compared."""
    dir_fd = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY)
    bad = 0
    for name, _ in _listed_names(dir_fd):
        os.stat(datadir)
        fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
        try:
            size = os.fstat(fd).st_size
            kept = os.getxattr(fd, "user.fsstore.digests").split(b" ")
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        md5 = hashlib.md5(data).hexdigest().encode()
        sha = hashlib.sha512(data).hexdigest().encode()
        bad += (md5, sha, str(len(data)).encode()) != (kept[0], kept[2], kept[3])
    os.close(dir_fd)
    assert not bad


def checked_scrub_floor(datadir: str) -> None:
    """scrub_floor with the checks a scrub makes, by fsstore's own
    functions, and nothing else between the calls: each image listed with
    its location; the data directory at its path compared with the one
    opened; the file's type; the kept digests parsed; the digests of the
    kept algorithm computed and judged (the scrub's verdict_of); the
    verdict kept (ImageCheck). The least Python a scrub keeping those
    checks can have."""
    from fsstore.backends.filesystem.digests import ATTRIBUTE, parse_attribute
    from fsstore.hashing import new_multihash
    from fsstore.safefiles import same_inode
    from fsstore.scrub.image import verdict_of
    from fsstore.scrub.report import ImageCheck, Verdict
    from fsstore.store import ListedImage

    dir_fd = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY)
    ident = os.fstat(dir_fd)
    prefix = f"file://{datadir}/"
    listed = [ListedImage(n, prefix + n, size) for n, size in _listed_names(dir_fd)]
    checks = []
    for image in listed:
        if not same_inode(os.stat(datadir), ident):
            raise RuntimeError(f"{datadir} was replaced")
        fd = os.open(image.image_id, OPEN_FLAGS, dir_fd=dir_fd)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise RuntimeError(f"{image.location} is no file")
            kept = parse_attribute(os.getxattr(fd, ATTRIBUTE))
            data = os.pread(fd, opened.st_size, 0)
        finally:
            os.close(fd)
        assert kept is not None
        multihash = new_multihash(kept.hashing_algo)
        multihash.update(data)
        checksum = hashlib.md5(data, usedforsecurity=False).hexdigest()
        digests = {kept.hashing_algo: multihash.hexdigest()}
        verdict, detail = verdict_of(kept, None, len(data), checksum, digests)
        checks.append(
            ImageCheck(image.image_id, image.location, verdict, detail, len(data))
        )
    os.close(dir_fd)
    assert all(check.verdict is Verdict.OK for check in checks)


def interface_scrub_floor(store: Any) -> None:
    """checked_scrub_floor through the interface every store's scrub reads
    by, and nothing else: the images listed by ``images()``, each opened by
    ``read_image`` (its location checked, its file opened and its kept
    digests read by the store), its chunks hashed, judged by verdict_of,
    the verdict kept. No rereads, rate limit, callbacks or report: the
    least a scrub through ``Store.read_image`` costs."""
    from fsstore.hashing import new_multihash
    from fsstore.scrub.image import verdict_of
    from fsstore.scrub.report import ImageCheck, Verdict

    checks = []
    for image in sorted(store.images()):
        with store.read_image(image.location) as read:
            kept = read.kept
            assert kept is not None
            multihash = new_multihash(kept.hashing_algo)
            md5 = hashlib.md5(usedforsecurity=False)
            size = 0
            for chunk in read.chunks:
                multihash.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        digests = {kept.hashing_algo: multihash.hexdigest()}
        verdict, detail = verdict_of(kept, None, size, md5.hexdigest(), digests)
        checks.append(ImageCheck(image.image_id, image.location, verdict, detail, size))
    assert all(check.verdict is Verdict.OK for check in checks)
