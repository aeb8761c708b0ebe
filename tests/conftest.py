from __future__ import annotations

import socket
import subprocess
import sys
import threading
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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint over HTTP: moto's server in a process of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("moto_server")),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ready when werkzeug says it is listening; EOF means it died.
    seen = []
    for line in server.stderr:
        seen.append(line)
        if "Running on" in line:
            break
    else:
        raise RuntimeError("moto_server did not start: " + "".join(seen))
    # Keep draining its request log so that it never blocks on a full pipe.
    threading.Thread(target=server.stderr.read, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)
