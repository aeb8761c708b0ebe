"""fsstore's benchmarks, side by side with glance_store and the machine's limits.

    python bench/run.py [--quick] [--only rbd|s3|cache]

Everything is measured in one run, on the same data and machine: glance_store
5.7.0 runs from its own venv (bench/.venv-glance, made here on first use,
never a dependency of fsstore), each side in a fresh process per run, the
two sides alternating. Every figure is the median of several runs; every
comparison is a ratio of medians from this run. Writes bench/results/latest.md
and bench/results/chart.png. Not a test: nothing here asserts timings.

The cases live by family beside this driver: store.py (the filesystem store),
cache.py (the image cache; its hit beside Glance's in cache_hits.py), scrub.py
(fill and scrub), engines.py (S3), on common.py, and rbd_cases.py (the RBD
store on a one-node Ceph cluster); sides.py (and rbd_sides.py) is what each
side runs in its own process.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from cache import cache_rows
from common import (
    RESULTS,
    WORK,
    MiB,
    Row,
    chart,
    glance_python,
    make_source,
    table,
)
from engines import moto_memory_row, s3_cases
from rbd_cases import rbd_rows
from scrub import fill_rows, scrub_rows
from store import add_rows, get_rows, memory_row, small_rows


def report(rows: list[Row], quick: bool, runs: int, took: float) -> str:
    header = (
        f"fsstore benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{'quick' if quick else 'full'} run in {took:.0f} s: "
        f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python "
        f"{platform.python_version()}; medians of {runs} runs, sides alternating.\n\n"
    )
    return header + table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="256 MiB instead of 1 GiB, fewer runs (< 2 minutes)",
    )
    parser.add_argument(
        "--only",
        choices=["rbd", "s3", "cache"],
        help="only this family; its table goes to bench/work/latest-<family>.md",
    )
    args = parser.parse_args()
    started = time.monotonic()
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    size = 256 * MiB if args.quick else 1024 * MiB
    runs = 3 if args.quick else 5
    gpy = glance_python()
    if args.only:
        if args.only == "rbd":
            rows = rbd_rows(gpy, make_source(size), runs)
        elif args.only == "cache":
            rows = cache_rows(10000, 200 if args.quick else 1000)
        else:
            rows = s3_cases(gpy, make_source(256 * MiB), runs)
        text = report(rows, args.quick, runs, time.monotonic() - started)
        (WORK / f"latest-{args.only}.md").write_text(text)
        print(text)
        return 0

    src = make_source(size)
    rows, add = add_rows(gpy, src, runs)
    rows += get_rows(gpy, src, runs)
    rows += small_rows(gpy, 300 if args.quick else 1000, runs)
    rows += cache_rows(10000, 200 if args.quick else 1000)
    rows += fill_rows(src, 1 if args.quick else 3, add)
    rows += scrub_rows(src, 1 if args.quick else 3)
    rows.append(memory_row(src))
    rows.append(moto_memory_row(src))
    rows += s3_cases(gpy, make_source(256 * MiB), runs)
    rows += rbd_rows(gpy, src, runs)

    text = report(rows, args.quick, runs, time.monotonic() - started)
    (RESULTS / "latest.md").write_text(text)
    chart(rows, RESULTS / "chart.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
