"""Reading a long span of an object as parts fetched in parallel, in order.

The span is cut into parts of ``part_size`` bytes, each fetched whole by its
own ranged request in a pool of ``threads`` threads, and the caller gets the
parts' chunks in order: an engine that serves several requests at once
faster than one (more connections, more of its own threads) serves the
read faster.

Memory is bounded whatever the size: a part takes its slot when its fetch
is submitted and gives it back only once the caller has taken its last
chunk, so at most ``threads`` parts, each at most ``part_size`` bytes, are
held or fetched at once. A part's error (a fault past the resumes, the
object replaced) is raised where the caller reaches that part, and ends
the read. Closing the reader stops every part at its next chunk and waits
for their threads: nothing keeps reading, no connection is left open.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeAlias

from fsstore.tracing import trace


class PartBody(Protocol):
    """The chunks of one part, closable before the end."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


# open_part(first byte, last byte) -> the part's body, already requested
OpenPart = Callable[[int, int], PartBody]

Chunks: TypeAlias = "collections.deque[bytes]"


class PartReader:
    """The chunks of bytes ``[start, end]`` of one object, read in parts.

    ``first`` is the body of the first part (bytes ``start`` to ``start +
    part_size - 1``), already requested; ``open_part`` requests the others.
    """

    def __init__(
        self,
        first: PartBody,
        open_part: OpenPart,
        span: tuple[int, int],
        part_size: int,
        threads: int,
    ) -> None:
        self._first = first
        self._open_part = open_part
        self._start, self._end = span
        self._part_size = part_size
        self._count = -(-(self._end - self._start + 1) // part_size)
        self._stopped = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            min(threads, self._count), thread_name_prefix="fsstore-s3-read"
        )
        self._parts: collections.deque[concurrent.futures.Future[Chunks]]
        self._parts = collections.deque()
        self._submitted = 0
        self._current: Chunks | None = None
        for _ in range(min(threads, self._count)):
            self._submit()

    def _submit(self) -> None:
        index = self._submitted
        self._submitted += 1
        self._parts.append(self._pool.submit(self._fetch, index))

    def _fetch(self, index: int) -> Chunks:
        trace("s3.read.part")
        if index == 0:
            body = self._first
        elif self._stopped.is_set():  # closed before this part began
            return collections.deque()
        else:
            first = self._start + index * self._part_size
            body = self._open_part(
                first, min(first + self._part_size, self._end + 1) - 1
            )
        chunks: Chunks = collections.deque()
        try:
            for chunk in body:
                if self._stopped.is_set():
                    break
                chunks.append(chunk)
        finally:
            body.close()
        return chunks

    def __iter__(self) -> PartReader:
        return self

    def __next__(self) -> bytes:
        while True:
            if self._current:
                return self._current.popleft()
            if self._current is not None:  # the caller took a whole part
                self._current = None
                trace("s3.read.release")
                if self._submitted < self._count:
                    self._submit()
            if not self._parts:
                self.close()
                raise StopIteration
            try:
                self._current = self._parts.popleft().result()
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Stop the parts in flight, wait for their threads, drop what they held."""
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._first.close()  # when its part never started
        self._parts.clear()
        self._current = None
