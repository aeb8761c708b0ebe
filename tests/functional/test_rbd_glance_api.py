"""An unchanged Glance 33.0.0 API on fsstore_rbd, end to end, on a real
one-node Ceph cluster (the ``rbd_cluster`` fixture).

One Glance API for the module (tests/glance_api.py): `ceph` is fsstore_rbd
on the cluster's pool ``images``, `fast` is fsstore_file beside it, with the
reserved staging and tasks stores Glance makes itself. Every check goes
through Glance's HTTP API; the pool is then looked at directly, with the
real rados and rbd bindings in this process, to see that Glance's word is
the truth: the RBD image named by the image's id, its protected snapshot
``snap``, its bytes. A VM's disk is cloned from the image's location exactly
as Nova does, to see that Glance refuses to delete an image in use.

Skipped, as tests/functional/test_rbd.py, where the Ceph daemons or the
bindings are missing (here or in the peer venv Glance runs from), or
without root; ``make test-ceph`` runs it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.engines.ceph import CephCluster, why_no_rbd_in
from tests.glance_api import INSTALL_HINT, PEER_VENV, GlanceAPI

_REASON = why_no_rbd_in(PEER_VENV / "bin" / "python", f"run `{INSTALL_HINT}`")
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

import rados  # noqa: E402
import rbd  # noqa: E402

POOL = "images"
SNAPSHOT = "snap"
CLAIM_PREFIX = "fsstore_claim."
TEMPORARY_PREFIX = ".fsstore-rbd-"
MiB = 1024 * 1024
# Several 1 MiB RBD objects (rbd_store_chunk_size 1) and a partial last one,
# several of glance_store's 64 KiB reads.
SIZE = 3 * MiB + 12345


@pytest.fixture(scope="module")
def glance(
    tmp_path_factory: pytest.TempPathFactory, rbd_cluster: CephCluster
) -> Iterator[GlanceAPI]:
    work = tmp_path_factory.mktemp("glance-rbd")
    api = GlanceAPI(
        work,
        {
            "DEFAULT": {
                "enabled_backends": "ceph:fsstore_rbd, fast:fsstore_file",
                "enabled_import_methods": "[glance-direct, copy-image]",
                # What Nova needs to clone from the image's location.
                "show_image_direct_url": "true",
            },
            "glance_store": {"default_backend": "ceph"},
            "ceph": {
                "rbd_store_pool": POOL,
                "rbd_store_ceph_conf": str(rbd_cluster.conf),
                "rbd_store_chunk_size": "1",
                "rados_connect_timeout": "30",
            },
            "fast": {"filesystem_store_datadir": str(work / "data" / "fast")},
        },
    )
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def pool(rbd_cluster: CephCluster) -> Iterator[Any]:
    """The pool Glance writes to, opened with this process's own bindings
    and the cluster's conf (an ioctx)."""
    client = rados.Rados(conffile=str(rbd_cluster.conf))
    client.connect(timeout=30)
    try:
        with client.open_ioctx(POOL) as ioctx:
            yield ioctx
    finally:
        client.shutdown()


def rbd_images(pool: Any) -> set[str]:
    return set(rbd.RBD().list(pool))


def temporaries(pool: Any) -> set[str]:
    return {name for name in rbd_images(pool) if name.startswith(TEMPORARY_PREFIX)}


def has_claim(pool: Any, image_id: str) -> bool:
    try:
        pool.stat(CLAIM_PREFIX + image_id)
    except rados.ObjectNotFound:
        return False
    return True


def assert_published(pool: Any, image_id: str, data: bytes) -> None:
    """The RBD image ``image_id`` holds ``data``, under its protected
    snapshot ``snap`` and nothing else, and the id is claimed."""
    assert image_id in rbd_images(pool)
    # At the head, then the snapshot (fsstore/backends/rbd/opening.py).
    with rbd.Image(pool, image_id, read_only=True) as image:
        image.set_snap(SNAPSHOT)
        snaps = [s["name"] for s in image.list_snaps()]
        assert snaps == [SNAPSHOT]
        assert image.is_protected_snap(SNAPSHOT)
        assert image.size() == len(data)
        assert image.read(0, len(data)) == data
    assert has_claim(pool, image_id)


def assert_gone(pool: Any, image_id: str) -> None:
    assert image_id not in rbd_images(pool)
    assert not has_claim(pool, image_id)
    # Not moved to the trash either: it had no clone v2 children.
    assert image_id not in {t["name"] for t in rbd.RBD().trash_list(pool)}


def locations(glance: GlanceAPI, image_id: str) -> dict[str, str]:
    """The image's active locations in Glance's database, by store."""
    return {
        json.loads(meta)["store"]: value for value, meta in glance.locations(image_id)
    }


def rbd_location(rbd_cluster: CephCluster, image_id: str) -> str:
    assert rbd_cluster.fsid
    return f"rbd://{rbd_cluster.fsid}/{POOL}/{image_id}/{SNAPSHOT}"


def chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("transfer", ["sized", "chunked"])
def test_upload_download_delete(glance, pool, rbd_cluster, transfer):
    before = temporaries(pool)
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    glance.upload(image_id, data if transfer == "sized" else chunks(data), "ceph")

    image = glance.assert_serves(image_id, data)
    assert image["stores"] == "ceph"
    location = rbd_location(rbd_cluster, image_id)
    assert image["direct_url"] == location
    assert locations(glance, image_id) == {"ceph": location}
    assert_published(pool, image_id, data)
    # None left behind (a stale one of another test may have been reaped).
    assert temporaries(pool) <= before

    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status == 204, deleted.body
    assert glance.request("GET", f"/v2/images/{image_id}").status == 404
    assert_gone(pool, image_id)


def test_delete_of_an_image_nova_cloned_is_409_until_the_clone_goes(
    glance, pool, rbd_cluster
):
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    glance.upload(image_id, data, "ceph")
    image = glance.image(image_id)

    # Nova's rbd image backend: parse direct_url, clone its snapshot.
    fsid, pool_name, name, snapshot = image["direct_url"][len("rbd://") :].split("/")
    assert (fsid, pool_name, name, snapshot) == (
        rbd_cluster.fsid,
        POOL,
        image_id,
        SNAPSHOT,
    )
    disk = f"disk-{uuid.uuid4().hex[:8]}"
    rbd.RBD().clone(pool, name, snapshot, pool, disk)
    try:
        with rbd.Image(pool, disk, read_only=True) as clone:
            assert clone.read(0, len(data)) == data

        refused = glance.request("DELETE", f"/v2/images/{image_id}")
        assert refused.status == 409, (refused.status, refused.body[:500])
        assert b"has clones of its snapshot" in refused.body  # fsstore's message
        # Nothing changed: Glance's record, its location, the data.
        assert glance.image(image_id) == image
        assert locations(glance, image_id) == {"ceph": image["direct_url"]}
        glance.assert_serves(image_id, data)
        assert_published(pool, image_id, data)
        with rbd.Image(pool, disk, read_only=True) as clone:
            assert clone.parent_info() == (POOL, image_id, SNAPSHOT)
            assert clone.read(0, len(data)) == data
    finally:
        rbd.RBD().remove(pool, disk)

    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status == 204, (deleted.status, deleted.body[:500])
    assert glance.request("GET", f"/v2/images/{image_id}").status == 404
    assert_gone(pool, image_id)


def test_copy_image_from_the_file_store_to_rbd(glance, pool, rbd_cluster):
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    glance.upload(image_id, data, "fast")
    assert glance.image(image_id)["stores"] == "fast"
    assert image_id not in rbd_images(pool)

    image = glance.import_image(image_id, "copy-image", ["ceph"])
    assert image["os_glance_failed_import"] == ""
    fast_file = glance.workdir / "data" / "fast" / image_id
    assert locations(glance, image_id) == {
        "fast": f"file://{fast_file}",
        "ceph": rbd_location(rbd_cluster, image_id),
    }
    assert fast_file.read_bytes() == data
    assert_published(pool, image_id, data)
    glance.assert_serves(image_id, data)

    removed = glance.request("DELETE", f"/v2/stores/ceph/{image_id}")
    assert removed.status == 204, (removed.status, removed.body[:500])
    assert glance.image(image_id)["stores"] == "fast"
    assert locations(glance, image_id) == {"fast": f"file://{fast_file}"}
    assert_gone(pool, image_id)
    assert fast_file.read_bytes() == data
    glance.assert_serves(image_id, data)

    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status == 204, deleted.body
    assert not fast_file.exists()


def test_glance_direct_import_to_rbd(glance, pool, rbd_cluster):
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    staged = glance.request("PUT", f"/v2/images/{image_id}/stage", data)
    assert staged.status == 204, staged.body
    staging = glance.workdir / "data" / "staging" / image_id
    assert staging.read_bytes() == data
    assert image_id not in rbd_images(pool)

    image = glance.import_image(image_id, "glance-direct", ["ceph"])
    assert image["stores"] == "ceph"
    assert image["direct_url"] == rbd_location(rbd_cluster, image_id)
    assert_published(pool, image_id, data)
    glance.assert_serves(image_id, data)
    assert not staging.exists()

    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status == 204, deleted.body
    assert_gone(pool, image_id)
