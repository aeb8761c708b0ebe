"""``ImageCache``: the image cache's one facade, with Glance's operation names.

It loads the records driver named by ``image_cache_driver`` from the
``fsstore.cache_drivers`` entry points (``sqlite`` by default, ``xattr``,
``centralized_db``, or a third-party driver) and never falls back to another
one: a driver that cannot work raises BadDriverConfiguration with the
reason. The cache directory (fsstore.cache.directory) does the work; the
prefetch queue is fsstore.cache.queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache.directory import CacheDirectory, Cleaned
from fsstore.cache.queue import PrefetchQueue
from fsstore.cache.records import CachedImage, Problem, RecordsDriver
from fsstore.cache.writer import CacheWriter
from fsstore.hashing import DEFAULT_HASHING_ALGO
from fsstore.location import without_credentials
from fsstore.registry import load_driver, register_opts
from fsstore.store import validate_image_id
from fsstore.streams import CheckedSource

CACHE_DRIVERS_NAMESPACE = "fsstore.cache_drivers"


def load_records_driver(conf: cfg.ConfigOpts) -> RecordsDriver:
    """The records driver ``image_cache_driver`` names, not yet configured."""
    try:
        name = conf.image_cache_driver
    except (cfg.Error, ValueError) as exc:
        raise exceptions.BadDriverConfiguration("?", str(exc)) from None
    try:
        driver_cls = load_driver(name, CACHE_DRIVERS_NAMESPACE, RecordsDriver)
    except exceptions.DriverLoadFailure as exc:
        raise exceptions.BadDriverConfiguration(name, exc.reason) from None
    driver: RecordsDriver = driver_cls(conf)
    return driver


class CachingIterator:
    """Chunks of a source iterator, tee'd into a cache writer.

    ``caching`` tells whether this reader is the image's writer (False: the
    image is cached or being cached by someone else, or may not be cached).
    The writer is committed when the source ends, failed when it raises, and
    discarded when the consumer closes the iterator before the end.
    """

    def __init__(self, writer: CacheWriter | None, source: Iterable[bytes]) -> None:
        self._writer = writer
        self._source: Iterator[bytes] = iter(source)
        self._done = False
        self.caching = writer is not None

    def __iter__(self) -> CachingIterator:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        try:
            chunk = next(self._source)
        except StopIteration:
            self._end()
            if self._writer is not None:
                self._writer.commit()
            raise
        except BaseException as exc:
            self._end()
            if self._writer is not None:
                self._writer.fail(f"stream failed: {exc!r}")
            raise
        if self._writer is not None:
            self._writer.write(chunk)
        return chunk

    def _end(self) -> None:
        self._done = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    @property
    def published(self) -> bool:
        return self._writer is not None and self._writer.published

    def close(self) -> None:
        """Stop early: the partial entry is discarded, not published."""
        if not self._done:
            self._end()
            if self._writer is not None:
                self._writer.discard()

    def __del__(self) -> None:
        self.close()


class ImageCache:
    """The image cache of ``conf`` (``[DEFAULT] image_cache_*`` options)."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self.conf = conf
        records = load_records_driver(conf)
        self._directory = CacheDirectory(conf, records)
        self._directory.configure()
        self._queue = PrefetchQueue(self._directory)

    @property
    def driver_name(self) -> str:
        """The records driver's name (``image_cache_driver``)."""
        return self._directory.name

    @property
    def records(self) -> RecordsDriver:
        """The records driver itself, for tools that inspect its own state;
        every cache operation is a method of ImageCache."""
        return self._directory.records

    @property
    def base_dir(self) -> str:
        return self._directory.base_dir

    @property
    def max_size(self) -> int:
        return self._directory.max_size

    # -- queries -------------------------------------------------------------

    def is_cached(self, image_id: str) -> bool:
        return self._directory.is_cached(image_id)

    def is_queued(self, image_id: str) -> bool:
        return self._queue.is_queued(image_id)

    def is_being_cached(self, image_id: str) -> bool:
        return self._directory.is_being_cached(image_id)

    def is_cacheable(self, image_id: str) -> bool:
        directory = self._directory
        return (
            directory.is_entry_name(validate_image_id(image_id))
            and not directory.is_cached(image_id)
            and not directory.is_being_cached(image_id)
        )

    def get_cache_size(self) -> int:
        return self._directory.records.total_size()

    def get_hit_count(self, image_id: str) -> int:
        validate_image_id(image_id)
        if not self._directory.is_entry_name(image_id):
            return 0
        return self._directory.records.hits(image_id)

    def get_cached_images(self) -> list[CachedImage]:
        return sorted(self._directory.entries())

    def get_queued_images(self) -> list[str]:
        return self._queue.images()

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
        return self._queue.add(
            image_id,
            location=None if location is None else without_credentials(location),
            checksum=checksum,
            multihash=multihash,
            hashing_algo=hashing_algo,
            unverified=True if allow_unverified else None,
        )

    def queued_image_info(self, image_id: str) -> dict[str, Any]:
        return self._queue.info(image_id)

    def delete_queued_image(self, image_id: str) -> bool:
        return self._queue.remove(image_id)

    def delete_all_queued_images(self) -> int:
        return self._queue.clear()

    # -- entries -------------------------------------------------------------

    def delete_cached_image(self, image_id: str) -> bool:
        return self._directory.delete(image_id)

    def delete_all_cached_images(self) -> int:
        return self._directory.delete_all()

    def prune(self) -> tuple[int, int]:
        """Evict LRU entries until the cache fits its limit: (files, bytes)."""
        return self._directory.prune()

    def clean(self, stall_time: int | None = None) -> Cleaned:
        """Reap ``invalid/``, crashed writers' ``incomplete/`` files and
        crashed queue writes: (invalid files, incomplete files) removed, and
        what could not be (``left``: a directory where a file belongs), one
        line each. What can be removed is, whatever is left."""
        left = self._queue.clean(
            self._directory.stall_time if stall_time is None else stall_time
        )
        cleaned = self._directory.clean(stall_time)
        return cleaned._replace(left=(*left, *cleaned.left))

    def check(self, fix: bool = False) -> list[Problem]:
        """Reconcile the records with the files; with ``fix``, repair."""
        return self._directory.check(fix)

    def mark_invalid(self, image_id: str, reason: str) -> None:
        """Put an image that failed to cache (e.g. a prefetch) in ``invalid/``
        (an empty file, unless one is there already)."""
        self._directory.mark_invalid(image_id, reason)

    # -- data ----------------------------------------------------------------

    def open_for_read(self, image_id: str) -> BinaryIO:
        """The cached image as a file (and context manager); closing it
        records the hit. NotFound when it is not cached."""
        return self._directory.open_for_read(image_id)

    def open_entry(self, image_id: str) -> int:
        """The cached image as a file descriptor, its hit recorded already.
        NotFound when it is not cached."""
        return self._directory.open_entry(image_id)

    def start_write(
        self,
        image_id: str,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        size: int = 0,
        allow_unverified: bool = False,
    ) -> CacheWriter | None:
        """A writer for ``image_id`` (see fsstore.cache.writer), or None when
        it must not be cached now: cached, being cached by another writer, an
        id the records cannot hold, or ``size`` larger than the cache.

        The entry is published by ``commit()`` if the data matched
        ``checksum`` / ``multihash``. Without either digest there is nothing
        to verify against: Invalid, unless ``allow_unverified`` says so by
        name, and then the entry is recorded without a checksum
        (``CachedImage.verified`` is False).
        """
        validate_image_id(image_id)
        if not (checksum or multihash or allow_unverified):
            raise exceptions.Invalid(
                f"image {image_id} has no checksum or multihash to verify it "
                "against; give one, or allow unverified caching explicitly"
            )
        return self._directory.start_write(
            image_id, checksum, multihash, hashing_algo, size
        )

    def open_for_write(
        self,
        image_id: str,
        checksum: str | None = None,
        multihash: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        size: int = 0,
        allow_unverified: bool = False,
    ) -> contextlib.AbstractContextManager[CacheWriter | None]:
        """``start_write`` as a context manager: a clean exit commits, an
        exception fails the entry into ``invalid/``; None when it must not
        be cached now."""
        writer = self.start_write(
            image_id, checksum, multihash, hashing_algo, size, allow_unverified
        )
        return contextlib.nullcontext() if writer is None else writer

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
            return CachingIterator(None, iterator)
        writer = self.start_write(
            image_id, checksum, multihash, hashing_algo, size, allow_unverified
        )
        return CachingIterator(writer, iterator)

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
        ``allow_unverified`` (see start_write).
        """
        writer = self.start_write(
            image_id, checksum, multihash, hashing_algo, size, allow_unverified
        )
        if writer is None:
            return False
        with writer:
            # The writer copies what it keeps: views are enough.
            for view in CheckedSource(iterator, image_id, size).views():
                writer.write(view)
        return writer.published

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
