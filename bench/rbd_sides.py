"""One side of the RBD cases, in a process of its own (run through sides.py):
fsstore's rbd store or glance_store 5.7.0's RBD driver on the same pool,
with the same chunk size (8 MiB) and the same source file.

    python bench/sides.py rbd-side WHO CEPH_CONF POOL WORK IMAGE_ID SRC KNOWN

Warms up (a one-byte add and its delete: the bindings loaded, a connection
made), then times an add of SRC (its size passed, or 0 when KNOWN is "0",
as Glance does for chunked uploads), reads the process's peak RSS, times a
get of the whole image, and deletes it (the cluster's memstore OSD keeps
its objects in memory). Only the add and the get are timed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import Any

from sides import timed_add_and_get, write_conf

CHUNK_MIB = 8  # rbd_store_chunk_size on both sides: glance_store's default

Add = Callable[[str, Any, int], str]
Get = Callable[[str], Iterable[bytes]]
Delete = Callable[[str], None]


def _options(ceph_conf: str, pool: str) -> dict[str, Any]:
    return {
        "stores": "rbd",
        "default_store": "rbd",
        "rbd_store_pool": pool,
        "rbd_store_ceph_conf": ceph_conf,
        "rbd_store_chunk_size": CHUNK_MIB,
        "rados_connect_timeout": 30,
    }


def glance_rbd(ceph_conf: str, pool: str, work: str) -> tuple[Add, Get, Delete]:
    """glance_store's RBD driver: a fresh driver object per add, since a
    driver keeps the growth of an unknown-size image on itself and fails a
    second such add (glance_store 5.7.0)."""
    import glance_store.backend as backend
    from glance_store import location as glance_location
    from glance_store._drivers import rbd as glance_rbd_driver
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    backend.register_opts(conf)
    path = write_conf(
        os.path.join(work, "glance-rbd.conf"),
        {"glance_store": _options(ceph_conf, pool)},
    )
    conf(["--config-file", path], project="glance", default_config_files=[])
    backend.create_stores(conf)

    def driver() -> Any:
        store = glance_rbd_driver.Store(conf)
        store.configure()
        return store

    def where(uri: str) -> Any:
        return glance_location.get_location_from_uri(uri, conf=conf)

    def add(image_id: str, f: Any, size: int) -> str:
        return str(driver().add(image_id, f, size, "sha512")[0])

    reader = driver()

    def get(uri: str) -> Iterable[bytes]:
        return reader.get(where(uri))[0]  # type: ignore[no-any-return]

    def delete(uri: str) -> None:
        reader.delete(where(uri))

    return add, get, delete


def fsstore_rbd(ceph_conf: str, pool: str, work: str) -> tuple[Add, Get, Delete]:
    """fsstore's rbd store: one store object serves every add."""
    from oslo_config import cfg

    from fsstore.registry import StoreRegistry, register_opts

    conf = cfg.ConfigOpts()
    register_opts(conf)
    path = write_conf(
        os.path.join(work, "fsstore-rbd.conf"),
        {"glance_store": _options(ceph_conf, pool)},
    )
    conf(["--config-file", path], project="fsstore", default_config_files=[])
    store = StoreRegistry(conf).get_store("rbd")

    def add(image_id: str, f: Any, size: int) -> str:
        return store.add(image_id, f, size).location

    def get(uri: str) -> Iterable[bytes]:
        return store.get(uri)[0]

    return add, get, store.delete


def rbd_side(
    who: str,
    ceph_conf: str,
    pool: str,
    work: str,
    image_id: str,
    src: str,
    known: str,
) -> dict[str, Any]:
    make = glance_rbd if who == "glance" else fsstore_rbd
    add, get, delete = make(ceph_conf, pool, work)
    delete(add(f"warm-up-{image_id}", io.BytesIO(b"x"), 1))
    out = timed_add_and_get(add, get, src, image_id, known)
    delete(out["location"])
    if out["read"] != os.path.getsize(src):
        raise RuntimeError(f"{who}: read {out['read']} bytes of {os.path.getsize(src)}")
    return out
