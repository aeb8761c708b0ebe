"""kill -9 of an RBD writer at each step of an add (issue 27), on the real
one-node cluster of test_rbd.py (fixture ``rbd_cluster``).

A writer process, spawned, builds the store from the configuration files
and adds an image with a tracing hook that SIGKILLs its own process at one
trace point of the add (store.py, temporaries.py's protocol). Before the
rename nothing is published under the id and its temporary is no image;
after it the image is whole. The dead writer's watch would lapse after the
OSD's ``osd client watch timeout`` (30 s); each test blocklists the writer's
client address instead (the writer leaves it in a file as it dies), which
drops its watches at once, as an operator fencing a dead client does, and
sees what a reap, or a delete, does then: polled for until the OSD has the
new map, with a deadline, never slept on.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fsstore import exceptions
from fsstore.backends.rbd import RbdStore
from fsstore.backends.rbd import temporaries as rbd_temporaries
from fsstore.backends.rbd.store import DIGESTS_KEY
from fsstore.hashing import DEFAULT_HASHING_ALGO
from fsstore.testing.suite import new_id, payload, read_all
from tests.engines.ceph import CephCluster, why_no_rbd

_REASON = why_no_rbd()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

import rados  # noqa: E402
import rbd  # noqa: E402

from tests.functional import test_rbd  # noqa: E402
from tests.functional.test_rbd import make_store, temporaries_in  # noqa: E402

ioctx = test_rbd.ioctx  # the fixture: a client of its own (Nova's)

MiB = 1024 * 1024
#: The add's trace points, in the order it reaches them.
BEFORE_RENAME = (
    "rbd.add.created",
    "rbd.add.written",
    "rbd.add.kept",
    "rbd.add.protected",
    "rbd.add.claimed",
)
RENAMED = "rbd.add.renamed"
#: What a writer killed at each point left in its temporary: all the bytes,
#: the digests kept, the snapshot (and whether it is protected).
LEFT = {
    "rbd.add.created": (False, False, []),
    "rbd.add.written": (True, False, []),
    "rbd.add.kept": (True, True, []),
    "rbd.add.protected": (True, True, [("snap", True)]),
    "rbd.add.claimed": (True, True, [("snap", True)]),
}
#: For the blocklist to reach the OSD, on a loaded machine.
WATCH_DEADLINE = 60.0
DATA = payload(2 * MiB + 7, seed=27)


def _killed_add(conf: str, image_id: str, point: str, address: str) -> None:
    """In a spawned process: add ``image_id`` (DATA), SIGKILLed at ``point``
    once its client address is in the file ``address``."""
    from fsstore import tracing
    from fsstore.testing.races import StoreFromConfig

    def die(name: str) -> None:
        assert store.cluster is not None and store.cluster._rados is not None
        Path(address).write_text(store.cluster._rados.get_addrs())
        os.kill(os.getpid(), signal.SIGKILL)

    store = StoreFromConfig((conf,), "rbd")()
    with tracing.hooked(die, [point]):
        store.add(image_id, iter([DATA]), len(DATA))


@pytest.fixture
def store(tmp_path: Path, rbd_cluster: CephCluster) -> Iterator[RbdStore]:
    made = make_store(tmp_path, rbd_cluster)
    assert made.cluster is not None
    made.cluster.ioctx()  # connected: its locations name the cluster's fsid
    yield made
    made.close()


def kill_writer_at(store: RbdStore, image_id: str, point: str) -> str:
    """Run the writer; it must have died of SIGKILL (at ``point``). Its
    client address."""
    conf = str(list(store.conf.config_file)[0])
    address = Path(conf).with_suffix(".address")
    writer = multiprocessing.get_context("spawn").Process(
        target=_killed_add, args=(conf, image_id, point, str(address))
    )
    writer.start()
    writer.join(120)
    assert writer.exitcode == -signal.SIGKILL, f"the writer was not killed at {point}"
    return " ".join(address.read_text().split())


def poll(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (the dead writer's watch dropped), bounded."""
    deadline = time.monotonic() + WATCH_DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {WATCH_DEADLINE} s: {what}"
        time.sleep(0.2)


def claim_of(ioctx: Any, image_id: str) -> str | None:
    try:
        return str(ioctx.read(rbd_temporaries.claim_name(image_id)).decode())
    except rados.ObjectNotFound:
        return None


def left_in(ioctx: Any, temporary: str) -> tuple[bool, bool, list[Any]]:
    """How far the add got in ``temporary`` (opened read-only: no watch)."""
    with rbd.Image(ioctx, temporary, read_only=True) as image:
        whole = image.size() == len(DATA) and image.read(0, len(DATA)) == DATA
        kept = DIGESTS_KEY in dict(image.metadata_list())
        snaps = [
            (snap["name"], image.is_protected_snap(snap["name"]))
            for snap in image.list_snaps()
        ]
    return whole, kept, snaps


def expected_digests() -> tuple[str, str, int]:
    return (
        hashlib.md5(DATA).hexdigest(),
        hashlib.new(DEFAULT_HASHING_ALGO, DATA).hexdigest(),
        len(DATA),
    )


@pytest.mark.parametrize("point", BEFORE_RENAME)
def test_killed_before_rename_publishes_nothing_and_frees_the_id(
    store: RbdStore,
    ioctx: Any,
    rbd_cluster: CephCluster,
    monkeypatch: Any,
    point: str,
) -> None:
    image_id = new_id()
    before = set(temporaries_in(ioctx))
    address = kill_writer_at(store, image_id, point)
    # Immediately: no image under the id, its temporary left and no image.
    location = store._location_of(image_id)
    with pytest.raises(exceptions.NotFound):
        store.get_size(location)
    assert image_id not in rbd.RBD().list(ioctx)
    assert image_id not in [listed.image_id for listed in store.images()]
    left = set(temporaries_in(ioctx)) - before
    assert len(left) == 1
    (temporary,) = left
    assert left_in(ioctx, temporary) == LEFT[point]
    assert temporary not in [listed.image_id for listed in store.images()]
    with pytest.raises(exceptions.Forbidden):
        store.get_size(f"rbd://{temporary}")
    if point == "rbd.add.claimed":
        # A claim whose temporary exists is a live add's, as far as anyone
        # can tell: the id stays taken until that temporary is reaped.
        assert claim_of(ioctx, image_id) == temporary
        with pytest.raises(exceptions.Duplicate):
            store.add(image_id, iter([b"too early"]), 9)
    else:
        assert claim_of(ioctx, image_id) is None
        added = store.add(image_id, iter([b"after"]), 5)
        assert read_all(store, added.location) == b"after"
        store.delete(added.location)
    # A reap (what a store's first connection does) leaves a temporary made
    # less than REAP_AGE ago (the create-to-open guard) ...
    cluster = store.cluster
    assert cluster is not None
    store._reap(cluster.ioctx())
    assert temporary in temporaries_in(ioctx)
    # ... and, that guard waived, one its writer opened and still watches:
    # as far as the cluster can tell, that writer is alive.
    monkeypatch.setattr(rbd_temporaries, "REAP_AGE", -1)
    if point != "rbd.add.created":
        store._reap(cluster.ioctx())
        assert temporary in temporaries_in(ioctx)
    # Once the dead writer is fenced its watch is gone, and a reap removes it.
    rbd_cluster.blocklist(address)

    def reaped() -> bool:
        store._reap(cluster.ioctx())
        return temporary not in temporaries_in(ioctx)

    poll(reaped, f"{temporary} of a writer killed at {point} reaped")
    result = store.add(image_id, iter([DATA]), len(DATA))
    assert read_all(store, result.location) == DATA
    assert claim_of(ioctx, image_id) not in (None, temporary)


def test_killed_after_rename_leaves_the_image_whole(
    store: RbdStore, ioctx: Any, rbd_cluster: CephCluster
) -> None:
    image_id = new_id()
    before = set(temporaries_in(ioctx))
    address = kill_writer_at(store, image_id, RENAMED)
    location = store._location_of(image_id)
    # The image is published whole: bytes, digests, protected snapshot.
    assert store.get_size(location) == len(DATA)
    assert read_all(store, location.uri) == DATA
    kept = store.kept_digests(location)
    assert kept is not None
    assert (kept.checksum, kept.multihash, kept.size) == expected_digests()
    assert kept.hashing_algo == DEFAULT_HASHING_ALGO
    with rbd.Image(ioctx, image_id, read_only=True) as image:
        assert [s["name"] for s in image.list_snaps()] == ["snap"]
        assert image.is_protected_snap("snap")
    listed = [i for i in store.images() if i.image_id == image_id]
    assert [(i.location, i.size) for i in listed] == [(location.uri, len(DATA))]
    # Renamed, so no temporary is left; the claim names the one it was.
    assert set(temporaries_in(ioctx)) == before
    claim = claim_of(ioctx, image_id)
    assert claim is not None and rbd_temporaries.is_temporary(claim)
    with pytest.raises(exceptions.Duplicate):
        store.add(image_id, iter([b"again"]), 5)

    # While the dead writer still watches it, a delete is InUseByStore and
    # changes nothing: the snapshot stays, protected.
    with pytest.raises(exceptions.InUseByStore):
        store.delete(location)
    with rbd.Image(ioctx, image_id, read_only=True) as image:
        assert [s["name"] for s in image.list_snaps()] == ["snap"]
        assert image.is_protected_snap("snap")

    # Once the dead writer is fenced, a delete removes it and its claim.
    def unwatched() -> bool:
        with rbd.Image(ioctx, image_id, read_only=True) as image:
            return not list(image.watchers_list())

    rbd_cluster.blocklist(address)
    poll(unwatched, f"the watch of a writer killed at {RENAMED} dropped")
    store.delete(location)
    assert image_id not in rbd.RBD().list(ioctx)
    assert claim_of(ioctx, image_id) is None
    again = store.add(image_id, iter([b"again"]), 5)
    assert read_all(store, again.location) == b"again"
