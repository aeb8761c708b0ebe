"""``ImageCache``: the cache facade, with Glance's operation names.

It loads the driver named by ``image_cache_driver`` from the
``fsstore.cache_drivers`` entry points (``sqlite`` by default, ``xattr``, or a
third-party driver) and never falls back to another one: a driver that cannot
work raises BadDriverConfiguration with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, BinaryIO

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache.base import CachedImage, CacheDriver, Problem
from fsstore.hashing import DEFAULT_HASHING_ALGO
from fsstore.location import without_credentials
from fsstore.registry import load_driver, register_opts
from fsstore.store import validate_image_id
from fsstore.streams import CheckedSource

CACHE_DRIVERS_NAMESPACE = "fsstore.cache_drivers"
READ_CHUNK = 64 * 1024


def load_cache_driver(conf: cfg.ConfigOpts) -> CacheDriver:
    try:
        name = conf.image_cache_driver
    except (cfg.Error, ValueError) as exc:
        raise exceptions.BadDriverConfiguration("?", str(exc)) from None
    try:
        driver_cls = load_driver(name, CACHE_DRIVERS_NAMESPACE, CacheDriver)
    except exceptions.DriverLoadFailure as exc:
        raise exceptions.BadDriverConfiguration(name, exc.reason) from None
    driver = driver_cls(conf)
    driver.configure()
    return driver


class CachingIterator:
    """Chunks of a source iterator, tee'd into a cache writer.

    ``caching`` tells whether this reader is the image's writer (False: the
    image is cached or being cached by someone else, or may not be cached).
    """

    def __init__(self, writer_cm: Any, source: Iterable[bytes]) -> None:
        self._cm = writer_cm
        self._writer = writer_cm.__enter__()
        self._source = iter(source)
        self._done = False
        self.caching = self._writer is not None

    def __iter__(self) -> CachingIterator:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        try:
            chunk = next(self._source)
        except StopIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        if self._writer is not None:
            self._writer.write(chunk)
        return chunk

    def _finish(self, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        if exc is None:
            self._cm.__exit__(None, None, None)
        else:
            # Suppresses nothing: the caller re-raises.
            self._cm.__exit__(type(exc), exc, exc.__traceback__)

    @property
    def published(self) -> bool:
        return self._writer is not None and self._writer.published

    def close(self) -> None:
        """Stop early: the partial entry is discarded, not published."""
        if not self._done:
            self._finish(GeneratorExit())

    def __del__(self) -> None:
        self.close()


class ImageCache:
    """The image cache of ``conf`` (``[DEFAULT] image_cache_*`` options)."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self.conf = conf
        self.driver = load_cache_driver(conf)

    # -- queries -------------------------------------------------------------

    def is_cached(self, image_id: str) -> bool:
        return self.driver.is_cached(image_id)

    def is_queued(self, image_id: str) -> bool:
        return self.driver.is_queued(image_id)

    def is_being_cached(self, image_id: str) -> bool:
        return self.driver.is_being_cached(image_id)

    def is_cacheable(self, image_id: str) -> bool:
        return self.driver.is_cacheable(image_id)

    def get_cache_size(self) -> int:
        return self.driver.get_cache_size()

    def get_hit_count(self, image_id: str) -> int:
        validate_image_id(image_id)
        return self.driver.get_hit_count(image_id)

    def get_cached_images(self) -> list[CachedImage]:
        return self.driver.get_cached_images()

    def get_queued_images(self) -> list[str]:
        return self.driver.get_queued_images()

    # -- queue ---------------------------------------------------------------

    def queue_image(
        self,
        image_id: str,
        location: str | None = None,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str | None = None,
        allow_unverified: bool = False,
    ) -> bool:
        """Queue for prefetching; where to fetch it from may be recorded.

        The prefetcher caches an image only once it matched ``checksum`` or
        ``multihash`` (given here or by its resolver), unless
        ``allow_unverified`` says otherwise by name. A location's credentials
        are never recorded (the stores use their configured ones).
        """
        return self.driver.queue_image(
            image_id,
            location=None if location is None else without_credentials(location),
            checksum=checksum,
            multihash=multihash,
            hashing_algo=hashing_algo,
            unverified=True if allow_unverified else None,
        )

    def queued_image_info(self, image_id: str) -> dict[str, Any]:
        return self.driver.queued_image_info(image_id)

    def delete_queued_image(self, image_id: str) -> bool:
        return self.driver.delete_queued_image(image_id)

    def delete_all_queued_images(self) -> int:
        return self.driver.delete_all_queued_images()

    # -- entries -------------------------------------------------------------

    def delete_cached_image(self, image_id: str) -> bool:
        return self.driver.delete_cached_image(image_id)

    def delete_all_cached_images(self) -> int:
        return self.driver.delete_all_cached_images()

    def prune(self) -> tuple[int, int]:
        return self.driver.prune()

    def clean(self, stall_time: int | None = None) -> tuple[int, int]:
        return self.driver.clean(stall_time)

    def check(self, fix: bool = False) -> list[Problem]:
        return self.driver.check(fix)

    # -- data ----------------------------------------------------------------

    def open_for_read(
        self, image_id: str
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.driver.open_for_read(image_id)

    def open_for_write(
        self,
        image_id: str,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        size: int = 0,
        allow_unverified: bool = False,
    ) -> Any:
        return self.driver.open_for_write(
            image_id, checksum, multihash, hashing_algo, size, allow_unverified
        )

    def get_caching_iter(
        self,
        image_id: str,
        checksum: str | None,
        iterator: Iterable[bytes],
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        size: int = 0,
        allow_unverified: bool = False,
    ) -> CachingIterator:
        """Yield ``iterator``'s chunks, caching them on the way when possible.

        The entry is published only if the stream completed and matched
        ``checksum`` (MD5) and ``multihash`` where given. Without either
        there is nothing to verify against, and the chunks pass through
        uncached unless ``allow_unverified`` says otherwise. An exception
        from ``iterator`` reaches the caller; caching problems never do.
        """
        validate_image_id(image_id)
        if not (checksum or multihash or allow_unverified):
            return CachingIterator(contextlib.nullcontext(None), iterator)
        return CachingIterator(
            self.open_for_write(
                image_id, checksum, multihash, hashing_algo, size, allow_unverified
            ),
            iterator,
        )

    def cache_image_iter(
        self,
        image_id: str,
        iterator: Iterable[Any] | Any,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        size: int = 0,
        allow_unverified: bool = False,
    ) -> bool:
        """Cache everything ``iterator`` yields; True if it was published.

        Invalid without ``checksum`` or ``multihash``, unless
        ``allow_unverified`` (see open_for_write).
        """
        with self.open_for_write(
            image_id, checksum, multihash, hashing_algo, size, allow_unverified
        ) as w:
            if w is None:
                return False
            # The writer copies what it keeps: views are enough.
            for view in CheckedSource(iterator, image_id, size).views():
                w.write(view)
        return w.published

    def cache_image_file(
        self,
        image_id: str,
        image_file: BinaryIO,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        allow_unverified: bool = False,
    ) -> bool:
        return self.cache_image_iter(
            image_id,
            image_file,
            checksum,
            multihash,
            hashing_algo,
            allow_unverified=allow_unverified,
        )
