"""fsstore's rbd store against glance_store 5.7.0's RBD driver on one
one-node Ceph cluster (a monitor and a memstore OSD, tests/engines/ceph.py):
adds of known and unknown size, gets, and the memory an add takes.

Both sides use an 8 MiB chunk (glance_store's default rbd_store_chunk_size)
and the same source file; each run is a fresh process per side
(rbd_sides.py), the sides alternating, and each image is deleted once read
back, so the OSD's memory holds one image at a time.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import (
    FSSTORE_PY,
    ROOT,
    MiB,
    Row,
    fresh,
    median,
    mib_s,
    side,
    versus,
    within,
)

POOL = "images"
SIDES = ("fsstore", "glance")
RSS_BOUND = 64  # MiB: a few 8 MiB objects in flight, and nothing per image size


def why_not(gpy: str) -> str | None:
    """Why the RBD cases cannot run here (one line), or None. Links Debian's
    rados and rbd bindings into glance_store's venv first."""
    sys.path.insert(0, str(ROOT))
    from tests.engines.ceph import why_no_rbd

    reason = why_no_rbd()
    if reason is not None:
        return reason
    subprocess.run(
        ["sh", str(ROOT / "tests" / "engines" / "ceph-bindings.sh"), gpy], check=True
    )
    probe = subprocess.run(
        [gpy, "-c", "import rados, rbd"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return "no rados/rbd bindings for glance_store's venv (bench/.venv-glance)"
    return None


@contextlib.contextmanager
def rbd_cluster(work: Path) -> Iterator[Any]:
    """A one-node cluster with the pool made and `rbd pool init`-ed; room
    for two 1 GiB images and more."""
    from tests.engines.ceph import CephCluster

    cluster = CephCluster(work / "ceph", memstore_gib=4)
    cluster.start_rados()  # stops what it started if it fails
    cluster.create_rbd_pool(POOL)
    try:
        yield cluster
    finally:
        cluster.stop()


def _side(
    gpy: str, who: str, conf: Path, work: Path, name: str, src: Path, known: str
) -> dict[str, Any]:
    python = FSSTORE_PY if who == "fsstore" else gpy
    return side(python, "rbd-side", who, conf, POOL, work, name, src, known)


def _runs(
    gpy: str, src: Path, work: Path, conf: Path, runs: int
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per kind ("1": known size, "0": unknown) and side, each run's add and
    get throughput (MiB/s) and add's peak RSS above baseline (MiB). One
    add of each side first, not counted: the OSD's memory warmed."""
    size = src.stat().st_size
    got = {
        known: {who: {"add": [], "get": [], "rss": []} for who in SIDES}
        for known in ("1", "0")
    }
    for who in SIDES:
        _side(gpy, who, conf, work, f"bench-{who}-warm-up", src, "1")
    for run in range(runs):
        order = SIDES if run % 2 == 0 else SIDES[::-1]
        for known in ("1", "0") if run % 2 == 0 else ("0", "1"):
            for who in order:
                out = _side(
                    gpy, who, conf, work, f"bench-{who}-{known}-{run}", src, known
                )
                kept = got[known][who]
                kept["add"].append(mib_s(size, out["add_seconds"]))
                kept["get"].append(mib_s(size, out["get_seconds"]))
                kept["rss"].append((out["peak_kib"] - out["baseline_kib"]) / 1024)
    return got


def _rows(size: int, known: dict[str, Any], unknown: dict[str, Any]) -> list[Row]:
    name = f"10. rbd: {size // MiB} MiB"
    fs = {k: known["fsstore"][k] + unknown["fsstore"][k] for k in ("get", "rss")}
    gl = {k: known["glance"][k] + unknown["glance"][k] for k in ("get", "rss")}
    rows = [
        versus(
            f"{name}, {kind} size, add vs glance_store",
            median(got["fsstore"]["add"]),
            median(got["glance"]["add"]),
            "MiB/s",
            ">=",
            1.5,
        )
        for kind, got in (("known", known), ("unknown", unknown))
    ]
    rows.append(
        versus(
            f"{name}, get vs glance_store",
            median(fs["get"]),
            median(gl["get"]),
            "MiB/s",
            ">=",
            1.3,  # as S3's reads
        )
    )
    rows.append(
        within(
            f"{name}, add: peak RSS above baseline (glance_store beside)",
            max(fs["rss"]),
            "MiB",
            RSS_BOUND,
            reference=max(gl["rss"]),
        )
    )
    return rows


def rbd_rows(gpy: str, src: Path, runs: int) -> list[Row]:
    """Case 10, or one line saying why it cannot run here."""
    reason = why_not(gpy)
    if reason is not None:
        return [Row(f"10. rbd: skipped: {reason}", "", "", None, "-", None)]
    work = fresh("rbd")
    try:
        with rbd_cluster(work) as cluster:
            got = _runs(gpy, src, work, cluster.conf, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for known, sides in got.items():
        for who, figures in sides.items():
            each = {k: [round(v) for v in vs] for k, vs in figures.items()}
            print(f"rbd, known size {known}, {who}: {each}", file=sys.stderr)
    return _rows(src.stat().st_size, got["1"], got["0"])
