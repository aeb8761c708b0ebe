"""How the filesystem store's costs grow with the number of images.

    python bench/growth.py [--max N]      (make bench-growth)

One data directory is filled with 4 KiB images through the store itself, up
to 1,000,000 (``--max``), and at 1,000, 10,000, 100,000 and 1,000,000 the
median latencies of adds, gets and deletes are measured (deletes remove what
those adds wrote, so the count stays where it is), and the listing of every
image (``images()``) is timed. At 100,000 a scrub of the whole store is
timed against a bare loop that reads and hashes (MD5 and SHA-512) the same
files. Rows compare the largest count with 1,000; the curve is drawn in
bench/results/growth.png and extrapolated to 10,000,000 images.

The data lives on a tmpfs mounted for the run (root), so that neither the
fill nor its removal slows the shared disk's file creation for minutes
after; without root it falls back to bench/work, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import RESULTS, WORK, Row, median, table, versus, within
from sides import fsstore_store

POINTS = (1_000, 10_000, 100_000, 1_000_000)
SAMPLE = 500  # operations timed at each point
SCRUB_AT = 100_000
DATA = os.urandom(4096)


@contextlib.contextmanager
def scratch(max_images: int) -> Iterator[tuple[Path, str]]:
    """A directory for the data, on a tmpfs of its own when root; where."""
    base = Path(tempfile.mkdtemp(prefix="growth-", dir=WORK))
    mounted = False
    if os.geteuid() == 0:
        size = f"{max(1, max_images * 6 // 1_000_000 + 1)}g"  # ~5 KiB an image
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes=0", "tmpfs", base],
            capture_output=True,
        )
        mounted = done.returncode == 0
    try:
        yield base, "tmpfs" if mounted else f"{base} (no tmpfs: not root)"
    finally:
        if mounted:
            subprocess.run(["umount", base], check=False)
        shutil.rmtree(base, ignore_errors=True)


def fill(store: object, start: int, stop: int) -> None:
    add = store.add  # type: ignore[attr-defined]
    for i in range(start, stop):
        add(f"img-{i:08d}", io.BytesIO(DATA), len(DATA))


def latencies(store: object, count: int, point: int) -> dict[str, float]:
    """Median microseconds of SAMPLE adds, gets and deletes at ``count``,
    and of the same gets as a bare open and read."""
    add, get, delete = store.add, store.get, store.delete  # type: ignore[attr-defined]
    out: dict[str, list[float]] = {"add": [], "get": [], "delete": [], "bare get": []}
    added = []
    for i in range(SAMPLE):
        start = time.perf_counter()
        result = add(f"probe-{point}-{i}", io.BytesIO(DATA), len(DATA))
        out["add"].append(time.perf_counter() - start)
        added.append(result.location)
    uri = next(iter(added)).rsplit("/", 1)[0] + "/img-{:08d}"
    for n in random.Random(point).sample(range(count), SAMPLE):
        start = time.perf_counter()
        chunks, _ = get(uri.format(n))
        for _chunk in chunks:
            pass
        out["get"].append(time.perf_counter() - start)
        # The kernel's own share: the same file opened and read bare.
        start = time.perf_counter()
        with open(uri.format(n)[len("file://") :], "rb") as f:
            f.read()
        out["bare get"].append(time.perf_counter() - start)
    for location in added:
        start = time.perf_counter()
        delete(location)
        out["delete"].append(time.perf_counter() - start)
    return {k: median(v) * 1e6 for k, v in out.items()}


def listing_seconds(store: object) -> float:
    start = time.perf_counter()
    listed = sum(1 for _ in store.images())  # type: ignore[attr-defined]
    took = time.perf_counter() - start
    assert listed > 0
    return took


Scrubbed = tuple[float, float, float]


def scrub_versus_bare(store: object, datadir: Path) -> Scrubbed:
    """Seconds of a scrub of the whole store, of a bare loop reading and
    hashing its files (MD5 and SHA-512), and of the same loop making the
    system calls a scrub cannot do without (the floor), files warm in
    memory for all three."""
    from fsstore.scrub import scrub

    names = sorted(os.listdir(datadir))
    start = time.perf_counter()
    for name in names:
        with open(datadir / name, "rb") as f:
            data = f.read()
        hashlib.md5(data).hexdigest()
        hashlib.sha512(data).hexdigest()
    bare = time.perf_counter() - start
    floor = scrub_floor(str(datadir))
    start = time.perf_counter()
    report = scrub(store)  # type: ignore[arg-type]
    took = time.perf_counter() - start
    assert len(report.checks) == len(names)
    return took, bare, floor


def scrub_floor(datadir: str) -> float:
    """Seconds of a bare loop of a scrub's own system calls: the directory
    listed with each entry's type and size (one ``stat`` each, as
    ``images()``), in id order; then for each image the data directory's
    identity checked, the file opened (never through a link, never
    blocking on a FIFO) and its type checked, its kept digests read, the
    file read whole and hashed, and the digests compared."""
    dir_fd = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    bad = 0
    start = time.perf_counter()
    with os.scandir(dir_fd) as entries:
        names = sorted(
            e.name
            for e in entries
            if not e.name.startswith(".fsstore-")
            and stat.S_ISREG(e.stat(follow_symlinks=False).st_mode)
        )
    for name in names:
        os.stat(datadir)
        fd = os.open(name, flags, dir_fd=dir_fd)
        try:
            size = os.fstat(fd).st_size
            kept = os.getxattr(fd, "user.fsstore.digests").split(b" ")
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        md5 = hashlib.md5(data).hexdigest().encode()
        sha = hashlib.sha512(data).hexdigest().encode()
        bad += (md5, sha, str(len(data)).encode()) != (kept[0], kept[2], kept[3])
    took = time.perf_counter() - start
    os.close(dir_fd)
    assert not bad
    return took


def measure(max_images: int) -> tuple[dict[int, dict[str, float]], Scrubbed | None]:
    curve: dict[int, dict[str, float]] = {}
    scrubbed: Scrubbed | None = None
    with scratch(max_images) as (base, where):
        print(f"growth: data on {where}", file=sys.stderr)
        datadir = base / "images"
        datadir.mkdir()
        store = fsstore_store([str(datadir)], "false")
        try:
            count = 0
            for point in (p for p in POINTS if p <= max_images):
                fill(store, count, point)
                count = point
                curve[point] = latencies(store, count, point)
                curve[point]["list_s"] = listing_seconds(store)
                if point == SCRUB_AT:
                    scrubbed = scrub_versus_bare(store, datadir)
                print(f"growth: {point} images: {curve[point]}", file=sys.stderr)
        finally:
            store.close()  # its descriptors would keep the tmpfs busy
    return curve, scrubbed


def extrapolate(curve: dict[int, dict[str, float]], key: str, at: int) -> float:
    """``key`` at ``at`` images, by the slope of the last two points
    (linear in log10 of the count, as a directory index grows)."""
    import math

    (n1, a), (n2, b) = [(n, curve[n][key]) for n in sorted(curve)[-2:]]
    slope = (b - a) / (math.log10(n2) - math.log10(n1))
    return b + slope * (math.log10(at) - math.log10(n2))


def rows(curve: dict[int, dict[str, float]], scrubbed: Scrubbed | None) -> list[Row]:
    low, high = min(curve), max(curve)
    out = [
        versus(
            f"11. 4 KiB {op}, {high:,} images in one directory vs {low:,}",
            curve[high][op],
            curve[low][op],
            "us",
            "<=",
            1.2,
        )
        for op in ("add", "get", "delete")
    ]
    out.append(
        versus(
            f"11. bare open+read of a 4 KiB file, {high:,} files vs {low:,}",
            curve[high]["bare get"],
            curve[low]["bare get"],
            "us",
        )
    )
    for point in sorted(curve):
        out.append(
            Row(
                f"11. listing {point:,} images (images())",
                f"{curve[point]['list_s'] * 1000:.0f} ms",
                "",
                None,
                "report",
                None,
            )
        )
    if scrubbed is not None:
        out += scrub_rows(*scrubbed)
    return out + [within_10m(curve, op) for op in ("add", "get", "delete")]


def scrub_rows(took: float, bare: float, floor: float) -> list[Row]:
    """The scrub against the bare read+hash loop, and against its floor."""
    return [
        versus(
            f"11. scrub of {SCRUB_AT:,} 4 KiB images vs a bare read+hash loop",
            SCRUB_AT / took,
            SCRUB_AT / bare,
            "images/s",
            ">=",
            0.8,
        ),
        versus(
            "11. the system calls a scrub cannot do without, bare, vs "
            "that read+hash loop",
            SCRUB_AT / floor,
            SCRUB_AT / bare,
            "images/s",
        ),
        versus(
            "11. the scrub vs those system calls bare (the Python around them)",
            SCRUB_AT / took,
            SCRUB_AT / floor,
            "images/s",
        ),
    ]


def within_10m(curve: dict[int, dict[str, float]], op: str) -> Row:
    """What one 4 KiB ``op`` would cost with 10,000,000 images, by the curve."""
    low = curve[min(curve)][op]
    return within(
        f"11. 4 KiB {op} at 10,000,000 images (extrapolated) vs {min(curve):,}",
        extrapolate(curve, op, 10_000_000),
        "us",
        round(1.2 * low),
        reference=low,
    )


def chart(curve: dict[int, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted(curve)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for op in ("add", "get", "delete"):
        ax.plot(counts, [curve[n][op] for n in counts], marker="o", label=op)
    ax.set_xscale("log")
    ax.set_xlabel("images in one data directory")
    ax.set_ylabel("median latency of a 4 KiB operation (us)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("fsstore filesystem store: cost as the store grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/growth.py")
    parser.add_argument("--max", type=int, default=POINTS[-1], help="largest count")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    curve, scrubbed = measure(args.max)
    text = (
        f"fsstore growth benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{time.monotonic() - started:.0f} s; medians of {SAMPLE} operations "
        "at each count.\n\n" + table(rows(curve, scrubbed))
    )
    (RESULTS / "growth.md").write_text(text)
    chart(curve, RESULTS / "growth.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
