from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fsstore.backends.filesystem import FilesystemStore
from tests.helpers import is_root, load_conf, tmpfs, write_conf


@pytest.fixture
def make_fs_store(
    tmp_path: Path,
) -> Iterator[Callable[..., FilesystemStore]]:
    """Build a configured filesystem store from options in a conf file."""
    made: list[FilesystemStore] = []

    def make(
        staging: str = "tmpfile", conf_name: str = "glance-api.conf", **options: object
    ) -> FilesystemStore:
        if "filesystem_store_datadirs" not in options:
            options.setdefault("filesystem_store_datadir", str(tmp_path / "images"))
        conf = load_conf(
            write_conf(
                tmp_path / conf_name,
                {"glance_store": options},
            )
        )
        store = FilesystemStore(conf)
        store.configure()
        if staging == "named":
            for d in store.datadirs:
                d.tmpfile = False
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount small tmpfs file systems (root only; skipped otherwise)."""
    if not is_root():
        pytest.skip("mounting a tmpfs needs root")
    stack: list[object] = []

    def mount(name: str, size: str) -> Path:
        cm = tmpfs(tmp_path / name, size)
        path = cm.__enter__()
        stack.append(cm)
        return path

    yield mount
    for cm in reversed(stack):
        cm.__exit__(None, None, None)  # type: ignore[attr-defined]
