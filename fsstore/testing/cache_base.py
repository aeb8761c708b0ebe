"""The base of the cache drivers' behavioural suite (fsstore.testing.
cache_suite): the cache it runs on, its configuration, and its helpers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from fsstore.cache import ImageCache
from fsstore.hashing import Expected
from fsstore.registry import register_opts

KiB = 1024
#: What a test passes to cache an image it has no digest for.
UNVERIFIED = Expected(allow_unverified=True)


def make_cache_conf(cache_dir: Path, driver: str, **options: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("image_cache_dir", str(cache_dir))
    conf.set_override("image_cache_driver", driver)
    for name, value in options.items():
        conf.set_override(name, value)
    return conf


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class CacheSuiteBase:
    """The fixtures and helpers every part of the suite uses."""

    driver = "sqlite"

    @pytest.fixture
    def cache_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "cache"

    @pytest.fixture
    def make_cache(self, cache_dir: Path) -> Callable[..., ImageCache]:
        def make(**options: Any) -> ImageCache:
            return ImageCache(make_cache_conf(cache_dir, self.driver, **options))

        return make

    @pytest.fixture
    def cache(self, make_cache: Callable[..., ImageCache]) -> ImageCache:
        return make_cache()

    # -- helpers -------------------------------------------------------------

    def put(self, cache: ImageCache, image_id: str, data: bytes) -> bool:
        return cache.cache_image_iter(image_id, iter([data]), md5(data))

    def read(self, cache: ImageCache, image_id: str) -> bytes:
        with cache.open_for_read(image_id) as f:
            return f.read()

    def names(self, cache: ImageCache, sub: str) -> list[str]:
        return sorted(os.listdir(os.path.join(cache.base_dir, sub)))
