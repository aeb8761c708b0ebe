"""Stream shapes callers hand to fsstore, for the tests that attack them."""

from __future__ import annotations

import array
import hashlib
import io
from collections.abc import Iterator
from typing import Any

# Each name is a way to hand over the same bytes; see shaped().
# bytes/bytearray: iterables of new objects; reused-*: one buffer that each
# chunk overwrites; array: views of 4-byte items; file*: file-like objects,
# whole, read short, or handing out views of one buffer; rawio: a raw file.
SHAPES = [
    "bytes",
    "bytearray",
    "reused-view",
    "reused-bytearray",
    "array",
    "file",
    "file-trickle",
    "file-reused-view",
    "rawio",
]


class Recorder:
    """A verifier that hashes what it is shown (a copy: never holds a view).

    ``calls`` counts the updates; :meth:`md5` is the digest of all it saw.
    """

    def __init__(self) -> None:
        self._md5 = hashlib.md5()
        self.calls = 0

    def update(self, chunk: Any) -> None:
        """Hash ``chunk`` (any bytes-like object) at once, and count the call."""
        self.calls += 1
        self._md5.update(chunk)

    def md5(self) -> str:
        """The hex MD5 of every byte shown so far."""
        return self._md5.hexdigest()


def _reused_view(data: bytes, step: int) -> Iterator[memoryview]:
    # The readinto idiom: one buffer, each chunk a view of it.
    buf = bytearray(step)
    for pos in range(0, len(data), step):
        n = len(data[pos : pos + step])
        buf[:n] = data[pos : pos + step]
        yield memoryview(buf)[:n]
        buf[:] = b"\xee" * step  # what a reused buffer holds next


def _reused_bytearray(data: bytes, step: int) -> Iterator[bytearray]:
    buf = bytearray()
    for pos in range(0, len(data), step):
        buf[:] = data[pos : pos + step]
        yield buf
        buf[:] = b"\xdd" * len(buf)


def _arrays(data: bytes, step: int) -> Iterator[Any]:
    # Items of four bytes; a tail that does not fill one goes as bytes.
    step = max(4, step - step % 4)
    whole = len(data) - len(data) % 4
    for pos in range(0, whole, step):
        yield memoryview(array.array("i", data[pos : min(pos + step, whole)]))
    if whole < len(data):
        yield data[whole:]


class _Trickling(io.RawIOBase):
    """A file whose reads return at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._pos = data, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class _ReusedViewFile:
    """read() hands out views of one buffer that it overwrites next time."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos = data, 0
        self._buf = bytearray(step)

    def read(self, n: int = -1) -> memoryview:
        n = min(n, len(self._buf), len(self._data) - self._pos)
        self._buf[:] = b"\xcc" * len(self._buf)
        self._buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return memoryview(self._buf)[:n]


# A reader that calls read() this many times after it said "nothing" spins.
SPIN_LIMIT = 1000


class Spinning(AssertionError):
    """The reader kept calling read() after a None or a '' (it would spin)."""


class NoneRead:
    """A non-blocking stream: some data, then read() returns None.

    :param data: what the first read returns, whatever its size
    """

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data
        self._nones = 0

    def read(self, n: int = -1) -> bytes | None:
        """The data once, then None; Spinning if asked too often after that."""
        data, self._data = self._data, None
        if data is None:
            self._nones += 1
            if self._nones > SPIN_LIMIT:
                raise Spinning("read() called again and again after None")
        return data


class TextRead:
    """A file opened in text mode: read() returns str, '' at the end.

    :param text: what it reads
    """

    def __init__(self, text: str) -> None:
        self._f = io.StringIO(text)
        self._empty = 0

    def read(self, n: int = -1) -> str:
        """At most ``n`` characters; Spinning if asked too often after ''."""
        text = self._f.read(n)
        if not text:
            self._empty += 1
            if self._empty > SPIN_LIMIT:
                raise Spinning("read() called again and again after ''")
        return text


def shaped(data: bytes, shape: str, step: int) -> Any:
    """``data`` handed over as ``shape``, in pieces of about ``step`` bytes.

    :param data: the bytes to hand over
    :param shape: one of :data:`SHAPES`
    :param step: the size of a piece; less than 1 counts as 1
    :raises ValueError: for a shape not in :data:`SHAPES`
    """
    step = max(1, step)
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    if shape == "bytes":
        return iter(pieces)
    if shape == "bytearray":
        return iter(bytearray(p) for p in pieces)
    if shape == "reused-view":
        return _reused_view(data, step)
    if shape == "reused-bytearray":
        return _reused_bytearray(data, step)
    if shape == "array":
        return _arrays(data, step)
    if shape == "file":
        return io.BytesIO(data)
    if shape == "file-trickle":
        return io.BufferedReader(_Trickling(data, step), buffer_size=step)
    if shape == "file-reused-view":
        return _ReusedViewFile(data, step)
    if shape == "rawio":
        return _Trickling(data, step)
    raise ValueError(shape)
