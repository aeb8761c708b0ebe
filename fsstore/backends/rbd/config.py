"""The RBD store's options (glance_store's names and defaults) and its
bindings, imported only when a store is configured."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from fsstore import exceptions

MiB = 1024 * 1024

OPTIONS = [
    cfg.StrOpt(
        "rbd_store_pool",
        default="images",
        help="The RADOS pool the images are stored in.",
    ),
    cfg.StrOpt(
        "rbd_store_user",
        default=None,
        help="The RADOS user to connect as (client.<user>); unset: librados "
        "chooses (client.admin).",
    ),
    cfg.StrOpt(
        "rbd_store_ceph_conf",
        default="",
        help="The Ceph configuration file; empty: librados's own search "
        "($CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf).",
    ),
    cfg.IntOpt(
        "rbd_store_chunk_size",
        default=8,
        min=1,
        help="The RBD object size, in MiB (a power of two), and the size of "
        "each write and read.",
    ),
    cfg.IntOpt(
        "rados_connect_timeout",
        default=-1,
        help="Seconds to wait for the cluster; when >= 0 it also sets "
        "rados_osd_op_timeout, rados_mon_op_timeout and client_mount_timeout. "
        "-1: librados's defaults.",
    ),
    cfg.BoolOpt(
        "rbd_thin_provisioning",
        default=False,
        help="Do not write chunks that are all zeros: they stay holes.",
    ),
    cfg.BoolOpt(
        "rbd_store_verify_on_read",
        default=False,
        help="Check every whole-image read against the digests kept in the "
        "image's metadata; a mismatch is Corrupt at the end of the read.",
    ),
]

BINDINGS_HINT = (
    "the rbd store needs Debian's python3-rbd and python3-rados (apt-get "
    "install python3-rbd python3-rados) visible to this Python (make "
    "ceph-bindings does it for the venv); see README"
)


@dataclass(frozen=True)
class Bindings:
    """The two modules, imported (rados, rbd)."""

    rados: Any
    rbd: Any


def import_bindings(store_name: str) -> Bindings:
    """``rados`` and ``rbd``, imported now; BadStoreConfiguration with
    :data:`BINDINGS_HINT` when either is missing."""
    try:
        rados = importlib.import_module("rados")
        rbd = importlib.import_module("rbd")
    except ImportError:
        raise exceptions.BadStoreConfiguration(store_name, BINDINGS_HINT) from None
    return Bindings(rados, rbd)


@dataclass(frozen=True)
class Settings:
    """What the store read from its options."""

    pool: str
    user: str | None
    ceph_conf: str
    order: int  # log2 of the object size
    connect_timeout: int  # -1: librados's defaults
    thin: bool

    @property
    def chunk_size(self) -> int:
        return 1 << self.order

    def rados_conf(self) -> dict[str, str]:
        """The librados options the timeout sets, as glance_store sets them."""
        if self.connect_timeout < 0:
            return {}
        value = str(self.connect_timeout)
        return {
            "rados_osd_op_timeout": value,
            "rados_mon_op_timeout": value,
            "client_mount_timeout": value,
        }


def read_settings(store_name: str, option: Any, path_option: Any) -> Settings:
    """The store's settings from ``option`` and ``path_option`` (Store's);
    BadStoreConfiguration for a chunk size that is no power of two or an
    empty pool name."""
    chunk_mib = option("rbd_store_chunk_size")
    if chunk_mib & (chunk_mib - 1):
        raise exceptions.BadStoreConfiguration(
            store_name, f"rbd_store_chunk_size {chunk_mib} is not a power of two"
        )
    pool = option("rbd_store_pool")
    if not pool:
        raise exceptions.BadStoreConfiguration(store_name, "rbd_store_pool is not set")
    return Settings(
        pool=pool,
        user=option("rbd_store_user") or None,
        ceph_conf=path_option("rbd_store_ceph_conf"),
        order=(chunk_mib * MiB).bit_length() - 1,
        connect_timeout=option("rados_connect_timeout"),
        thin=option("rbd_thin_provisioning"),
    )
