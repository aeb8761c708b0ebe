"""The centralized_db cache driver: Glance's records in a real database.

The shared cache suite runs on it over SQLite and over a real PostgreSQL
server (tests/databases.py); the tests below add what only a shared
database has: nodes, Glance's tables, and a database that is not ours.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsstore.cache import ImageCache, central
from fsstore.testing.cache_suite import CacheDriverConformanceTests, make_cache_conf

NODE = "http://node-a.example:9292"


def central_cache(
    cache_dir: Path, database_url: str, node: str = NODE, **options: Any
) -> ImageCache:
    conf = make_cache_conf(cache_dir, "centralized_db", **options)
    central.register_opts(conf)
    conf.set_override("connection", database_url, group="database")
    conf.set_override("worker_self_reference_url", node)
    return ImageCache(conf)


class CentralConformance(CacheDriverConformanceTests):
    driver = "centralized_db"

    @pytest.fixture
    def make_cache(
        self, cache_dir: Path, database_url: str
    ) -> Callable[..., ImageCache]:
        def make(**options: Any) -> ImageCache:
            return central_cache(cache_dir, database_url, **options)

        return make


class TestCentralOnSqlite(CentralConformance):
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/glance.sqlite"


class TestCentralOnPostgres(CentralConformance):
    @pytest.fixture
    def database_url(self, postgres: Any) -> str:
        return postgres.create_database(f"t{uuid.uuid4().hex[:12]}")
