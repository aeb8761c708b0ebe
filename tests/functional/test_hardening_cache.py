"""Hostile cache options and faults in the cache's records.

The cache promises that only images are entries, that nothing unverified is
published unless asked for, that its limit holds, and that a fault in its
records never reaches a reader who got every byte. Each test tries to break
one of these.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.cache import CachingStore, ImageCache, Prefetcher
from fsstore.registry import StoreRegistry
from fsstore.testing.cache_suite import UNVERIFIED, make_cache_conf, md5
from fsstore.testing.suite import payload
from tests.helpers import load_conf, write_conf


def make(cache_dir: Path, driver: str = "sqlite", **options) -> ImageCache:
    return ImageCache(make_cache_conf(cache_dir, driver, **options))


def file_registry(tmp_path: Path) -> StoreRegistry:
    """A filesystem store in ``tmp_path/images``, configured from a file."""
    conf = write_conf(
        tmp_path / "g.conf",
        {"glance_store": {"filesystem_store_datadir": str(tmp_path / "images")}},
    )
    return StoreRegistry(load_conf(conf))


def names(path: Path) -> set[str]:
    return set(os.listdir(path))


# -- the database is never an image -------------------------------------------


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
@pytest.mark.parametrize("spelling", ["absolute", "dot-slash", "dot-dot"])
def test_the_database_is_never_an_entry(tmp_path, driver, spelling):
    cache_dir = tmp_path / "cache"
    db = {
        "absolute": str(cache_dir / "records.db"),
        "dot-slash": "./records.db",
        "dot-dot": f"../{cache_dir.name}/records.db",
    }[spelling]
    # The sqlite driver writes the database; the xattr driver must skip one
    # that a previous sqlite run left there.
    sqlite_cache = make(cache_dir, "sqlite", image_cache_sqlite_db=db)
    assert sqlite_cache.cache_image_iter("img", iter([b"data"]), md5(b"data"))
    cache = make(cache_dir, driver, image_cache_sqlite_db=db)
    assert {"records.db", "records.db-wal", "records.db-shm"} <= names(cache_dir)
    for name in ("records.db", "records.db-wal", "records.db-shm"):
        assert not cache.is_cached(name)
    listed = [e.image_id for e in cache.get_cached_images()]
    assert listed == (["img"] if driver == "sqlite" else [])  # no user.hits
    assert cache.check() == []
    assert cache.check(fix=True) == []
    cache.delete_all_cached_images()
    assert "records.db" in names(cache_dir)
    # The xattr driver's delete-all leaves the sqlite run's entry: it has no
    # user.hits, so it is no entry of the xattr cache.
    assert ("img" in names(cache_dir)) == (driver == "xattr")


@pytest.mark.parametrize("sub", ["incomplete", "invalid", "queue"])
def test_a_database_among_the_caches_own_files_is_refused(tmp_path, sub):
    with pytest.raises(exceptions.BadDriverConfiguration, match=f"{sub}/"):
        make(tmp_path, "sqlite", image_cache_sqlite_db=f"{sub}/cache.db")


# -- xattr: only files with user.hits are entries ------------------------------


def test_xattr_strays_are_not_entries(tmp_path):
    cache = make(tmp_path, "xattr", image_cache_max_size=100)
    assert cache.cache_image_iter("img", iter([b"x" * 60]), md5(b"x" * 60))
    for stray in ("README", "x.lock", ".hidden"):
        (tmp_path / stray).write_bytes(b"s" * 90)
    assert [e.image_id for e in cache.get_cached_images()] == ["img"]
    assert cache.get_cache_size() == 60
    for stray in ("README", "x.lock", ".hidden"):
        assert not cache.is_cached(stray)
        with pytest.raises(exceptions.NotFound):
            cache.open_for_read(stray)
    # Strays count for nothing against the limit, and are never deleted.
    assert cache.cache_image_iter("two", iter([b"y" * 30]), md5(b"y" * 30))
    for stray in ("README", "x.lock"):
        assert not cache.delete_cached_image(stray)
    assert cache.delete_all_cached_images() == 2
    assert {"README", "x.lock", ".hidden"} <= names(tmp_path)


# -- record faults never reach a reader ----------------------------------------


def test_a_full_records_file_system_does_not_fail_the_reader(
    tmp_path, mount_tmpfs, caplog
):
    records = mount_tmpfs("records", "256k")
    registry = file_registry(tmp_path)
    cache_dir = tmp_path / "cache"
    cache = make(cache_dir, "sqlite", image_cache_sqlite_db=str(records / "cache.db"))
    data = payload(300_000, seed=3)
    location = registry.add("img", iter([data]), len(data)).location
    # Fill the records' file system to the last byte.
    try:
        with open(records / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    chunks, _ = CachingStore(registry, cache).get("img", location, md5(data))
    assert b"".join(chunks) == data  # no exception: the image is just not cached
    assert "not caching img: cache database" in caplog.text
    assert "full" in caplog.text
    assert not cache.is_cached("img")
    assert names(cache_dir / "incomplete") == set()


# -- lost records --------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from fsstore.cache import ImageCache
from fsstore.testing.cache_suite import make_cache_conf, md5
cache = ImageCache(make_cache_conf(Path(sys.argv[1]), "sqlite",
                                   image_cache_max_size=3000))
data = b"n" * 2000
assert cache.cache_image_iter("from-new-process", iter([data]), md5(data))
"""


def test_the_limit_holds_when_the_database_is_deleted(tmp_path):
    cache = make(tmp_path, "sqlite", image_cache_max_size=3000)
    assert cache.cache_image_iter("old-1", iter([b"o" * 2000]), md5(b"o" * 2000))
    for suffix in ("", "-wal", "-shm"):
        os.unlink(tmp_path / f"cache.db{suffix}")
    # A new process creates the database again, rebuilding the records from
    # the files, and commits under the limit.
    subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], check=True)
    # The old process notices its database is gone and uses the new one.
    assert cache.cache_image_iter("old-2", iter([b"p" * 2000]), md5(b"p" * 2000))
    entries = {
        n: (tmp_path / n).stat().st_size
        for n in names(tmp_path)
        if n.startswith(("old", "from"))
    }
    assert sum(entries.values()) <= 3000, entries
    assert {e.image_id for e in cache.get_cached_images()} == set(entries)
    assert cache.check() == []


def test_a_new_database_adopts_the_files_before_the_next_commit(tmp_path):
    cache = make(tmp_path, "sqlite", image_cache_max_size=3000)
    assert cache.cache_image_iter("a", iter([b"a" * 2000]), md5(b"a" * 2000))
    del cache
    os.unlink(tmp_path / "cache.db")
    cache = make(tmp_path, "sqlite", image_cache_max_size=3000)
    assert [(e.image_id, e.verified) for e in cache.get_cached_images()] == [
        ("a", False)
    ]
    assert cache.cache_image_iter("b", iter([b"b" * 2000]), md5(b"b" * 2000))
    assert names(tmp_path) & {"a", "b"} == {"b"}


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "zeroed-page"],
)
def test_a_damaged_database_is_one_line_and_repairable(tmp_path, damage):
    cache = make(tmp_path, "sqlite")
    for i in range(50):
        data = payload(100 + i, seed=i)
        assert cache.cache_image_iter(f"img{i}", iter([data]), md5(data))
    del cache
    db = sqlite3.connect(tmp_path / "cache.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = (tmp_path / "cache.db").read_bytes()
    damaged = {
        "garbage": b"not a database" * 500,
        "truncated": raw[:600],
        "zeroed-page": raw[:4096] + b"\xff" * 4096 + raw[8192:],
    }[damage]
    (tmp_path / "cache.db").write_bytes(damaged)
    cache = make(tmp_path, "sqlite")
    try:
        cache.get_cached_images()
    except exceptions.BackendException as exc:
        assert "cache.db" in str(exc) and "\n" not in str(exc)
    cache.check(fix=True)
    assert len(cache.get_cached_images()) == 50
    assert cache.check() == []


# -- nothing unverified unless asked for by name -------------------------------


def test_caching_without_a_digest_needs_the_operator_to_ask(tmp_path):
    cache = make(tmp_path / "cache")
    with pytest.raises(exceptions.Invalid, match="no checksum or multihash"):
        cache.cache_image_iter("a", iter([b"data"]))
    (tmp_path / "f").write_bytes(b"data")
    with open(tmp_path / "f", "rb") as f, pytest.raises(exceptions.Invalid):
        cache.cache_image_file("a", f)
    it = cache.get_caching_iter("a", None, iter([b"data"]))
    assert not it.caching and b"".join(it) == b"data"
    assert not cache.is_cached("a")
    assert cache.cache_image_iter("a", iter([b"data"]), UNVERIFIED)
    [entry] = cache.get_cached_images()
    assert (entry.image_id, entry.checksum, entry.verified) == ("a", None, False)


def test_the_prefetcher_refuses_an_unverifiable_queue_entry(tmp_path):
    registry = file_registry(tmp_path)
    location = registry.add("img", iter([b"data"]), 4).location
    cache = make(tmp_path / "cache")
    cache.queue_image("img", location=location)
    report = Prefetcher(cache, registry).run()
    assert "no checksum or multihash" in report.failed["img"]
    assert not cache.is_cached("img")
    cache.queue_image("img", location=location, expected=UNVERIFIED)
    assert Prefetcher(cache, registry).run().cached == ["img"]
    assert [e.verified for e in cache.get_cached_images()] == [False]


def test_queue_files_are_private_and_keep_no_credentials(tmp_path):
    cache = make(tmp_path)
    secret = "SE/CR+ET@%:x"
    cache.queue_image("img", location=f"s3://AKIA:{secret}@host/bucket/img")
    path = tmp_path / "queue" / "img"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret.encode() not in path.read_bytes()
    assert b"AKIA" not in path.read_bytes()
    assert cache.queued_image_info("img")["location"] == "s3://host/bucket/img"


# -- a subdirectory swapped for a link after configure --------------------------


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_a_subdirectory_swapped_for_a_link_is_never_followed(tmp_path, driver):
    # configure() refuses a link where invalid/, incomplete/ or queue/
    # belongs; one swapped in while a cache is in use must not be followed
    # either: clean() would empty, and writers fill, wherever it leads.
    cache = make(tmp_path / "cache", driver)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "img").write_bytes(b"precious")
    for sub in ("invalid", "incomplete", "queue"):
        os.rmdir(tmp_path / "cache" / sub)
        (tmp_path / "cache" / sub).symlink_to(elsewhere)
    with pytest.raises(OSError, match="symbolic link where a directory belongs"):
        cache.clean()
    assert not cache.cache_image_iter("img", iter([b"data"]), md5(b"other"))
    assert not cache.cache_image_iter("img", iter([b"data"]), md5(b"data"))
    with pytest.raises(OSError, match="symbolic link"):
        cache.queue_image("img", location="file:///x/img")
    with pytest.raises(OSError, match="symbolic link"):
        cache.get_queued_images()
    assert os.listdir(elsewhere) == ["img"]
    assert (elsewhere / "img").read_bytes() == b"precious"


def test_a_writer_that_cannot_empty_its_file_lets_go_of_its_lock(tmp_path, monkeypatch):
    """A failure between taking an incomplete/ file's lock and emptying it
    closes the file: a lock kept would mark the image as being cached by a
    live writer for the life of the process, and nobody could cache it."""
    cache = make(tmp_path / "cache")
    data = payload(10_000, seed=4)
    real = os.ftruncate

    def full(fd: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "ftruncate", full)
    assert not cache.cache_image_iter("img", iter([data]), md5(data))
    assert not cache.is_being_cached("img")
    monkeypatch.setattr(os, "ftruncate", real)
    assert cache.cache_image_iter("img", iter([data]), md5(data))
    assert cache.is_cached("img")
