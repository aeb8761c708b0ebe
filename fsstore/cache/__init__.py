"""The image cache: a facade, the cache directory, records drivers,
read-through and prefetching."""

from fsstore.cache.caching_store import CachingStore
from fsstore.cache.image_cache import ImageCache
from fsstore.cache.prefetcher import Prefetcher, PrefetchReport
from fsstore.cache.records import CachedImage, Problem, RecordsDriver
from fsstore.cache.writer import CacheWriter

__all__ = [
    "CacheWriter",
    "CachedImage",
    "CachingStore",
    "ImageCache",
    "PrefetchReport",
    "Prefetcher",
    "Problem",
    "RecordsDriver",
]
