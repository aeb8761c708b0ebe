"""The prefetcher: caches every queued image, several at a time."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from fsstore import exceptions
from fsstore.cache.image_cache import ImageCache, verifiable
from fsstore.hashing import DEFAULT_HASHING_ALGO, Expected
from fsstore.registry import StoreRegistry

LOG = logging.getLogger(__name__)

#: Given an image id, what queue_image() would have recorded: a dict with
#: "location" and optionally "checksum", "multihash", "hashing_algo".
Resolver = Callable[[str], dict[str, Any]]


@dataclasses.dataclass
class PrefetchReport:
    cached: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


def _expected(info: dict[str, Any]) -> Expected:
    """What a queue entry (or a resolver) says the image must match."""
    return Expected(
        info.get("checksum"),
        info.get("multihash"),
        info.get("hashing_algo") or DEFAULT_HASHING_ALGO,
        allow_unverified=info.get("unverified") is True,
    )


class Prefetcher:
    """Fetch queued images from the stores into the cache.

    Where to fetch an image from comes from its queue entry (``fsstore cache
    queue ID --location URI``) or, for Glance's empty queue files, from
    ``resolve``. A failed image is logged, put in ``invalid/`` and dequeued;
    the others go on.
    """

    def __init__(
        self,
        cache: ImageCache,
        registry: StoreRegistry,
        workers: int = 4,
        resolve: Resolver | None = None,
    ) -> None:
        self.cache = cache
        self.registry = registry
        self.workers = max(1, workers)
        self.resolve = resolve

    def fetch(self, image_id: str) -> bool:
        """Cache one queued image: True if cached, False if left to another
        (cached or dequeued meanwhile, or being cached by another writer).

        :param image_id: the queued image; its queue entry (or ``resolve``)
            says where it is and what it must match.
        :raises NotFound: when no location is known for it.
        :raises Invalid: when it may not be cached (no digest to verify it
            against, larger than the cache) or its data was rejected.
        """
        try:
            info = self.cache.queued_image_info(image_id)
        except exceptions.NotFound:
            return False  # another prefetcher cached or dequeued it meanwhile
        if not info.get("location") and self.resolve is not None:
            info = {**self.resolve(image_id), **{k: v for k, v in info.items() if v}}
        location = info.get("location")
        if not location:
            raise exceptions.NotFound(f"no location known for queued image {image_id}")
        expected = verifiable(image_id, _expected(info))
        chunks, length = self.registry.get(location)
        if length and expected.size is None:  # 0: the store does not know it
            expected = dataclasses.replace(expected, size=length)
        try:
            with self.cache.open_for_write(image_id, expected) as writer:
                if writer is None:
                    # Cached, or being cached by another writer (whose commit
                    # dequeues it), or larger than the whole cache.
                    if not self.cache.admits(length):
                        raise exceptions.Invalid(
                            f"image {image_id} ({length} bytes) is larger than "
                            "image_cache_max_size"
                        )
                    return False
                for chunk in chunks:
                    writer.write(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if writer.published:
            return True
        if not (writer.rejected or writer.abandoned):
            return False  # another writer published it first
        raise exceptions.Invalid(
            f"image {image_id} was not cached: {writer.rejected or writer.abandoned}"
        )

    def run(self, on_done: Callable[[str, bool], None] | None = None) -> PrefetchReport:
        """Fetch every queued image, ``workers`` at a time: what was cached,
        skipped and failed. A failure is logged, the image put in
        ``invalid/`` and dequeued; it never stops the others.

        :param on_done: called with each image id as it ends, and whether
            it was cached (progress for a command); None: nothing called.
        """
        report = PrefetchReport()
        queued = self.cache.get_queued_images()
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            futures = {
                pool.submit(self.fetch, image_id): image_id for image_id in queued
            }
            for future in concurrent.futures.as_completed(futures):
                image_id = futures[future]
                try:
                    cached = future.result()
                except Exception as exc:  # one bad image must not stop the rest
                    LOG.error("prefetch of %s failed: %s", image_id, exc)
                    report.failed[image_id] = str(exc)
                    self._forget(image_id, str(exc))
                    ok = False
                else:
                    (report.cached if cached else report.skipped).append(image_id)
                    ok = cached
                if on_done is not None:
                    on_done(image_id, ok)
        return report

    def _forget(self, image_id: str, reason: str) -> None:
        """Mark a failed image invalid and dequeue it, as far as the cache
        directory lets us: a name in the way there must not stop the run."""
        try:
            if not self.cache.is_cached(image_id):
                self.cache.mark_invalid(image_id, reason)
            self.cache.delete_queued_image(image_id)
        except (OSError, exceptions.FsstoreError) as exc:
            LOG.error("%s stays queued: %s", image_id, exc)
