"""fsstore's benchmarks, side by side with glance_store and the machine's limits.

    python bench/run.py [--quick]

Everything is measured in one run, on the same data and machine: glance_store
5.7.0 runs from its own venv (bench/.venv-glance, made here on first use,
never a dependency of fsstore), each side in a fresh process per run, the
two sides alternating. Every figure is the median of several runs; every
comparison is a ratio of medians from this run. Writes bench/results/latest.md
and bench/results/chart.png. Not a test: nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "results"
GLANCE_VENV = BENCH / ".venv-glance"
FSSTORE_PY = sys.executable
MiB = 1024 * 1024


@dataclasses.dataclass
class Row:
    case: str
    fsstore: str
    reference: str
    ratio: float | None
    target: str
    met: bool | None

    def markdown(self) -> str:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return (
            f"| {self.case} | {self.fsstore} | {self.reference} | {ratio} | "
            f"{self.target} | {met} |"
        )


def versus(
    case: str,
    value: float,
    reference: float,
    unit: str,
    op: str | None = None,
    bound: float = 0.0,
) -> Row:
    """fsstore's figure against a reference from the same run; the target is
    on their ratio (``op`` ">=" or "<=" ``bound``), or none: reported only."""
    ratio = value / reference
    met = None if op is None else ratio >= bound if op == ">=" else ratio <= bound
    return Row(
        case,
        f"{value:.0f} {unit}",
        f"{reference:.0f} {unit}",
        ratio,
        "report" if op is None else f"{op} {bound}",
        met,
    )


def within(
    case: str,
    value: float,
    unit: str,
    bound: float,
    digits: int = 0,
    reference: float | None = None,
) -> Row:
    """fsstore's figure against an absolute bound; a reference, if given, is
    shown beside it with their ratio."""
    return Row(
        case,
        f"{value:.{digits}f} {unit}",
        "" if reference is None else f"{reference:.{digits}f} {unit}",
        None if reference is None else value / reference,
        f"<= {bound} {unit}",
        value <= bound,
    )


def glance_python() -> str:
    py = GLANCE_VENV / "bin" / "python"
    marker = GLANCE_VENV / ".installed-s3"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GLANCE_VENV)], check=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "--quiet",
                "glance_store==5.7.0",
                "boto3",
            ],
            check=True,
        )
        marker.touch()
    return str(py)


def side(python: str, case: str, *args: object) -> dict:
    proc = subprocess.run(
        [python, str(BENCH / "sides.py"), case, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def fresh(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
    (path / "images").mkdir()
    return path


def mib_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


def make_source(size: int) -> Path:
    src = WORK / f"source-{size // MiB}m.bin"
    if not src.exists() or src.stat().st_size != size:
        with open(src, "wb") as f:
            for _ in range(size // (4 * MiB)):
                f.write(os.urandom(4 * MiB))
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm
    return src


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- cases ------------------------------------------------------------------------------


def adds(gpy: str, src: Path, runs: int, algo: str) -> tuple[float, float, float]:
    """Median add throughput (MiB/s): fsstore (fsync on), glance_store, limit."""
    size = src.stat().st_size
    fs, gl, lim = [], [], []
    for r in range(runs):
        order = (
            ["glance", "fsstore", "limit"]
            if r % 2 == 0
            else ["limit", "fsstore", "glance"]
        )
        for who in order:
            d = fresh(who)
            if who == "glance":
                gl.append(
                    mib_s(
                        size,
                        side(gpy, "glance-add", src, d / "images", algo)["seconds"],
                    )
                )
            elif who == "fsstore":
                fs.append(
                    mib_s(
                        size,
                        side(FSSTORE_PY, "fsstore-add", src, d / "images", algo)[
                            "seconds"
                        ],
                    )
                )
            else:
                lim.append(
                    mib_s(size, side(FSSTORE_PY, "limit", src, d / "out")["seconds"])
                )
            shutil.rmtree(d)
    return median(fs), median(gl), median(lim)


def gets(gpy: str, src: Path, runs: int) -> tuple[float, float, float]:
    size = src.stat().st_size
    d = fresh("get")
    location = side(FSSTORE_PY, "fsstore-add", src, d / "images", "sha512")["location"]
    path = location[len("file://") :]
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    fs, gl, cat = [], [], []
    for r in range(runs):
        order = (
            ["glance", "fsstore", "cat"] if r % 2 == 0 else ["cat", "fsstore", "glance"]
        )
        for who in order:
            if who == "glance":
                gl.append(
                    mib_s(
                        size, side(gpy, "glance-get", d / "images", location)["seconds"]
                    )
                )
            elif who == "fsstore":
                fs.append(
                    mib_s(
                        size,
                        side(FSSTORE_PY, "fsstore-get", d / "images", location)[
                            "seconds"
                        ],
                    )
                )
            else:
                start = time.perf_counter()
                subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
                cat.append(mib_s(size, time.perf_counter() - start))
    shutil.rmtree(d)
    return median(fs), median(gl), median(cat)


def small_adds(gpy: str, count: int, runs: int) -> dict[str, float]:
    """Median per-add latency (us) of 4 KiB adds. No deletes between runs."""
    lat: dict[str, list[float]] = {
        k: [] for k in ("fsstore", "glance", "plain", "fsync", "four", "one", "beside")
    }
    made = []
    # "one" is measured with "four", and "beside" (fsstore) with "plain".
    runners = [k for k in lat if k not in ("one", "beside")]
    for r in range(runs):
        order = runners if r % 2 == 0 else list(reversed(runners))
        for who in order:
            d = fresh(f"small-{who}")
            made.append(d)
            if who == "glance":
                out = side(gpy, "glance-small", d / "images", count, 4096)
            elif who == "plain":
                # fsstore and the plain reference in one process, adds
                # alternating one by one: how slow this file system's creates
                # are drifts for minutes after deletions, and this way the
                # drift weighs on both alike. The same for "four" and "one".
                (d / "plain").mkdir()
                out = side(
                    FSSTORE_PY,
                    "fsstore-small-vs-plain",
                    d / "images",
                    d / "plain",
                    count,
                    4096,
                )
                lat["beside"].append(median(out["fsstore"]) * 1e6)
                lat[who].append(median(out["plain"]) * 1e6)
                continue
            elif who == "four":
                dirs = [d / f"dir{i}" for i in range(4)]
                for x in [*dirs, d / "one"]:
                    x.mkdir()
                out = side(
                    FSSTORE_PY,
                    "fsstore-small-dirs",
                    ",".join(map(str, dirs)),
                    d / "one",
                    count,
                    4096,
                )
                lat["one"].append(median(out["one"]) * 1e6)
                lat[who].append(median(out["four"]) * 1e6)
                continue
            else:
                out = side(
                    FSSTORE_PY,
                    "fsstore-small",
                    d / "images",
                    count,
                    4096,
                    "true" if who == "fsync" else "false",
                )
            lat[who].append(median(out["latencies"]) * 1e6)
    for d in made:  # only now: deletes slow every later create on this ext4
        shutil.rmtree(d)
    return {k: median(v) for k, v in lat.items()}


def cache_cases(
    driver: str, entries: int, reps: int, database: str | None = None
) -> dict[str, float]:
    """Hit, is_cached, listing and prune of one driver (centralized_db: on
    the database at ``database``)."""
    sys.path.insert(0, str(ROOT))
    from fsstore.cache import ImageCache, central
    from fsstore.cache.sqlite import SqliteDriver
    from fsstore.testing.cache_suite import make_cache_conf

    d = fresh(f"cache-{driver}")

    def conf(**options: Any) -> Any:
        made = make_cache_conf(d / "cache", driver, **options)
        if database:
            central.register_opts(made)
            made.set_override("connection", database, group="database")
            made.set_override("worker_self_reference_url", "http://bench:9292")
        return made

    cache = ImageCache(conf())
    data = os.urandom(MiB)
    cache.cache_image_iter("hit", iter([data]), allow_unverified=True)
    path = d / "cache" / "hit"
    out: dict[str, float] = {}
    hit, plain = [], []
    for r in range(reps):
        for who in ("cache", "plain") if r % 2 == 0 else ("plain", "cache"):
            start = time.perf_counter()
            if who == "cache":
                with cache.open_for_read("hit") as f:
                    f.read()
                hit.append(time.perf_counter() - start)
            else:
                with open(path, "rb") as f:
                    f.read()
                plain.append(time.perf_counter() - start)
    out["hit_us"], out["plain_us"] = median(hit) * 1e6, median(plain) * 1e6
    times = []
    for _ in range(reps * 5):
        start = time.perf_counter()
        cache.is_cached("hit")
        times.append(time.perf_counter() - start)
    out["is_cached_us"] = median(times) * 1e6
    # Populate entries as a cache written by Glance would look: files + records.
    now = time.time()
    rows = []
    for i in range(entries):
        name = f"e{i:06d}"
        with open(d / "cache" / name, "wb") as f:
            f.write(b"x" * 100)
        if driver == "xattr":
            os.setxattr(d / "cache" / name, "user.hits", b"0")
        rows.append((name, now - i, now, 100, 0, None))
    if isinstance(cache.records, SqliteDriver):
        db = cache.records._db()
        db.execute("BEGIN")
        db.executemany("INSERT INTO cached_images VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    if isinstance(cache.records, central.CentralDbDriver):
        central_rows(cache.records, rows)
    times, floor = [], []
    for r in range(5):
        for who in ("cache", "floor") if r % 2 == 0 else ("floor", "cache"):
            start = time.perf_counter()
            if who == "cache":
                listed = cache.get_cached_images()
                times.append(time.perf_counter() - start)
            elif database:
                bare_select(cache.records)
                floor.append(time.perf_counter() - start)
            else:
                bare_listing(d / "cache", driver)
                floor.append(time.perf_counter() - start)
    assert len(listed) == entries + 1
    out["list_ms"] = median(times) * 1e3
    out["floor_ms"] = median(floor) * 1e3
    small = ImageCache(conf(image_cache_max_size=0))
    start = time.perf_counter()
    pruned, _ = small.prune()
    out["prune_s"] = time.perf_counter() - start
    out["pruned"] = pruned
    shutil.rmtree(d)
    return out


def central_rows(driver: Any, rows: list[tuple]) -> None:
    """The same records in the central database, for the driver's node."""
    import datetime

    import sqlalchemy as sa

    def moment(epoch: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(epoch, datetime.UTC).replace(tzinfo=None)

    with driver._engine.begin() as db:
        db.execute(
            sa.insert(driver._records),
            [
                {
                    "image_id": name,
                    "last_accessed": moment(accessed),
                    "last_modified": moment(modified),
                    "size": size,
                    "hits": hits,
                    "checksum": checksum,
                    "node_reference_id": driver._node_id,
                }
                for name, accessed, modified, size, hits, checksum in rows
            ],
        )


def bare_select(driver: Any) -> list[tuple]:
    """The least a central listing can do: one SELECT of the node's rows
    through the database driver itself."""
    raw = driver._engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "SELECT image_id, size, hits, last_accessed, last_modified, checksum "
            "FROM cached_images WHERE node_reference_id = %s",
            (driver._node_id,),
        )
        return list(cursor.fetchall())
    finally:
        raw.close()


def bare_listing(cache_dir: Path, driver: str) -> list[tuple]:
    """The least a listing can do: the driver's system calls per entry, in a
    bare loop (xattr: lstat + getxattr; sqlite: one SELECT of the rows)."""
    if driver == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(cache_dir / "cache.db")) as db:
            return db.execute("SELECT * FROM cached_images").fetchall()
    rows = []
    dir_fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                    hits = os.getxattr(f"{cache_dir}/{entry.name}", "user.hits")
                except OSError:
                    continue
                rows.append((entry.name, st.st_size, hits, st.st_atime, st.st_mtime))
    finally:
        os.close(dir_fd)
    return rows


def fill_throughput(src: Path, runs: int) -> tuple[float, float]:
    """Read-through fill, a miss that streams from the store into the cache:
    (MiB/s with the store's copy in the page cache, as the add's source is;
    MiB/s with it read from the disk). The store writes with O_DIRECT, so
    its copy is cold until read once."""
    sys.path.insert(0, str(ROOT))
    from fsstore.cache import CachingStore, ImageCache
    from fsstore.registry import StoreRegistry
    from fsstore.testing.cache_suite import make_cache_conf

    size = src.stat().st_size
    speeds: dict[str, list[float]] = {"warm": [], "cold": []}
    for r in range(runs):
        for how in ("warm", "cold") if r % 2 == 0 else ("cold", "warm"):
            d = fresh("fill")
            conf = make_cache_conf(d / "cache", "sqlite")
            conf.set_override(
                "filesystem_store_datadir", str(d / "images"), group="glance_store"
            )
            registry = StoreRegistry(conf)
            with open(src, "rb") as f:
                result = registry.add("img", f, size)
            if how == "warm":
                with open(result.location.removeprefix("file://"), "rb") as f:
                    while f.read(4 * MiB):
                        pass
            caching = CachingStore(registry, ImageCache(conf))
            start = time.perf_counter()
            chunks, _ = caching.get("img", result.location, checksum=result.checksum)
            for _chunk in chunks:
                pass
            speeds[how].append(mib_s(size, time.perf_counter() - start))
            assert caching.cache.is_cached("img")
            shutil.rmtree(d)
    return median(speeds["warm"]), median(speeds["cold"])


def _hash_file_threads(path: Path) -> float:
    """The machine's limit for reading and hashing MD5 plus SHA-512: each
    digest in a thread of its own reading the file (page cache) on its
    own, 4 MiB at a time; seconds until both are done."""
    import hashlib
    import threading

    def digest(name: str) -> None:
        h = hashlib.new(name)
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(4 * MiB):
                h.update(chunk)

    start = time.perf_counter()
    threads = [threading.Thread(target=digest, args=(n,)) for n in ("md5", "sha512")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def scrub_throughput(src: Path, runs: int) -> tuple[float, float, float]:
    """Scrub of one image (the store's copy in the page cache) against the
    machine's limit for reading plus MD5 and SHA-512: (scrub MiB/s, limit
    MiB/s, achieved MB/s with --rate 50 on a quarter of the image)."""
    sys.path.insert(0, str(ROOT))
    from fsstore.registry import StoreRegistry
    from fsstore.scrub import scrub
    from fsstore.testing.cache_suite import make_cache_conf

    size = src.stat().st_size
    d = fresh("scrub")
    conf = make_cache_conf(d / "cache", "sqlite")
    conf.set_override(
        "filesystem_store_datadir", str(d / "images"), group="glance_store"
    )
    store = StoreRegistry(conf).get_store()
    with open(src, "rb") as f:
        location = store.add("img", f, size).location
    path = Path(location.removeprefix("file://"))
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm
    scrubs, limits = [], []
    for r in range(runs):
        for which in ("scrub", "limit") if r % 2 == 0 else ("limit", "scrub"):
            if which == "limit":
                limits.append(mib_s(size, _hash_file_threads(path)))
                continue
            start = time.perf_counter()
            report = scrub(store)
            scrubs.append(mib_s(size, time.perf_counter() - start))
            assert report.counts()["ok"] == 1
    store.delete(location)
    quarter = size // 4
    # Streamed, not read whole: the bench's own process stays small.
    store.add("quarter", _head(src, quarter), quarter)
    start = time.perf_counter()
    scrub(store, rate=50e6)
    rate = quarter / 1e6 / (time.perf_counter() - start)
    shutil.rmtree(d)
    return median(scrubs), median(limits), rate


def _head(path: Path, n: int) -> Iterator[bytes]:
    """The first ``n`` bytes of ``path``, 1 MiB at a time."""
    with open(path, "rb") as f:
        while n > 0 and (chunk := f.read(min(MiB, n))):
            n -= len(chunk)
            yield chunk


def memory(src: Path) -> tuple[float, float]:
    d = fresh("rss")
    out = side(FSSTORE_PY, "fsstore-rss", src, d / "images")
    fs = (out["peak_kib"] - out["baseline_kib"]) / 1024
    shutil.rmtree(d)
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
        import threading

        threading.Thread(target=server.stderr.read, daemon=True).start()
        out = side(FSSTORE_PY, "s3-rss", src, endpoint, "bench")
        s3 = (out["peak_kib"] - out["baseline_kib"]) / 1024
    finally:
        server.terminate()
        server.wait()
    return fs, s3


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


def s3_cases(gpy: str, src: Path, runs: int) -> list[Row]:
    """fsstore's S3 store and glance_store's S3 driver on the same engines."""
    rows: list[Row] = []
    size = src.stat().st_size // MiB
    work = fresh("s3")
    bound = (10 + 2) * 10  # (s3_store_thread_pools + 2) x chunk size, MiB
    with engines(work) as running:
        for engine in running:
            for known in ("1", "0"):
                kind = "known size" if known == "1" else "unknown size"
                got: dict[str, dict[str, list[float]]] = {
                    "fsstore": {"add": [], "get": [], "rss": []},
                    "glance": {"add": [], "get": [], "rss": []},
                }
                for run in range(runs):
                    order = (
                        ("fsstore", "glance") if run % 2 == 0 else ("glance", "fsstore")
                    )
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
                        got[who]["add"].append(
                            mib_s(src.stat().st_size, out["add_seconds"])
                        )
                        got[who]["get"].append(
                            mib_s(src.stat().st_size, out["get_seconds"])
                        )
                        got[who]["rss"].append(
                            (out["peak_kib"] - out["baseline_kib"]) / 1024
                        )
                fs, gl = got["fsstore"], got["glance"]
                name = f"9. {engine.name}: {size} MiB, {kind}"
                rows.append(
                    versus(
                        f"{name}, add vs glance_store",
                        median(fs["add"]),
                        median(gl["add"]),
                        "MiB/s",
                        ">=",
                        1.0,
                    )
                )
                rows.append(
                    versus(
                        f"{name}, get vs glance_store",
                        median(fs["get"]),
                        median(gl["get"]),
                        "MiB/s",
                        ">=",
                        1.0,
                    )
                )
                rows.append(
                    within(
                        f"{name}, add: peak RSS above baseline (glance_store beside)",
                        max(fs["rss"]),
                        "MiB",
                        bound,
                        reference=max(gl["rss"]),
                    )
                )
    shutil.rmtree(work, ignore_errors=True)
    return rows


def central_cache_rows(entries: int, reps: int, sqlite_hit_us: float) -> list[Row]:
    """centralized_db on a real PostgreSQL server on loopback."""
    sys.path.insert(0, str(ROOT))
    from tests.databases import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        c = cache_cases(
            "centralized_db", entries, reps, server.create_database("bench")
        )
    finally:
        server.stop()
    name = "7. centralized_db (PostgreSQL)"
    return [
        versus(
            f"{name}: hit read of 1 MiB vs the sqlite hit",
            c["hit_us"],
            sqlite_hit_us,
            "us",
            "<=",
            2.0,
        ),
        versus(
            f"{name}: hit read of 1 MiB vs plain read", c["hit_us"], c["plain_us"], "us"
        ),
        within(f"{name}: is_cached", c["is_cached_us"], "us", 15, digits=1),
        Row(
            f"{name}: get_cached_images, {entries} entries vs one bare SELECT",
            f"{c['list_ms']:.1f} ms",
            f"{c['floor_ms']:.1f} ms",
            c["list_ms"] / c["floor_ms"],
            "report",
            None,
        ),
        Row(
            f"{name}: prune of {c['pruned']} entries",
            f"{c['prune_s']:.2f} s",
            "",
            None,
            "report",
            None,
        ),
    ]


# -- report -------------------------------------------------------------------------------


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.ratio is not None]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.5))
    colors = [
        {True: "tab:green", False: "tab:red", None: "tab:grey"}[r.met] for r in shown
    ]
    ax.barh([r.case for r in shown], [r.ratio for r in shown], color=colors)
    for i, r in enumerate(shown):
        # A target in units (not a ratio) applies to fsstore's own figure.
        absolute = r.target.split()[-1] in ("us", "ms", "s", "MiB")
        label = f" {r.ratio:.2f}" + (f", {r.fsstore}" if absolute else "")
        ax.text(r.ratio, i, f"{label} (target {r.target})", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlim(0, max(r.ratio for r in shown) * 1.6)  # room for the labels
    ax.invert_yaxis()
    ax.set_xlabel("ratio (green: target met, red: missed, grey: reported)")
    ax.set_title("fsstore vs glance_store 5.7.0 and the machine's limits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="256 MiB instead of 1 GiB, fewer runs (< 2 minutes)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    size = 256 * MiB if args.quick else 1024 * MiB
    runs = 3 if args.quick else 5
    gpy = glance_python()
    src = make_source(size)
    rows: list[Row] = []

    fs, gl, lim = adds(gpy, src, runs, "sha512")
    rows.append(
        versus(
            f"1. add {size // MiB} MiB md5+sha512 (fsync on) vs glance_store",
            fs,
            gl,
            "MiB/s",
            ">=",
            2.0,
        )
    )
    rows.append(
        versus(
            "2. same add vs best buffered pass, no fsync (the limit)",
            fs,
            lim,
            "MiB/s",
            ">=",
            0.9,
        )
    )
    fs256, gl256, _ = adds(gpy, src, runs, "sha256")
    rows.append(
        versus("3. add md5+sha256 (fsync on) vs glance_store", fs256, gl256, "MiB/s")
    )
    gfs, ggl, gcat = gets(gpy, src, runs)
    rows.append(
        versus(
            f"4. get {size // MiB} MiB vs glance_store", gfs, ggl, "MiB/s", ">=", 1.0
        )
    )
    rows.append(versus("4. get vs cat file > /dev/null", gfs, gcat, "MiB/s", ">=", 1.0))
    count = 300 if args.quick else 1000
    lat = small_adds(gpy, count, runs)
    rows.append(
        versus(
            f"5. {count} adds of 4 KiB (fsync off) vs glance_store",
            lat["fsstore"],
            lat["glance"],
            "us",
            "<=",
            0.8,
        )
    )
    rows.append(
        versus(
            "5. same vs open('xb')+write+close with both hashes",
            lat["beside"],
            lat["plain"],
            "us",
            "<=",
            1.05,
        )
    )
    rows.append(
        Row(
            "5. 4 KiB adds with fsync on",
            f"{lat['fsync']:.0f} us",
            "",
            None,
            "report",
            None,
        )
    )
    rows.append(
        versus(
            "6. 4 KiB adds, four prioritized directories vs one",
            lat["four"],
            lat["one"],
            "us",
            "<=",
            1.05,
        )
    )
    entries = 10000
    sqlite_hit_us = 0.0
    for driver in ("sqlite", "xattr"):
        c = cache_cases(driver, entries, 200 if args.quick else 1000)
        if driver == "sqlite":
            sqlite_hit_us = c["hit_us"]
        rows.append(
            versus(
                f"7. {driver}: hit read of 1 MiB vs plain read",
                c["hit_us"],
                c["plain_us"],
                "us",
                "<=",
                1.3,
            )
        )
        rows.append(
            within(f"7. {driver}: is_cached", c["is_cached_us"], "us", 15, digits=1)
        )
        rows.append(
            within(
                f"7. {driver}: get_cached_images, {entries} entries "
                "vs a bare loop of its system calls",
                c["list_ms"],
                "ms",
                50,
                digits=1,
                reference=c["floor_ms"],
            )
        )
        rows.append(
            within(
                f"7. {driver}: prune of {c['pruned']} entries",
                c["prune_s"],
                "s",
                2,
                digits=2,
            )
        )
    rows += central_cache_rows(entries, 200 if args.quick else 1000, sqlite_hit_us)
    fill, fill_cold = fill_throughput(src, 1 if args.quick else 3)
    rows.append(
        versus(
            "7. read-through fill, store's copy in the page cache, vs case 1 add",
            fill,
            fs,
            "MiB/s",
            ">=",
            0.9,
        )
    )
    rows.append(
        versus(
            "7. read-through fill, store's copy read from the disk, vs case 1 add",
            fill_cold,
            fs,
            "MiB/s",
        )
    )
    scrub_fs, scrub_limit, scrub_rate = scrub_throughput(src, 1 if args.quick else 3)
    rows.append(
        versus(
            f"9. scrub {size // MiB} MiB (page cache) vs read + md5 + sha512 limit",
            scrub_fs,
            scrub_limit,
            "MiB/s",
            ">=",
            0.9,
        )
    )
    rows.append(
        versus(
            "9. scrub --rate 50 MB/s: achieved vs asked",
            scrub_rate,
            50.0,
            "MB/s",
            "<=",
            1.1,
        )
    )
    rows.append(
        Row(
            "9. scrub --rate 50 MB/s: at least 0.9 of asked",
            f"{scrub_rate:.1f} MB/s",
            "50 MB/s",
            scrub_rate / 50,
            ">= 0.9",
            scrub_rate / 50 >= 0.9,
        )
    )
    rss_fs, rss_s3 = memory(src)
    rows.append(
        within(
            f"8. peak RSS above baseline, add {size // MiB} MiB, filesystem",
            rss_fs,
            "MiB",
            64,
        )
    )
    rows.append(
        within(
            f"8. peak RSS above baseline, add {size // MiB} MiB, S3 (moto)",
            rss_s3,
            "MiB",
            64,
        )
    )

    rows += s3_cases(gpy, make_source(256 * MiB), runs)

    took = time.monotonic() - started
    header = (
        f"fsstore benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{'quick' if args.quick else 'full'} run in {took:.0f} s: "
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python "
        f"{platform.python_version()}; medians of {runs} runs, sides alternating.\n\n"
        "| case | fsstore | reference | ratio | target | met |\n"
        "|---|---:|---:|---:|---|---|\n"
    )
    table = header + "\n".join(r.markdown() for r in rows) + "\n"
    (RESULTS / "latest.md").write_text(table)
    chart(rows, RESULTS / "chart.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
