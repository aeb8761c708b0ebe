"""Cleaning: reaping ``invalid/`` and crashed writers' ``incomplete/`` files.

Names are unlinked, never followed: a link put there goes, its target stays.
A name that cannot be removed (a directory put there) is logged and listed,
and the rest is reaped all the same.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from typing import TYPE_CHECKING, NamedTuple

from fsstore import locking
from fsstore.cache.layout import INCOMPLETE, INVALID

if TYPE_CHECKING:
    from fsstore.cache.layout import CacheLayout

LOG = logging.getLogger(__name__)


class Cleaned(NamedTuple):
    """What ``clean()`` did: files removed from ``invalid/`` and crashed
    writers' files from ``incomplete/``, and what it could not remove, one
    line each (``invalid/x: a directory``)."""

    invalid: int
    incomplete: int
    left: tuple[str, ...] = ()


def _cannot(left: list[str], sub: str, name: str, exc: OSError) -> None:
    why = "a directory" if exc.errno == errno.EISDIR else exc.strerror
    left.append(f"{sub}/{name}: {why}")
    LOG.warning("cache clean left %s/%s in place: %s", sub, name, why)


def clean(layout: CacheLayout, stall_time: int) -> Cleaned:
    """Reap ``invalid/`` and crashed writers' ``incomplete/`` files.

    :param layout: the cache directory.
    :param stall_time: seconds after which a live writer's file is logged
        as stalled (it is never removed).
    """
    left: list[str] = []
    invalid = _clean_invalid(layout, left)
    incomplete = _clean_incomplete(layout, stall_time, left)
    return Cleaned(invalid, incomplete, tuple(left))


def _clean_invalid(layout: CacheLayout, left: list[str]) -> int:
    """Unlink every name in ``invalid/``: the number unlinked."""
    removed = 0
    with layout.subdir(INVALID) as dir_fd:
        for name in os.listdir(dir_fd):
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                _cannot(left, INVALID, name, exc)
                continue
            removed += 1
    return removed


def _clean_incomplete(layout: CacheLayout, stall_time: int, left: list[str]) -> int:
    """Reap every ``incomplete/`` file no live writer holds: the number
    reaped. A writer's flock dies with it, so a crashed writer's file goes
    however young, and a live one's stays however old."""
    reaped_count = 0
    now = time.time()
    with layout.subdir(INCOMPLETE) as dir_fd:
        for name in os.listdir(dir_fd):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                reaped = _reap(name, st, dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                _cannot(left, INCOMPLETE, name, exc)
                continue
            if reaped == "reaped":
                reaped_count += 1
            elif reaped == "held" and now - st.st_mtime > stall_time:
                LOG.warning(
                    "%s: live writer stalled for %d s",
                    layout.path(name, INCOMPLETE),
                    now - st.st_mtime,
                )
    return reaped_count


def _reap(name: str, st: os.stat_result, dir_fd: int) -> str:
    if not stat.S_ISREG(st.st_mode):
        # A writer's lock file is always a regular file: a link or FIFO
        # here is nobody's, and unlinking the name leaves whatever it
        # points to alone.
        os.unlink(name, dir_fd=dir_fd)
        return "reaped"
    # Race: a writer that locks the file between our stat and our lock, or
    # one that finishes and unlinks it meanwhile; locking.reap settles it
    # (held: left; replaced: gone).
    return locking.reap(name, dir_fd=dir_fd)
