"""Shared pieces of the stress scenarios."""

from __future__ import annotations

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
