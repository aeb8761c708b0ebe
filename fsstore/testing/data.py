"""Data and streams the conformance suites add: deterministic payloads,
hostile ids, a stream that fails mid-way."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fsstore.store import Store

HOSTILE_IDS = [
    "",
    ".",
    "..",
    "../escape",
    "a/b",
    "/etc/passwd",
    "nul\0byte",
    "x" * 256,
    "é" * 128,  # 256 bytes of UTF-8
    ".fsstore-staging",
    "\udcff",  # a lone surrogate: not encodable
]


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic, non-UTF-8 bytes."""
    block = hashlib.sha512(f"fsstore-{seed}".encode()).digest() + bytes(range(128, 256))
    return (block * (size // len(block) + 1))[:size]


def read_all(store: Store, location: str, **kwargs: Any) -> bytes:
    chunks, length = store.get(location, **kwargs)
    try:
        data = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    assert len(data) == length, f"get() said {length} bytes but gave {len(data)}"
    return data


def new_id() -> str:
    return str(uuid.uuid4())


class FailingStream:
    """A file-like object that raises after ``fail_after`` bytes."""

    class Boom(Exception):
        pass

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data = data
        self.pos = 0
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.fail_after:
            raise self.Boom("the caller's stream failed")
        n = len(self.data) if n < 0 else n
        chunk = self.data[self.pos : min(self.pos + n, self.fail_after)]
        self.pos += len(chunk)
        return chunk


#: Builds a store, in whatever process calls it. The suite pickles one into
