"""The filesystem store runs the shared conformance suite, in both staging modes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fsstore.backends.filesystem import FilesystemStore
from fsstore.testing import StoreConformanceTests
from tests.helpers import load_conf, tree


@dataclasses.dataclass(frozen=True)
class FilesystemStoreFactory:
    """The store of a conf file in the staging mode the test chose, built in
    any process (the suite's races between processes)."""

    conf_file: str
    tmpfile: bool

    def __call__(self) -> FilesystemStore:
        store = FilesystemStore(load_conf(Path(self.conf_file)))
        store.configure()
        for datadir in store.datadirs:
            datadir.tmpfile = datadir.tmpfile and self.tmpfile
        return store


class TestFilesystemStoreConformance(StoreConformanceTests):
    io_size = 64 * 1024
    keeps_digests = True

    @pytest.fixture(params=["tmpfile", "named"])
    def store(self, request: pytest.FixtureRequest, make_fs_store: Any, tmp_path: Path):
        return make_fs_store(
            staging=request.param,
            filesystem_store_datadirs=[
                f"{tmp_path / 'high'}:200",
                f"{tmp_path / 'low'}:100",
            ],
        )

    def leftovers(self, store: FilesystemStore) -> Any:
        # Everything on disk, images included: the tests compare before/after
        # a failed add, so any staging file or partial image shows up.
        return {d.path: tree(Path(d.path)) for d in store.datadirs}

    def store_factory(self, store: FilesystemStore) -> FilesystemStoreFactory:
        (conf_file,) = store.conf.config_file
        return FilesystemStoreFactory(conf_file, store.datadirs[0].tmpfile)
