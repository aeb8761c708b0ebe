"""A real Glance 33.0.0 with its image cache on centralized_db, and fsstore
on the same cache directory and database.

Glance runs with the `trusted+caching` pipeline (its cache middleware),
`image_cache_driver = centralized_db` and its records in its own sqlite
database. What Glance cached, fsstore lists, serves, checks and prunes;
what fsstore cached, Glance serves from the cache (its hit lands in the
record both share).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator

import pytest

from fsstore.cache import ImageCache, central
from fsstore.testing.cache_suite import make_cache_conf
from tests.glance_api import GlanceAPI

SIZE = 3 * 1024 * 1024 + 11


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlanceAPI]:
    work = tmp_path_factory.mktemp("glance-cache")
    data = work / "data"
    api = GlanceAPI(
        work,
        {
            "DEFAULT": {
                "enabled_backends": "fast:fsstore_file",
                "image_cache_dir": str(work / "cache"),
                "image_cache_driver": "centralized_db",
            },
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": str(data / "fast")},
        },
        flavor="trusted+caching",
    )
    api.start()
    yield api
    api.stop()


def fsstore_cache(glance: GlanceAPI, **options: object) -> ImageCache:
    """fsstore's cache on Glance's directory, database and node."""
    conf = make_cache_conf(glance.workdir / "cache", "centralized_db", **options)
    central.register_opts(conf)
    conf.set_override("connection", f"sqlite:///{glance.database}", group="database")
    conf.set_override("worker_self_reference_url", glance.url)
    return ImageCache(conf)


def upload(glance: GlanceAPI, data: bytes) -> str:
    image_id = glance.create_image()
    glance.upload(image_id, data)
    return image_id


def test_what_glance_cached_fsstore_lists_serves_checks_and_prunes(glance):
    data = os.urandom(SIZE)
    image_id = upload(glance, data)
    cache = fsstore_cache(glance)
    assert not cache.is_cached(image_id)

    # Glance tees the first download into its cache.
    download = glance.request("GET", f"/v2/images/{image_id}/file")
    assert download.status == 200 and download.body == data
    assert wait_until(lambda: cache.is_cached(image_id))
    [entry] = [e for e in cache.get_cached_images() if e.image_id == image_id]
    assert entry.size == SIZE

    with cache.open_for_read(image_id) as f:
        assert f.read() == data
    assert cache.get_hit_count(image_id) == 1
    assert cache.check() == []

    # A limit below the entry's size: fsstore's prune evicts Glance's entry
    # and its record.
    small = fsstore_cache(glance, image_cache_max_size=1024)
    assert small.prune()[0] >= 1
    assert not small.is_cached(image_id)
    assert image_id not in {e.image_id for e in small.get_cached_images()}


def test_what_fsstore_cached_glance_serves_from_the_cache(glance):
    data = os.urandom(SIZE)
    image_id = upload(glance, data)
    cache = fsstore_cache(glance)
    checksum = hashlib.md5(data).hexdigest()
    assert cache.cache_image_iter(image_id, iter([data]), checksum)
    assert cache.get_hit_count(image_id) == 0

    download = glance.request("GET", f"/v2/images/{image_id}/file")
    assert download.status == 200 and download.body == data
    # Glance read it from the cache: its hit is in the record fsstore wrote.
    assert wait_until(lambda: cache.get_hit_count(image_id) >= 1)
    assert cache.get_hit_count(image_id) == 1
    assert cache.check() == []


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether ``condition`` came to hold before the deadline.

    Glance commits a cache entry, and records a hit, when the server closes
    the response's iterator, after the client has every byte: from outside,
    that can only be watched for.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_glance_lists_what_fsstore_cached(glance):
    data = os.urandom(1024)
    image_id = upload(glance, data)
    cache = fsstore_cache(glance)
    assert cache.cache_image_iter(image_id, iter([data]), hashlib.md5(data).hexdigest())
    listed = glance.request("GET", "/v2/cache")
    assert listed.status == 200, listed.body
    cached = {i["image_id"]: i for i in listed.json()["cached_images"]}
    assert cached[image_id]["size"] == 1024
