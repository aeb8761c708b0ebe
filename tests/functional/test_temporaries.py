"""Temporary files of atomic writes: under the reserved prefix, so one a
crash leaves is never taken for an image, a cache entry or a queued id, and
the cache's clean reaps it once it is stale."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fsstore import safefiles
from fsstore.cache import ImageCache
from fsstore.safefiles import TEMPORARY_PREFIX
from fsstore.store import RESERVED_PREFIX, image_id_problem
from fsstore.testing.cache_base import make_cache_conf


def test_temporary_names_are_reserved() -> None:
    assert TEMPORARY_PREFIX.startswith(RESERVED_PREFIX)
    assert image_id_problem(TEMPORARY_PREFIX + "0123abcd") is not None


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageCache:
    # Without /proc/self/fd no anonymous file can be linked: every atomic
    # write goes through a named temporary, as on such systems.
    monkeypatch.setattr(safefiles, "HAVE_PROC_FD", False)
    return ImageCache(make_cache_conf(tmp_path / "cache", "sqlite"))


def test_a_queue_write_leaves_only_its_entry(cache: ImageCache, tmp_path: Path) -> None:
    assert cache.queue_image("img", "file:///srv/images/img")
    assert cache.get_queued_images() == ["img"]
    assert os.listdir(tmp_path / "cache" / "queue") == ["img"]
    assert not cache.queue_image("img", "file:///srv/images/img")  # queued already
    assert os.listdir(tmp_path / "cache" / "queue") == ["img"]


@pytest.mark.parametrize(
    "prefix",
    [TEMPORARY_PREFIX, ".fsstore-queue-"],  # the previous release's queue writes
)
def test_a_temporary_left_by_a_crash_is_never_queued_and_is_reaped(
    cache: ImageCache, tmp_path: Path, prefix: str
) -> None:
    queue = tmp_path / "cache" / "queue"
    stale, fresh = queue / (prefix + "0123abcd"), queue / (prefix + "4567ef")
    stale.write_bytes(b'{"location": "file:///x"}')
    fresh.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert cache.get_queued_images() == []
    assert cache.clean(stall_time=60).left == ()
    # The stale one is a crash's; the fresh one may be a writer's, mid-write.
    assert sorted(os.listdir(queue)) == [fresh.name]
