"""The RBD store on a real one-node Ceph cluster (tests/engines/ceph.py),
started from nothing for the session: monitor, memstore OSD, the pool
``images`` made and ``rbd pool init``-ed (a real round trip to the OSD).

Skipped, with one reason, where the Ceph daemons or the bindings
(python3-rbd, python3-rados: ``make ceph-bindings``) are missing, or
without root; ``make test-ceph`` installs them and runs it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fsstore import exceptions
from fsstore.backends.rbd import RbdStore, image_io
from fsstore.backends.rbd import store as rbd_store
from fsstore.backends.rbd import temporaries as rbd_temporaries
from fsstore.registry import StoreRegistry
from fsstore.testing import StoreConformanceTests
from fsstore.testing.suite import new_id, payload, read_all
from tests.engines.ceph import CephCluster, why_no_rbd
from tests.helpers import load_conf, write_conf

_REASON = why_no_rbd()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

import rados  # noqa: E402
import rbd  # noqa: E402

MiB = 1024 * 1024


def make_store(tmp_path: Path, cluster: CephCluster, **extra: object) -> RbdStore:
    conf = write_conf(
        tmp_path / f"rbd-{new_id()}.conf",
        {
            "glance_store": {
                "stores": "rbd",
                "default_store": "rbd",
                "rbd_store_ceph_conf": str(cluster.conf),
                "rbd_store_chunk_size": 1,
                "rados_connect_timeout": 30,
                **extra,
            }
        },
    )
    store = StoreRegistry(load_conf(conf)).get_store("rbd")
    assert isinstance(store, RbdStore)
    return store


@pytest.fixture
def store(tmp_path: Path, rbd_cluster: CephCluster) -> Iterator[RbdStore]:
    made = make_store(tmp_path, rbd_cluster)
    yield made
    made.close()


@pytest.fixture
def ioctx(rbd_cluster: CephCluster) -> Iterator[Any]:
    """An I/O context of the pool through a client of its own (Nova's)."""
    client = rados.Rados(conffile=str(rbd_cluster.conf))
    client.connect(timeout=30)
    io = client.open_ioctx("images")
    yield io
    io.close()
    client.shutdown()


def temporaries_in(io: Any) -> list[str]:
    return sorted(n for n in rbd.RBD().list(io) if rbd_temporaries.is_temporary(n))


class TestRbdConformance(StoreConformanceTests):
    io_size = MiB  # rbd_store_chunk_size = 1
    keeps_digests = True

    @pytest.fixture
    def store(self, tmp_path: Path, rbd_cluster: CephCluster) -> Iterator[RbdStore]:
        made = make_store(tmp_path, rbd_cluster)
        yield made
        made.close()

    def leftovers(self, store: RbdStore) -> Any:
        return temporaries_in(store.cluster.ioctx())  # type: ignore[union-attr]


def test_location_names_cluster_pool_image_and_snapshot(store: RbdStore) -> None:
    image_id = new_id()
    result = store.add(image_id, iter([b"abc"]), 3)
    assert store.cluster is not None
    assert result.location == f"rbd://{store.cluster.fsid}/images/{image_id}/snap"
    # glance_store's legacy form names the same image (its head).
    assert read_all(store, f"rbd://{image_id}") == b"abc"


def test_nova_clone_reads_the_image_and_blocks_delete(
    store: RbdStore, ioctx: Any
) -> None:
    data = payload(3 * MiB + 5, seed=27)
    image_id = new_id()
    result = store.add(image_id, iter([data]), len(data))
    disk = f"disk-{image_id}"
    # Exactly as Nova does, with the cluster's default clone format.
    rbd.RBD().clone(ioctx, image_id, "snap", ioctx, disk)
    with rbd.Image(ioctx, disk, read_only=True) as clone:
        assert clone.read(0, len(data)) == data
    with pytest.raises(exceptions.InUseByStore, match="clones"):
        store.delete(result.location)
    # Nothing changed: the image, its protected snapshot and the clone.
    assert read_all(store, result.location) == data
    with rbd.Image(ioctx, image_id) as image:
        assert image.is_protected_snap("snap")
    rbd.RBD().remove(ioctx, disk)
    store.delete(result.location)
    with pytest.raises(exceptions.NotFound):
        store.get_size(result.location)
    assert image_id not in rbd.RBD().list(ioctx)


def test_thin_provisioning_leaves_holes(tmp_path: Path, rbd_cluster: Any) -> None:
    store = make_store(tmp_path, rbd_cluster, rbd_thin_provisioning=True)
    data = payload(MiB, seed=1) + bytes(3 * MiB) + payload(MiB, seed=2)
    result = store.add(new_id(), iter([data]), 0)
    assert read_all(store, result.location) == data
    written: list[tuple[int, int]] = []
    image = store._open(store.parse_location(result.location))
    try:
        image.diff_iterate(
            0, len(data), None, lambda off, n, exists: written.append((off, n))
        )
    finally:
        image.close()
    assert written == [(0, MiB), (4 * MiB, MiB)]
    store.close()


def test_unknown_sizes_on_one_store(store: RbdStore) -> None:
    # glance_store's driver fails the second add of unknown size on a
    # reused driver: the growth state here lives in each add.
    for n in (2 * MiB + 3, 5 * MiB + 1, 7):
        data = payload(n, seed=n)
        result = store.add(new_id(), iter([data[: n // 2], data[n // 2 :]]), 0)
        assert store.get_size(result.location) == n
        assert read_all(store, result.location) == data


def test_missing_image_is_not_found(store: RbdStore) -> None:
    assert store.cluster is not None
    store.cluster.ioctx()
    uri = f"rbd://{store.cluster.fsid}/images/{new_id()}/snap"
    for call in (store.get, store.get_size, store.delete, store.kept_digests):
        with pytest.raises(exceptions.NotFound):
            call(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "rbd://",
        "rbd://a/b",
        "rbd://a/b/c",
        "rbd://a/b/c/d/e",
        "rbd://fsid//image/snap",
    ],
)
def test_malformed_locations_are_bad_uris(store: RbdStore, uri: str) -> None:
    with pytest.raises(exceptions.BadStoreUri):
        store.get_size(uri)


def test_hostile_locations_are_refused(store: RbdStore, ioctx: Any) -> None:
    assert store.cluster is not None
    store.cluster.ioctx()
    fsid = store.cluster.fsid
    rbd.RBD().create(ioctx, "victim", MiB)
    try:
        for uri in [
            f"rbd://{fsid}/otherpool/victim/snap",  # another pool
            f"rbd://{'0' * 8}-0000-0000-0000-{'0' * 12}/images/victim/snap",
            f"rbd://{fsid}/images/victim/other-snap",  # not our snapshot
            f"rbd://{fsid}/images/%2Efsstore-rbd-0/snap",  # a temporary
            f"rbd://{fsid}/images/..%2F..%2Fx/snap",
            "rbd://.fsstore-rbd-0",
        ]:
            for call in (store.get, store.get_size, store.delete):
                with pytest.raises(exceptions.Forbidden):
                    call(uri)
        assert "victim" in rbd.RBD().list(ioctx)
    finally:
        rbd.RBD().remove(ioctx, "victim")


def test_crashed_writers_temporary_is_reaped_a_live_one_never(
    tmp_path: Path, rbd_cluster: CephCluster, ioctx: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(rbd_temporaries, "REAP_AGE", -1)
    dead, live = rbd_temporaries.temporary_name(), rbd_temporaries.temporary_name()
    for name in (dead, live):
        rbd.RBD().create(ioctx, name, MiB)
    with rbd.Image(ioctx, dead) as image:  # as far as a writer got
        image.create_snap("snap")
        image.protect_snap("snap")
    with rbd.Image(ioctx, live):  # a live writer's watch
        store = make_store(tmp_path, rbd_cluster)
        store.add(new_id(), iter([b"x"]), 1)  # the first connection reaps
        names = temporaries_in(ioctx)
        assert dead not in names
        assert live in names
        store.close()
    rbd.RBD().remove(ioctx, live)


def test_a_long_running_store_reaps_again_at_an_add(
    store: RbdStore, ioctx: Any, monkeypatch: Any
) -> None:
    store.add(new_id(), iter([b"x"]), 1)  # connected: the first reap is done
    monkeypatch.setattr(rbd_temporaries, "REAP_AGE", -1)
    dead = rbd_temporaries.temporary_name()
    rbd.RBD().create(ioctx, dead, MiB)
    store.add(new_id(), iter([b"x"]), 1)
    assert dead in temporaries_in(ioctx)  # within REAP_INTERVAL: no reap
    monkeypatch.setattr(rbd_store, "REAP_INTERVAL", 0)
    store.add(new_id(), iter([b"x"]), 1)
    assert dead not in temporaries_in(ioctx)


class _Done:
    """A finished write, as librbd's completion reports it."""

    def get_return_value(self) -> int:
        return 0


class _CompletesAtOnce:
    """An open image whose asynchronous writes complete, callback and all,
    before aio_write returns: the race the writer must survive, forced."""

    def __init__(self, image: Any) -> None:
        self._image = image

    def __getattr__(self, name: str) -> Any:
        return getattr(self._image, name)

    def aio_write(self, data: bytes, offset: int, oncomplete: Any) -> _Done:
        self._image.write(data, offset)
        oncomplete(_Done())
        return _Done()


def test_an_add_holds_no_written_object_once_done(
    store: RbdStore, monkeypatch: Any
) -> None:
    # A write that completes before aio_write returns must not leave its
    # object referenced for the rest of the add (memory per add is bounded).
    writers: list[Any] = []
    made = image_io.ImageWriter.__init__

    def forced(self: Any, image: Any, *args: Any) -> None:
        made(self, _CompletesAtOnce(image), *args)
        writers.append(self)

    monkeypatch.setattr(image_io.ImageWriter, "__init__", forced)
    data = payload(6 * MiB + 3, seed=5)
    added = store.add(new_id(), iter([data]), len(data))
    assert read_all(store, added.location) == data
    assert len(writers) == 1
    assert writers[0]._pending == {}


def test_a_failed_reap_is_logged_and_the_add_goes_on(
    store: RbdStore, monkeypatch: Any, caplog: Any
) -> None:
    store.add(new_id(), iter([b"x"]), 1)  # connected: the first reap is done

    def failing(*args: object) -> list[str]:
        raise rados.IOError("listing the pool timed out")

    monkeypatch.setattr(rbd_store, "reap", failing)
    monkeypatch.setattr(rbd_store, "REAP_INTERVAL", 0)
    added = store.add(new_id(), iter([b"after"]), 5)
    assert read_all(store, added.location) == b"after"
    assert "reaping: RADOS I/O error (listing the pool timed out)" in caplog.text


def test_another_clusters_location_is_forbidden_before_the_first_connection(
    tmp_path: Path, rbd_cluster: CephCluster
) -> None:
    ours = make_store(tmp_path, rbd_cluster)
    added = ours.add(new_id(), iter([b"x"]), 1)
    kept = ours.kept_digests(added.location)
    assert kept is not None
    ours.close()
    elsewhere = added.location.replace(rbd_cluster.fsid, str(uuid.uuid4()))
    calls: list[Callable[[RbdStore], object]] = [
        lambda fresh: fresh.keep_digests(elsewhere, kept),
        lambda fresh: fresh.kept_digests(elsewhere),
        lambda fresh: fresh.get_size(elsewhere),
        lambda fresh: fresh.delete(elsewhere),
    ]
    for call in calls:
        fresh = make_store(tmp_path, rbd_cluster)  # not connected yet
        with pytest.raises(exceptions.Forbidden, match="another Ceph cluster"):
            call(fresh)
        fresh.close()
    check = make_store(tmp_path, rbd_cluster)  # nothing was changed
    assert check.get_size(added.location) == 1
    assert check.kept_digests(added.location) == kept
    check.close()


def test_cluster_down_is_one_line_within_the_timeout(tmp_path: Path) -> None:
    conf = tmp_path / "down.conf"
    conf.write_text(
        "[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n"
        "ms mon client mode = crc\nkeyring = /dev/null\n"
    )
    store = make_store(
        tmp_path,
        CephCluster(tmp_path),
        rbd_store_ceph_conf=str(conf),
        rados_connect_timeout=2,
    )
    started = time.monotonic()
    with pytest.raises(exceptions.BackendException) as caught:
        store.add(new_id(), iter([b"x"]), 1)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message
    assert "within 2 s" in message
    assert "pool 'images'" in message


def test_missing_bindings_are_one_line(
    tmp_path: Path, rbd_cluster: CephCluster, monkeypatch: Any
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "rbd", None)
    with pytest.raises(exceptions.BadStoreConfiguration) as caught:
        make_store(tmp_path, rbd_cluster)
    assert "apt-get install python3-rbd python3-rados" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_stale_claim_does_not_block_the_id(store: RbdStore, ioctx: Any) -> None:
    # A delete or an add that crashed between its two steps left the claim
    # of an id whose image and temporary are gone: an add breaks it.
    image_id = new_id()
    ioctx.write_full(
        rbd_temporaries.claim_name(image_id), rbd_temporaries.temporary_name().encode()
    )
    result = store.add(image_id, iter([b"new"]), 3)
    assert read_all(store, result.location) == b"new"
    with pytest.raises(exceptions.Duplicate):
        store.add(image_id, iter([b"again"]), 5)
    store.delete(result.location)
    with pytest.raises(rados.ObjectNotFound):
        ioctx.stat(rbd_temporaries.claim_name(image_id))


def _stalled_add(conf: str, image_id: str, marker: str) -> None:
    """In a process of its own: add ``image_id`` and stall mid-stream (after
    writing ``marker``), to be killed there."""
    from fsstore.testing.races import StoreFromConfig

    def chunks() -> Iterator[bytes]:
        yield payload(3 * MiB, seed=3)
        Path(marker).write_text("mid-stream")
        time.sleep(600)
        yield b"never"

    StoreFromConfig((conf,), "rbd")().add(image_id, chunks(), 0)


def test_killed_writer_leaves_no_image_and_the_id_free(
    tmp_path: Path, store: RbdStore, ioctx: Any
) -> None:
    import multiprocessing
    import signal

    image_id = new_id()
    marker = tmp_path / "marker"
    conf = str(list(store.conf.config_file)[0])
    writer = multiprocessing.get_context("spawn").Process(
        target=_stalled_add, args=(conf, image_id, str(marker))
    )
    writer.start()
    deadline = time.monotonic() + 60
    while not marker.exists() and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the writer did not get mid-stream"
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    with pytest.raises(exceptions.NotFound):
        store.get_size(store._location_of(image_id))
    assert image_id not in rbd.RBD().list(ioctx)
    result = store.add(image_id, iter([b"after"]), 5)
    assert read_all(store, result.location) == b"after"


def test_other_snapshots_are_in_use_and_nothing_changes(
    store: RbdStore, ioctx: Any
) -> None:
    image_id = new_id()
    result = store.add(image_id, iter([b"kept"]), 4)
    with rbd.Image(ioctx, image_id) as image:
        image.create_snap("backup")
    for uri in (result.location, f"rbd://{image_id}"):
        with pytest.raises(exceptions.InUseByStore, match="backup"):
            store.delete(uri)
    assert read_all(store, f"rbd://{image_id}") == b"kept"
    with rbd.Image(ioctx, image_id) as image:
        image.remove_snap("backup")
    store.delete(result.location)
    assert image_id not in rbd.RBD().list(ioctx)


def test_reads_closed_early_or_unread_close_the_image(store: RbdStore) -> None:
    data = payload(9 * MiB + 3, seed=9)  # reads of 1 MiB, several ahead
    location = store.add(new_id(), iter([data]), len(data)).location
    chunks, length = store.get(location)
    assert length == len(data)
    assert next(iter(chunks)) == data[:MiB]
    chunks.close()
    store.get(location, offset=MiB)[0].close()  # never iterated
    got, _ = store.get(location, offset=MiB - 1, chunk_size=2 * MiB + 2)
    assert b"".join(got) == data[MiB - 1 : 3 * MiB + 1]
