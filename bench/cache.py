"""The image cache's cases, per records driver: a hit against Glance 33's own
driver's and against a plain read plus one committed record (all in one
process of the peer venv, where both import), is_cached, listing against the
least its driver can do, and a prune of 100,000 entries; centralized_db on a
real PostgreSQL server."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, MiB, Row, fresh, median, versus, within

PRUNED = 100_000  # entries pruned at once, besides the hit
LISTING_MS = {"sqlite": 20, "xattr": 50}  # the targets of 10,000 entries


def _conf_maker(
    cache_dir: Path, driver: str, database: str | None
) -> Callable[..., Any]:
    from fsstore.cache import central
    from fsstore.testing.cache_suite import make_cache_conf

    def conf(**options: Any) -> Any:
        made = make_cache_conf(cache_dir, driver, **options)
        if database:
            central.register_opts(made)
            made.set_override("connection", database, group="database")
            made.set_override("worker_self_reference_url", "http://bench:9292")
        return made

    return conf


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
    conf = _conf_maker(d / "cache", driver, database)
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

PEER_PYTHON = ROOT / "tests" / "peer" / ".venv" / "bin" / "python"
HIT = "UPDATE cached_images SET hits = hits + 1, last_accessed = ? WHERE image_id = ?"


def _glance_driver(driver: str, cache_dir: Path, data: bytes) -> Any:
    """Glance 33's own driver on ``cache_dir``, holding ``data`` as "hit"."""
    from glance.image_cache.drivers import sqlite, xattr
    from oslo_config import cfg

    cfg.CONF.set_override("image_cache_dir", str(cache_dir))
    made = {"sqlite": sqlite, "xattr": xattr}[driver].Driver()
    made.configure()
    with made.open_for_write("hit") as f:
        f.write(data)
    return made


def _bare_record(driver: str, path: Path) -> Callable[[int], None]:
    """One committed record of a hit, in a bare loop of its calls: sqlite,
    the UPDATE on an open connection (WAL, synchronous=NORMAL); xattr, the
    locked read-modify-write of user.hits and the access time."""
    import fcntl
    import sqlite3

    if driver == "sqlite":
        db = sqlite3.connect(path.parent / "bare.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE cached_images (image_id, last_accessed, hits)")
        db.execute("INSERT INTO cached_images VALUES ('hit', 0, 0)")
        return lambda fd: db.execute(HIT, (time.time(), "hit")) and None

    def record(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        hits = int(os.getxattr(fd, "user.hits")) + 1
        os.setxattr(fd, "user.hits", str(hits).encode())
        os.utime(fd, ns=(time.time_ns(), os.fstat(fd).st_mtime_ns))
        fcntl.flock(fd, fcntl.LOCK_UN)

    os.setxattr(path, "user.hits", b"0")
    return record


def _hit_sides(driver: str, work: Path) -> dict[str, Callable[[], None]]:
    """The four ways to read the 1 MiB entry, each a call."""
    from fsstore.cache import ImageCache
    from fsstore.hashing import Expected

    data = os.urandom(MiB)
    cache = ImageCache(_conf_maker(work / "fsstore", driver, None)())
    cache.cache_image_iter("hit", iter([data]), Expected(allow_unverified=True))
    glance = _glance_driver(driver, work / "glance", data)
    plain = work / "plain" / "hit"
    plain.parent.mkdir()
    plain.write_bytes(data)
    record = _bare_record(driver, plain)

    def fsstore_hit() -> None:
        with cache.open_for_read("hit") as f:
            f.read()

    def glance_hit() -> None:
        with glance.open_for_read("hit") as f:
            f.read()

    def plain_read() -> None:
        with open(plain, "rb") as f:
            f.read()

    def plain_recorded() -> None:
        with open(plain, "rb") as f:
            f.read()
            record(f.fileno())

    return {
        "fsstore": fsstore_hit,
        "glance": glance_hit,
        "plain": plain_read,
        "floor": plain_recorded,
    }


def glance_hits(work: Path, reps: int) -> dict[str, dict[str, float]]:
    """Per driver, the median (us) of each side of _hit_sides, the sides
    alternating call by call in this one process (the peer venv's Python,
    where Glance 33 and fsstore both import)."""
    out = {}
    for driver in ("sqlite", "xattr"):
        (work / driver).mkdir()
        sides = _hit_sides(driver, work / driver)
        times: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides.items())
        for r in range(reps):
            for name, call in order[r % 4 :] + order[: r % 4]:
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        out[driver] = {name: median(t) * 1e6 for name, t in times.items()}
    return out


def peer_hits(reps: int) -> dict[str, dict[str, float]] | None:
    """glance_hits in the peer venv; None if there is none."""
    import json
    import subprocess

    if not PEER_PYTHON.exists():
        return None
    # Glance's xattr driver imports the xattr package, which its own
    # requirements leave to the deployer.
    marker = PEER_PYTHON.parent.parent / ".installed-xattr"
    if not marker.exists():
        constraints = ROOT / "tests" / "peer" / "constraints.txt"
        pip = [str(PEER_PYTHON), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-c", str(constraints), "xattr"], check=True)
        marker.touch()
    d = fresh("cache-glance")
    try:
        done = subprocess.run(
            [str(PEER_PYTHON), __file__, "glance-hits", str(d), str(reps)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    finally:
        shutil.rmtree(d)
    result: dict[str, dict[str, float]] = json.loads(done.stdout.splitlines()[-1])
    return result


# -- rows -------------------------------------------------------------------------------


def glance_rows(name: str, driver: str, p: dict[str, float]) -> list[Row]:
    """The hit beside Glance 33's own driver's, and beside its floor."""
    return [
        versus(
            f"{name}: hit of 1 MiB vs Glance 33's own {driver} driver's hit",
            p["fsstore"],
            p["glance"],
            "us",
            "<=",
            0.25,
        ),
        versus(
            f"{name}: same hit vs a plain read plus one committed record "
            "(a bare loop of its calls)",
            p["fsstore"],
            p["floor"],
            "us",
            "<=",
            1.15,
        ),
    ]


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


if __name__ == "__main__" and sys.argv[1] == "glance-hits":
    import json

    sys.path.insert(0, str(ROOT))
    print(json.dumps(glance_hits(Path(sys.argv[2]), int(sys.argv[3]))))
