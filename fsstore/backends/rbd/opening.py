"""Opening an image for reading, around a defect of librbd 16.2.15."""

from __future__ import annotations

from typing import Any

from fsstore.backends.rbd.config import Bindings


def open_read_only(bindings: Bindings, ioctx: Any, name: str, snapshot: str) -> Any:
    """Image ``name`` opened read-only (no watch), at ``snapshot`` if named.

    Opened at the head, then moved to the snapshot: librbd 16.2.15's
    read-only open *at* a snapshot, in a process that has listed the pool,
    leaves freed memory in use, and a later read-write open of that image
    can abort the whole process (``std::system_error``; reproduced every
    time with ``MALLOC_PERTURB_``, tests/functional/test_rbd_abort.py).
    ``set_snap`` after a read-only open does not."""
    image = bindings.rbd.Image(ioctx, name, read_only=True)
    if snapshot:
        try:
            image.set_snap(snapshot)
        except BaseException:
            image.close()
            raise
    return image
