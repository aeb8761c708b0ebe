"""The RBD store never takes its process down through librbd.

librbd 16.2.15 (Debian's) leaves freed memory in use after a read-only open
*at a snapshot* in a process that has listed the pool; a later read-write
open of that image aborts the process (``std::system_error``, in one of
librados's threads). Listing, reading and deleting images is exactly the
store's job (``images()``, ``get``, ``delete``), so a worker process does
that many times over, with ``MALLOC_PERTURB_`` making freed memory garbage at
once, which turns the defect from a rare abort into one within the first
rounds. The worker must finish every round and exit 0.

On the real one-node cluster of test_rbd.py (``rbd_cluster``); skipped as
test_rbd.py is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engines.ceph import CephCluster, why_no_rbd

_REASON = why_no_rbd()
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)

from tests.functional.test_rbd import make_store  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 60


def churn(conf: str, rounds: int) -> None:
    """Add, list, read and delete an image ``rounds`` times (worker)."""
    from fsstore.registry import StoreRegistry
    from fsstore.testing.suite import new_id, payload, read_all
    from tests.helpers import load_conf

    store = StoreRegistry(load_conf(Path(conf))).get_store("rbd")
    data = payload(3 * 1024 * 1024 + 5, seed=7)
    for _ in range(rounds):
        added = store.add(new_id(), iter([data]), len(data))
        assert (added.location, len(data)) in [
            (listed.location, listed.size) for listed in store.images()
        ]
        assert store.kept_digests(added.location) is not None
        assert read_all(store, added.location) == data
        store.delete(added.location)
    print(f"done {rounds}", flush=True)


def test_listing_reading_and_deleting_never_abort(
    tmp_path: Path, rbd_cluster: CephCluster
) -> None:
    store = make_store(tmp_path, rbd_cluster)
    conf = str(list(store.conf.config_file)[0])
    store.close()
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.functional.test_rbd_abort import churn; "
            "churn(sys.argv[1], int(sys.argv[2]))",
            conf,
            str(ROUNDS),
        ],
        cwd=ROOT,
        env={**os.environ, "MALLOC_PERTURB_": "165"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert worker.stdout.split() == ["done", str(ROUNDS)]
