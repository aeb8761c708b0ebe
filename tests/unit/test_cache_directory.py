"""The cache directory's races, each forced at its trace point
(fsstore.tracing), and the promises the split modules keep together."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fsstore import tracing
from fsstore.cache.directory import CacheDirectory
from fsstore.cache.image_cache import load_records_driver
from fsstore.cache.writer import CacheWriter
from fsstore.hashing import Expected
from fsstore.testing.cache_suite import make_cache_conf

DATA = b"cached image " * 100


@pytest.fixture(params=["sqlite", "xattr"])
def cache_dir(request: pytest.FixtureRequest, tmp_path: Path) -> CacheDirectory:
    conf = make_cache_conf(tmp_path / "cache", str(request.param))
    directory = CacheDirectory(conf, load_records_driver(conf))
    directory.configure()
    return directory


def start(cache_dir: CacheDirectory, image_id: str, data: bytes) -> CacheWriter | None:
    md5 = hashlib.md5(data).hexdigest()
    return cache_dir.start_write(image_id, Expected(md5))


def names(cache_dir: CacheDirectory, sub: str) -> list[str]:
    return sorted(os.listdir(os.path.join(cache_dir.base_dir, sub)))


def test_a_writer_locking_just_after_another_published_drops_its_copy(
    cache_dir: CacheDirectory,
) -> None:
    first = start(cache_dir, "img", DATA)
    assert first is not None
    first.write(DATA)

    def publish_first(name: str) -> None:
        # Between the second writer's open of incomplete/img and its flock:
        # the first publishes, unlinks the name and lets go of its lock.
        if not first.ended:
            assert first.commit()

    with tracing.hooked(publish_first, {"locking.hold.opened"}):
        second = start(cache_dir, "img", DATA)
    assert second is None
    assert first.published and cache_dir.is_cached("img")
    assert names(cache_dir, "incomplete") == []
    with cache_dir.open_for_read("img") as f:
        assert f.read() == DATA


def test_an_entry_appearing_before_the_recheck_is_not_written_twice(
    cache_dir: CacheDirectory,
) -> None:
    appeared: list[str] = []

    def appear(name: str) -> None:
        if appeared:
            return  # the hook's own writer passing the same point
        appeared.append(name)
        other = start(cache_dir, "other", DATA)  # a whole entry, by the book
        assert other is not None
        other.write(DATA)
        assert other.commit()
        os.link(cache_dir.path("other"), cache_dir.path("img"))

    with tracing.hooked(appear, {"cache.start_write.locked"}):
        assert start(cache_dir, "img", DATA) is None
    assert appeared and cache_dir.is_cached("img")
    assert names(cache_dir, "incomplete") == []


def test_a_file_planted_while_publishing_is_kept_and_ours_dropped(
    cache_dir: CacheDirectory,
) -> None:
    writer = start(cache_dir, "img", DATA)
    assert writer is not None
    writer.write(DATA)

    def plant(name: str) -> None:
        Path(cache_dir.path("img")).write_bytes(b"planted")

    with tracing.hooked(plant, {"cache.publish.recorded"}):
        assert not writer.commit()
    assert writer.abandoned is not None and "taken by another file" in writer.abandoned
    assert Path(cache_dir.path("img")).read_bytes() == b"planted"
    assert [e.image_id for e in cache_dir.entries()] == []
    assert cache_dir.records.total_size() == 0
    assert names(cache_dir, "incomplete") == []


def test_a_reader_keeps_reading_an_entry_evicted_under_it(
    cache_dir: CacheDirectory,
) -> None:
    writer = start(cache_dir, "img", DATA)
    assert writer is not None
    writer.write(DATA)
    assert writer.commit()
    with cache_dir.open_for_read("img") as f:
        head = f.read(10)
        assert cache_dir.delete("img")
        assert head + f.read() == DATA
    assert not cache_dir.is_cached("img")


def test_the_cache_lock_is_reentrant_and_survives_its_file_being_removed(
    cache_dir: CacheDirectory,
) -> None:
    lock_path = cache_dir.path(".fsstore-cache.lock")
    with cache_dir.lock(), cache_dir.lock():
        assert cache_dir.prune() == (0, 0)  # takes it a third time
    os.unlink(lock_path)
    with cache_dir.lock():
        assert os.path.isfile(lock_path)  # a lock on the new file, not the old


def test_xattr_records_are_never_read_through_a_link_at_an_entry_name(
    tmp_path: Path,
) -> None:
    conf = make_cache_conf(tmp_path / "cache", "xattr")
    cache_dir = CacheDirectory(conf, load_records_driver(conf))
    cache_dir.configure()
    writer = start(cache_dir, "real", DATA)
    assert writer is not None
    writer.write(DATA)
    assert writer.commit()
    os.close(cache_dir.open_entry("real"))
    os.symlink("real", cache_dir.path("img"))
    assert cache_dir.records.hits("real") == 1
    assert cache_dir.records.hits("img") == 0  # the link's, not its target's
    assert [e.image_id for e in cache_dir.entries()] == ["real"]
