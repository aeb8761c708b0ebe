"""Third-party drivers installed for real (tests/plugins/), loaded by stevedore.

``make test`` pip-installs tests/plugins/example (a store and a cache driver)
and tests/plugins/broken (entry points that must fail) into the test venv.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

import fsstore
from fsstore import exceptions, opts
from fsstore.cache import ImageCache
from fsstore.registry import StoreRegistry
from fsstore.testing import StoreConformanceTests
from fsstore.testing.cache_suite import (
    UNVERIFIED,
    CacheDriverConformanceTests,
    make_cache_conf,
)
from tests.functional.test_cli import fails, ok
from tests.helpers import load_conf, write_conf


def example_conf(tmp_path: Path, **glance_store: str) -> Path:
    return write_conf(
        tmp_path / "glance-api.conf",
        {
            "glance_store": {
                "stores": "example_memory",
                "default_store": "memory",
                **glance_store,
            }
        },
    )


class TestExampleStoreConformance(StoreConformanceTests):
    @pytest.fixture
    def store(self, tmp_path: Path):
        registry = StoreRegistry(load_conf(example_conf(tmp_path)))
        store = registry.get_store()
        assert type(store).__module__ == "fsstore_example.store"
        return store

    def store_factory(self, store):
        return None  # its images live in the test's process: no races there


class TestExampleCacheDriverConformance(CacheDriverConformanceTests):
    driver = "example_json"


def test_example_store_option_and_capacity(tmp_path):
    registry = StoreRegistry(
        load_conf(example_conf(tmp_path, example_memory_capacity="10"))
    )
    registry.add("a", iter([b"x" * 8]), 8)
    with pytest.raises(exceptions.StorageFull):
        registry.add("b", iter([b"x" * 8]), 8)


def test_example_store_bad_option_names_the_store(tmp_path):
    with pytest.raises(
        exceptions.BadStoreConfiguration, match="example_memory_capacity"
    ):
        StoreRegistry(load_conf(example_conf(tmp_path, example_memory_capacity="-1")))


def test_example_beside_the_filesystem_store(tmp_path):
    path = write_conf(
        tmp_path / "multi.conf",
        {
            "DEFAULT": {"enabled_backends": "disk:file, ram:example_memory"},
            "glance_store": {"default_backend": "disk"},
            "disk": {"filesystem_store_datadir": str(tmp_path / "images")},
            "ram": {"example_memory_capacity": "1000"},
        },
    )
    registry = StoreRegistry(load_conf(path))
    on_disk = registry.add("a", iter([b"disk"]), 4)
    in_ram = registry.add("a", iter([b"ram"]), 3, backend="ram")
    assert in_ram.location == "memory://a"
    assert in_ram.metadata == {"store": "ram"}
    assert b"".join(registry.get(in_ram.location)[0]) == b"ram"
    assert b"".join(registry.get(on_disk.location)[0]) == b"disk"
    records = json.loads(
        ok("--config-file", str(path), "stores", "--format", "json").stdout
    )
    assert [(r["name"], r["driver"], r["schemes"]) for r in records] == [
        ("disk", "file", ["file", "filesystem"]),
        ("ram", "example_memory", ["memory"]),
    ]


def test_cache_with_the_example_driver_from_config(tmp_path):
    cache = ImageCache(make_cache_conf(tmp_path / "cache", "example_json"))
    assert type(cache.records).__name__ == "JsonRecordsDriver"
    assert cache.cache_image_iter("img", iter([b"cached"]), UNVERIFIED)
    with cache.open_for_read("img") as f:
        assert f.read() == b"cached"
    assert cache.get_hit_count("img") == 1


@pytest.mark.parametrize(
    ("driver", "message"),
    [
        (
            "broken_import",
            "driver 'broken_import' could not be loaded: entry point "
            "'fsstore_broken.missing_module:Store' failed to import: No module "
            "named 'fsstore_broken.missing_module'",
        ),
        (
            "broken_not_a_store",
            "driver 'broken_not_a_store' could not be loaded: "
            "<class 'fsstore_broken.NotAStore'> is not a subclass "
            "of fsstore.store.Store",
        ),
        (
            "no_such_driver",
            "driver 'no_such_driver' could not be loaded: no driver of "
            "that name in the 'fsstore.backends' entry points",
        ),
    ],
)
def test_broken_store_plugin(tmp_path, driver, message):
    path = write_conf(
        tmp_path / "c.conf",
        {
            "glance_store": {
                "stores": f"file,{driver}",
                "filesystem_store_datadir": str(tmp_path / "images"),
            }
        },
    )
    with pytest.raises(exceptions.DriverLoadFailure) as caught:
        StoreRegistry(load_conf(path))
    assert str(caught.value) == message
    fails(2, "--config-file", str(path), "stores", match=message)


def test_broken_cache_plugin(tmp_path):
    conf = make_cache_conf(tmp_path, "broken_not_a_driver")
    with pytest.raises(
        exceptions.BadDriverConfiguration,
        match="'broken_not_a_driver'.*not a subclass of fsstore.cache.records.RecordsDriver",
    ):
        ImageCache(conf)


def test_example_options_are_listed_and_registered_like_builtin_ones(caplog):
    with caplog.at_level(logging.WARNING, logger="fsstore.opts"):
        listed = dict(opts.list_opts())
    assert "example_memory_capacity" in {o.dest for o in listed["glance_store"]}
    builtin = dict(opts.list_builtin_opts())
    assert "example_memory_capacity" not in {o.dest for o in builtin["glance_store"]}
    conf = cfg.ConfigOpts()
    fsstore.register_opts(conf)
    conf([], default_config_files=[])
    assert conf.glance_store.example_memory_capacity == 256 * 1024**2


def test_the_generator_lists_the_example_and_names_each_broken_plugin(tmp_path):
    out = tmp_path / "sample.conf"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("oslo-config-generator")),
            "--namespace",
            "fsstore",
            "--output-file",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "#example_memory_capacity = 268435456" in out.read_text()
    assert "#filesystem_store_datadir = " in out.read_text()
    for broken in ("broken_import", "broken_not_a_store", "broken_not_a_driver"):
        assert f"driver {broken!r} could not be loaded" in done.stderr
