"""fsstore's S3 store against glance_store's S3 driver on real engines (Swift,
Ceph RGW), and the memory an S3 add takes on moto."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
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


@contextlib.contextmanager
def moto_server() -> Iterator[str | None]:
    """A moto server on a free loopback port; its endpoint."""
    server = subprocess.Popen(
        [str(Path(FSSTORE_PY).with_name("moto_server")), "-H", "127.0.0.1", "-p", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    endpoint = None
    for line in server.stderr:  # "Running on http://127.0.0.1:PORT"
        if "Running on" in line:
            endpoint = line.split("Running on ")[1].split()[0].rstrip("/")
            break
    try:
        # Drained, or the server blocks once its log fills the pipe.
        threading.Thread(target=server.stderr.read, daemon=True).start()
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def moto_memory_row(src: Path) -> Row:
    size = src.stat().st_size
    with moto_server() as endpoint:
        out = side(FSSTORE_PY, "s3-rss", src, endpoint, "bench")
    return within(
        f"8. peak RSS above baseline, add {size // MiB} MiB, S3 (moto)",
        (out["peak_kib"] - out["baseline_kib"]) / 1024,
        "MiB",
        64,
    )


@contextlib.contextmanager
def engines(work: Path) -> Iterator[list[Any]]:
    """Swift always; Ceph RGW when its packages are installed and this is root."""
    sys.path.insert(0, str(ROOT))
    from tests.engines import ceph
    from tests.engines.swift_cluster import SwiftServer

    started: list[Any] = []
    servers: list[Any] = [SwiftServer(work / "swift")]
    if not ceph.missing_binaries() and os.geteuid() == 0:
        servers.append(ceph.CephCluster(work / "ceph"))
    try:
        for server in servers:
            started.append(server.start())
        yield started
    finally:
        for server in servers:
            server.stop()


def _s3_runs(
    gpy: str, src: Path, work: Path, engine: Any, known: str, runs: int
) -> dict[str, dict[str, list[float]]]:
    """Add and get throughput (MiB/s) and add's peak RSS above baseline (MiB)
    of each side, per run."""
    size = src.stat().st_size
    got: dict[str, dict[str, list[float]]] = {
        "fsstore": {"add": [], "get": [], "rss": []},
        "glance": {"add": [], "get": [], "rss": []},
    }
    for run in range(runs):
        order = ("fsstore", "glance") if run % 2 == 0 else ("glance", "fsstore")
        for who in order:
            out = side(
                FSSTORE_PY if who == "fsstore" else gpy,
                "s3-side",
                who,
                src,
                work,
                engine.endpoint,
                engine.access_key,
                engine.secret_key,
                f"bench-{who}-{known}",
                f"img-{run}",
                known,
            )
            got[who]["add"].append(mib_s(size, out["add_seconds"]))
            got[who]["get"].append(mib_s(size, out["get_seconds"]))
            got[who]["rss"].append((out["peak_kib"] - out["baseline_kib"]) / 1024)
    return got


def _s3_rows(name: str, got: dict[str, dict[str, list[float]]]) -> list[Row]:
    fs, gl = got["fsstore"], got["glance"]
    bound = (10 + 2) * 10  # (s3_store_thread_pools + 2) x chunk size, MiB
    return [
        versus(
            f"{name}, add vs glance_store",
            median(fs["add"]),
            median(gl["add"]),
            "MiB/s",
            ">=",
            1.1,
        ),
        versus(
            f"{name}, get vs glance_store",
            median(fs["get"]),
            median(gl["get"]),
            "MiB/s",
            ">=",
            1.3,
        ),
        within(
            f"{name}, add: peak RSS above baseline (glance_store beside)",
            max(fs["rss"]),
            "MiB",
            bound,
            reference=max(gl["rss"]),
        ),
    ]


def s3_cases(gpy: str, src: Path, runs: int) -> list[Row]:
    """fsstore's S3 store and glance_store's S3 driver on the same engines."""
    rows: list[Row] = []
    size = src.stat().st_size // MiB
    work = fresh("s3")
    with engines(work) as running:
        for engine in running:
            for known in ("1", "0"):
                kind = "known size" if known == "1" else "unknown size"
                got = _s3_runs(gpy, src, work, engine, known, runs)
                rows += _s3_rows(f"9. {engine.name}: {size} MiB, {kind}", got)
    shutil.rmtree(work, ignore_errors=True)
    return rows
