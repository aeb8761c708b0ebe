"""Cache drivers' own behaviour, read-through, and the prefetcher."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.cache import CachingStore, ImageCache, Prefetcher
from fsstore.hashing import Expected
from fsstore.registry import StoreRegistry
from fsstore.testing.cache_suite import make_cache_conf, md5
from fsstore.testing.suite import payload
from tests.helpers import is_root, load_conf, write_conf

GLANCE_SCHEMA = """
CREATE TABLE cached_images (
  image_id TEXT PRIMARY KEY,
  last_accessed REAL DEFAULT 0.0,
  last_modified REAL DEFAULT 0.0,
  size INTEGER DEFAULT 0,
  hits INTEGER DEFAULT 0,
  checksum TEXT
);
"""


def make(cache_dir: Path, driver: str = "sqlite", **options) -> ImageCache:
    return ImageCache(make_cache_conf(cache_dir, driver, **options))


# -- configuration ---------------------------------------------------------------


def test_no_cache_dir(tmp_path):
    conf = make_cache_conf(tmp_path, "sqlite")
    conf.clear_override("image_cache_dir")
    with pytest.raises(exceptions.BadDriverConfiguration, match="image_cache_dir"):
        ImageCache(conf)


def test_unknown_driver_does_not_fall_back(tmp_path):
    with pytest.raises(exceptions.BadDriverConfiguration, match="'centralized_db'"):
        make(tmp_path / "c", "centralized_db")
    assert not (tmp_path / "c" / "cache.db").exists()


@pytest.mark.skipif(not is_root(), reason="mounting ramfs needs root")
def test_xattr_without_user_xattrs(tmp_path):
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        with pytest.raises(exceptions.BadDriverConfiguration, match="extended attr"):
            make(mnt, "xattr")
        assert os.listdir(mnt / "incomplete") == []  # no probe file left behind
        assert make(mnt, "sqlite").get_cache_size() == 0  # sqlite works there
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.skipif(not is_root(), reason="a read-only mount needs root")
@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_unwritable_cache_dir(mount_tmpfs, driver):
    path = mount_tmpfs("ro", "1m")
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    with pytest.raises(exceptions.BadDriverConfiguration):
        make(path, driver)


def test_corrupt_sqlite_database(tmp_path):
    # Damaged records stop no one from repairing them: every use says what is
    # wrong in one line, and check --fix moves the file aside and rebuilds.
    (tmp_path / "img").write_bytes(b"cached bytes")
    (tmp_path / "cache.db").write_bytes(b"this is not a database" * 100)
    cache = make(tmp_path)
    for call in (cache.get_cached_images, cache.get_cache_size, cache.prune):
        with pytest.raises(exceptions.BackendException, match="cache.db") as raised:
            call()
        assert "\n" not in str(raised.value)
    [problem] = cache.check()
    assert problem.kind == "damaged-records"
    [problem] = cache.check(fix=True)
    assert "rebuilt the records" in problem.detail
    assert [(e.image_id, e.size, e.verified) for e in cache.get_cached_images()] == [
        ("img", 12, False)
    ]
    assert cache.check() == []
    [aside] = [p for p in os.listdir(tmp_path) if p.startswith(".fsstore-damaged-")]
    assert (tmp_path / aside).read_bytes().startswith(b"this is not a database")


# -- sqlite ------------------------------------------------------------------------


def test_sqlite_adopts_a_glance_cache(tmp_path):
    db = sqlite3.connect(tmp_path / "cache.db")
    db.executescript(GLANCE_SCHEMA)
    now = time.time()
    for image_id, data, hits in [("g1", b"one", 4), ("g2", b"second", 0)]:
        (tmp_path / image_id).write_bytes(data)
        db.execute(
            "INSERT INTO cached_images VALUES (?, ?, ?, ?, ?, ?)",
            (image_id, now, now, len(data), hits, md5(data)),
        )
    db.commit()
    db.close()
    (tmp_path / "image_cache_db_init").write_bytes(b"")  # Glance's lock file
    cache = make(tmp_path)
    assert [(r.image_id, r.size, r.hits) for r in cache.get_cached_images()] == [
        ("g1", 3, 4),
        ("g2", 6, 0),
    ]
    with cache.open_for_read("g1") as f:
        assert f.read() == b"one"
    assert cache.get_hit_count("g1") == 5
    assert cache.check() == []


def test_sqlite_records_that_name_no_entry_are_never_listed(tmp_path):
    cache = make(tmp_path)
    cache.cache_image_iter("a", iter([b"data"]), md5(b"data"))
    db = sqlite3.connect(tmp_path / "cache.db")
    for name in ("queue", "cache.db", ".fsstore-x", "a/b", "..", "x" * 300):
        db.execute("INSERT INTO cached_images (image_id) VALUES (?)", (name,))
    db.commit()
    db.close()
    for _ in range(3):  # the ids taken at one listing are not checked again
        assert [r.image_id for r in cache.get_cached_images()] == ["a"]
    assert cache.delete_cached_image("a")
    assert cache.get_cached_images() == []


def test_sqlite_cache_size_does_not_walk(tmp_path, monkeypatch):
    cache = make(tmp_path)
    cache.cache_image_iter("a", iter([b"12345"]), md5(b"12345"))

    def no_walking(*args, **kwargs):
        raise AssertionError("get_cache_size walked the directory")

    monkeypatch.setattr(os, "listdir", no_walking)
    monkeypatch.setattr(os, "scandir", no_walking)
    assert cache.get_cache_size() == 5


def test_sqlite_check_and_fix(tmp_path):
    cache = make(tmp_path)
    for image_id in ["keep", "lost", "resized"]:
        cache.cache_image_iter(image_id, iter([b"x" * 10]), md5(b"x" * 10))
    os.unlink(tmp_path / "lost")
    (tmp_path / "resized").write_bytes(b"y" * 25)
    (tmp_path / "stray").write_bytes(b"z" * 7)
    problems = {(p.kind, p.image_id) for p in cache.check()}
    assert problems == {
        ("missing-file", "lost"),
        ("unrecorded-file", "stray"),
        ("wrong-size", "resized"),
    }
    assert len(cache.check(fix=True)) == 3
    assert cache.check() == []
    assert {r.image_id: r.size for r in cache.get_cached_images()} == {
        "keep": 10,
        "resized": 25,
        "stray": 7,
    }
    assert cache.get_cache_size() == 42


def test_check_fix_enforces_the_limit(tmp_path):
    cache = make(tmp_path)
    for image_id in "abc":
        cache.cache_image_iter(image_id, iter([b"x" * 100]), md5(b"x" * 100))
    smaller = make(tmp_path, image_cache_max_size=150)
    assert [p.kind for p in smaller.check(fix=True)] == ["over-limit"]
    assert smaller.get_cache_size() <= 150


def test_sqlite_uses_wal(tmp_path):
    make(tmp_path)
    db = sqlite3.connect(tmp_path / "cache.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- xattr ---------------------------------------------------------------------------


def test_xattr_adopts_a_glance_cache_and_checks_hits(tmp_path):
    make(tmp_path, "xattr")
    (tmp_path / "g1").write_bytes(b"glance")
    os.setxattr(tmp_path / "g1", "user.hits", b"7")
    (tmp_path / "g2").write_bytes(b"hits attribute is not a number")
    os.setxattr(tmp_path / "g2", "user.hits", b"many")
    (tmp_path / "README").write_bytes(b"no hits attribute: not an entry")
    cache = make(tmp_path, "xattr")
    rows = {r.image_id: r.hits for r in cache.get_cached_images()}
    assert rows == {"g1": 7, "g2": 0}
    assert [(p.kind, p.image_id) for p in cache.check()] == [("bad-hits", "g2")]
    cache.check(fix=True)
    assert cache.check() == []
    assert os.getxattr(tmp_path / "g2", "user.hits") == b"0"
    assert (tmp_path / "README").exists()


def test_xattr_hit_sets_access_time(tmp_path):
    cache = make(tmp_path, "xattr")
    cache.cache_image_iter("a", iter([b"data"]), md5(b"data"))
    os.utime(tmp_path / "a", (1000, 1000))  # as if read long ago (relatime)
    with cache.open_for_read("a") as f:
        f.read()
    assert os.stat(tmp_path / "a").st_atime > time.time() - 60
    assert os.stat(tmp_path / "a").st_mtime == 1000


def test_invalid_entry_records_its_error(tmp_path):
    cache = make(tmp_path, "xattr")
    cache.cache_image_iter("bad", iter([b"data"]), expected="0" * 32)
    error = os.getxattr(tmp_path / "invalid" / "bad", "user.error").decode()
    assert f"md5 {md5(b'data')}, {'0' * 32} was expected" in error


def settle(cache_dir: Path) -> None:
    """Make every entry's last change older than the clock and the
    directory's mtime, so that a listing remembers its records."""
    time.sleep(0.06)
    (cache_dir / "stray").write_bytes(b"")
    (cache_dir / "stray").unlink()


def listed(cache: ImageCache) -> dict[str, tuple[int, str | None]]:
    return {e.image_id: (e.hits, e.checksum) for e in cache.get_cached_images()}


def read(cache: ImageCache, image_id: str) -> None:
    with cache.open_for_read(image_id) as f:
        f.read()


def test_xattr_listing_sees_every_write_since_the_last(tmp_path):
    cache = make(tmp_path, "xattr")
    cache.cache_image_iter("a", iter([b"data"]), md5(b"data"))
    cache.cache_image_iter("b", iter([b"b"]), Expected(allow_unverified=True))
    settle(tmp_path)
    assert listed(cache) == {"a": (0, md5(b"data")), "b": (0, None)}
    for hits in (1, 2, 3):  # within one tick of the clock, as fast as it goes
        read(cache, "a")
        assert listed(cache)["a"] == (hits, md5(b"data"))
    os.setxattr(tmp_path / "a", "user.hits", b"9")
    os.setxattr(tmp_path / "b", "user.checksum", b"c" * 32)
    assert listed(cache) == {"a": (9, md5(b"data")), "b": (0, "c" * 32)}
    settle(tmp_path)
    assert listed(cache) == {"a": (9, md5(b"data")), "b": (0, "c" * 32)}
    read(cache, "a")
    assert listed(cache)["a"] == (10, md5(b"data"))
    assert cache.get_cache_size() == 5


def test_xattr_listing_of_an_entry_cached_again(tmp_path):
    cache = make(tmp_path, "xattr")
    for _ in range(3):
        cache.cache_image_iter("a", iter([b"old"]), Expected(allow_unverified=True))
        read(cache, "a")
        settle(tmp_path)
        assert listed(cache) == {"a": (1, None)}
        assert cache.delete_cached_image("a")
        # Its inode is free: the new file may get the same number.
        cache.cache_image_iter("a", iter([b"new"]), md5(b"new"))
        assert listed(cache) == {"a": (0, md5(b"new"))}
        assert cache.delete_cached_image("a")
    assert listed(cache) == {}
    assert cache.get_cache_size() == 0


# -- hits recorded while the reader reads ---------------------------------------------


def test_a_failed_hit_is_logged_never_raised(tmp_path, caplog):
    # The reader has every byte: a fault in the records is not its error.
    cache = make(tmp_path, "sqlite")
    cache.cache_image_iter("img", iter([b"data"]), md5(b"data"))
    other = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    other.execute("DROP TABLE cached_images")
    f = cache.open_for_read("img")
    assert f.read() == b"data"
    f.close()
    assert f.closed
    assert "hit on cached image img not recorded" in caplog.text
    assert "cached_images" in caplog.text


def test_a_reader_inherited_by_a_forked_child_counts_one_hit(tmp_path):
    cache = make(tmp_path, "sqlite")
    cache.cache_image_iter("img", iter([b"data"]), md5(b"data"))
    f = cache.open_for_read("img")
    pid = os.fork()
    if pid == 0:  # the child closes its copy: the hit is the opener's
        try:
            f.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get_hit_count("img") == 0
    f.close()
    assert cache.get_hit_count("img") == 1


def test_an_unclosed_reader_is_closed_at_exit_without_a_trace(tmp_path):
    # Kept in a reference cycle with the collector off, the reader is closed
    # by the interpreter's last collection: its hit is recorded (or logged),
    # and nothing hangs or prints a traceback.
    script = f"""
import gc
from fsstore.cache import ImageCache
from fsstore.hashing import Expected
from fsstore.testing.cache_suite import make_cache_conf

cache = ImageCache(make_cache_conf({str(tmp_path)!r}, "sqlite"))
cache.cache_image_iter("img", iter([b"data"]), Expected(allow_unverified=True))
gc.disable()
cycle = [cache.open_for_read("img")]
cycle.append(cycle)
assert cycle[0].read() == b"data"
del cycle
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


# -- read-through --------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path) -> StoreRegistry:
    conf = load_conf(
        write_conf(
            tmp_path / "glance-api.conf",
            {"glance_store": {"filesystem_store_datadir": str(tmp_path / "images")}},
        )
    )
    return StoreRegistry(conf)


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_read_through(tmp_path, registry, driver):
    cache = make(tmp_path / "cache", driver)
    caching = CachingStore(registry, cache)
    data = payload(700_000, seed=1)
    result = registry.add("img", iter([data]), len(data))
    chunks, length = caching.get("img", result.location, expected=result.checksum)
    assert (length, b"".join(chunks)) == (len(data), data)
    assert cache.is_cached("img") and cache.get_hit_count("img") == 0
    # Now from the cache, even with the store's copy gone.
    registry.delete(result.location)
    chunks, length = caching.get("img", result.location, expected=result.checksum)
    assert b"".join(chunks) == data
    chunks, length = caching.get("img", result.location, offset=10, chunk_size=5)
    assert (length, b"".join(chunks)) == (5, data[10:15])
    assert cache.get_hit_count("img") == 2
    with pytest.raises(exceptions.Invalid, match="past the end"):
        caching.get("img", result.location, offset=len(data))


def test_read_through_verifies_before_publishing(tmp_path, registry):
    cache = make(tmp_path / "cache")
    caching = CachingStore(registry, cache)
    data = payload(200_000)
    result = registry.add("img", iter([data]), len(data))
    # The store's copy is corrupt: the caller still gets what the store has
    # (the image service's own verification decides), but it is not cached.
    path = result.location[len("file://") :]
    with open(path, "r+b") as f:
        f.write(b"CORRUPT")
    chunks, _ = caching.get("img", result.location, expected=result.checksum)
    assert b"".join(chunks)[:7] == b"CORRUPT"
    assert not cache.is_cached("img")
    assert os.listdir(tmp_path / "cache" / "invalid") == ["img"]


def test_read_through_without_checksum_or_ranged_does_not_cache(tmp_path, registry):
    cache = make(tmp_path / "cache")
    caching = CachingStore(registry, cache)
    result = registry.add("img", iter([b"0123456789"]), 10)
    assert b"".join(caching.get("img", result.location)[0]) == b"0123456789"
    chunks, length = caching.get(
        "img", result.location, expected=result.checksum, offset=2, chunk_size=3
    )
    assert (b"".join(chunks), length) == (b"234", 3)
    assert not cache.is_cached("img")
    with pytest.raises(exceptions.Invalid):
        caching.get("../img", result.location, expected=result.checksum)


def test_read_through_with_a_checksum_that_is_no_md5_digest(tmp_path, registry):
    """The image is served, as ever, and simply not cached."""
    cache = make(tmp_path / "cache")
    caching = CachingStore(registry, cache)
    result = registry.add("img", iter([b"0123456789"]), 10)
    chunks, length = caching.get("img", result.location, "not-an-md5")
    assert (b"".join(chunks), length) == (b"0123456789", 10)
    assert not cache.is_cached("img") and cache.is_cacheable("img")
    assert os.listdir(tmp_path / "cache" / "invalid") == []


def test_read_through_with_multihash(tmp_path, registry):
    cache = make(tmp_path / "cache")
    caching = CachingStore(registry, cache)
    result = registry.add("img", iter([b"abc"]), 3, hashing_algo="sha256")
    chunks, _ = caching.get(
        "img",
        result.location,
        Expected(multihash=result.multihash, hashing_algo="sha256"),
    )
    assert b"".join(chunks) == b"abc"
    assert cache.is_cached("img")


# -- prefetcher -----------------------------------------------------------------------


def test_prefetcher_survives_failures(tmp_path, registry):
    cache = make(tmp_path / "cache")
    good = {}
    for i in range(5):
        data = payload(100_000 + i, seed=i)
        result = registry.add(f"good{i}", iter([data]), len(data))
        cache.queue_image(
            f"good{i}", location=result.location, expected=result.checksum
        )
        good[f"good{i}"] = data
    cache.queue_image("missing", location=f"file://{tmp_path}/images/missing")
    bad = registry.add("corrupt", iter([b"data"]), 4)
    cache.queue_image("corrupt", location=bad.location, expected="0" * 32)
    cache.queue_image("nowhere")  # a Glance-style queue entry, no resolver
    done = []
    report = Prefetcher(cache, registry, workers=3).run(
        on_done=lambda i, ok: done.append((i, ok))
    )
    assert sorted(report.cached) == sorted(good)
    assert sorted(report.failed) == ["corrupt", "missing", "nowhere"]
    assert len(done) == 8
    assert cache.get_queued_images() == []
    for image_id, data in good.items():
        with cache.open_for_read(image_id) as f:
            assert f.read() == data
    assert sorted(os.listdir(tmp_path / "cache" / "invalid")) == [
        "corrupt",
        "missing",
        "nowhere",
    ]


def test_prefetcher_refuses_an_image_larger_than_the_cache(tmp_path, registry):
    """The limit is the cache policy's, inclusive: an image of exactly
    image_cache_max_size bytes is prefetched, one byte more fails."""
    cache = make(tmp_path / "cache", image_cache_max_size=10)
    for image_id, data in (("exact", b"e" * 10), ("over", b"o" * 11)):
        result = registry.add(image_id, iter([data]), len(data))
        cache.queue_image(image_id, result.location, result.checksum)
    report = Prefetcher(cache, registry).run()
    assert report.cached == ["exact"]
    assert "larger than image_cache_max_size" in report.failed["over"]
    assert cache.get_queued_images() == []


def test_prefetcher_resolves_glance_queue_entries(tmp_path, registry):
    cache = make(tmp_path / "cache")
    result = registry.add("img", iter([b"resolved"]), 8)
    cache.queue_image("img")
    resolve = {"img": {"location": result.location, "checksum": result.checksum}}
    report = Prefetcher(cache, registry, resolve=resolve.__getitem__).run()
    assert report.cached == ["img"]
    assert hashlib.md5(b"resolved").hexdigest() == cache.get_cached_images()[0].checksum


@pytest.mark.parametrize("driver", [None, "xattr"])
def test_cache_from_an_unmodified_glance_sample(tmp_path, driver):
    from tests.functional.test_registry import FIXTURES, set_options

    options = {"image_cache_dir": str(tmp_path / "cache")}
    if driver:
        options["image_cache_driver"] = driver
    text = set_options(
        (FIXTURES / "glance-api.conf.sample").read_text(), "DEFAULT", **options
    )
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(text)
    cache = ImageCache(load_conf(conf_file))
    assert (driver or "sqlite") == cache.driver_name
    assert cache.max_size == 10737418240
    assert cache.cache_image_iter("img", iter([b"data"]), md5(b"data"))
    assert (tmp_path / "cache" / "img").read_bytes() == b"data"


# -- large entries go through the write pipeline ----------------------------------------


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_large_entries(tmp_path, driver):
    cache = make(tmp_path / "cache", driver, image_cache_max_size=20 * 2**20)
    data = payload(12 * 2**20 + 5, seed=3)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert cache.cache_image_iter("big", iter(chunks), md5(data))
    with cache.open_for_read("big") as f:
        assert f.read() == data
    assert not cache.cache_image_iter("bad", iter(chunks), md5(b"other"))
    assert os.listdir(tmp_path / "cache" / "invalid") == ["bad"]
    # Past the limit only once streaming: abandoned midway, nothing kept.
    huge = payload(24 * 2**20, seed=4)
    it = cache.get_caching_iter(
        "huge", md5(huge), iter([huge[: 12 * 2**20], huge[12 * 2**20 :]])
    )
    assert b"".join(it) == huge
    assert not cache.is_cached("huge")
    assert os.listdir(tmp_path / "cache" / "incomplete") == []
    assert [r.image_id for r in cache.get_cached_images()] == ["big"]


@pytest.mark.parametrize("end", ["discard", "fail", "commit"])
def test_a_writer_past_the_pipeline_threshold_ends_its_threads(tmp_path, end):
    # Past PIPELINE_THRESHOLD the writer hashes and writes on threads of its
    # own; every way of ending it must stop them and release the file.
    import threading

    from fsstore.writepath import PIPELINE_THRESHOLD

    cache = make(tmp_path / "cache")
    data = payload(PIPELINE_THRESHOLD + 3 * 1024 * 1024)
    before = threading.active_count()
    writer = cache.start_write("img", md5(data))
    assert writer is not None
    for start in range(0, len(data), 1024 * 1024):
        writer.write(data[start : start + 1024 * 1024])
    assert threading.active_count() > before
    getattr(writer, end)(*(["stream broke"] if end == "fail" else []))
    assert threading.active_count() == before
    assert cache.is_cached("img") == (end == "commit")
    assert os.listdir(tmp_path / "cache" / "incomplete") == []
    assert os.listdir(tmp_path / "cache" / "invalid") == (
        ["img"] if end == "fail" else []
    )


def test_an_unknown_hashing_algo_leaves_the_image_cacheable(tmp_path):
    cache = make(tmp_path / "cache")
    with pytest.raises(exceptions.FsstoreError):
        cache.start_write("img", Expected(md5(b"x"), hashing_algo="no-such-algo"))
    assert os.listdir(tmp_path / "cache" / "incomplete") == []
    assert cache.is_cacheable("img")
    assert cache.cache_image_iter("img", iter([b"x"]), md5(b"x"))


def test_the_writer_checks_the_expected_size(tmp_path):
    """The Expected a writer is given is checked whole: its size too."""
    data = b"data"
    cache = make(tmp_path / "cache")
    for image_id, size, reason in (
        ("short", 5, "4 of 5 bytes"),
        ("long", 3, "4 bytes, 3 were expected"),
    ):
        writer = cache.start_write(image_id, Expected(md5(data), size=size))
        assert writer is not None
        writer.write(data)
        assert not writer.commit()
        assert writer.rejected == reason
    assert cache.get_cached_images() == []
    assert sorted(os.listdir(tmp_path / "cache" / "invalid")) == ["long", "short"]
    assert cache.cache_image_iter("exact", iter([data]), Expected(md5(data), size=4))


@pytest.mark.parametrize("size", [3, 5])
def test_cache_image_iter_refuses_a_wrong_size_one_way(tmp_path, size):
    """Longer or shorter than the declared size: not cached, and False
    either way (the writer's one check), never an exception."""
    data = b"data"
    cache = make(tmp_path / "cache")
    wanted = Expected(md5(data), size=size)
    assert not cache.cache_image_iter("img", iter([b"da", b"ta"]), wanted)
    assert cache.get_cached_images() == []
    assert os.listdir(tmp_path / "cache" / "invalid") == ["img"]


# -- one expected argument -------------------------------------------------------


@pytest.mark.parametrize(
    "keyword", ["checksum", "multihash", "hashing_algo", "size", "allow_unverified"]
)
def test_the_keywords_before_expected_are_refused(tmp_path, keyword):
    """What the data must match is one ``expected``: a keyword the cache
    took before it is a TypeError naming it, never quietly ignored."""
    cache = make(tmp_path)
    for call in (
        lambda **kw: cache.start_write("a", **kw),
        lambda **kw: cache.cache_image_iter("a", iter([b"data"]), **kw),
        lambda **kw: cache.queue_image("a", "file:///x/a", **kw),
    ):
        with pytest.raises(TypeError, match=keyword):
            call(**{keyword: md5(b"data")})
    assert not cache.is_cached("a") and not cache.is_queued("a")
