"""The 4 KiB add beside its references, in one process, operation by
operation (bench/sides.py fsstore-small-vs-plain): a plain exclusive
create, the system calls an add cannot do without (its floor), and those
calls with the add's own checks between them."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable

from sides import fsstore_store


def plain_add(directory: str, name: str, data: bytes) -> None:
    """The reference small add: both digests and a plain exclusive create."""
    md5, sha = hashlib.md5(data), hashlib.sha512(data)
    with open(os.path.join(directory, name), "xb") as f:
        f.write(data)
    md5.hexdigest(), sha.hexdigest()


def floor_add(directory: str, dir_fd: int, name: str, data: bytes) -> None:
    """The system calls an fsstore add of a small image cannot do without,
    bare, with both digests: the data directory's identity checked, an
    anonymous file written, its digests kept in one attribute, then linked
    under its name (no fsync, as the other sides)."""
    md5, sha = hashlib.md5(data), hashlib.sha512(data)
    os.stat(directory)
    flags = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC
    fd = os.open(".", flags, 0o666, dir_fd=dir_fd)
    try:
        os.write(fd, data)
        value = f"{md5.hexdigest()} sha512 {sha.hexdigest()} {len(data)}"
        os.setxattr(fd, "user.fsstore.digests", value.encode())
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
    finally:
        os.close(fd)


def checked_floor_add(directory: str) -> Callable[[str, io.BytesIO, int], None]:
    """floor_add with the checks an fsstore add of a small image makes, by
    fsstore's own functions, and nothing else between the calls: the id,
    the size and the algorithm; the data read whole, its type and size;
    the data directory at its path compared with the one opened; the
    result built. The least Python an add keeping those checks can have."""
    from fsstore import exceptions
    from fsstore.backends.filesystem.digests import ATTRIBUTE, encode_attribute
    from fsstore.hashing import KeptDigests, new_multihash
    from fsstore.ids import validate_image_id, validate_size
    from fsstore.safefiles import link_new, same_inode, write_all
    from fsstore.store import AddResult

    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    ident = os.fstat(dir_fd)
    flags = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC

    def add(name: str, src: io.BytesIO, declared: int) -> None:
        validate_image_id(name)
        size = validate_size(declared)
        multihash = new_multihash("sha512")
        data = src.read(size + 1)
        if type(data) is not bytes or len(data) != size or src.read(size + 1):
            raise exceptions.Invalid(f"image {name}: not {size} bytes")
        md5 = hashlib.md5(data, usedforsecurity=False)
        multihash.update(data)
        kept = KeptDigests(md5.hexdigest(), multihash.hexdigest(), "sha512", size)
        if not same_inode(os.stat(directory), ident):
            raise exceptions.BackendException("the data directory was replaced")
        fd = os.open(".", flags, 0o666, dir_fd=dir_fd)
        try:
            write_all(fd, data)
            os.setxattr(fd, ATTRIBUTE, encode_attribute(kept))
            link_new(fd, name, dst_dir_fd=dir_fd)
        finally:
            os.close(fd)
        AddResult(directory + name, size, kept.checksum, kept.multihash, {})

    return add


def fsstore_small_vs_plain(
    images: str, plain: str, floor: str, checked: str, count: str, size: str
) -> dict:
    """fsstore adds, plain_add, floor_add and checked_floor_add, in turn,
    fsync off; latencies of each."""
    store = fsstore_store([images], "false")
    data = os.urandom(int(size))
    floor_fd = os.open(floor, os.O_RDONLY | os.O_DIRECTORY)
    checked_add = checked_floor_add(checked)
    latencies: dict[str, list[float]] = {
        "fsstore": [], "plain": [], "floor": [], "checked": []
    }  # fmt: skip
    sides = list(latencies)
    for i in range(int(count)):
        for who in sides[i % 4 :] + sides[: i % 4]:
            start = time.perf_counter()
            if who == "fsstore":
                store.add(f"s{i}", io.BytesIO(data), len(data))
            elif who == "plain":
                plain_add(plain, f"p{i}", data)
            elif who == "floor":
                floor_add(floor, floor_fd, f"f{i}", data)
            else:
                checked_add(f"c{i}", io.BytesIO(data), len(data))
            latencies[who].append(time.perf_counter() - start)
    os.close(floor_fd)
    return latencies
