"""fsstore's conformance suites, run on this plugin's store and cache driver.

A driver author copies this file into the driver's own tests and changes the
names. It needs only fsstore's public testing API and pytest
(``pip install 'fsstore[testing]'``), with the plugin installed, so that
fsstore finds it through its entry points as it finds any driver.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg

from fsstore import Store, StoreRegistry, register_opts
from fsstore.testing import StoreConformanceTests, StoreFactory
from fsstore.testing.cache_suite import CacheDriverConformanceTests


def load_conf(path: Path) -> cfg.ConfigOpts:
    """A configuration read from one file only (none of the default files)."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], default_config_files=[])
    return conf


class TestMemoryStore(StoreConformanceTests):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        # A Glance-style file naming the driver (its entry point name in
        # fsstore.backends) and one option of its own: each test gets a new,
        # configured, empty store.
        path = tmp_path / "glance-api.conf"
        path.write_text(
            "[glance_store]\n"
            "stores = example_memory\n"
            "default_store = memory\n"
            "example_memory_capacity = 268435456\n"
        )
        return StoreRegistry(load_conf(path)).get_store()

    def store_factory(self, store: Store) -> StoreFactory | None:
        # The races between processes need a store that another process can
        # build and that holds what this one holds. Images in memory are seen
        # by no other process: None skips those races (the races between
        # threads still run). A store on disk or on a server keeps the
        # default, which builds the store again from the same files.
        return None


class TestJsonRecordsCacheDriver(CacheDriverConformanceTests):
    # The driver's entry point name in fsstore.cache_drivers.
    driver = "example_json"
