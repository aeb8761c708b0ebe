"""Read-through caching in front of a StoreRegistry."""

from __future__ import annotations

import dataclasses
import os

from fsstore import exceptions
from fsstore.cache.image_cache import (
    ExpectedArg,
    ImageCache,
    as_expected,
    not_cached,
)
from fsstore.hashing import InvalidExpected
from fsstore.registry import StoreRegistry
from fsstore.store import range_length, validate_image_id
from fsstore.streams import READ_CHUNK, FileChunkIterator, ImageChunks


class CachingStore:
    """Reads images through the cache.

    A cached image is served from the cache and counts a hit. A miss streams
    from the store and, for a whole-image read with a known ``checksum`` or
    ``multihash``, tees into the cache at the same time; without either there
    is nothing to verify the copy against, so it is not cached. Ranged reads
    of uncached images go to the store and are not cached.
    """

    def __init__(self, registry: StoreRegistry, cache: ImageCache) -> None:
        self.registry = registry
        self.cache = cache

    def get(
        self,
        image_id: str,
        location: str,
        expected: ExpectedArg = None,
        offset: int = 0,
        chunk_size: int | None = None,
    ) -> tuple[ImageChunks, int]:
        """``(iterator of bytes, length)`` of the image, or of a range of it
        (see Store.get), from the cache when it is cached.

        :param image_id: the image.
        :param location: where the store keeps it.
        :param expected: what the data must match to be cached on the way
            (see ImageCache.start_write); without a digest, or with a
            checksum string that is no MD5 hex digest (logged), the image
            is served and not cached.
        :param offset: where the range starts.
        :param chunk_size: the range's length (None: to the end).
        """
        validate_image_id(image_id)
        try:
            # Opening is the check: a separate is_cached() would cost a
            # second lookup on every hit, and could be stale by the open.
            return self._from_cache(image_id, offset, chunk_size)
        except exceptions.NotFound:
            pass  # not cached: read through
        try:
            wanted = as_expected(expected)
        except InvalidExpected as exc:
            not_cached(image_id, exc)  # still served, as it always was
            wanted = None
        chunks, length = self.registry.get(location, offset, chunk_size)
        if offset or chunk_size is not None or wanted is None or not wanted.digests:
            return chunks, length
        if wanted.size is None and length:  # 0: the store does not know it
            wanted = dataclasses.replace(wanted, size=length)
        return self.cache.get_caching_iter(image_id, wanted, chunks), length

    def _from_cache(
        self, image_id: str, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int]:
        fd = self.cache.open_entry(image_id)
        try:
            size = os.fstat(fd).st_size
            length = range_length(size, offset, limit, f"image {image_id}")
        except BaseException:
            os.close(fd)
            raise
        return FileChunkIterator(fd, offset, length, READ_CHUNK), length
