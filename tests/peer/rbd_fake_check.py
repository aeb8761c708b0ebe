"""rbd_fake.py beside real librados/librbd: the same calls, the same outcomes.

    tests/peer/.venv/bin/python tests/peer/rbd_fake_check.py

Runs one script of the calls fsstore's RBD store makes (and their failures:
an image or snapshot that exists or not, a write past the end, a read-only
open, a protected snapshot, a watched image, an exclusive create, an asserted
version) on a real one-node Ceph cluster (tests/engines/ceph.py; needs root
and the Ceph daemons, as ``make test-ceph``) and on the fake grown from
glance_store's mocks, and prints each step whose outcome (result, or error
class and errno) differs. Exit status 1 when one does. Latest: Ceph 16.2.15,
64 steps, none differs.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def outcome(fn: Callable[[], Any]) -> str:
    try:
        value = fn()
    except Exception as exc:  # the outcome compared
        return f"{type(exc).__name__}(errno={getattr(exc, 'errno', None)})"
    if isinstance(value, list | tuple):
        value = sorted(str(v) for v in value)
    return f"= {value!r}"


def script(rados: Any, rbd: Any, conffile: str | None) -> list[tuple[str, str]]:
    """The steps' names and outcomes on the modules ``rados`` and ``rbd``."""
    steps: list[tuple[str, str]] = []
    handle = rados.Rados(conffile=conffile)
    handle.connect(timeout=30)
    io = handle.open_ioctx("images")
    n = uuid.uuid4().hex[:8]
    a, b, gone = f"a-{n}", f"b-{n}", f"gone-{n}"

    def step(name: str, fn: Callable[[], Any]) -> None:
        steps.append((name, outcome(fn).replace(n, "<n>")))

    api = rbd.RBD()
    step("open pool that does not exist", lambda: handle.open_ioctx(f"no-{n}"))
    step("create", lambda: api.create(io, a, 10, order=22, old_format=False))
    step("create again", lambda: api.create(io, a, 10, order=22, old_format=False))
    step("create b", lambda: api.create(io, b, 4, order=22, old_format=False))
    step("open missing", lambda: rbd.Image(io, gone))
    step("list has both", lambda: [x for x in api.list(io) if x in (a, b)])
    image = rbd.Image(io, a)
    step("size", image.size)
    step("write inside", lambda: image.write(b"0123", 0))
    step("write that runs past the end", lambda: image.write(b"abcd", 8))
    step("write from the end", lambda: image.write(b"x", 10))
    step("read", lambda: image.read(0, 10))
    step("read past the end", lambda: image.read(8, 10))
    step("aio write from the end", lambda: _aio_write(image, b"x", 10))
    step("aio write inside", lambda: _aio_write(image, b"zz", 2))
    step("aio read", lambda: _aio_read(image, 0, 6))
    step("resize", lambda: image.resize(12))
    step("size after resize", image.size)
    step("watchers: this client", lambda: _watchers(image, handle))
    other = rados.Rados(conffile=conffile)
    other.connect(timeout=30)
    other_io = other.open_ioctx("images")
    with rbd.Image(other_io, a):
        step("watchers: two clients", lambda: _watchers(image, handle))
    step("watchers: the other closed", lambda: _watchers(image, handle))
    other_io.close()
    other.shutdown()
    step("metadata_get missing", lambda: image.metadata_get("k"))
    step("metadata_set", lambda: image.metadata_set("k", "v"))
    step("metadata_get", lambda: image.metadata_get("k"))
    step("metadata_list", lambda: list(image.metadata_list()))
    step("is_protected_snap missing", lambda: image.is_protected_snap("s"))
    step("snap_exists missing", lambda: image.snap_exists("s"))
    step("create_snap", lambda: image.create_snap("s"))
    step("create_snap again", lambda: image.create_snap("s"))
    step("unprotect unprotected", lambda: image.unprotect_snap("s"))
    step("protect", lambda: image.protect_snap("s"))
    step("protect again", lambda: image.protect_snap("s"))
    step("remove protected snap", lambda: image.remove_snap("s"))
    step("list_snaps names", lambda: [s["name"] for s in image.list_snaps()])
    step("remove with snapshots while open", lambda: api.remove(io, a))
    image.close()
    step("remove with snapshots", lambda: api.remove(io, a))
    step("open at missing snapshot", lambda: rbd.Image(io, a, snapshot="t"))
    # At the head, then the snapshot, as the store opens it: librbd 16.2.15's
    # read-only open at a snapshot can abort a later open (opening.py).
    snap = rbd.Image(io, a, read_only=True)
    step("set_snap missing", lambda: snap.set_snap("t"))
    step("set_snap", lambda: snap.set_snap("s"))
    step("write at snapshot", lambda: snap.write(b"q", 0))
    step("snapshot size", snap.size)
    step("read-only open: no watcher", lambda: _watchers(snap, handle))
    snap.close()
    read_only = rbd.Image(io, a, read_only=True)
    step("write read-only", lambda: read_only.write(b"q", 0))
    step("resize read-only", lambda: read_only.resize(1))
    read_only.close()
    step("rename onto existing", lambda: api.rename(io, b, a))
    step("rename missing", lambda: api.rename(io, gone, f"c-{n}"))
    with rbd.Image(io, b) as open_b:
        step("rename while open", lambda: api.rename(io, b, gone))
        step("open handle after rename", lambda: open_b.write(b"ok", 0))
    step("old name after rename", lambda: rbd.Image(io, b))
    step("remove renamed", lambda: api.remove(io, gone))
    step("remove missing", lambda: api.remove(io, gone))
    api.create(io, b, 4, order=22, old_format=False)
    with rbd.Image(io, b):
        step("remove while open", lambda: api.remove(io, b))
        step("trash_move while open", lambda: api.trash_move(io, b))
    step("trashed: not listed", lambda: b in api.list(io))
    step("trash_move missing", lambda: api.trash_move(io, b))
    _objects(step, rados, io, f"claim.{n}")
    with rbd.Image(io, a) as last:
        last.unprotect_snap("s")
        last.remove_snap("s")
    api.remove(io, a)
    io.close()
    handle.shutdown()
    return steps


def _aio_write(image: Any, data: bytes, offset: int) -> int:
    done: list[int] = []
    image.aio_write(data, offset, lambda c: done.append(c.get_return_value()))
    image.flush()
    _wait(done)
    return done[0]


def _aio_read(image: Any, offset: int, length: int) -> tuple[int, bytes]:
    done: list[tuple[int, bytes]] = []
    image.aio_read(offset, length, lambda c, d: done.append((c.get_return_value(), d)))
    _wait(done)
    return done[0]


def _wait(done: list[Any]) -> None:
    import time

    for _ in range(500):
        if done:
            return
        time.sleep(0.01)


def _watchers(image: Any, handle: Any) -> list[bool]:
    return [
        int(w["id"]) == int(handle.get_instance_id()) for w in image.watchers_list()
    ]


def _objects(
    step: Callable[[str, Callable[[], Any]], None], rados: Any, io: Any, oid: str
) -> None:
    def op(*calls: tuple[str, tuple[Any, ...]]) -> None:
        write = io.create_write_op()
        try:
            for name, args in calls:
                getattr(write, name)(*args)
            io.operate_write_op(write, oid)
        finally:
            io.release_write_op(write)

    exclusive = ("new", (rados.LIBRADOS_CREATE_EXCLUSIVE,))
    step("read missing object", lambda: io.read(oid))
    step("exclusive create", lambda: op(exclusive, ("write_full", (b"one",))))
    step("exclusive create again", lambda: op(exclusive, ("write_full", (b"two",))))
    # Written twice, so a version one below the object's is never 0 (which
    # librados refuses as EINVAL, whatever the object's version).
    step("overwrite object", lambda: op(("write_full", (b"one",))))
    step("read object", lambda: io.read(oid))
    version = io.get_last_version()
    step(
        "remove at a stale version",
        lambda: op(("assert_version", (version - 1,)), ("remove", ())),
    )
    step("object kept", lambda: io.read(oid))
    step(
        "remove at its version",
        lambda: op(("assert_version", (version,)), ("remove", ())),
    )
    step("remove_object missing", lambda: io.remove_object(oid))
    step(
        "assert_version of missing",
        lambda: op(("assert_version", (version,)), ("remove", ())),
    )


def real() -> list[tuple[str, str]]:
    sys.path.insert(0, str(ROOT))
    import rados
    import rbd

    from tests.engines.ceph import CephCluster

    with tempfile.TemporaryDirectory() as state:
        cluster = CephCluster(Path(state), memstore_gib=1)
        try:
            cluster.start_rados()
            cluster.create_rbd_pool("images")
            return script(rados, rbd, str(cluster.conf))
        finally:
            cluster.stop()


def fake() -> list[tuple[str, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import rbd_fake
    from glance_store.tests.unit.test_rbd_store_base import MockRados, MockRBD

    rbd_fake.grow(MockRados, MockRBD)
    rbd_fake.CLUSTER = rbd_fake._Cluster()
    return script(MockRados, MockRBD, None)


def main() -> int:
    theirs, ours = real(), fake()
    differ = 0
    for (name, want), (_, got) in zip(theirs, ours, strict=True):
        mark = "  " if want == got else "!!"
        differ += want != got
        print(f"{mark} {name}: librbd {want}; fake {got}")
    print(f"{len(theirs)} steps, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
