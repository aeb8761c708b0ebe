"""File system calls with a deadline (``filesystem_store_timeout``)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from fsstore import exceptions

LOG = logging.getLogger(__name__)
T = TypeVar("T")


class TimedCalls:
    """Runs file system calls that can hang (a stalled NFS mount) with
    ``filesystem_store_timeout``, as glance_store does: in a pool of threads,
    waiting at most the timeout; with no timeout, in the caller's thread.

    Race: a call that timed out goes on in its thread until the file system
    answers; the pool is bounded, so a dead mount ties up at most its
    threads, and the threshold warns before they are all taken.
    """

    def __init__(
        self, store_name: str, timeout: int, size: int, threshold: int
    ) -> None:
        self.store_name, self.timeout = store_name, timeout
        self.size, self.threshold = size, threshold
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(size, "fsstore-fs-timed")
            if timeout
            else None
        )
        self._busy = 0
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            return fn(*args, **kwargs)
        with self._lock:
            self._busy += 1
            busy = self._busy
        if busy * 100 >= self.threshold * self.size:
            LOG.warning(
                "store %s: %d of %d threads busy with file system calls",
                self.store_name,
                busy,
                self.size,
            )
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise exceptions.StoreTimeout(
                f"store {self.store_name}: {getattr(fn, '__name__', 'a call')} did "
                f"not finish within filesystem_store_timeout ({self.timeout} s); "
                "check the storage's health",
                timeout=self.timeout,
            ) from None

    def _done(self, _future: object) -> None:
        with self._lock:
            self._busy -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
