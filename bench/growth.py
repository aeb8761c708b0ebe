"""How the filesystem store's costs grow with the number of images.

    python bench/growth.py [--max N]      (make bench-growth)

One data directory is filled with 4 KiB images through the store itself, up
to 1,000,000 (``--max``), and at 1,000, 10,000, 100,000 and 1,000,000 the
median latencies of adds, gets and deletes are measured (deletes remove what
those adds wrote, so the count stays where it is), and the listing of every
image (``images()``) is timed. Beside it, a store of 1,000 images is
measured at each point, the two taking turns operation by operation: rows
compare the largest count with that store, measured at the same moments,
and the ratios' curve is extrapolated to 10,000,000 images (the latencies'
curve is drawn in bench/results/growth.png). At 100,000 a scrub of the whole
store is timed against a bare loop that reads and hashes (MD5 and SHA-512)
the same files, against the system calls it cannot do without, against
those calls with its own checks between them, and against those checks made
through Store.read_image, the five taking turns three times (medians).

The data lives on a tmpfs mounted for the run (root), so that neither the
fill nor its removal slows the shared disk's file creation for minutes
after; without root it falls back to bench/work, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import RESULTS, WORK, Row, median, table, versus, within
from sides import fsstore_store
from small_scrub import (
    bare_read_and_hash,
    checked_scrub_floor,
    interface_scrub_floor,
    scrub_floor,
)

POINTS = (1_000, 10_000, 100_000, 1_000_000)
SAMPLE = 500  # operations timed at each point
SCRUB_AT = 100_000
REFERENCE = 1_000  # images in the store measured beside the growing one
# Each get and the bare read beside it take an image of their own.
assert 2 * SAMPLE <= REFERENCE
SCRUB_ROUNDS = 3  # the scrub, its bare loop and its floors, taking turns
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


Curve = dict[int, dict[str, float]]


def latencies(sides: list[tuple[object, int]], point: int) -> list[dict[str, float]]:
    """For each (store, images in it) of ``sides``: median microseconds of
    SAMPLE adds, gets and deletes, and of as many bare opens and reads of
    other images, picked alike. The stores take turns operation by
    operation, so that a slower moment of the machine weighs on each alike.

    A bare read of the very file a get has just read would find its
    entry, inode and page in the processor's caches, where among 1,000,000
    files the get found them cold: the two read different files."""
    out: list[dict[str, list[float]]] = [
        {"add": [], "get": [], "delete": [], "bare get": []} for _ in sides
    ]
    added: list[list[str]] = [[] for _ in sides]
    picks = [
        random.Random(point).sample(range(count), 2 * SAMPLE) for _, count in sides
    ]
    for i in range(SAMPLE):
        for k, store in _in_turn(sides, i):
            start = time.perf_counter()
            result = store.add(f"probe-{point}-{i}", io.BytesIO(DATA), len(DATA))  # type: ignore[attr-defined]
            out[k]["add"].append(time.perf_counter() - start)
            added[k].append(result.location)
    for i in range(SAMPLE):
        for k, store in _in_turn(sides, i):
            base = added[k][0].rsplit("/", 1)[0]
            got, bare = picks[k][2 * i], picks[k][2 * i + 1]
            out[k]["get"].append(_timed_get(store, f"{base}/img-{got:08d}"))
            # The kernel's own share: another file opened and read bare.
            start = time.perf_counter()
            with open(f"{base[len('file://') :]}/img-{bare:08d}", "rb") as f:
                f.read()
            out[k]["bare get"].append(time.perf_counter() - start)
    for i in range(SAMPLE):
        for k, store in _in_turn(sides, i):
            start = time.perf_counter()
            store.delete(added[k][i])  # type: ignore[attr-defined]
            out[k]["delete"].append(time.perf_counter() - start)
    return [{op: median(v) * 1e6 for op, v in side.items()} for side in out]


def _in_turn(sides: list[tuple[object, int]], i: int) -> list[tuple[int, object]]:
    """The stores of ``sides`` by index, the first one first every other
    time: neither always runs right after the other."""
    order = list(enumerate(store for store, _ in sides))
    return order if i % 2 == 0 else order[::-1]


def _timed_get(store: object, uri: str) -> float:
    start = time.perf_counter()
    chunks, _ = store.get(uri)  # type: ignore[attr-defined]
    for _chunk in chunks:
        pass
    return time.perf_counter() - start


def listing_seconds(store: object) -> float:
    start = time.perf_counter()
    listed = sum(1 for _ in store.images())  # type: ignore[attr-defined]
    took = time.perf_counter() - start
    assert listed > 0
    return took


Scrubbed = tuple[float, float, float, float, float]


def scrub_versus_bare(store: object, datadir: Path) -> Scrubbed:
    """Median seconds, of SCRUB_ROUNDS taking turns, of a scrub of the
    whole store, of a bare loop reading and hashing its files (MD5 and
    SHA-512), of the same loop making the system calls a scrub cannot do
    without (the floor), of those calls with the scrub's checks between
    them, and of those checks through Store.read_image
    (bench/small_scrub.py), files warm in memory for all five."""
    from fsstore.scrub import scrub

    names = sorted(os.listdir(datadir))

    def scrubbed() -> None:
        report = scrub(store)  # type: ignore[arg-type]
        assert len(report.checks) == len(names)

    sides = [
        scrubbed,
        lambda: bare_read_and_hash(datadir, names),
        lambda: scrub_floor(str(datadir)),
        lambda: checked_scrub_floor(str(datadir)),
        lambda: interface_scrub_floor(store),
    ]
    took: list[list[float]] = [[] for _ in sides]
    order = list(enumerate(sides))
    for r in range(SCRUB_ROUNDS):
        for k, run in order[r:] + order[:r]:  # none always runs first
            start = time.perf_counter()
            run()
            took[k].append(time.perf_counter() - start)
    scrub_s, bare_s, floor_s, checked_s, interface_s = (median(t) for t in took)
    return scrub_s, bare_s, floor_s, checked_s, interface_s


def measure(max_images: int) -> tuple[Curve, Curve, Scrubbed | None]:
    """The curve of the growing store, and of a store of REFERENCE images
    measured beside it at each point; the scrub's times at SCRUB_AT."""
    curve: Curve = {}
    reference: Curve = {}
    scrubbed: Scrubbed | None = None
    with scratch(max_images + REFERENCE) as (base, where):
        print(f"growth: data on {where}", file=sys.stderr)
        datadir, refdir = base / "images", base / "reference"
        datadir.mkdir()
        refdir.mkdir()
        store = fsstore_store([str(datadir)], "false")
        small = fsstore_store([str(refdir)], "false")
        try:
            fill(small, 0, REFERENCE)
            count = 0
            for point in (p for p in POINTS if p <= max_images):
                fill(store, count, point)
                count = point
                sides = [(store, count), (small, REFERENCE)]
                curve[point], reference[point] = latencies(sides, point)
                curve[point]["list_s"] = listing_seconds(store)
                if point == SCRUB_AT:
                    scrubbed = scrub_versus_bare(store, datadir)
                print(f"growth: {point} images: {curve[point]}", file=sys.stderr)
        finally:
            store.close()  # its descriptors would keep the tmpfs busy
            small.close()
    return curve, reference, scrubbed


def extrapolate(ratios: dict[int, float], at: int) -> float:
    """The ratio at ``at`` images, by the slope of the last two points
    (linear in log10 of the count, as a directory index grows)."""
    import math

    (n1, a), (n2, b) = [(n, ratios[n]) for n in sorted(ratios)[-2:]]
    slope = (b - a) / (math.log10(n2) - math.log10(n1))
    return b + slope * (math.log10(at) - math.log10(n2))


def rows(curve: Curve, reference: Curve, scrubbed: Scrubbed | None) -> list[Row]:
    high = max(curve)
    beside = f"{REFERENCE:,} (side by side)"
    out = [
        versus(
            f"11. 4 KiB {op}, {high:,} images in one directory vs {beside}",
            curve[high][op],
            reference[high][op],
            "us",
            "<=",
            1.2,
        )
        for op in ("add", "get", "delete")
    ]
    out.append(
        versus(
            f"11. bare open+read of a 4 KiB file, {high:,} files vs {beside}",
            curve[high]["bare get"],
            reference[high]["bare get"],
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
    if len(curve) < 2:
        return out  # no curve to extrapolate (--max under 10,000)
    return out + [within_10m(curve, reference, op) for op in ("add", "get", "delete")]


def scrub_rows(
    took: float, bare: float, floor: float, checked: float, interface: float
) -> list[Row]:
    """The scrub against the bare read+hash loop, and against its floors."""
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
            "11. those system calls with a scrub's checks between them and "
            "nothing else (the least a scrub keeping them costs), vs that "
            "read+hash loop",
            SCRUB_AT / checked,
            SCRUB_AT / bare,
            "images/s",
        ),
        versus(
            "11. those checks through the interface every store's scrub reads "
            "by (read_image and its chunks) and nothing else, vs that "
            "read+hash loop",
            SCRUB_AT / interface,
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


def within_10m(curve: Curve, reference: Curve, op: str) -> Row:
    """What one 4 KiB ``op`` would cost with 10,000,000 images: the ratio
    to the reference store beside it, extrapolated by the curve of those
    ratios, times the reference at the last point."""
    ratios = {n: curve[n][op] / reference[n][op] for n in curve}
    low = reference[max(curve)][op]
    return within(
        f"11. 4 KiB {op} at 10,000,000 images (extrapolated) vs {REFERENCE:,}",
        extrapolate(ratios, 10_000_000) * low,
        "us",
        round(1.2 * low),
        reference=low,
    )


def chart(curve: Curve, path: Path) -> None:
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
    curve, reference, scrubbed = measure(args.max)
    text = (
        f"fsstore growth benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{time.monotonic() - started:.0f} s; medians of {SAMPLE} operations "
        "at each count.\n\n" + table(rows(curve, reference, scrubbed))
    )
    (RESULTS / "growth.md").write_text(text)
    chart(curve, RESULTS / "growth.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
