"""The write pipeline for large images: read, two digests and a writer at once.

::

    caller's thread        pool of 4 page-aligned 4 MiB buffers
    ---------------        ------------------------------------
    readinto(buffer)  -->  md5 thread        (hashlib releases the GIL)
                      -->  multihash thread
                      -->  writer thread     pwrite(), O_DIRECT where allowed

A buffer goes back to the pool when all three are done with it, so memory is
bounded by the pool. Writing with O_DIRECT from aligned buffers skips the page
cache's copy and the writeback that an fsync would otherwise wait for; the
unaligned tail, and file systems that refuse O_DIRECT (tmpfs), fall back to
buffered writes. The caller fsyncs and publishes as for any image.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import queue
import threading
from typing import Any

from fsstore.safefiles import write_all
from fsstore.streams import CheckedSource

BUFFER_SIZE = 4 * 1024 * 1024
BUFFERS = 4
ALIGN = 4096


def enable_direct_io(fd: int) -> bool:
    """Turn on O_DIRECT for ``fd``; False where the file system refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError:
        return False
    return True


class WriteFailed(Exception):
    """Writing to the file failed; ``oserror`` says how."""

    def __init__(self, oserror: OSError) -> None:
        super().__init__(str(oserror))
        self.oserror = oserror


def _disable_direct_io(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)


class WritePipeline:
    """Stream ``data`` into ``fd`` while updating ``digests``; see module doc."""

    def __init__(self, fd: int, digests: list[Any], direct: bool) -> None:
        self.fd = fd
        self.direct = direct and enable_direct_io(fd)
        self.buffers = [mmap.mmap(-1, BUFFER_SIZE) for _ in range(BUFFERS)]
        self.views = [memoryview(b) for b in self.buffers]
        self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(BUFFERS):
            self.free.put(i)
        self.users = [0] * BUFFERS
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.offset = 0
        self._current: int | None = None  # the buffer being filled
        self._filled = 0
        self.queues: list[queue.SimpleQueue[tuple[int, int, int] | None]] = []
        self.threads = []
        for work in [*[self._digest_worker(d) for d in digests], self._write]:
            q: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
            t = threading.Thread(target=self._run, args=(q, work), daemon=True)
            self.queues.append(q)
            self.threads.append(t)
            t.start()

    # -- workers -------------------------------------------------------------

    def _digest_worker(self, digest: Any) -> Any:
        def work(i: int, n: int, offset: int) -> None:
            digest.update(self.views[i][:n])

        return work

    def _write(self, i: int, n: int, offset: int) -> None:
        view = self.views[i][:n]
        if self.direct:
            aligned = n - n % ALIGN
            done = 0
            while done < aligned:
                written = os.pwrite(self.fd, view[done:aligned], offset + done)
                if written % ALIGN:  # a short, unaligned write: go buffered
                    done += written
                    break
                done += written
            if done < n:
                _disable_direct_io(self.fd)
                self.direct = False
            view, offset = view[done:], offset + done
        write_all(self.fd, view, offset)

    def _run(self, q: Any, work: Any) -> None:
        while (item := q.get()) is not None:
            i, n, offset = item
            try:
                if self.error is None:
                    work(i, n, offset)
            except BaseException as exc:
                # Its traceback's frames hold views of our buffers; drop them
                # so that the buffers can be unmapped.
                self.error = exc.with_traceback(None)
            finally:
                with self.lock:
                    self.users[i] -= 1
                    if self.users[i] == 0:
                        self.free.put(i)

    # -- the caller's side -----------------------------------------------------

    def _dispatch(self, i: int, n: int) -> None:
        self.users[i] = len(self.queues)
        for q in self.queues:
            q.put((i, n, self.offset))
        self.offset += n

    def _raise_worker_error(self) -> None:
        if self.error is not None:
            if isinstance(self.error, OSError):
                raise WriteFailed(self.error) from self.error
            raise self.error

    def _take(self) -> int:
        i = self.free.get()
        self._raise_worker_error()
        return i

    def feed(self, chunk: Any) -> None:
        """Copy ``chunk`` into the buffers, handing on every full one."""
        view = memoryview(chunk).cast("B")
        while view:
            if self._current is None:
                self._current, self._filled = self._take(), 0
            take = min(len(view), BUFFER_SIZE - self._filled)
            start = self._filled
            self.views[self._current][start : start + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == BUFFER_SIZE:
                self._dispatch(self._current, self._filled)
                self._current = None

    def finish(self) -> None:
        """Write out the last buffer, stop the workers, raise their error."""
        if self._current is not None:
            if self._filled:
                self._dispatch(self._current, self._filled)
            else:
                self.free.put(self._current)
            self._current = None
        self.close()
        self._raise_worker_error()

    def drain(self, source: CheckedSource) -> None:
        """Feed the rest of ``source``: read straight into the buffers where
        it can ``readinto``, else copied in from its views. Errors of the
        caller's stream propagate as they are; a failed write raises
        WriteFailed. ``finish`` writes out the last buffer."""
        if not source.can_readinto:
            for view in source.views():
                self.feed(view)
            return
        while True:
            if self._current is None:
                self._current, self._filled = self._take(), 0
            start = self._filled
            n = source.readinto(self.views[self._current][start:])
            if n == 0:
                return
            self._filled += n
            if self._filled == BUFFER_SIZE:
                self._dispatch(self._current, self._filled)
                self._current = None

    def close(self) -> None:
        """Stop the workers (after the queued buffers) and free the buffers."""
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join()
        self.queues, self.threads = [], []
        for v in self.views:
            v.release()
        for b in self.buffers:
            with contextlib.suppress(BufferError):  # still viewed: the GC unmaps
                b.close()
        self.views, self.buffers = [], []
