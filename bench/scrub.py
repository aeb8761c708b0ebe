"""Whole-image passes over the store: the cache's read-through fill against
an add, and scrub against the machine's limit for reading and hashing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common import ROOT, MiB, Row, fresh, median, mib_s, versus


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
            chunks, _ = caching.get("img", result.location, result.checksum)
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


# -- rows -------------------------------------------------------------------------------


def fill_rows(src: Path, runs: int, add: float) -> list[Row]:
    """The fill against ``add``, case 1's add throughput (MiB/s)."""
    fill, fill_cold = fill_throughput(src, runs)
    return [
        versus(
            "7. read-through fill, store's copy in the page cache, vs case 1 add",
            fill,
            add,
            "MiB/s",
            ">=",
            0.9,
        ),
        versus(
            "7. read-through fill, store's copy read from the disk, vs case 1 add",
            fill_cold,
            add,
            "MiB/s",
        ),
    ]


def scrub_rows(src: Path, runs: int) -> list[Row]:
    size = src.stat().st_size
    scrub_fs, scrub_limit, scrub_rate = scrub_throughput(src, runs)
    return [
        versus(
            f"9. scrub {size // MiB} MiB (page cache) vs read + md5 + sha512 limit",
            scrub_fs,
            scrub_limit,
            "MiB/s",
            ">=",
            0.9,
        ),
        versus(
            "9. scrub --rate 50 MB/s: achieved vs asked",
            scrub_rate,
            50.0,
            "MB/s",
            "<=",
            1.1,
        ),
        Row(
            "9. scrub --rate 50 MB/s: at least 0.9 of asked",
            f"{scrub_rate:.1f} MB/s",
            "50 MB/s",
            scrub_rate / 50,
            ">= 0.9",
            scrub_rate / 50 >= 0.9,
        ),
    ]
