"""Shared pieces of the stress scenarios."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsstore.backends.filesystem import STAGING_DIR, FilesystemStore
from tests.helpers import load_conf, write_conf

KiB = 1024
MiB = 1024 * KiB


@dataclasses.dataclass
class Result:
    """What one scenario did and what went wrong (``failures`` must be 0)."""

    name: str
    operations: int = 0
    failures: int = 0
    skipped: str = ""
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.failures += 1
        if len(self.problems) < 20:
            self.problems.append(problem)

    @property
    def ok(self) -> bool:
        return self.failures == 0


def sealed(seed: int, size: int) -> bytes:
    """Self-verifying data: 16 bytes of MD5, then the body they hash."""
    body_size = max(size - 16, 0)
    rng = random.Random(seed)
    body = rng.randbytes(body_size)
    return hashlib.md5(body).digest() + body


def is_sealed(data: bytes) -> bool:
    return len(data) >= 16 and hashlib.md5(data[16:]).digest() == data[:16]


def fs_store(
    workdir: Path, dirs: list[Path], staging: str = "tmpfile", **options: str
) -> FilesystemStore:
    conf = write_conf(
        workdir / "fsstore.conf",
        {
            "glance_store": {
                "filesystem_store_datadirs": [f"{d}:{i}" for i, d in enumerate(dirs)],
                "filesystem_store_datadir": "",
                **options,
            }
        },
    )
    store = FilesystemStore(load_conf(conf))
    store.configure()
    if staging == "named":
        for d in store.datadirs:
            d.tmpfile = False
    return store


def staging_files(dirs: list[Path]) -> list[str]:
    found = []
    for d in dirs:
        staging = d / STAGING_DIR
        if staging.is_dir():
            found += [str(staging / n) for n in os.listdir(staging)]
    return found


def images_in(dirs: list[Path]) -> dict[str, Path]:
    return {
        name: d / name
        for d in dirs
        for name in os.listdir(d)
        if not name.startswith(".fsstore-")
    }


def fork_child(
    work: Callable[..., object], *args: Any, close_in_child: int = -1
) -> int:
    """The pid of a child process that closes ``close_in_child`` (the pipe end
    it does not use), calls ``work(*args)`` and exits, however that ends
    (never back into the caller's code)."""
    pid = os.fork()
    if pid == 0:
        try:
            if close_in_child >= 0:
                os.close(close_in_child)
            work(*args)
        finally:
            os._exit(0)
    return pid


def read_reports(read: int) -> list[dict[str, Any]]:
    """The JSON lines workers wrote to a pipe, once every writer closed it."""
    with os.fdopen(read) as f:
        return [json.loads(line) for line in f]


# -- names planted in a cache directory ----------------------------------------

#: What may be planted where the cache expects one of its own files.
PLANT_KINDS = ("symlink", "dangling", "fifo", "directory", "hardlink")
#: What may be planted where the cache expects one of its subdirectories.
SUBDIR_PLANT_KINDS = ("symlink", "dangling", "fifo", "file")
#: Every name the cache opens, creates, truncates or renames over, by what
#: it is: ``IMG`` stands for the image id the operations use.
IMG = "img"
PER_IMAGE_PATHS = ("invalid/img", "incomplete/img", "queue/img", "img")
STATE_PATHS = (".fsstore-cache.lock", "cache.db", "cache.db-wal", "cache.db-shm")
SUBDIR_PATHS = ("invalid", "incomplete", "queue")


def slug(path: str) -> str:
    return path.replace("/", "_").lstrip(".") or "top"


class Victims:
    """Files outside a directory under attack, one set per planted name: a
    file worth destroying, a directory whose contents must stay, and a name
    that must never appear. ``changed()`` says which were touched."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._before: dict[str, tuple[object, ...]] = {}

    def file(self, label: str) -> Path:
        path = self.root / slug(label)
        if not path.exists():
            path.write_bytes(b"precious " + label.encode())
        return path

    def directory(self, label: str) -> Path:
        path = self.root / f"{slug(label)}.d"
        if not path.exists():
            path.mkdir()
            (path / "inside").write_bytes(b"precious too")
        return path

    def missing(self, label: str) -> Path:
        return self.root / f"{slug(label)}.missing"

    def snapshot(self) -> dict[str, tuple[object, ...]]:
        snap: dict[str, tuple[object, ...]] = {}
        for dirpath, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                data = Path(path).read_bytes() if name in files else b""
                snap[os.path.relpath(path, self.root)] = (
                    st.st_ino,
                    st.st_mode,
                    st.st_size,
                    st.st_mtime_ns,
                    hashlib.md5(data).hexdigest(),
                    tuple(sorted(os.listxattr(path, follow_symlinks=False))),
                )
        return snap

    def seal(self) -> None:
        """Take the picture ``changed()`` compares with."""
        self._before = self.snapshot()

    def changed(self) -> list[str]:
        after = self.snapshot()
        return sorted(
            name
            for name in set(self._before) | set(after)
            if self._before.get(name) != after.get(name)
        )


def plant(
    kind: str, at: Path, victims: Victims, label: str, subdir: bool | None = None
) -> None:
    """Put a ``kind`` at ``at`` (which must not exist), aimed at ``label``'s
    victims. Subdirectories (``subdir``; by default the cache's) take
    SUBDIR_PLANT_KINDS, files PLANT_KINDS."""
    subdir = label in SUBDIR_PATHS if subdir is None else subdir
    if kind == "symlink":
        at.symlink_to(victims.directory(label) if subdir else victims.file(label))
    elif kind == "dangling":
        at.symlink_to(victims.missing(label))
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "directory":
        at.mkdir()
        (at / "inside").write_bytes(b"planted")
    elif kind == "file":
        at.write_bytes(b"planted")
    elif kind == "hardlink":
        os.link(victims.file(label), at)
    else:
        raise AssertionError(kind)


def remove_planted(at: Path) -> None:
    """Take away what ``plant`` put at ``at`` (whatever became of it)."""
    if at.is_dir() and not at.is_symlink():
        for name in os.listdir(at):
            os.unlink(at / name)
        at.rmdir()
    else:
        with contextlib.suppress(FileNotFoundError):
            at.unlink()
