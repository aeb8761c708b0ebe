"""Writers in processes of their own, for races and kill -9 on real engines.

`race(conf, ids, size_known, tag, barrier, results)` adds each id in turn,
waiting at the barrier before each add so that the writers of one id start
together; it reports (id, tag, outcome) for each.

`python -m tests.engines.s3_writer CONF ID` starts an add of unknown size,
prints "uploading" once the first part is on its way, and blocks until it
is killed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fsstore import exceptions
from fsstore.registry import StoreRegistry
from tests.helpers import load_conf

PART = 5 * 1024 * 1024


def body(tag: str, image_id: str) -> bytes:
    """What writer `tag` stores under `image_id`: tells the writers apart."""
    return f"{tag}:{image_id}:".encode() * 64


def race(
    conf: str,
    ids: list[str],
    size_known: bool,
    tag: str,
    barrier: Any,
    results: Any,
) -> None:
    store = StoreRegistry(load_conf(Path(conf))).get_store()
    for image_id in ids:
        data = body(tag, image_id)
        barrier.wait(timeout=120)
        try:
            store.add(image_id, iter([data]), len(data) if size_known else 0)
            outcome = "won"
        except exceptions.Duplicate:
            outcome = "duplicate"
        except Exception as exc:  # reported, and failed on, by the test
            outcome = f"{type(exc).__name__}: {exc}"
        results.put((image_id, tag, outcome))


def stalled(first: bytes) -> Iterator[bytes]:
    yield first
    yield first  # the first part is full: it goes up while this blocks
    print("uploading", flush=True)
    sys.stdin.read()  # until killed
    yield b""


def main(conf: str, image_id: str) -> None:
    store = StoreRegistry(load_conf(Path(conf))).get_store()
    store.add(image_id, stalled(b"k" * PART), 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
