"""``check``: the records against the files, and the limit against both.

The records driver reconciles its records with the entry files (see
``RecordsDriver.check``); this adds what only the directory knows: whether
the recorded total is over the policy's limit (a smaller
``image_cache_max_size`` than the last run's, a Glance cache adopted, records
rebuilt from files). With ``fix``, the cache is evicted down to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsstore.cache.eviction import evict_for
from fsstore.cache.records import Problem

if TYPE_CHECKING:
    from fsstore.cache.directory import CacheDirectory


def check(directory: CacheDirectory, fix: bool) -> list[Problem]:
    """Reconcile records with files; with ``fix``, repair what differs.

    :param directory: the cache directory.
    :param fix: repair the records, and evict down to the limit.
    """
    with directory.lock():
        problems = directory.records.check(fix)
        if any(p.kind == "damaged-records" for p in problems) and not fix:
            return problems  # nothing more can be read from them
        total = directory.records.total_size()
        if not directory.policy.admits(total):
            limit = directory.policy.max_size
            problems.append(
                Problem("over-limit", None, f"{total} bytes cached, limit {limit}")
            )
            if fix:
                evict_for(directory, 0)
    return problems
