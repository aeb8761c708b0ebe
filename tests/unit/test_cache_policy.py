"""The cache's admission and eviction policy (fsstore.cache.policy): the
limit at its boundary in each place it is checked, the eviction orders, and
a policy given to the cache directory being the one it evicts by."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from fsstore.cache.directory import CacheDirectory
from fsstore.cache.image_cache import ImageCache, load_records_driver
from fsstore.cache.policy import (
    EVICTION_POLICIES,
    CachePolicy,
    LeastFrequentlyUsed,
    LeastRecentlyStored,
    LeastRecentlyUsed,
)
from fsstore.cache.records import CachedImage
from fsstore.hashing import Expected
from fsstore.testing.cache_suite import make_cache_conf

LIMIT = 10


def image(
    image_id: str, size: int = 1, hits: int = 0, accessed: float = 0, stored: float = 0
) -> CachedImage:
    return CachedImage(image_id, size, hits, accessed, stored)


# -- the limit -------------------------------------------------------------------


def test_exactly_the_limit_is_admitted_one_byte_more_is_not() -> None:
    policy = CachePolicy(LIMIT)
    assert policy.admits(0)
    assert policy.admits(LIMIT)
    assert not policy.admits(LIMIT + 1)


def test_a_zero_limit_admits_only_nothing() -> None:
    assert CachePolicy(0).admits(0)
    assert not CachePolicy(0).admits(1)


def test_no_victims_while_the_incoming_entry_fits_exactly() -> None:
    entries = [image("a", 4), image("b", 2)]
    assert CachePolicy(LIMIT).victims(entries, total=6, incoming=4) == []


def test_one_byte_over_evicts_the_first_in_order_and_no_more() -> None:
    entries = [image("old", 1, accessed=1), image("new", 5, accessed=2)]
    victims = CachePolicy(LIMIT).victims(entries, total=6, incoming=5)
    assert [v.image_id for v in victims] == ["old"]


def test_victims_go_until_the_rest_and_the_incoming_entry_fit() -> None:
    entries = [image(f"e{i}", 3, accessed=i) for i in range(3)]  # 9 bytes
    victims = CachePolicy(LIMIT).victims(entries, total=9, incoming=7)
    assert [v.image_id for v in victims] == ["e0", "e1"]  # 3 + 7 = 10


def test_an_entry_larger_than_the_limit_names_every_entry() -> None:
    entries = [image("a", 2), image("b", 3)]
    victims = CachePolicy(LIMIT).victims(entries, total=5, incoming=LIMIT + 1)
    assert {v.image_id for v in victims} == {"a", "b"}


def test_the_recorded_total_decides_not_the_sum_of_the_entries() -> None:
    # Records being repaired may list less than their total says: the total
    # is what the limit holds against.
    entries = [image("a", 1, accessed=1), image("b", 1, accessed=2)]
    assert CachePolicy(LIMIT).victims(entries, total=LIMIT, incoming=0) == []
    victims = CachePolicy(LIMIT).victims(entries, total=LIMIT + 1, incoming=0)
    assert [v.image_id for v in victims] == ["a"]


def test_a_plan_reads_no_entries_while_they_fit() -> None:
    def unread() -> Iterator[CachedImage]:
        raise AssertionError("the records were read")
        yield image("never")

    assert CachePolicy(LIMIT).plan(unread(), total=6, incoming=4) == ([], 0)


def test_a_plan_frees_what_its_victims_hold() -> None:
    entries = [image(f"e{i}", 3, accessed=i) for i in range(3)]  # 9 bytes
    victims, freed = CachePolicy(LIMIT).plan(entries, total=9, incoming=7)
    assert ([v.image_id for v in victims], freed) == (["e0", "e1"], 6)


# -- the eviction orders ---------------------------------------------------------


ENTRIES = [
    image("read-long-ago", hits=5, accessed=1, stored=3),
    image("stored-long-ago", hits=9, accessed=3, stored=1),
    image("rarely-read", hits=1, accessed=2, stored=2),
]


def test_least_recently_used_is_the_default_and_goes_by_last_access() -> None:
    policy = CachePolicy(LIMIT)
    assert isinstance(policy.eviction, LeastRecentlyUsed)
    order = [e.image_id for e in policy.eviction.order(ENTRIES)]
    assert order == ["read-long-ago", "rarely-read", "stored-long-ago"]


def test_ties_in_last_access_go_by_image_id() -> None:
    entries = [image("b"), image("a"), image("c")]
    assert [e.image_id for e in LeastRecentlyUsed().order(entries)] == [
        "a",
        "b",
        "c",
    ]


def test_least_recently_stored_goes_by_when_it_was_cached() -> None:
    order = [e.image_id for e in LeastRecentlyStored().order(ENTRIES)]
    assert order == ["stored-long-ago", "rarely-read", "read-long-ago"]


def test_least_frequently_used_goes_by_hits() -> None:
    order = [e.image_id for e in LeastFrequentlyUsed().order(ENTRIES)]
    assert order == ["rarely-read", "read-long-ago", "stored-long-ago"]


def test_policies_are_known_by_diskcache_names() -> None:
    assert set(EVICTION_POLICIES) == {
        "least-recently-used",
        "least-recently-stored",
        "least-frequently-used",
    }


# -- in the cache directory ------------------------------------------------------


class LargestFirst:
    """A policy of the test's own: the largest entry goes first."""

    NAME: ClassVar[str] = "largest-first"

    def __init__(self) -> None:
        self.asked = 0

    def order(self, entries: Iterable[CachedImage]) -> list[CachedImage]:
        self.asked += 1
        return sorted(entries, key=lambda e: (-e.size, e.image_id))


def directory(
    tmp_path: Path, driver: str, eviction: LargestFirst | None = None
) -> CacheDirectory:
    conf = make_cache_conf(tmp_path / "cache", driver, image_cache_max_size=LIMIT)
    cache_dir = CacheDirectory(conf, load_records_driver(conf), eviction)
    cache_dir.configure()
    return cache_dir


def put(
    cache_dir: CacheDirectory, image_id: str, data: bytes, size: int | None = None
) -> bool:
    md5 = hashlib.md5(data).hexdigest()
    writer = cache_dir.start_write(image_id, Expected(md5, size=size))
    if writer is None:
        return False
    writer.write(data)
    return writer.commit()


@pytest.fixture(params=["sqlite", "xattr"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_declared_size_is_checked_at_the_limit(tmp_path: Path, driver: str) -> None:
    cache_dir = directory(tmp_path, driver)
    assert cache_dir.start_write("over", Expected(size=LIMIT + 1)) is None
    assert put(cache_dir, "exact", b"e" * LIMIT, size=LIMIT)
    assert cache_dir.records.total_size() == LIMIT


def test_the_streamed_size_is_checked_at_the_limit(tmp_path: Path, driver: str) -> None:
    cache_dir = directory(tmp_path, driver)
    assert put(cache_dir, "exact", b"e" * LIMIT)  # size unknown up front
    md5 = hashlib.md5(b"o" * (LIMIT + 1)).hexdigest()
    writer = cache_dir.start_write("over", Expected(md5))
    assert writer is not None
    writer.write(b"o" * LIMIT)
    assert writer.abandoned is None
    writer.write(b"o")
    assert writer.abandoned == "larger than image_cache_max_size"
    assert not writer.commit()
    assert not cache_dir.is_cached("over") and cache_dir.is_cached("exact")


def test_the_eviction_budget_is_checked_at_the_limit(
    tmp_path: Path, driver: str
) -> None:
    cache_dir = directory(tmp_path, driver)
    assert put(cache_dir, "a", b"a" * 4)
    assert put(cache_dir, "b", b"b" * 6)  # 4 + 6: exactly the limit
    assert cache_dir.is_cached("a") and cache_dir.is_cached("b")
    assert put(cache_dir, "c", b"c")  # one byte over: the oldest goes
    assert not cache_dir.is_cached("a")
    assert cache_dir.is_cached("b") and cache_dir.is_cached("c")
    assert cache_dir.records.total_size() == 7


def test_a_policy_given_to_the_directory_is_the_one_it_evicts_by(
    tmp_path: Path, driver: str
) -> None:
    largest_first = LargestFirst()
    cache_dir = directory(tmp_path, driver, largest_first)
    assert cache_dir.policy.eviction is largest_first
    assert put(cache_dir, "big", b"b" * 6)
    assert put(cache_dir, "small", b"s" * 3)
    os.close(cache_dir.open_entry("big"))  # LRU would now evict "small"
    assert put(cache_dir, "new", b"n" * 2)
    assert largest_first.asked == 1
    assert not cache_dir.is_cached("big")
    assert cache_dir.is_cached("small") and cache_dir.is_cached("new")


def test_prune_and_check_ask_the_same_limit(tmp_path: Path, driver: str) -> None:
    cache_dir = directory(tmp_path, driver)
    assert put(cache_dir, "a", b"a" * LIMIT)
    assert cache_dir.prune() == (0, 0)
    assert cache_dir.check() == []
    cache_dir.policy.max_size = LIMIT - 1  # as a smaller limit on restart
    assert [p.kind for p in cache_dir.check()] == ["over-limit"]
    assert cache_dir.prune() == (1, LIMIT)
    assert cache_dir.check() == []


def test_the_image_cache_evicts_by_the_policy_it_is_given(
    tmp_path: Path, driver: str
) -> None:
    """ImageCache passes its ``eviction`` through: prune evicts by it."""
    conf = make_cache_conf(tmp_path / "cache", driver, image_cache_max_size=LIMIT)
    roomy = ImageCache(conf)
    for image_id, data in (("small-old", b"s" * 3), ("large-new", b"L" * 7)):
        md5 = hashlib.md5(data).hexdigest()
        assert roomy.cache_image_iter(image_id, iter([data]), md5)
    conf.set_override("image_cache_max_size", LIMIT - 1)
    largest_first = LargestFirst()
    cache = ImageCache(conf, eviction=largest_first)
    assert cache.prune() == (1, 7)  # LRU would have evicted small-old
    assert largest_first.asked == 1
    assert [e.image_id for e in cache.get_cached_images()] == ["small-old"]
