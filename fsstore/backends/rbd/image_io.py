"""Writing one image's bytes into an open RBD image, and reading them back.

:class:`ImageWriter` is the state of one add and nothing else: the store
makes one per add (glance_store keeps its resize state on the driver, so a
reused driver fails the second add of unknown size). It gathers the
caller's chunks into writes of the object size (a chunk of exactly that
size as it is, no copy), issues them asynchronously with at most
``WRITES_IN_FLIGHT`` outstanding (memory is bounded by that many objects),
grows an image of unknown size geometrically ahead of the writes, and trims
it to the bytes written at the end. With thin provisioning, a write that is
all zeros is skipped: it stays a hole.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Iterator
from typing import Any

# Writes (of the object size) outstanding at once, per add: one object is
# written while the next is read and hashed. Each holds its bytes and
# librbd's copy of them (rbd_disable_zero_copy_writes), beside the objects
# the digest threads have yet to hash (fsstore.hashing.QUEUE_BYTES); a
# second one in flight costs two objects more and, the digests being the
# slower part, gains nothing measurable on one node (bench/rbd_cases.py).
WRITES_IN_FLIGHT = 1
# Reads (of the object size) kept ready ahead of the consumer, per read: one
# is read while the consumer takes the last (see RangeReader).
IN_FLIGHT = 1
# An image of unknown size grows ahead of the writes: first to this many
# objects, then doubling, by at most MAX_GROWTH a step. Each resize waits
# for the writes in flight and updates the image's header (about 20 ms on
# one node), while the final trim of what was not written is cheap (those
# objects never existed): few large steps rather than many small ones.
FIRST_GROWTH = 64
MAX_GROWTH = 8 << 30


class ImageWriter:
    """One add's writes into ``image`` (open, writable, ``capacity`` bytes).

    :param image: an open ``rbd.Image``
    :param chunk_size: the object size: each write is that long (the last
        may be shorter) and starts at a multiple of it
    :param capacity: the image's size now; grown when a write needs it
    :param thin: skip writes that are all zeros
    """

    def __init__(self, image: Any, chunk_size: int, capacity: int, thin: bool) -> None:
        self.image = image
        self.chunk_size = chunk_size
        self.capacity = capacity
        self.thin = thin
        self.offset = 0  # bytes handed to writes so far
        self._parts: list[memoryview] = []  # less than an object's worth
        self._parted = 0  # their length
        self._slots = threading.Semaphore(WRITES_IN_FLIGHT)
        self._pending: dict[int, bytes] = {}  # by offset
        self._guard = threading.Lock()
        self._error: int = 0

    def add(self, chunk: bytes) -> None:
        """Take ``chunk`` (``bytes``, kept as it is until written); each full
        object's worth is written out.

        A chunk of exactly the object size at an object's start (a file
        read by the object size) is written as it is: no copy, and the
        write shares its memory with the digest threads. Otherwise the
        pieces of an object are joined once, when it is whole.
        """
        size = self.chunk_size
        if not self._parted and len(chunk) == size:
            self._write(chunk)
            return
        view, start = memoryview(chunk), 0
        while self._parted + len(view) - start >= size:
            need = size - self._parted
            self._parts.append(view[start : start + need])
            start += need
            block, self._parts, self._parted = b"".join(self._parts), [], 0
            self._write(block)
        if start < len(view):
            self._parts.append(view[start:])
            self._parted += len(view) - start

    def finish(self) -> int:
        """Write what is left, wait for every write, trim the image to the
        bytes written; their count."""
        if self._parted:
            block, self._parts, self._parted = b"".join(self._parts), [], 0
            self._write(block)
        self.wait()
        if self.capacity != self.offset:
            self.image.resize(self.offset)
            self.capacity = self.offset
        return self.offset

    def wait(self) -> None:
        """Wait for the writes in flight; raise the first one's error."""
        self.drain()
        self._raise()

    def drain(self) -> None:
        """Wait for the writes in flight, their errors ignored: before an
        abandoned add closes and removes its image."""
        for _ in range(WRITES_IN_FLIGHT):
            self._slots.acquire()
        for _ in range(WRITES_IN_FLIGHT):
            self._slots.release()

    def _raise(self) -> None:
        if self._error < 0:
            self.image.flush()  # raises the error librbd kept, if any
            raise OSError(-self._error, f"RBD write failed (errno {-self._error})")

    def _write(self, block: bytes) -> None:
        offset = self.offset
        self.offset += len(block)
        if self.offset > self.capacity:
            self._grow(self.offset)
        if self.thin and block == bytes(len(block)):
            return
        self._raise()
        self._slots.acquire()
        # The block stays referenced until its write completes. Race: the
        # write may complete before aio_write returns, so it is recorded
        # first, by its offset, which the completion is told.
        with self._guard:
            self._pending[offset] = block
        try:
            self.image.aio_write(block, offset, functools.partial(self._done, offset))
        except BaseException:
            with self._guard:
                self._pending.pop(offset, None)
            self._slots.release()
            raise

    def _done(self, offset: int, completion: Any) -> None:
        value = completion.get_return_value()
        with self._guard:
            self._pending.pop(offset, None)
            if value < 0 and not self._error:
                self._error = value
        self._slots.release()

    def _grow(self, needed: int) -> None:
        """Grow the image ahead of the writes: to FIRST_GROWTH objects, or
        double it (at most MAX_GROWTH more), and at least to ``needed``."""
        step = min(max(self.capacity, FIRST_GROWTH * self.chunk_size), MAX_GROWTH)
        self.capacity = max(needed, self.capacity + step)
        self.image.resize(self.capacity)


class RangeReader:
    """``length`` bytes of an open image from ``offset``, in reads of at
    most ``chunk_size``, made by a thread of its own that keeps up to
    ``IN_FLIGHT`` chunks read ahead of the consumer (memory: that many
    chunks and the one being read). Owns the image and closes it at the
    end, or when closed before, once the thread's read in progress is done.

    Synchronous reads in a thread, not ``aio_read``: measured on one node
    (bench/rbd_cases.py), the binding's asynchronous reads cost about 160,000
    page faults per GiB read, whatever the depth or the allocator's
    settings, where one synchronous read at a time costs about 12,000, and
    were 10 to 15% slower than glance_store's plain loop of reads.
    """

    def __init__(self, image: Any, offset: int, length: int, chunk_size: int) -> None:
        self._image = image
        self._ready: collections.deque[bytes | BaseException | None] = (
            collections.deque()
        )
        self._changed = threading.Condition()
        self._closing = False
        _warm_allocator(min(chunk_size, length))
        self._thread = threading.Thread(
            target=self._read_all,
            args=(offset, offset + length, chunk_size),
            name="rbd-read",
            daemon=True,
        )
        self._thread.start()

    def _read_all(self, position: int, end: int, chunk_size: int) -> None:
        """The thread: each chunk in order, then None (the end), or what
        a read raised."""
        image = self._image
        try:
            while position < end:
                data = image.read(position, min(chunk_size, end - position))
                if not data:
                    raise OSError(f"RBD read at {position} returned nothing")
                position += len(data)
                if not self._hand_over(data):
                    return  # closed before the end
        except BaseException as exc:  # the consumer's to raise
            self._hand_over(exc)
            return
        self._hand_over(None)

    def _hand_over(self, item: bytes | BaseException | None) -> bool:
        """Put ``item`` in line once there is room; False when closed."""
        with self._changed:
            while len(self._ready) >= IN_FLIGHT and not self._closing:
                self._changed.wait()
            if self._closing:
                return False
            self._ready.append(item)
            self._changed.notify_all()
            return True

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._changed:
            while not self._ready and not self._closing:
                self._changed.wait()
            item = self._ready.popleft() if self._ready else None
            self._changed.notify_all()
        if isinstance(item, bytes):
            return item
        self.close()
        if item is None:
            raise StopIteration
        raise item

    def close(self) -> None:
        """Stop reading, wait for the read in progress, then close the image."""
        with self._changed:
            self._closing = True
            self._ready.clear()
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
        image, self._image = self._image, None
        if image is not None:
            image.close()


def _warm_allocator(size: int) -> None:
    """Free one block of ``size`` bytes, so that the reads' buffers of that
    size come from reused memory.

    glibc serves a large allocation from a fresh mapping, page-faulted in as
    it is written (2,048 faults for 8 MiB), until it has freed one mapping
    of that size; from then on it reuses freed memory. The binding
    allocates each read's buffer anew, so without this a process's first
    gets fault in every byte they read (measured: 262,000 faults per GiB,
    twice the time). ``bytes(size)`` maps zeroed pages without touching
    them: it costs no fault itself."""
    bytes(size)  # freed at once
