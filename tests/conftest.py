from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fsstore.backends.filesystem import FilesystemStore
from tests.databases import MariaDBServer, PostgresServer
from tests.engines import MOTO_ACCESS_KEY, MOTO_SECRET_KEY, S3Engine
from tests.engines.swift_cluster import SwiftServer
from tests.helpers import is_root, load_conf, ramfs, tmpfs, write_conf

# The S3 engines the tests run on; `make test-ceph` adds rgw.
ENGINES = ("moto", "swift", "rgw")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--s3-engines",
        default="moto,swift",
        help="comma-separated S3 engines for the tests that take s3_engine "
        f"(of {', '.join(ENGINES)})",
    )
    parser.addoption(
        "--mariadb",
        action="store_true",
        help="also run the tests marked mariadb (a MariaDB server must be installed)",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Tests marked mariadb run only with --mariadb (make test-mariadb)."""
    if config.getoption("--mariadb"):
        return
    dropped = [item for item in items if item.get_closest_marker("mariadb")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("mariadb")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "s3_engine" in metafunc.fixturenames:
        names = metafunc.config.getoption("--s3-engines").split(",")
        unknown = sorted(set(names) - set(ENGINES))
        if unknown:
            raise pytest.UsageError(f"--s3-engines: unknown engine {unknown[0]!r}")
        metafunc.parametrize("s3_engine", names, indirect=True, scope="session")


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


@pytest.fixture
def mount_ramfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount ramfs file systems, which have no user extended attributes
    (root only; skipped otherwise)."""
    if not is_root():
        pytest.skip("mounting a ramfs needs root")
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(ramfs(tmp_path / name))


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


@pytest.fixture(scope="session")
def moto_engine(s3_endpoint: str) -> S3Engine:
    return S3Engine(
        name="moto",
        endpoint=s3_endpoint,
        access_key=MOTO_ACCESS_KEY,
        secret_key=MOTO_SECRET_KEY,
        atomic_conditional_put=False,
        refuses_damaged_bodies=False,
    )


@pytest.fixture(scope="session")
def swift_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Engine]:
    server = SwiftServer(tmp_path_factory.mktemp("swift"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def rgw_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Engine]:
    from tests.engines.ceph import CephCluster

    cluster = CephCluster(tmp_path_factory.mktemp("ceph"))
    yield cluster.start()
    cluster.stop()


@pytest.fixture(scope="session")
def s3_engine(request: pytest.FixtureRequest) -> S3Engine:
    """Each engine --s3-engines names, in turn (see pytest_generate_tests)."""
    engine: S3Engine = request.getfixturevalue(f"{request.param}_engine")
    return engine


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (tests/databases.py), for the session."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """A real MariaDB server (tests/databases.py), for make test-mariadb."""
    server = MariaDBServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rbd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A one-node Ceph cluster (monitor and memstore OSD, no radosgw) with
    the pool ``images`` made and ``rbd pool init``-ed, for the session;
    stopped by its daemons' process ids (tests/engines/ceph.py)."""
    from tests.engines.ceph import CephCluster

    cluster = CephCluster(tmp_path_factory.mktemp("ceph-rbd"), memstore_gib=4)
    cluster.start_rados()
    cluster.create_rbd_pool("images")
    yield cluster
    cluster.stop()
