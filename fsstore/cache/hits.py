"""Recording a cache hit while the reader reads, finished before it closes.

A hit is a short write transaction (the sqlite driver) or a locked xattr
update (the xattr driver): tens of microseconds, about half the time it takes
to read a 1 MiB image. Doing it before the first read makes every hit that much
slower. Instead ``open_for_read`` hands the hit to one recording thread per
process and returns the file at once; the reader's ``close()`` waits for the
hit to be recorded. So the count is as exact as a synchronous one (no hit is
pending once the reader is closed), but on two or more cores it costs the
reader only the hand-off. A hit that cannot be recorded (the records' file
system is full, the database is damaged) is logged with its reason and never
raised: the reader has every byte of the image, and a fault in the records
must not turn a good read into an error.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable

LOG = logging.getLogger(__name__)

CountHit = Callable[[str, int], None]


def log_lost_hit(image_id: str, exc: BaseException) -> None:
    LOG.warning("hit on cached image %s not recorded: %s", image_id, exc)


class PendingHit:
    """One hit handed to the recording thread."""

    __slots__ = ("_done", "error", "image_id", "pid")

    def __init__(self, image_id: str) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.error: BaseException | None = None
        self.image_id = image_id
        self.pid = os.getpid()

    def set_done(self, error: BaseException | None) -> None:
        self.error = error
        self._done.release()

    def wait(self) -> None:
        # Race: a process forked while the hit was pending has the reader but
        # not the recording thread; the parent records it, the child must not
        # wait for a thread it does not have.
        if self.pid != os.getpid():
            return
        # Race: at interpreter exit the (daemon) recording thread may already
        # be stopped; a reader closed by the final collection must not hang
        # the exit waiting for it. Only then may a hit go unrecorded.
        if not self._done.acquire(blocking=not sys.is_finalizing()):
            return
        if self.error is not None:
            log_lost_hit(self.image_id, self.error)


Work = tuple[CountHit, str, int, PendingHit]


class HitRecorder:
    """The process's recording thread (started lazily, shared by all drivers)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Work] | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        # Race: fork() while another thread holds the start lock would leave
        # the child's copy locked for ever.
        os.register_at_fork(after_in_child=self._forget_parent)

    def _forget_parent(self) -> None:
        self._queue, self._pid, self._start_lock = None, 0, threading.Lock()

    def submit(self, count_hit: CountHit, image_id: str, fd: int) -> PendingHit:
        """Have ``count_hit(image_id, fd)`` called; ``fd`` must stay open until
        the returned hit is waited for."""
        pending = PendingHit(image_id)
        self._work_queue().put((count_hit, image_id, fd, pending))
        return pending

    def _work_queue(self) -> queue.SimpleQueue[Work]:
        # A thread does not survive fork(): the child starts its own.
        if self._pid != os.getpid():
            with self._start_lock:
                if self._pid != os.getpid():
                    work: queue.SimpleQueue[Work] = queue.SimpleQueue()
                    threading.Thread(
                        target=self._run,
                        args=(work,),
                        name="fsstore-cache-hits",
                        daemon=True,
                    ).start()
                    self._queue, self._pid = work, os.getpid()
        assert self._queue is not None
        return self._queue

    @staticmethod
    def _run(work: queue.SimpleQueue[Work]) -> None:
        while True:
            count_hit, image_id, fd, pending = work.get()
            try:
                count_hit(image_id, fd)
            except BaseException as exc:  # handed to the reader, logged there
                pending.set_done(exc)
            else:
                pending.set_done(None)
            del count_hit, pending  # hold no driver between hits


RECORDER = HitRecorder()


class HitCountingReader(io.BufferedReader):
    """A cached image open for reading; ``close()`` waits for its hit."""

    def __init__(self, fd: int, pending: PendingHit) -> None:
        super().__init__(io.FileIO(fd, "rb", closefd=True))
        self._pending: PendingHit | None = pending

    def close(self) -> None:
        pending = getattr(self, "_pending", None)  # None if __init__ failed
        self._pending = None
        try:
            if pending is not None:
                pending.wait()
        finally:
            super().close()
