"""The RBD store's one connection under a cluster that goes away: the
monitor restarted, the whole cluster (monitor and OSD) restarted with a read
in flight, and the store's client blocklisted, which makes librados answer
ESHUTDOWN (ConnectionShutdown) to everything on that connection.

Each test starts a cluster of its own (tests/engines/ceph.py), as the
restarts would disturb the shared ``rbd_cluster``. Skipped as
tests/functional/test_rbd.py is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.backends.rbd import RbdStore, image_io
from fsstore.testing.suite import new_id, payload, read_all
from tests.engines.ceph import CephCluster, why_no_rbd

_REASON = why_no_rbd()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

from tests.functional.test_rbd import make_store  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[CephCluster]:
    cluster = CephCluster(tmp_path / "ceph", memstore_gib=1)
    cluster.start_rados()
    try:
        cluster.create_rbd_pool("images")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def store(tmp_path: Path, cluster: CephCluster) -> Iterator[RbdStore]:
    store = make_store(tmp_path, cluster)
    yield store
    store.close()


def test_store_works_across_a_monitor_restart(
    store: RbdStore, cluster: CephCluster
) -> None:
    before = store.add(new_id(), iter([b"before"]), 6)
    cluster.restart()
    after = store.add(new_id(), iter([b"after"]), 5)
    assert read_all(store, before.location) == b"before"
    assert read_all(store, after.location) == b"after"


def test_whole_cluster_restart_under_a_live_read(
    store: RbdStore, cluster: CephCluster
) -> None:
    # Twice as many objects as the reader asks for ahead: reads are issued
    # after the restart too (the store's chunk size is 1 MiB).
    data = payload(2 * image_io.IN_FLIGHT * MiB + 5, seed=4)
    before = store.add(new_id(), iter([data]), len(data))
    connection = store.cluster
    assert connection is not None
    handle = connection._rados
    chunks, length = store.get(before.location)
    assert length == len(data)
    first = next(iter(chunks))

    cluster.restart()

    # The read in flight finishes on the same connection, its bytes whole.
    rest = b"".join(chunks)
    assert first + rest == data
    assert connection._rados is handle
    after = store.add(new_id(), iter([b"after"]), 5)
    assert read_all(store, after.location) == b"after"
    listed = {image.location for image in store.images()}
    assert listed == {before.location, after.location}
    store.delete(before.location)
    with pytest.raises(exceptions.NotFound):
        store.get_size(before.location)


def test_a_fenced_connection_is_dropped_and_the_next_operation_reconnects(
    store: RbdStore, cluster: CephCluster
) -> None:
    before = store.add(new_id(), iter([b"before"]), 6)
    connection = store.cluster
    assert connection is not None
    fenced = connection._rados
    cluster.blocklist(" ".join(fenced.get_addrs().split()))

    # The operation that meets the fence fails in one line ...
    with pytest.raises(exceptions.BackendException) as failed:
        store.get_size(before.location)
    assert "\n" not in str(failed.value)
    assert connection._rados is None
    # ... and the next one connects anew, as a client the fence does not name.
    assert store.get_size(before.location) == 6
    assert connection._rados is not None and connection._rados is not fenced
    after = store.add(new_id(), iter([b"after"]), 5)
    assert read_all(store, after.location) == b"after"
