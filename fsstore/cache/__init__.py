"""The image cache: a facade, its drivers, read-through and prefetching."""

from fsstore.cache.base import CachedImage, CacheDriver, CacheWriter, Problem
from fsstore.cache.caching_store import CachingStore
from fsstore.cache.image_cache import ImageCache
from fsstore.cache.prefetcher import Prefetcher, PrefetchReport

__all__ = [
    "CacheDriver",
    "CacheWriter",
    "CachedImage",
    "CachingStore",
    "ImageCache",
    "PrefetchReport",
    "Prefetcher",
    "Problem",
]
