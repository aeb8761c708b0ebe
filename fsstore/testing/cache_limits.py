"""The size-limit part of the cache drivers' behavioural suite
(fsstore.testing.cache_suite): eviction, admission and pruning, each limit
checked at its boundary."""

from __future__ import annotations

from collections.abc import Callable

from fsstore.cache import ImageCache
from fsstore.hashing import Expected
from fsstore.testing.cache_base import CacheSuiteBase, KiB, md5
from fsstore.testing.suite import payload


class CacheLimitTests(CacheSuiteBase):
    """What ``image_cache_max_size`` means, for every driver."""

    # -- size limit ------------------------------------------------------------

    def test_commit_evicts_least_recently_used(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=300 * KiB)
        for image_id in ["a", "b", "c"]:
            assert self.put(cache, image_id, payload(100 * KiB))
        self.read(cache, "a")  # now b is the least recently used
        assert self.put(cache, "d", payload(100 * KiB))
        assert {r.image_id for r in cache.get_cached_images()} == {"a", "c", "d"}
        assert cache.get_cache_size() == 300 * KiB

    def test_image_larger_than_the_cache_streams_uncached(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=100 * KiB)
        self.put(cache, "small", payload(50 * KiB))
        data = payload(150 * KiB)
        it = cache.get_caching_iter(
            "big", md5(data), iter([data[: 80 * KiB], data[80 * KiB :]])
        )
        assert b"".join(it) == data
        assert not cache.is_cached("big")
        assert cache.is_cached("small")  # nothing evicted for a hopeless entry
        assert self.names(cache, "incomplete") == []
        declared = cache.get_caching_iter(
            "big2", Expected(md5(data), size=len(data)), iter([data])
        )
        assert not declared.caching
        assert b"".join(declared) == data

    # The limit at its boundary: each comparison that guards it is checked
    # from both sides, so an off-by-one in either direction fails a test.
    # LIMIT is small enough that every byte shows.

    LIMIT = 10

    def test_a_declared_size_of_exactly_the_limit_is_cached(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        data = b"e" * self.LIMIT
        writer = cache.start_write("exact", Expected(md5(data), size=len(data)))
        assert writer is not None
        writer.write(data)
        assert writer.commit()
        assert cache.get_cache_size() == self.LIMIT

    def test_a_declared_size_one_byte_over_the_limit_is_refused(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        data = b"o" * (self.LIMIT + 1)
        # Refused before a byte is written, not only when the stream ends.
        declared = Expected(md5(data), size=len(data))
        assert cache.start_write("over", declared) is None
        it = cache.get_caching_iter("over", declared, iter([data]))
        assert not it.caching
        assert b"".join(it) == data
        assert not cache.is_cached("over")

    def test_a_stream_of_exactly_the_limit_is_cached(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        data = b"s" * self.LIMIT
        # Size unknown: only the writer's running count stands in the way.
        assert cache.cache_image_iter("exact", iter([data[:4], data[4:]]), md5(data))
        assert cache.get_cache_size() == self.LIMIT
        assert self.read(cache, "exact") == data

    def test_a_stream_one_byte_over_the_limit_is_not_cached(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        data = b"t" * (self.LIMIT + 1)
        assert not cache.cache_image_iter("over", iter([data[:4], data[4:]]), md5(data))
        assert not cache.is_cached("over")
        assert cache.get_cache_size() == 0
        assert self.names(cache, "incomplete") == []

    def test_entries_filling_the_limit_exactly_all_stay(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        half = self.LIMIT // 2
        assert self.put(cache, "a", b"a" * half)
        assert self.put(cache, "b", b"b" * (self.LIMIT - half))
        assert {r.image_id for r in cache.get_cached_images()} == {"a", "b"}
        assert cache.get_cache_size() == self.LIMIT
        assert cache.prune() == (0, 0)
        assert cache.check() == []

    def test_one_more_byte_on_a_full_cache_evicts_enough(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        half = self.LIMIT // 2
        assert self.put(cache, "a", b"a" * half)  # the least recently used
        assert self.put(cache, "b", b"b" * (self.LIMIT - half))
        assert self.put(cache, "c", b"c")
        assert {r.image_id for r in cache.get_cached_images()} == {"b", "c"}
        assert cache.get_cache_size() == self.LIMIT - half + 1

    def test_eviction_stops_as_soon_as_the_new_entry_fits_exactly(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT)
        half = self.LIMIT // 2
        assert self.put(cache, "a", b"a" * half)  # the least recently used
        assert self.put(cache, "b", b"b" * half)
        # Evicting a leaves exactly room for c: b must stay.
        assert self.put(cache, "c", b"c" * half)
        assert {r.image_id for r in cache.get_cached_images()} == {"b", "c"}
        assert cache.get_cache_size() == self.LIMIT

    def test_one_byte_over_a_shrunk_limit_is_found_and_pruned(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache(image_cache_max_size=self.LIMIT + 1)
        assert self.put(cache, "a", b"a")  # the least recently used
        assert self.put(cache, "b", b"b" * self.LIMIT)
        smaller = make_cache(image_cache_max_size=self.LIMIT)
        [problem] = smaller.check()
        assert problem.kind == "over-limit"
        assert smaller.prune() == (1, 1)
        assert [r.image_id for r in smaller.get_cached_images()] == ["b"]
        assert smaller.check() == []

    def test_prune_after_the_limit_shrinks(
        self, make_cache: Callable[..., ImageCache]
    ) -> None:
        cache = make_cache()
        for image_id in ["a", "b", "c", "d"]:
            self.put(cache, image_id, payload(100 * KiB))
        self.read(cache, "a")
        smaller = make_cache(image_cache_max_size=250 * KiB)
        assert smaller.prune() == (2, 200 * KiB)
        assert {r.image_id for r in smaller.get_cached_images()} == {"a", "d"}
        assert smaller.prune() == (0, 0)

    def test_prune_of_many_entries(self, make_cache: Callable[..., ImageCache]) -> None:
        cache = make_cache()
        for i in range(60):
            self.put(cache, f"img{i:02d}", payload(KiB, seed=i))
        for i in range(50, 60):
            self.read(cache, f"img{i:02d}")  # the ten most recently used
        smaller = make_cache(image_cache_max_size=10 * KiB)
        assert smaller.prune() == (50, 50 * KiB)
        kept = [f"img{i:02d}" for i in range(50, 60)]
        assert [r.image_id for r in smaller.get_cached_images()] == kept
        assert smaller.get_cache_size() == 10 * KiB
        assert smaller.check() == []
        assert smaller.delete_all_cached_images() == 10
        assert smaller.get_cached_images() == [] and smaller.get_cache_size() == 0
