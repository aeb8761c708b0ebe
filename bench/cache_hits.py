"""The 1 MiB cache hit beside its references, in one process of the peer
venv where Glance 33 and fsstore both import: Glance 33's own driver's hit,
a plain read, a plain read plus one committed record (the floor), and that
floor with a hit's own checks between its calls."""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, MiB, Row, fresh, median, versus


def conf_maker(
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
    """The five ways to read the 1 MiB entry, each a call, each on a file of
    its own: a side run right after another that read the same file would
    find its bytes still in the processor's caches."""
    from fsstore.cache import ImageCache
    from fsstore.hashing import Expected

    data = os.urandom(MiB)
    cache = ImageCache(conf_maker(work / "fsstore", driver, None)())
    cache.cache_image_iter("hit", iter([data]), Expected(allow_unverified=True))
    glance = _glance_driver(driver, work / "glance", data)
    plain, recorded = work / "plain" / "hit", work / "floor" / "hit"
    for copy in (plain, recorded):
        copy.parent.mkdir()
        copy.write_bytes(data)
    record = _bare_record(driver, recorded)

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
        with open(recorded, "rb") as f:
            f.read()
            record(f.fileno())

    return {
        "fsstore": fsstore_hit,
        "glance": glance_hit,
        "plain": plain_read,
        "floor": plain_recorded,
        "checked": _checked_hit(driver, work / "checked", data),
    }


def _checked_hit(driver: str, where: Path, data: bytes) -> Callable[[], None]:
    """The floor with a hit's own checks between its calls, written inline
    (no fsstore code, so that it warms none for the hit beside it): the id
    checked, the entry opened without following a link or blocking on a
    FIFO, its type checked and O_NONBLOCK cleared, for xattr its user.hits
    read, and the hit recorded only by the process that opened it. The least
    a hit keeping those checks costs in Python."""
    where.mkdir()
    (where / "hit").write_bytes(data)
    record = _bare_record(driver, where / "hit")
    plain_id = re.compile(r"[0-9A-Za-z_-]{1,255}").fullmatch
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    base = str(where)

    def checked_hit(image_id: str = "hit") -> None:
        if plain_id(image_id) is None:
            raise ValueError(image_id)
        fd = os.open(f"{base}/{image_id}", flags)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{image_id} is no file")
        os.set_blocking(fd, True)
        if driver == "xattr":
            int(os.getxattr(fd, "user.hits"))
        opener = os.getpid()
        with open(fd, "rb") as f:
            f.read()
            if os.getpid() == opener:
                record(fd)

    return checked_hit


def glance_hits(work: Path, reps: int) -> dict[str, dict[str, float]]:
    """Per driver, the median (us) of each side of _hit_sides, the sides
    taking turns call by call in this one process (the peer venv's Python,
    where Glance 33 and fsstore both import), in a new order each round:
    what a side costs right after a 1 MiB read depends on which read it
    was, so none always follows the same one."""
    out = {}
    shuffled = random.Random(7)
    for driver in ("sqlite", "xattr"):
        (work / driver).mkdir()
        sides = _hit_sides(driver, work / driver)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(reps):
            for name, call in shuffled.sample(list(sides.items()), len(sides)):
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
        versus(
            f"{name}: the floor with a hit's checks between its calls, inline, "
            "vs the floor (the least a hit keeping them costs)",
            p["checked"],
            p["floor"],
            "us",
        ),
        versus(
            f"{name}: the floor vs a plain read (what the committed record adds)",
            p["floor"],
            p["plain"],
            "us",
        ),
    ]


if __name__ == "__main__" and sys.argv[1] == "glance-hits":
    import json

    sys.path.insert(0, str(ROOT))
    print(json.dumps(glance_hits(Path(sys.argv[2]), int(sys.argv[3]))))
