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
import logging
import operator
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TypeAlias

from oslo_config import cfg

from fsstore import exceptions, plugins
from fsstore.cache.directory import CacheDirectory, Cleaned
from fsstore.cache.policy import EvictionPolicy
from fsstore.cache.queue import PrefetchQueue
from fsstore.cache.records import CachedImage, Problem, RecordsDriver
from fsstore.cache.writer import CacheWriter
from fsstore.confvalues import option_error
from fsstore.hashing import Expected, InvalidExpected
from fsstore.location import without_credentials
from fsstore.registry import register_opts
from fsstore.store import validate_image_id
from fsstore.streams import CheckedSource

LOG = logging.getLogger(__name__)

#: What a cache method takes as the digests to verify an image against:
#: the one digests value, Glance's ``image_checksum`` (an MD5 hex digest),
#: or None (nothing given).
ExpectedArg: TypeAlias = Expected | str | None


_image_id = operator.itemgetter(0)


def as_expected(expected: ExpectedArg) -> Expected | None:
    """``expected`` as the one digests value (None stays None).

    :param expected: an Expected, an MD5 hex digest (what Glance passes
        as ``image_checksum``), or None.
    :raises InvalidExpected: for a string that is no MD5 hex digest. The
        cache's methods catch it: Glance's checksum comes from an image's
        metadata, and one that could never match only means the image is
        not cached (logged), its data still served. An Expected a caller
        builds is checked when it is built (fsstore.hashing.Expected).
    """
    if expected is None or isinstance(expected, Expected):
        return expected
    return Expected(expected)


def not_cached(image_id: str, problem: InvalidExpected) -> None:
    """Log that ``image_id`` is not cached because Glance's checksum for it
    is no MD5 hex digest (see :func:`as_expected`).

    :param image_id: the image.
    :param problem: what :func:`as_expected` raised.
    """
    LOG.warning("not caching %s: %s", image_id, problem)


def verifiable(image_id: str, expected: Expected | None) -> Expected:
    """``expected``, if the cache may take ``image_id`` by it: it names a
    digest, or allows unverified caching by name; else Invalid.

    :param image_id: the image, as the message names it.
    :param expected: the digests it is to be verified against.
    """
    if expected is None or not (expected.digests or expected.allow_unverified):
        raise exceptions.Invalid(
            f"image {image_id} has no checksum or multihash to verify it "
            "against; give one, or allow unverified caching explicitly"
        )
    return expected


def load_records_driver(conf: cfg.ConfigOpts) -> RecordsDriver:
    """The records driver ``image_cache_driver`` names, its options
    registered, not yet configured."""
    try:
        name = conf.image_cache_driver
    except (cfg.Error, ValueError) as exc:
        raise exceptions.BadDriverConfiguration("?", option_error(exc)) from None
    try:
        driver_cls = plugins.load_driver(
            name, plugins.CACHE_DRIVERS_NAMESPACE, RecordsDriver
        )
        options = plugins.declared_options(name, driver_cls, None)
    except exceptions.DriverLoadFailure as exc:
        raise exceptions.BadDriverConfiguration(name, exc.reason) from None
    # Registered here, once, and not by register_opts: centralized_db's
    # [database] connection is the service's own (Glance's, through oslo.db).
    plugins.register_options(conf, options)
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
    """The image cache of ``conf`` (``[DEFAULT] image_cache_*`` options).

    :param conf: the configuration its options are read from.
    :param eviction: which entries go first when room is needed, by
        ``prune`` and before an entry is published (fsstore.cache.policy);
        the default is ``LeastRecentlyUsed``, as in Glance. Not an option:
        a caller choosing another order passes it here.
    """

    def __init__(
        self, conf: cfg.ConfigOpts, eviction: EvictionPolicy | None = None
    ) -> None:
        # The cache's own options and every records driver's, once each.
        register_opts(conf)
        self.conf = conf
        records = load_records_driver(conf)
        self._directory = CacheDirectory(conf, records, eviction)
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

    def admits(self, size: int) -> bool:
        """Whether an image of ``size`` bytes may be cached at all: the
        cache policy's one size check (``CachePolicy.admits``).

        :param size: the image's size in bytes.
        """
        return self._directory.admits(size)

    # -- queries -------------------------------------------------------------

    def is_cached(self, image_id: str) -> bool:
        """Whether ``image_id`` is cached (published, readable).

        :param image_id: the image; Invalid if it is no valid image id.
        """
        return self._directory.is_cached(image_id)

    def is_queued(self, image_id: str) -> bool:
        """Whether ``image_id`` is queued for prefetching.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        return self._queue.is_queued(image_id)

    def is_being_cached(self, image_id: str) -> bool:
        """Whether a live writer is caching ``image_id`` now.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        return self._directory.is_being_cached(image_id)

    def is_cacheable(self, image_id: str) -> bool:
        """Whether ``image_id`` could be cached now: a name the records can
        hold, neither cached nor being cached.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        directory = self._directory
        return (
            directory.is_entry_name(validate_image_id(image_id))
            and not directory.is_cached(image_id)
            and not directory.is_being_cached(image_id)
        )

    def get_cache_size(self) -> int:
        """The recorded size of all cached images, in bytes."""
        return self._directory.records.total_size()

    def get_hit_count(self, image_id: str) -> int:
        """How often the cached ``image_id`` was read; 0 when not cached.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        validate_image_id(image_id)
        if not self._directory.is_entry_name(image_id):
            return 0
        return self._directory.records.hits(image_id)

    def get_cached_images(self) -> list[CachedImage]:
        """The records of every cached image, sorted by image id."""
        # By the id alone (ids are unique): a sort of strings, several times
        # faster than comparing tuples.
        return sorted(self._directory.entries(), key=_image_id)

    def get_queued_images(self) -> list[str]:
        """The queued image ids, the first queued first."""
        return self._queue.images()

    # -- queue ---------------------------------------------------------------

    def queue_image(
        self,
        image_id: str,
        location: str | None = None,
        expected: ExpectedArg = None,
    ) -> bool:
        """Queue for prefetching; whether it was queued (not if it is
        cached, being cached or queued already).

        :param image_id: the image to queue (Glance's one argument).
        :param location: where to fetch it from, recorded without its
            credentials (the stores use their configured ones).
        :param expected: what the prefetcher verifies it against, recorded
            too (see start_write); without it, the prefetcher's resolver
            may give one. A checksum string that is no MD5 hex digest
            could never be cached: the image is not queued (logged).
        """
        try:
            wanted = as_expected(expected) or Expected()
        except InvalidExpected as exc:
            not_cached(image_id, exc)
            return False
        return self._queue.add(
            image_id,
            location=None if location is None else without_credentials(location),
            checksum=wanted.checksum,
            multihash=wanted.multihash,
            hashing_algo=wanted.hashing_algo if wanted.multihash else None,
            unverified=True if wanted.allow_unverified else None,
        )

    def queued_image_info(self, image_id: str) -> dict[str, Any]:
        """What ``image_id``'s queue entry records (``location``, the
        digests, ``unverified``); empty for Glance's empty queue files.
        NotFound when it is not queued.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        return self._queue.info(image_id)

    def delete_queued_image(self, image_id: str) -> bool:
        """Dequeue ``image_id``; False if it was not queued.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        return self._queue.remove(image_id)

    def delete_all_queued_images(self) -> int:
        """Empty the queue: the number of images dequeued."""
        return self._queue.clear()

    # -- entries -------------------------------------------------------------

    def delete_cached_image(self, image_id: str) -> bool:
        """Remove the cached ``image_id``; False if it was not cached.

        :param image_id: the image; Invalid if it is no valid image id.
        """
        return self._directory.delete(image_id)

    def delete_all_cached_images(self) -> int:
        """Remove every cached image: the number of files removed."""
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
        expected: ExpectedArg = None,
    ) -> CacheWriter | None:
        """A writer for ``image_id`` (see fsstore.cache.writer), or None when
        it must not be cached now: cached, being cached by another writer, an
        id the records cannot hold, larger than the cache, or a checksum
        string that is no MD5 hex digest (logged; see as_expected).

        :param image_id: the image to cache.
        :param expected: what the data must match for ``commit()`` to
            publish it (fsstore.hashing.Expected, or Glance's MD5 hex
            digest); its ``size``, if given, is the declared size. One that
            names no digest is Invalid, unless it allows unverified caching
            by name: the entry is then recorded without a checksum
            (``CachedImage.verified`` is False).
        """
        validate_image_id(image_id)
        try:
            wanted = as_expected(expected)
        except InvalidExpected as exc:
            not_cached(image_id, exc)
            return None
        return self._directory.start_write(image_id, verifiable(image_id, wanted))

    def open_for_write(
        self,
        image_id: str,
        expected: ExpectedArg = None,
    ) -> contextlib.AbstractContextManager[CacheWriter | None]:
        """``start_write`` as a context manager: a clean exit commits, an
        exception fails the entry into ``invalid/``; None when it must not
        be cached now.

        :param image_id: the image to cache.
        :param expected: what the data must match (see start_write).
        """
        writer = self.start_write(image_id, expected)
        return contextlib.nullcontext() if writer is None else writer

    def get_caching_iter(
        self,
        image_id: str,
        expected: ExpectedArg,
        iterator: Iterable[bytes],
    ) -> CachingIterator:
        """Yield ``iterator``'s chunks, caching them on the way when possible
        (Glance's ``get_caching_iter(image_id, image_checksum, image_iter)``).

        The entry is published only if the stream completed and matched
        ``expected``. An exception from ``iterator`` reaches the caller;
        caching problems never do.

        :param image_id: the image read.
        :param expected: what the data must match (see start_write). With
            nothing to verify against, or an MD5 that could never match,
            the chunks pass through uncached.
        :param iterator: the image's chunks.
        """
        validate_image_id(image_id)
        try:
            wanted = verifiable(image_id, as_expected(expected))
        except InvalidExpected as exc:
            not_cached(image_id, exc)
            return CachingIterator(None, iterator)
        except exceptions.Invalid as exc:
            LOG.info("not caching %s: %s", image_id, exc)
            return CachingIterator(None, iterator)
        return CachingIterator(self.start_write(image_id, wanted), iterator)

    def cache_image_iter(
        self,
        image_id: str,
        iterator: Iterable[Any] | Any,
        expected: ExpectedArg = None,
    ) -> bool:
        """Cache everything ``iterator`` yields; True if it was published
        (Glance's ``cache_image_iter(image_id, image_iter, image_checksum)``).

        :param image_id: the image to cache.
        :param iterator: its data: chunks, or a file-like object.
        :param expected: what the data must match (see start_write):
            Invalid when it names no digest and does not allow unverified
            caching. Data longer or shorter than its ``size`` is not
            cached (False, the entry in ``invalid/``): the writer's one
            check of the whole Expected, as for a digest that differs.
        """
        writer = self.start_write(image_id, expected)
        if writer is None:
            return False
        with writer:
            # The writer copies what it keeps: views are enough. The size
            # is the writer's to check, not the source's (0: unchecked).
            for view in CheckedSource(iterator, image_id).views():
                writer.write(view)
        return writer.published

    def cache_image_file(
        self,
        image_id: str,
        image_file: BinaryIO,
        expected: ExpectedArg = None,
    ) -> bool:
        """Cache the data of ``image_file``; True if it was published
        (Glance's ``cache_image_file(image_id, image_file)``).

        :param image_id: the image to cache.
        :param image_file: its data, open for binary reading.
        :param expected: what the data must match (see start_write).
        """
        return self.cache_image_iter(image_id, image_file, expected)
