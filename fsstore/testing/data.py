"""Data and streams the conformance suites add: deterministic payloads,
hostile ids, a stream that fails mid-way."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fsstore.store import Store

#: Ids every store must refuse as Invalid, leaving nothing behind: empty,
#: ``.`` and ``..``, paths, a NUL, over 255 bytes (ASCII or UTF-8), the
#: reserved prefix, not encodable.
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
    """``size`` deterministic, non-UTF-8 bytes.

    :param size: how many bytes
    :param seed: the same seed gives the same bytes, another other bytes
    """
    block = hashlib.sha512(f"fsstore-{seed}".encode()).digest() + bytes(range(128, 256))
    return (block * (size // len(block) + 1))[:size]


def read_all(store: Store, location: str, **kwargs: Any) -> bytes:
    """Every byte a get of ``location`` gives, checked against the length
    it says; the chunks are closed either way.

    :param store: the store to read from
    :param location: the location an add returned
    :param kwargs: Store.get's ``offset`` and ``chunk_size``
    """
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
    """A fresh image id, as Glance makes them (a UUID)."""
    return str(uuid.uuid4())


class FailingStream:
    """A file-like object that raises Boom after ``fail_after`` bytes.

    :param data: the bytes it gives until then
    :param fail_after: how many bytes it gives before it raises
    """

    class Boom(Exception):
        """The caller's stream failed; an add must raise it as it is."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data = data
        self.pos = 0
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        """At most ``n`` bytes (-1: all), short of ``fail_after``; then Boom."""
        if self.pos >= self.fail_after:
            raise self.Boom("the caller's stream failed")
        n = len(self.data) if n < 0 else n
        chunk = self.data[self.pos : min(self.pos + n, self.fail_after)]
        self.pos += len(chunk)
        return chunk
