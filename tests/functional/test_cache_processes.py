"""The image cache shared by many real processes (8 and more)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fsstore.cache import ImageCache
from fsstore.registry import StoreRegistry
from fsstore.testing.cache_suite import UNVERIFIED
from tests.functional.cache_worker import conf_for, image_data
from tests.helpers import load_conf, write_conf

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8
GiB = 1024**3
KiB = 1024

pytestmark = pytest.mark.parametrize("driver", ["sqlite", "xattr", "centralized_db"])


@pytest.fixture(autouse=True)
def central_database(driver, request, monkeypatch):
    """centralized_db: a fresh database on the real PostgreSQL server, which
    this process and the workers (through the environment) share."""
    if driver == "centralized_db":
        postgres = request.getfixturevalue("postgres")
        url = postgres.create_database(f"p{uuid.uuid4().hex[:12]}")
        monkeypatch.setenv("FSSTORE_TEST_DATABASE", url)


class Worker:
    def __init__(self, mode: str, cache_dir: Path, driver: str, max_size: int, *args):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.functional.cache_worker",
                mode,
                str(cache_dir),
                driver,
                str(max_size),
                *map(str, args),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.readline() == "READY"

    def readline(self) -> str:
        return self.proc.stdout.readline().strip()

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict:
        line = self.readline()
        assert self.proc.wait(timeout=120) == 0
        return json.loads(line)


def run_all(workers: list[Worker]) -> list[dict]:
    for w in workers:  # every worker is READY: release them together
        w.go()
    return [w.result() for w in workers]


def cache_for(cache_dir: Path, driver: str, max_size: int = 10 * GiB) -> ImageCache:
    return ImageCache(conf_for(cache_dir, driver, max_size))


def entry_total(cache_dir: Path) -> int:
    """Total size of published entries, as any process sees it, no locks."""
    total = 0
    for name in os.listdir(cache_dir):
        if name in ("cache.db", "cache.db-wal", "cache.db-shm") or name.startswith("."):
            continue
        try:
            st = os.lstat(cache_dir / name)
        except FileNotFoundError:
            continue  # evicted since listdir: not there any more
        if not os.path.isdir(cache_dir / name):
            total += st.st_size
    return total


def test_concurrent_misses_on_one_image(tmp_path, driver):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {"glance_store": {"filesystem_store_datadir": str(tmp_path / "images")}},
    )
    registry = StoreRegistry(load_conf(conf))
    data = image_data("popular", 24 * 1024 * KiB)
    result = registry.add("popular", iter([data]), len(data))
    cache_dir = tmp_path / "cache"
    workers = [
        Worker(
            "readthrough",
            cache_dir,
            driver,
            10 * GiB,
            conf,
            result.location,
            result.checksum,
            "popular",
        )
        for _ in range(PROCESSES)
    ]
    results = run_all(workers)
    assert all(r["md5"] == result.checksum for r in results)
    assert sum(r["caching"] for r in results) == 1, results
    cache = cache_for(cache_dir, driver)
    [entry] = cache.get_cached_images()
    assert (entry.image_id, entry.size) == ("popular", len(data))
    with cache.open_for_read("popular") as f:
        assert hashlib.md5(f.read()).hexdigest() == result.checksum
    assert os.listdir(cache_dir / "incomplete") == []
    assert cache.check() == []


def test_hit_counts_are_exact(tmp_path, driver):
    cache_dir = tmp_path / "cache"
    cache = cache_for(cache_dir, driver)
    cache.cache_image_iter("hot", iter([b"x" * 4096]), UNVERIFIED)
    workers = [
        Worker("hits", cache_dir, driver, 10 * GiB, "hot", 100)
        for _ in range(PROCESSES)
    ]
    run_all(workers)
    assert cache.get_hit_count("hot") == PROCESSES * 100


def test_size_limit_under_concurrent_commits(tmp_path, driver):
    cache_dir = tmp_path / "cache"
    max_size = 1024 * KiB
    cache = cache_for(cache_dir, driver, max_size)
    workers = [
        Worker("commit", cache_dir, driver, max_size, f"p{n}-", 6, 300 * KiB)
        for n in range(PROCESSES)
    ]
    for w in workers:
        w.go()
    samples = []
    while any(w.proc.poll() is None for w in workers):
        samples.append(entry_total(cache_dir))
    results = [w.result() for w in workers]
    samples.append(entry_total(cache_dir))
    assert sum(r["published"] for r in results) == PROCESSES * 6
    assert len(samples) > 10
    assert max(samples) <= max_size, max(samples)
    assert cache.get_cache_size() <= max_size
    assert cache.check() == []


def test_readers_during_prune(tmp_path, driver):
    cache_dir = tmp_path / "cache"
    big = cache_for(cache_dir, driver)
    ids = [f"img{i}:{(i + 1) * 50 * KiB}" for i in range(12)]

    def fill() -> None:
        for spec in ids:
            image_id, size = spec.split(":")
            data = image_data(image_id, int(size))
            big.cache_image_iter(image_id, iter([data]), hashlib.md5(data).hexdigest())

    fill()
    small = cache_for(cache_dir, driver, 300 * KiB)
    workers = [
        Worker("reader", cache_dir, driver, 10 * GiB, 300, *ids)
        for _ in range(PROCESSES)
    ]
    for w in workers:
        w.go()
    rounds = 0
    while any(w.proc.poll() is None for w in workers):
        small.prune()
        fill()
        rounds += 1
    results = [w.result() for w in workers]
    assert rounds > 0
    assert sum(r["corrupt"] for r in results) == 0, results
    assert sum(r["reads"] for r in results) > 0
    assert big.check() == []


def test_writer_killed_mid_stream(tmp_path, driver):
    cache_dir = tmp_path / "cache"
    cache = cache_for(cache_dir, driver)
    crashed = Worker("stall", cache_dir, driver, 10 * GiB, "crashed", 512 * KiB)
    live = Worker("stall", cache_dir, driver, 10 * GiB, "live", 512 * KiB)
    for w in (crashed, live):
        w.go()
        assert w.readline() == "STOPPED"
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.proc.wait()
    assert sorted(os.listdir(cache_dir / "incomplete")) == ["crashed", "live"]
    assert not cache.is_cached("crashed")
    assert cache.is_being_cached("live") and not cache.is_being_cached("crashed")
    # Reaped by its dead lock, long before image_cache_stall_time.
    assert cache.clean() == (0, 1, ())
    assert os.listdir(cache_dir / "incomplete") == ["live"]
    live.go()
    assert live.result() == {"published": True}
    data = image_data("live", 512 * KiB)
    with cache.open_for_read("live") as f:
        assert f.read() == data


def test_crashed_writers_leftover_does_not_block_caching(tmp_path, driver):
    cache_dir = tmp_path / "cache"
    cache = cache_for(cache_dir, driver)
    crashed = Worker("stall", cache_dir, driver, 10 * GiB, "img", 256 * KiB)
    crashed.go()
    assert crashed.readline() == "STOPPED"
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.proc.wait()
    data = image_data("img", 256 * KiB)
    assert cache.cache_image_iter("img", iter([data]), hashlib.md5(data).hexdigest())
    with cache.open_for_read("img") as f:
        assert f.read() == data
