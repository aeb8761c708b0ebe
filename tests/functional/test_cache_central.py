"""The centralized_db cache driver: Glance's records in a real database.

The shared cache suite runs on it over SQLite and over a real PostgreSQL
server (tests/databases.py); the tests below add what only a shared
database has: nodes, Glance's tables, and a database that is not ours.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsstore.cache import ImageCache, central
from fsstore.exceptions import BadDriverConfiguration
from fsstore.testing.cache_suite import CacheDriverConformanceTests, make_cache_conf
from tests.databases import PostgresServer
from tests.functional.test_cli import fails, ok, run
from tests.glance_api import glance_db_sync
from tests.helpers import write_conf

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


@pytest.mark.mariadb
class TestCentralOnMariaDB(CentralConformance):
    @pytest.fixture
    def database_url(self, mariadb: Any) -> str:
        return mariadb.create_database(f"t{uuid.uuid4().hex[:12]}")


@pytest.mark.mariadb
def test_two_nodes_on_mariadb(tmp_path, mariadb):
    two_nodes_on_one_database(tmp_path, mariadb.create_database("two_nodes"))


# -- what only a shared database has -------------------------------------------


def test_two_nodes_on_one_database_see_only_their_own(tmp_path, postgres):
    two_nodes_on_one_database(
        tmp_path, postgres.create_database(f"n{uuid.uuid4().hex[:12]}")
    )


def two_nodes_on_one_database(tmp_path: Path, url: str) -> None:
    a = central_cache(tmp_path / "a", url, "http://a.example:9292")
    b = central_cache(
        tmp_path / "b", url, "http://b.example:9292", image_cache_max_size=3 * KiB
    )
    for image_id in ("shared", "only-a"):
        assert a.cache_image_iter(image_id, iter([data(image_id)]), md5(image_id))
    for image_id in ("shared", "b1", "b2"):
        assert b.cache_image_iter(image_id, iter([data(image_id)]), md5(image_id))
    assert [e.image_id for e in sorted(a.get_cached_images())] == ["only-a", "shared"]
    # b's limit is its own: 3 KiB of b's entries, whatever a holds.
    assert b.get_cache_size() <= 3 * KiB
    assert "only-a" not in {e.image_id for e in b.get_cached_images()}
    with a.open_for_read("shared") as f:
        f.read()
    assert a.get_hit_count("shared") == 1
    assert b.get_hit_count("shared") == 0
    assert a.delete_all_cached_images() == 2
    assert a.get_cached_images() == []
    assert b.get_cache_size() > 0
    assert b.check() == []


KiB = 1024


def data(image_id: str) -> bytes:
    return (image_id.encode() * 1024)[: KiB + len(image_id)]


def md5(image_id: str) -> str:
    import hashlib

    return hashlib.md5(data(image_id)).hexdigest()


def tables(url: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_glance_database_is_used_as_it_is(tmp_path):
    url = f"sqlite:///{tmp_path}/glance.sqlite"
    glance_db_sync(tmp_path / "glance", url)
    before = tables(url)
    assert {"images", "cached_images", "node_reference"} <= before
    cache = central_cache(tmp_path / "cache", url)
    assert cache.cache_image_iter("img", iter([data("img")]), md5("img"))
    assert tables(url) == before
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as db:
        rows = db.execute(
            sa.text(
                "SELECT c.image_id, c.size, c.hits, n.node_reference_url "
                "FROM cached_images c JOIN node_reference n "
                "ON c.node_reference_id = n.node_reference_id"
            )
        ).fetchall()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("img", len(data("img")), 0, NODE)]


def test_a_database_without_the_cache_tables_is_not_touched(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/old-glance.sqlite"
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE images (id VARCHAR(36) PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(BadDriverConfiguration, match="glance-manage db sync") as caught:
        central_cache(tmp_path / "cache", url)
    assert "\n" not in str(caught.value)
    assert tables(url) == {"images"}


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"connection": None}, r"\[database\] connection is not set"),
        ({"node": ""}, "worker_self_reference_url is not set"),
        ({"connection": "not a url"}, "not an SQLAlchemy URL"),
        (
            {"connection": "postgresql+psycopg2://u:hunter2@127.0.0.1:1/x"},
            "database postgresql",
        ),
    ],
)
def test_bad_database_settings_are_one_line(tmp_path, settings, complaint):
    url = settings.get("connection", f"sqlite:///{tmp_path}/x.sqlite")
    node = settings.get("node", NODE)
    with pytest.raises(BadDriverConfiguration, match=complaint) as caught:
        central_cache(tmp_path / "cache", url, node)
    assert "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_ids_longer_than_glance_records_are_served_not_cached(tmp_path):
    cache = central_cache(tmp_path / "cache", f"sqlite:///{tmp_path}/g.sqlite")
    long_id = "x" * 37
    assert not cache.is_cacheable(long_id)
    assert not cache.cache_image_iter(long_id, iter([b"data"]), md5(long_id))
    assert cache.get_cached_images() == []


def central_conf_file(tmp_path: Path, url: str) -> Path:
    """A glance-api.conf with a centralized_db cache on ``url``."""
    return write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {
                "image_cache_dir": str(tmp_path / "cache"),
                "image_cache_driver": "centralized_db",
                "worker_self_reference_url": NODE,
            },
            "database": {"connection": url},
        },
    )


def test_the_command_on_a_central_cache(tmp_path, postgres):
    url = postgres.create_database(f"c{uuid.uuid4().hex[:12]}")
    args = ["--config-file", str(central_conf_file(tmp_path, url))]
    cache = central_cache(tmp_path / "cache", url)
    assert cache.cache_image_iter("img", iter([data("img")]), md5("img"))
    listed = json.loads(ok(*args, "--format", "json", "cache", "list").stdout)
    assert [(e["image_id"], e["size"]) for e in listed] == [("img", len(data("img")))]
    # A file nobody recorded: check names it, --fix records it.
    (tmp_path / "cache" / "stray").write_bytes(b"stray")
    checked = run(*args, "--format", "json", "cache", "check")
    assert checked.returncode == 1
    report = json.loads(checked.stdout)
    assert [(p["kind"], p["image_id"]) for p in report["problems"]] == [
        ("unrecorded-file", "stray")
    ]
    ok(*args, "cache", "check", "--fix")
    report = json.loads(ok(*args, "--format", "json", "cache", "check").stdout)
    assert report["problems"] == []
    assert ok(*args, "cache", "size").stdout.startswith(
        str(len(data("img")) + 5).encode()
    )


def test_the_command_names_an_unreachable_database_in_one_line(tmp_path):
    conf = central_conf_file(tmp_path, "postgresql+psycopg2://u:s3cr3t@127.0.0.1:1/x")
    err = fails(2, "--config-file", str(conf), "cache", "list", match="127.0.0.1:1")
    assert "s3cr3t" not in err


def test_a_restarted_database_server_costs_no_operation(tmp_path):
    # Every pooled connection dies with the server; the next statement is
    # tried once more on a fresh connection instead of failing.
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("restarted")
        cache = central_cache(tmp_path / "cache", url)
        assert cache.cache_image_iter("img", iter([data("img")]), md5("img"))
        server.restart()
        with cache.open_for_read("img") as f:
            assert f.read() == data("img")
        assert cache.get_hit_count("img") == 1
        server.restart()
        assert cache.cache_image_iter("two", iter([data("two")]), md5("two"))
        assert [e.image_id for e in sorted(cache.get_cached_images())] == [
            "img",
            "two",
        ]
    finally:
        server.stop()


def test_many_reader_threads_leave_the_pool_to_the_rest(tmp_path, postgres):
    # Each thread that records a hit keeps a connection of its own, outside
    # the engine's pool (5 + 10 overflow): 24 reader threads must not starve
    # the operations that need the pool.
    import threading

    cache = central_cache(
        tmp_path / "cache", postgres.create_database(f"r{uuid.uuid4().hex[:12]}")
    )
    assert cache.cache_image_iter("img", iter([data("img")]), md5("img"))
    barrier = threading.Barrier(24)

    def reader() -> None:
        with cache.open_for_read("img") as f:
            f.read()
        barrier.wait(timeout=60)  # every thread has recorded its hit

    threads = [threading.Thread(target=reader) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert cache.get_hit_count("img") == 24
    assert [e.image_id for e in cache.get_cached_images()] == ["img"]
