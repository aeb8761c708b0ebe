"""Removing entries: deletes, and eviction in the policy's order.

Every function here runs under the cache lock (``CacheDirectory.lock()``),
which its caller holds: the set of entries changes only under it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsstore.cache.directory import CacheDirectory

LOG = logging.getLogger(__name__)


def remove(directory: CacheDirectory, image_ids: Sequence[str]) -> int:
    """Unlink, then forget: records overstate the files, never understate.
    The number of files removed. Only an entry file is unlinked: whatever
    else is under an entry's name (a directory, a link, a stray the records
    driver does not count) is left, and its record, if any, forgotten.

    :param directory: the cache directory, its lock held.
    :param image_ids: the entries to remove.
    """
    removed = 0
    for image_id in image_ids:
        path = directory.path(image_id)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            if not directory.records.is_entry(path):
                continue
            # Race: a reader that opened the entry keeps reading it; the
            # unlink only takes its name.
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed += 1
    if image_ids:
        directory.records.delete(image_ids)
    return removed


def evict_for(directory: CacheDirectory, incoming: int) -> tuple[int, int]:
    """Evict, in the policy's order, until the entries and ``incoming``
    bytes fit the limit together: (files, bytes). One pass over a snapshot:
    always terminates.

    :param directory: the cache directory, its lock held.
    :param incoming: the size of the entry about to be published (0 to
        bring the cache under its limit).
    """
    total = directory.records.total_size()
    # Lazy: the policy reads the records only if the total does not fit,
    # so the common case reads nothing but the total.
    entries = (entry for read in (directory.entries,) for entry in read())
    victims, freed = directory.policy.plan(entries, total, incoming)
    remove(directory, [entry.image_id for entry in victims])
    if victims:
        LOG.debug("evicted %d entries (%d bytes)", len(victims), freed)
    return len(victims), freed
