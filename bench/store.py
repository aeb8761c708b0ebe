"""The filesystem store's cases: large adds and gets against glance_store and
the machine's limits, 4 KiB adds, and the memory an add takes."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from common import FSSTORE_PY, MiB, Row, fresh, median, mib_s, side, versus, within


def _add_seconds(gpy: str, who: str, src: Path, d: Path, algo: str) -> float:
    if who == "glance":
        return side(gpy, "glance-add", src, d / "images", algo)["seconds"]
    if who == "fsstore":
        return side(FSSTORE_PY, "fsstore-add", src, d / "images", algo)["seconds"]
    return side(FSSTORE_PY, "limit", src, d / "out")["seconds"]


def adds(gpy: str, src: Path, runs: int, algo: str) -> tuple[float, float, float]:
    """Median add throughput (MiB/s): fsstore (fsync on), glance_store, limit."""
    size = src.stat().st_size
    speeds: dict[str, list[float]] = {"fsstore": [], "glance": [], "limit": []}
    for r in range(runs):
        order = (
            ["glance", "fsstore", "limit"]
            if r % 2 == 0
            else ["limit", "fsstore", "glance"]
        )
        for who in order:
            d = fresh(who)
            speeds[who].append(mib_s(size, _add_seconds(gpy, who, src, d, algo)))
            shutil.rmtree(d)
    return (
        median(speeds["fsstore"]),
        median(speeds["glance"]),
        median(speeds["limit"]),
    )


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
                out = side(gpy, "glance-get", d / "images", location)
                gl.append(mib_s(size, out["seconds"]))
            elif who == "fsstore":
                out = side(FSSTORE_PY, "fsstore-get", d / "images", location)
                fs.append(mib_s(size, out["seconds"]))
            else:
                start = time.perf_counter()
                subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
                cat.append(mib_s(size, time.perf_counter() - start))
    shutil.rmtree(d)
    return median(fs), median(gl), median(cat)


def _small_side(gpy: str, who: str, d: Path, count: int) -> dict[str, list[float]]:
    """One side's per-add latencies (s), under the names they are reported by."""
    if who == "glance":
        return {who: side(gpy, "glance-small", d / "images", count, 4096)["latencies"]}
    if who == "plain":
        # fsstore and the plain reference in one process, adds alternating
        # one by one: how slow this file system's creates are drifts for
        # minutes after deletions, and this way the drift weighs on both
        # alike. The same for "four" and "one".
        for name in ("plain", "floor", "checked"):
            (d / name).mkdir()
        out = side(
            FSSTORE_PY,
            "fsstore-small-vs-plain",
            d / "images",
            d / "plain",
            d / "floor",
            d / "checked",
            count,
            4096,
        )
        return {
            "beside": out["fsstore"],
            **{k: out[k] for k in ("plain", "floor", "checked")},
        }
    if who == "four":
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
        return {"one": out["one"], "four": out["four"]}
    fsync = "true" if who == "fsync" else "false"
    out = side(FSSTORE_PY, "fsstore-small", d / "images", count, 4096, fsync)
    return {who: out["latencies"]}


def small_adds(gpy: str, count: int, runs: int) -> dict[str, float]:
    """Median per-add latency (us) of 4 KiB adds. No deletes between runs."""
    lat: dict[str, list[float]] = {
        k: []
        for k in (
            "fsstore", "glance", "plain", "fsync", "four", "one", "beside", "floor",
            "checked",
        )
    }  # fmt: skip
    made = []
    # "one" is measured with "four"; "beside" (fsstore), "floor" and
    # "checked" with "plain".
    runners = [k for k in lat if k not in ("one", "beside", "floor", "checked")]
    for r in range(runs):
        order = runners if r % 2 == 0 else list(reversed(runners))
        for who in order:
            d = fresh(f"small-{who}")
            made.append(d)
            for name, latencies in _small_side(gpy, who, d, count).items():
                lat[name].append(median(latencies) * 1e6)
    for d in made:  # only now: deletes slow every later create on this ext4
        shutil.rmtree(d)
    return {k: median(v) for k, v in lat.items()}


def filesystem_rss(src: Path) -> float:
    """Peak RSS above baseline (MiB) of a filesystem add of ``src``."""
    d = fresh("rss")
    out = side(FSSTORE_PY, "fsstore-rss", src, d / "images")
    shutil.rmtree(d)
    return (out["peak_kib"] - out["baseline_kib"]) / 1024


# -- rows -------------------------------------------------------------------------------


def add_rows(gpy: str, src: Path, runs: int) -> tuple[list[Row], float]:
    """Cases 1 to 3, and fsstore's add throughput (MiB/s), which the cache's
    read-through fill is measured against."""
    size = src.stat().st_size
    fs, gl, lim = adds(gpy, src, runs, "sha512")
    fs256, gl256, _ = adds(gpy, src, runs, "sha256")
    rows = [
        versus(
            f"1. add {size // MiB} MiB md5+sha512 (fsync on) vs glance_store",
            fs,
            gl,
            "MiB/s",
        ),
        # The target is on the limit, not on glance_store, whose distance
        # from that limit varies from run to run.
        versus(
            "2. same add vs the limit (the faster of a buffered pass, no "
            "fsync, and both digests in memory)",
            fs,
            lim,
            "MiB/s",
            ">=",
            0.95,
        ),
        versus("3. add md5+sha256 (fsync on) vs glance_store", fs256, gl256, "MiB/s"),
    ]
    return rows, fs


def get_rows(gpy: str, src: Path, runs: int) -> list[Row]:
    size = src.stat().st_size
    fs, gl, cat = gets(gpy, src, runs)
    return [
        versus(f"4. get {size // MiB} MiB vs glance_store", fs, gl, "MiB/s", ">=", 1.0),
        versus("4. get vs cat file > /dev/null", fs, cat, "MiB/s", ">=", 1.0),
    ]


def small_rows(gpy: str, count: int, runs: int) -> list[Row]:
    lat = small_adds(gpy, count, runs)
    return [
        versus(
            f"5. {count} adds of 4 KiB (fsync off) vs glance_store",
            lat["fsstore"],
            lat["glance"],
            "us",
            "<=",
            0.8,
        ),
        versus(
            "5. same vs open('xb')+write+close with both hashes",
            lat["beside"],
            lat["plain"],
            "us",
            "<=",
            1.05,
        ),
        versus(
            "5. the system calls an add cannot do without, bare, with both "
            "hashes, vs open('xb')+write+close with both hashes",
            lat["floor"],
            lat["plain"],
            "us",
        ),
        versus(
            "5. the add vs those system calls bare (the Python around them)",
            lat["beside"],
            lat["floor"],
            "us",
        ),
        versus(
            "5. those system calls with the add's checks between them and "
            "nothing else (the least an add keeping them costs), vs "
            "open('xb')+write+close with both hashes",
            lat["checked"],
            lat["plain"],
            "us",
        ),
    ] + _more_small_rows(lat)


def _more_small_rows(lat: dict[str, float]) -> list[Row]:
    return [
        Row(
            "5. 4 KiB adds with fsync on",
            f"{lat['fsync']:.0f} us",
            "",
            None,
            "report",
            None,
        ),
        versus(
            "6. 4 KiB adds, four prioritized directories vs one",
            lat["four"],
            lat["one"],
            "us",
            "<=",
            1.05,
        ),
    ]


def memory_row(src: Path) -> Row:
    size = src.stat().st_size
    return within(
        f"8. peak RSS above baseline, add {size // MiB} MiB, filesystem",
        filesystem_rss(src),
        "MiB",
        64,
    )
