"""The RBD store: images as Ceph RBD images, with the protected snapshot
Nova and Cinder clone from (see store.py)."""

from fsstore.backends.rbd.config import OPTIONS
from fsstore.backends.rbd.store import RbdStore

__all__ = ["OPTIONS", "RbdStore"]
