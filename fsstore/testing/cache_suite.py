"""Behavioural tests shared by every cache driver.

Subclass :class:`CacheDriverConformanceTests` and name the driver::

    class TestMyCacheDriver(CacheDriverConformanceTests):
        driver = "mydriver"   # its name in the fsstore.cache_drivers namespace

Override the ``cache_dir`` fixture to put the cache on a particular file
system (the default is pytest's ``tmp_path``).

The suite's parts: fsstore.testing.cache_base (the cache it runs on and its
helpers) and fsstore.testing.cache_limits (the size limit).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.cache import ImageCache
from fsstore.hashing import Expected

# make_cache_conf, md5, KiB and UNVERIFIED are imported from here by users.
from fsstore.testing.cache_base import (  # noqa: F401
    UNVERIFIED,
    KiB,
    make_cache_conf,
    md5,
)
from fsstore.testing.cache_limits import CacheLimitTests
from fsstore.testing.suite import HOSTILE_IDS, payload


class CacheDriverConformanceTests(CacheLimitTests):
    """The suite: subclass it and set ``driver`` (see the module docstring)."""

    # -- basics --------------------------------------------------------------

    def test_empty(self, cache: ImageCache) -> None:
        assert cache.get_cache_size() == 0
        assert cache.get_cached_images() == []
        assert cache.get_queued_images() == []
        assert not cache.is_cached("a")
        assert cache.is_cacheable("a")

    def test_cache_read_and_count_hits(self, cache: ImageCache) -> None:
        data = payload(300 * KiB)
        assert self.put(cache, "img", data)
        assert cache.is_cached("img")
        assert not cache.is_cacheable("img")
        assert cache.get_cache_size() == len(data)
        for _ in range(3):
            assert self.read(cache, "img") == data
        assert cache.get_hit_count("img") == 3
        [row] = cache.get_cached_images()
        assert (row.image_id, row.size, row.hits) == ("img", len(data), 3)
        assert row.last_accessed >= row.last_modified > 0
        assert self.names(cache, "incomplete") == []

    def test_hits_from_many_threads_are_all_counted(self, cache: ImageCache) -> None:
        # Each reader records its hit on its own thread when it closes the
        # file: the driver's hit() must be exact from any number of threads.
        assert self.put(cache, "img", b"x" * 4096)

        def read_many() -> None:
            for _ in range(25):
                assert self.read(cache, "img") == b"x" * 4096

        threads = [threading.Thread(target=read_many) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cache.get_hit_count("img") == 4 * 25

    def test_listing_sorted_by_id(self, cache: ImageCache) -> None:
        for image_id in ["c", "a", "b"]:
            self.put(cache, image_id, image_id.encode())
        assert [r.image_id for r in cache.get_cached_images()] == ["a", "b", "c"]

    def test_cached_twice_is_refused(self, cache: ImageCache) -> None:
        assert self.put(cache, "img", b"first")
        assert not self.put(cache, "img", b"second")
        assert self.read(cache, "img") == b"first"

    def test_read_of_uncached_is_not_found(self, cache: ImageCache) -> None:
        with pytest.raises(exceptions.NotFound):
            cache.open_for_read("nope").__enter__()

    def test_cache_image_file(self, cache: ImageCache, tmp_path: Path) -> None:
        data = payload(200 * KiB, seed=3)
        assert cache.cache_image_file("f", io.BytesIO(data), md5(data))
        assert self.read(cache, "f") == data

    # -- verification ----------------------------------------------------------

    def test_checksum_mismatch_goes_to_invalid(self, cache: ImageCache) -> None:
        data = payload(100 * KiB)
        assert not cache.cache_image_iter("bad", iter([data]), md5(b"other"))
        assert not cache.is_cached("bad")
        assert self.names(cache, "invalid") == ["bad"]
        assert cache.clean() == (1, 0, ())
        assert self.names(cache, "invalid") == []

    def test_multihash_is_verified(self, cache: ImageCache) -> None:
        data = payload(100 * KiB)
        good = hashlib.sha256(data).hexdigest()
        wrong = Expected(multihash="0" * 64, hashing_algo="sha256")
        assert not cache.cache_image_iter("x", iter([data]), wrong)
        assert cache.cache_image_iter(
            "y", iter([data]), Expected(md5(data), good, "sha256")
        )
        assert self.names(cache, "invalid") == ["x"]

    def test_caching_iter_publishes_only_a_verified_whole(
        self, cache: ImageCache
    ) -> None:
        data = payload(500 * KiB, seed=2)
        chunks = [data[i : i + 64 * KiB] for i in range(0, len(data), 64 * KiB)]
        it = cache.get_caching_iter("img", md5(data), iter(chunks))
        assert it.caching
        assert b"".join(it) == data
        assert it.published
        assert self.read(cache, "img") == data

    def test_caching_iter_stream_error_reaches_caller(self, cache: ImageCache) -> None:
        def broken() -> Iterator[bytes]:
            yield b"some"
            raise OSError("the store went away")

        it = cache.get_caching_iter("img", UNVERIFIED, broken())
        with pytest.raises(OSError, match="went away"):
            list(it)
        assert not cache.is_cached("img")
        assert self.names(cache, "invalid") == ["img"]
        assert self.names(cache, "incomplete") == []

    def test_caching_iter_closed_early_is_discarded(self, cache: ImageCache) -> None:
        it = cache.get_caching_iter("img", md5(b"abc"), iter([b"a", b"b", b"c"]))
        assert next(it) == b"a"
        it.close()
        assert not cache.is_cached("img")
        assert self.names(cache, "incomplete") == []
        assert self.names(cache, "invalid") == []

    def test_second_writer_streams_without_caching(self, cache: ImageCache) -> None:
        data = payload(64 * KiB)
        first = cache.get_caching_iter("img", md5(data), iter([data]))
        assert first.caching
        assert cache.is_being_cached("img")
        assert not cache.is_cacheable("img")
        second = cache.get_caching_iter("img", md5(data), iter([data]))
        assert not second.caching
        assert b"".join(second) == data
        assert b"".join(first) == data
        assert self.read(cache, "img") == data

    def test_writer_is_ended_explicitly(self, cache: ImageCache) -> None:
        data = payload(64 * KiB)
        writer = cache.start_write("kept", md5(data))
        assert writer is not None
        writer.write(data)
        assert cache.is_being_cached("kept") and not cache.is_cached("kept")
        assert cache.start_write("kept", md5(data)) is None  # one writer
        assert writer.commit() is True
        assert cache.is_cached("kept") and not cache.is_being_cached("kept")
        # Ending twice changes nothing: the first end is the one that counts.
        writer.discard()
        writer.fail("late")
        assert writer.commit() is True
        assert self.read(cache, "kept") == data

        dropped = cache.start_write("dropped", md5(data))
        assert dropped is not None
        dropped.write(data[:100])
        dropped.discard()
        assert not cache.is_cached("dropped") and cache.is_cacheable("dropped")

        failed = cache.start_write("failed", md5(data))
        assert failed is not None
        failed.write(data[:100])
        failed.fail("the source reset the connection")
        assert not cache.is_cached("failed")

        short = cache.start_write("short", md5(data))
        assert short is not None
        short.write(data[:100])
        assert short.commit() is False
        assert short.rejected is not None and "was expected" in short.rejected
        assert self.names(cache, "incomplete") == []
        assert self.names(cache, "invalid") == ["failed", "short"]
        assert [e.image_id for e in cache.get_cached_images()] == ["kept"]

    @pytest.mark.parametrize("stray", ["regular", "symlink", "fifo", "directory"])
    def test_publish_never_replaces_what_is_at_the_name(
        self, cache: ImageCache, tmp_path: Path, stray: str
    ) -> None:
        # Something appears at <dir>/<id> while the image is being written
        # (left by hand, by a crash of Glance, or planted): publishing must
        # leave it exactly as it is and say the image was not cached.
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        data = payload(4 * KiB)
        writer = cache.start_write("img", md5(data))
        assert writer is not None
        writer.write(data)
        at = Path(cache.base_dir) / "img"
        if stray == "regular":
            at.write_bytes(b"stray bytes")
        elif stray == "symlink":
            at.symlink_to(victim)
        elif stray == "fifo":
            os.mkfifo(at)
        else:
            at.mkdir()
            (at / "inside").write_bytes(b"kept")
        before = os.lstat(at)
        assert writer.commit() is False
        assert not writer.published
        after = os.lstat(at)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
        if stray == "regular":
            assert at.read_bytes() == b"stray bytes"
        elif stray == "symlink":
            assert os.readlink(at) == str(victim)
        elif stray == "directory":
            assert os.listdir(at) == ["inside"]
        assert victim.read_bytes() == b"precious"
        assert "img" not in [r.image_id for r in cache.get_cached_images()]
        assert self.names(cache, "incomplete") == []

    def test_writer_needs_a_digest_unless_unverified_is_named(
        self, cache: ImageCache
    ) -> None:
        with pytest.raises(exceptions.Invalid, match="no checksum or multihash"):
            cache.start_write("img")
        writer = cache.start_write("img", UNVERIFIED)
        assert writer is not None
        writer.write(b"data")
        assert writer.commit()
        [entry] = cache.get_cached_images()
        assert not entry.verified

    def test_a_checksum_that_is_no_md5_digest_is_not_cached(
        self, cache: ImageCache, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Glance's checksum comes from an image's metadata: one that could
        never match means the image is not cached, never an error."""
        bad = "not-an-md5"
        assert cache.start_write("img", bad) is None
        with cache.open_for_write("img", bad) as writer:
            assert writer is None
        assert not cache.cache_image_iter("img", iter([b"data"]), bad)
        assert not cache.cache_image_file("img", io.BytesIO(b"data"), bad)
        it = cache.get_caching_iter("img", bad, iter([b"da", b"ta"]))
        assert b"".join(it) == b"data" and not it.caching
        assert not cache.queue_image("img", "file:///x/img", bad)
        assert cache.is_cacheable("img") and not cache.is_queued("img")
        assert self.names(cache, "invalid") == []
        assert self.names(cache, "incomplete") == []
        assert "not caching img" in caplog.text and repr(bad) in caplog.text

    def test_writer_as_a_context_manager(self, cache: ImageCache) -> None:
        with cache.open_for_write("img", md5(b"abc")) as writer:
            assert writer is not None
            writer.write(b"abc")
        assert writer.published and cache.is_cached("img")
        with pytest.raises(ValueError), cache.open_for_write("bad", md5(b"x")) as w:
            assert w is not None
            w.write(b"x")
            raise ValueError("the stream broke")
        assert not cache.is_cached("bad")
        assert self.names(cache, "invalid") == ["bad"]
        with cache.open_for_write("img", md5(b"abc")) as again:
            assert again is None  # cached already

    # -- queue -----------------------------------------------------------------

    def test_queue(self, cache: ImageCache) -> None:
        assert cache.queue_image("b", location="file:///x/b", expected=md5(b"b"))
        assert cache.queue_image("a")
        assert not cache.queue_image("a")
        assert cache.is_queued("a")
        assert cache.get_queued_images() == ["b", "a"]
        assert cache.queued_image_info("b") == {
            "location": "file:///x/b",
            "checksum": md5(b"b"),
        }
        assert cache.queued_image_info("a") == {}
        assert cache.delete_queued_image("b")
        assert not cache.delete_queued_image("b")
        assert cache.delete_all_queued_images() == 1
        assert cache.get_queued_images() == []

    def test_a_queue_entry_records_what_is_expected(self, cache: ImageCache) -> None:
        sha256 = hashlib.sha256(b"c").hexdigest()
        assert cache.queue_image("c", "file:///x/c", Expected(None, sha256, "sha256"))
        assert cache.queue_image("u", "file:///x/u", UNVERIFIED)
        assert cache.queued_image_info("c") == {
            "location": "file:///x/c",
            "multihash": sha256,
            "hashing_algo": "sha256",
        }
        assert cache.queued_image_info("u") == {
            "location": "file:///x/u",
            "unverified": True,
        }
        # Glance's checksum that is no MD5 digest: not queued, not raised.
        assert not cache.queue_image("bad", "file:///x/bad", "not an md5")
        assert not cache.is_queued("bad")

    def test_cached_image_is_not_queued_and_commit_dequeues(
        self, cache: ImageCache
    ) -> None:
        assert cache.queue_image("img")
        self.put(cache, "img", b"data")
        assert not cache.is_queued("img")
        assert not cache.queue_image("img")

    # -- deletion ----------------------------------------------------------------

    def test_delete(self, cache: ImageCache) -> None:
        for image_id in ["a", "b", "c"]:
            self.put(cache, image_id, b"x" * 10)
        assert cache.delete_cached_image("a")
        assert not cache.delete_cached_image("a")
        assert cache.get_cache_size() == 20
        assert cache.delete_all_cached_images() == 2
        assert cache.get_cached_images() == []
        assert cache.get_cache_size() == 0

    # -- only images count ---------------------------------------------------------

    def test_only_images_count(self, cache: ImageCache) -> None:
        base = Path(cache.base_dir)
        junk = [
            "image_cache_db_init",
            "cache.db-journal",
            ".fsstore-cache.lock",
            ".fsstore-other",
        ]
        for name in junk:
            (base / name).write_bytes(b"not an image" * 100)
        (base / "a-directory").mkdir()
        self.put(cache, "real", b"image")
        assert [r.image_id for r in cache.get_cached_images()] == ["real"]
        assert cache.get_cache_size() == 5
        for name in junk:
            if name.startswith(".fsstore-"):
                with pytest.raises(exceptions.Invalid):
                    cache.is_cached(name)
            else:
                assert not cache.is_cached(name)
        assert not cache.is_cached("a-directory")
        assert not cache.is_cached("queue")
        cache.delete_all_cached_images()
        cache.prune()
        for name in junk:
            assert (base / name).exists()

    @pytest.mark.parametrize("image_id", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
    def test_hostile_ids(self, cache: ImageCache, image_id: str) -> None:
        for op in (
            cache.is_cached,
            cache.is_queued,
            cache.queue_image,
            cache.delete_cached_image,
            cache.delete_queued_image,
            cache.get_hit_count,
            lambda i: cache.cache_image_iter(i, iter([b"x"]), md5(b"x")),
            lambda i: cache.get_caching_iter(i, md5(b"x"), iter([b"x"])),
            lambda i: cache.open_for_read(i).__enter__(),
        ):
            with pytest.raises(exceptions.Invalid):
                op(image_id)

    # -- clean and check ---------------------------------------------------------------

    def test_clean_reaps_crashed_but_never_live_writers(
        self, cache: ImageCache
    ) -> None:
        base = Path(cache.base_dir)
        (base / "incomplete" / "crashed").write_bytes(b"partial")
        live = base / "incomplete" / "live"
        live.write_bytes(b"being written")
        with open(live, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            # A stall time of 0 would reap everything old; the lock decides.
            assert cache.clean(stall_time=0) == (0, 1, ())
            assert self.names(cache, "incomplete") == ["live"]
        assert cache.clean(stall_time=10**9) == (0, 1, ())
        assert self.names(cache, "incomplete") == []

    def test_clean_reports_what_it_cannot_remove_and_goes_on(
        self, cache: ImageCache
    ) -> None:
        base = Path(cache.base_dir)
        for sub in ("invalid", "incomplete"):
            (base / sub / "planted").mkdir()
            (base / sub / "planted" / "inside").write_bytes(b"kept")
        (base / "invalid" / "failed").write_bytes(b"partial")
        (base / "incomplete" / "crashed").write_bytes(b"partial")
        cleaned = cache.clean()
        assert cleaned[:2] == (1, 1)
        assert sorted(cleaned.left) == [
            "incomplete/planted: a directory",
            "invalid/planted: a directory",
        ]
        assert self.names(cache, "invalid") == ["planted"]
        assert self.names(cache, "incomplete") == ["planted"]
        assert (base / "invalid" / "planted" / "inside").read_bytes() == b"kept"

    def test_check_of_a_consistent_cache(self, cache: ImageCache) -> None:
        self.put(cache, "a", b"x")
        assert cache.check() == []
        assert cache.check(fix=True) == []
