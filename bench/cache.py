"""The image cache's cases, per records driver: a hit against Glance 33's own
driver's and against a plain read plus one committed record (bench/cache_hits.py,
in one process of the peer venv, where both import), is_cached, listing against
the least its driver can do, and a prune of 100,000 entries; centralized_db on
a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cache_hits import conf_maker, glance_rows, peer_hits
from common import ROOT, MiB, Row, fresh, median, versus, within

PRUNED = 100_000  # entries pruned at once, besides the hit
LISTING_MS = {"sqlite": 20, "xattr": 50}  # the targets of 10,000 entries


def _hit_reads(cache: Any, path: Path, reps: int) -> tuple[float, float]:
    """Median read of the cached entry (us): through the cache, and plain."""
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
    return median(hit) * 1e6, median(plain) * 1e6


def _is_cached_us(cache: Any, reps: int) -> float:
    times = []
    for _ in range(reps * 5):
        start = time.perf_counter()
        cache.is_cached("hit")
        times.append(time.perf_counter() - start)
    return median(times) * 1e6


def _populate(cache: Any, cache_dir: Path, driver: str, entries: range) -> None:
    """Entries e000000, e000001... (those numbered in ``entries``), as a
    cache written by Glance would look: files and records."""
    from fsstore.cache import central
    from fsstore.cache.sqlite import SqliteDriver

    now = time.time()
    rows = []
    for i in entries:
        name = f"e{i:06d}"
        with open(cache_dir / name, "wb") as f:
            f.write(b"x" * 100)
        if driver == "xattr":
            os.setxattr(cache_dir / name, "user.hits", b"0")
        rows.append((name, now - i, now, 100, 0, None))
    if not rows:
        return
    if isinstance(cache.records, SqliteDriver):
        db = cache.records._db()
        db.execute("BEGIN")
        db.executemany("INSERT INTO cached_images VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    if isinstance(cache.records, central.CentralDbDriver):
        central_rows(cache.records, rows)


def _listing_ms(
    cache: Any, conf: Callable[..., Any], database: str | None, entries: int
) -> dict[str, float]:
    """Median get_cached_images (ms): by one cache again and again ("list",
    what a driver may remember between listings helping), by a new cache each
    time ("cold"), and its floor."""
    from fsstore.cache import ImageCache

    cache_dir = Path(cache.base_dir)
    driver = cache.driver_name
    times: dict[str, list[float]] = {"list": [], "cold": [], "floor": []}
    sides = list(times)
    for r in range(7):
        for who in sides[r % 3 :] + sides[: r % 3]:
            cold = ImageCache(conf()) if who == "cold" else None
            start = time.perf_counter()
            if who == "list":
                listed = cache.get_cached_images()
            elif cold is not None:
                cold.get_cached_images()
            elif database:
                bare_select(cache.records)
            else:
                bare_listing(cache_dir, driver)
            times[who].append(time.perf_counter() - start)
    assert len(listed) == entries + 1
    return {f"{who}_ms": median(t) * 1e3 for who, t in times.items()}


def cache_cases(
    driver: str,
    entries: int,
    reps: int,
    database: str | None = None,
    pruned: int = PRUNED,
) -> dict[str, float]:
    """Hit, is_cached, listing (``entries``) and prune (``pruned``) of one
    driver (centralized_db: on the database at ``database``)."""
    sys.path.insert(0, str(ROOT))
    from fsstore.cache import ImageCache
    from fsstore.hashing import Expected

    d = fresh(f"cache-{driver}")
    conf = conf_maker(d / "cache", driver, database)
    cache = ImageCache(conf())
    data = os.urandom(MiB)
    cache.cache_image_iter("hit", iter([data]), Expected(allow_unverified=True))
    out: dict[str, float] = {}
    out["hit_us"], out["plain_us"] = _hit_reads(cache, d / "cache" / "hit", reps)
    out["is_cached_us"] = _is_cached_us(cache, reps)
    _populate(cache, d / "cache", driver, range(entries))
    out.update(_listing_ms(cache, conf, database, entries))
    _populate(cache, d / "cache", driver, range(entries, pruned))
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


# -- the hit against Glance 33's own drivers (run in the peer venv) -----------------------

# -- rows -------------------------------------------------------------------------------


def driver_rows(
    driver: str, entries: int, reps: int, peer: dict[str, dict[str, float]] | None
) -> tuple[list[Row], float]:
    """One local driver's rows, and its hit read (us). ``peer``: the hits
    measured beside Glance 33's own drivers (peer_hits)."""
    c = cache_cases(driver, entries, reps)
    name = f"7. {driver}"
    rows = [] if peer is None else glance_rows(name, driver, peer[driver])
    rows += [
        versus(
            f"{name}: hit read of 1 MiB vs plain read", c["hit_us"], c["plain_us"], "us"
        ),
        within(f"{name}: is_cached", c["is_cached_us"], "us", 15, digits=1),
        within(
            f"{name}: get_cached_images, {entries} entries "
            "vs a bare loop of its system calls",
            c["list_ms"],
            "ms",
            LISTING_MS[driver],
            digits=1,
            reference=c["floor_ms"],
        ),
        versus(
            f"{name}: same, the first listing of a new ImageCache vs the bare loop",
            c["cold_ms"],
            c["floor_ms"],
            "ms",
        ),
        within(
            f"{name}: prune of {c['pruned']} entries", c["prune_s"], "s", 5, digits=2
        ),
    ]
    return rows, c["hit_us"]


def central_cache_rows(entries: int, reps: int, sqlite_hit_us: float) -> list[Row]:
    """centralized_db on a real PostgreSQL server on loopback."""
    sys.path.insert(0, str(ROOT))
    from tests.databases import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        c = cache_cases(
            "centralized_db", entries, reps, server.create_database("bench"), entries
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


def cache_rows(entries: int, reps: int) -> list[Row]:
    """sqlite, xattr, then centralized_db, whose hit is set against sqlite's."""
    peer = peer_hits(reps)
    sqlite, sqlite_hit_us = driver_rows("sqlite", entries, reps, peer)
    xattr, _ = driver_rows("xattr", entries, reps, peer)
    return sqlite + xattr + central_cache_rows(entries, reps, sqlite_hit_us)
