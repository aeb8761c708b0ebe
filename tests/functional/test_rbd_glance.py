"""An unchanged glance_store (5.7.0) on fsstore's RBD store, ``fsstore_rbd``,
on a real one-node Ceph cluster (the ``rbd_cluster`` fixture).

The scenario runs glance_store's own multi-store API in a process of its own
(glance_store keeps its configuration and stores in module-level state), as
a Glance API worker would: ``python -m tests.functional.test_rbd_glance
CONF_FILE BACKEND PREFIX`` prints one JSON object of what it observed.

Skipped, as tests/functional/test_rbd.py, where the Ceph daemons or the
bindings are missing, or without root; ``make test-ceph`` runs it.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.engines.ceph import CephCluster, why_no_rbd
from tests.helpers import write_conf

ROOT = Path(__file__).resolve().parents[2]
GS = "glance_store.exceptions."
MiB = 1024 * 1024
SIZED = bytes(range(256)) * (10 * 1024 + 3)  # 2.5 MiB and a bit: 3 objects
UNKNOWN = b"unknown size " * 300_001  # about 3.7 MiB, read in 64 KiB pieces


class Trickle:
    """A request body of unknown length, read as Glance reads one."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(min(n, 65536) if n > 0 else 65536)


def error_name(fn: Any, *args: Any) -> str | None:
    try:
        fn(*args)
    except Exception as exc:  # the class is what the scenario reports
        return f"{type(exc).__module__}.{type(exc).__name__}"
    return None


def scenario(conf_file: str, backend: str, prefix: str) -> dict[str, Any]:
    import glance_store.location
    import glance_store.multi_backend as mb
    import rados
    import rbd

    from tests.functional.glance_scenarios import CONF, setup_multi

    setup_multi(conf_file)
    driver = mb.get_store_from_store_identifier(backend)
    out: dict[str, Any] = {"url_prefix": driver.url_prefix}

    def add(image_id: str, data: Any, size: int) -> dict[str, Any]:
        location, size, checksum, multihash, metadata = mb.add_with_multihash(
            CONF, image_id, data, size, backend, "sha256"
        )
        return {
            "location": location,
            "size": size,
            "checksum": checksum,
            "multihash": multihash,
            "metadata": metadata,
        }

    def read(location: str, **kwargs: Any) -> tuple[str, int]:
        chunks, length = mb.get(location, backend, **kwargs)
        return hashlib.sha256(b"".join(chunks)).hexdigest(), length

    sized, unknown = f"{prefix}-sized", f"{prefix}-unknown"
    out["sized"] = add(sized, io.BytesIO(SIZED), len(SIZED))
    # Two adds of unknown size on the one driver: glance_store's own fails
    # the second (its resize state lives on the driver).
    out["unknown"] = add(unknown, Trickle(UNKNOWN), 0)
    again = add(f"{prefix}-unknown-2", Trickle(UNKNOWN), 0)
    out["unknown_again"] = again["size"]
    four = mb.add(CONF, f"{prefix}-4", io.BytesIO(b"4"), 1, backend)
    out["four_tuple_len"] = len(four)
    location = out["sized"]["location"]
    out["get"] = read(location)
    out["get_unknown"] = read(out["unknown"]["location"])
    out["ranged"] = read(location, offset=MiB - 5, chunk_size=MiB + 10)
    out["size"] = mb.get_size_from_uri_and_backend(location, backend)
    parsed = glance_store.location.get_location_from_uri_and_backend(location, backend)
    where = parsed.store_location
    out["parsed"] = {
        "class": type(where).__name__,
        "fsid": where.fsid,
        "pool": where.pool,
        "image": where.image,
        "snapshot": where.snapshot,
        "uri": where.get_uri(),
    }
    legacy = glance_store.location.get_location_from_uri_and_backend(
        f"rbd://{sized}", backend
    ).store_location
    out["legacy"] = [legacy.fsid, legacy.pool, legacy.image, legacy.snapshot]
    out["bad_uri"] = error_name(mb.get_size_from_uri_and_backend, "rbd://a/b", backend)
    out["duplicate"] = error_name(add, sized, io.BytesIO(b"x"), 1)
    out["short"] = error_name(add, f"{prefix}-short", io.BytesIO(b"abc"), 10)

    # A VM's disk cloned from the image's location exactly as Nova does.
    client = rados.Rados(conffile=driver.conf_file)
    client.connect(timeout=30)
    try:
        with client.open_ioctx(where.pool) as ioctx:
            disk = f"{prefix}-disk"
            rbd.RBD().clone(ioctx, where.image, where.snapshot, ioctx, disk)
            with rbd.Image(ioctx, disk, read_only=True) as clone:
                out["clone_ok"] = clone.read(0, len(SIZED)) == SIZED
            out["delete_with_clone"] = error_name(mb.delete, location, backend)
            out["size_with_clone"] = mb.get_size_from_uri_and_backend(location, backend)
            rbd.RBD().remove(ioctx, disk)
    finally:
        client.shutdown()
    mb.delete(location, backend)
    out["after_delete"] = error_name(
        mb.get_size_from_uri_and_backend, location, backend
    )
    out["delete_missing"] = error_name(mb.delete, location, backend)
    for other in (out["unknown"]["location"], again["location"], four[0]):
        mb.delete(other, backend)
    return out


def cluster_down(conf_file: str, backend: str) -> dict[str, Any]:
    """Glance starting while Ceph is down: the store is made, its url_prefix
    is glance_store's fallback until the cluster is reached, an add fails."""
    import glance_store.multi_backend as mb

    from tests.functional.glance_scenarios import CONF, setup_multi

    setup_multi(conf_file)
    driver = mb.get_store_from_store_identifier(backend)
    error = None
    try:
        mb.add_with_multihash(CONF, "down", io.BytesIO(b"x"), 1, backend, "sha256")
    except Exception as exc:
        error = [f"{type(exc).__module__}.{type(exc).__name__}", str(exc)]
    return {"url_prefix": driver.url_prefix, "add": error}


_REASON = why_no_rbd()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)


def run(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.functional.test_rbd_glance", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_glance_store_api_on_fsstore_rbd(
    tmp_path: Path, rbd_cluster: CephCluster
) -> None:
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "ceph:fsstore_rbd"},
            "glance_store": {"default_backend": "ceph"},
            "ceph": {
                "rbd_store_pool": "images",
                "rbd_store_ceph_conf": str(rbd_cluster.conf),
                "rbd_store_chunk_size": 1,
                "rados_connect_timeout": 30,
            },
        },
    )
    prefix = f"glance-{uuid.uuid4().hex[:8]}"
    out = run("scenario", str(conf), "ceph", prefix)

    fsid = rbd_cluster.fsid
    assert fsid
    # Glance tags locations by the backend whose url_prefix they start with.
    assert out["url_prefix"] == f"rbd://{fsid}/images/"
    sized = out["sized"]
    assert sized == {
        "location": f"rbd://{fsid}/images/{prefix}-sized/snap",
        "size": len(SIZED),
        "checksum": hashlib.md5(SIZED).hexdigest(),
        "multihash": hashlib.sha256(SIZED).hexdigest(),
        "metadata": {"store": "ceph"},
    }
    assert sized["location"].startswith(out["url_prefix"])
    unknown = out["unknown"]
    assert unknown["location"] == f"rbd://{fsid}/images/{prefix}-unknown/snap"
    assert unknown["size"] == out["unknown_again"] == len(UNKNOWN)
    assert unknown["checksum"] == hashlib.md5(UNKNOWN).hexdigest()
    assert unknown["multihash"] == hashlib.sha256(UNKNOWN).hexdigest()
    assert out["four_tuple_len"] == 4
    assert out["get"] == [hashlib.sha256(SIZED).hexdigest(), len(SIZED)]
    assert out["get_unknown"] == [hashlib.sha256(UNKNOWN).hexdigest(), len(UNKNOWN)]
    piece = SIZED[MiB - 5 : 2 * MiB + 5]
    assert out["ranged"] == [hashlib.sha256(piece).hexdigest(), len(piece)]
    assert out["size"] == len(SIZED)
    assert out["parsed"] == {
        "class": "RbdStoreLocation",
        "fsid": fsid,
        "pool": "images",
        "image": f"{prefix}-sized",
        "snapshot": "snap",
        "uri": sized["location"],
    }
    assert out["legacy"] == [None, None, f"{prefix}-sized", None]
    assert out["bad_uri"] == GS + "BadStoreUri"
    assert out["duplicate"] == GS + "Duplicate"
    assert out["short"] == GS + "Invalid"
    # A clone made as Nova does reads the image, and blocks its delete
    # (Glance answers InUseByStore with 409) without changing anything.
    assert out["clone_ok"]
    assert out["delete_with_clone"] == GS + "InUseByStore"
    assert out["size_with_clone"] == len(SIZED)
    assert out["after_delete"] == GS + "NotFound"
    assert out["delete_missing"] == GS + "NotFound"


def test_glance_starts_while_the_cluster_is_down(tmp_path: Path) -> None:
    ceph_conf = tmp_path / "down.conf"
    ceph_conf.write_text(
        "[global]\nmon host = v2:127.0.0.1:9\nauth client required = none\n"
        "ms mon client mode = crc\nkeyring = /dev/null\n"
    )
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "ceph:fsstore_rbd"},
            "glance_store": {"default_backend": "ceph"},
            "ceph": {
                "rbd_store_ceph_conf": str(ceph_conf),
                "rados_connect_timeout": 1,
            },
        },
    )
    out = run("cluster_down", str(conf), "ceph")
    assert out["url_prefix"] == "rbd://"
    name, message = out["add"]
    assert name == GS + "BackendException"
    assert "within 1 s" in message and "\n" not in message


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    found = {"scenario": scenario, "cluster_down": cluster_down}[name]
    print(json.dumps(found(*args)), flush=True)
