"""The cache's admission and eviction policy, in one object.

``CachePolicy`` answers the one question the size limit asks, "may an entry
of N bytes be admitted, or keep growing?" (``admits``), for every place that
asks it: the size a reader declares before caching starts, the size streamed
so far while it is written, the room made by eviction before an entry is
published, and ``check``'s over-limit report. ``image_cache_max_size`` is
that limit, inclusive: an entry of exactly ``max_size`` bytes fits an empty
cache, one byte more never does.

Which entries go first when room is needed is an ``EvictionPolicy``, given
to ``CachePolicy`` (as diskcache takes its ``eviction_policy`` by name, not by
subclass). ``LeastRecentlyUsed``, by the records' last access, is the
cache's, as in Glance; ``LeastRecentlyStored`` and ``LeastFrequentlyUsed``
are diskcache's other two. An eviction policy only orders the records it is
shown: it never reads or removes files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, NamedTuple, Protocol

from fsstore.cache.records import CachedImage


class EvictionPolicy(Protocol):
    """The order in which entries are evicted when room is needed."""

    #: The policy's name, as diskcache spells its own.
    NAME: ClassVar[str]

    def order(self, entries: Iterable[CachedImage]) -> list[CachedImage]:
        """``entries`` (the records' snapshot), the first to evict first.

        :param entries: every entry's record, in any order.
        """
        ...


class LeastRecentlyUsed:
    """The entry read longest ago goes first (ties: by image id, so the
    order never depends on the records driver's)."""

    NAME: ClassVar[str] = "least-recently-used"

    def order(self, entries: Iterable[CachedImage]) -> list[CachedImage]:
        return sorted(entries, key=lambda e: (e.last_accessed, e.image_id))


class LeastRecentlyStored:
    """The entry cached longest ago goes first, however often it is read."""

    NAME: ClassVar[str] = "least-recently-stored"

    def order(self, entries: Iterable[CachedImage]) -> list[CachedImage]:
        return sorted(entries, key=lambda e: (e.last_modified, e.image_id))


class LeastFrequentlyUsed:
    """The entry with the fewest hits goes first; among equals, the one
    read longest ago."""

    NAME: ClassVar[str] = "least-frequently-used"

    def order(self, entries: Iterable[CachedImage]) -> list[CachedImage]:
        return sorted(entries, key=lambda e: (e.hits, e.last_accessed, e.image_id))


EVICTION_POLICIES: dict[str, type[EvictionPolicy]] = {
    policy.NAME: policy
    for policy in (LeastRecentlyUsed, LeastRecentlyStored, LeastFrequentlyUsed)
}


class Eviction(NamedTuple):
    """What making room evicts: the entries, first to go first, and the
    bytes of records they free together."""

    victims: list[CachedImage]
    freed: int


class CachePolicy:
    """The size limit and the eviction order of one cache directory.

    :param max_size: ``image_cache_max_size``: the most bytes the published
        entries may hold together, and so the largest entry admitted.
    :param eviction: which entries go first when room is needed; the
        default is ``LeastRecentlyUsed``.
    """

    def __init__(self, max_size: int, eviction: EvictionPolicy | None = None) -> None:
        self.max_size = max_size
        self.eviction: EvictionPolicy = eviction or LeastRecentlyUsed()

    def admits(self, size: int) -> bool:
        """Whether ``size`` bytes fit under the limit: an entry of that size
        (declared, or streamed so far), or the cache's total once an entry
        is added. The limit's one check.

        :param size: the bytes that would be held.
        """
        return size <= self.max_size

    def victims(
        self, entries: Iterable[CachedImage], total: int, incoming: int = 0
    ) -> list[CachedImage]:
        """The entries to evict, in eviction order (``plan``'s victims).

        :param entries: every entry's record (``records.entries()``).
        :param total: the recorded size of all entries (see ``plan``).
        :param incoming: the size of the entry about to be published.
        """
        return self.plan(entries, total, incoming).victims

    def plan(
        self, entries: Iterable[CachedImage], total: int, incoming: int = 0
    ) -> Eviction:
        """The entries to evict, in eviction order, so that what stays and
        ``incoming`` are admitted together, and the bytes they free; none
        when they are admitted already, and then ``entries`` is not even
        iterated (a lazy iterable of the records is never read). One pass
        over a snapshot: it always ends, and if even evicting everything
        leaves too little room, everything is named.

        :param entries: every entry's record (``records.entries()``).
        :param total: the recorded size of all entries
            (``records.total_size()``), which may differ from the sum of
            ``entries`` while the records are being repaired.
        :param incoming: the size of the entry about to be published.
        """
        victims: list[CachedImage] = []
        freed = 0
        if self.admits(total + incoming):
            return Eviction(victims, freed)
        for entry in self.eviction.order(entries):
            if self.admits(total - freed + incoming):
                break
            victims.append(entry)
            freed += entry.size
        return Eviction(victims, freed)
