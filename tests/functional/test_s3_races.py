"""Exactly one winner, and writers killed mid-upload, with real processes.

The races run where the engine's conditional PutObject is atomic (Ceph RGW
in `make test-ceph`; AWS S3): on moto and Swift two conditional PUTs of one
key can both succeed, and the README promises nothing there. A killed
writer's claim and upload are cleaned up on every engine.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.backends.s3 import S3Store
from fsstore.backends.s3.claim import PREFIX
from fsstore.registry import StoreRegistry
from fsstore.testing.suite import read_all
from tests.engines import S3Engine, with_records
from tests.engines.s3_writer import body, race
from tests.helpers import load_conf, write_conf

RACES = 50
ROOT = Path(__file__).resolve().parents[2]


def store_conf(tmp_path: Path, engine: S3Engine, bucket: str, **extra: str) -> Path:
    return write_conf(
        tmp_path / f"{bucket}.conf",
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                **engine.options(bucket, **extra),
            }
        },
    )


def open_store(conf: Path) -> S3Store:
    store = StoreRegistry(load_conf(conf)).get_store()
    assert isinstance(store, S3Store)
    return store


def keys(store: S3Store, prefix: str = "") -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def uploads(store: S3Store) -> list[str]:
    listed = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


@pytest.mark.parametrize("size_known", [True, False], ids=["put", "multipart"])
def test_concurrent_adds_of_one_id_have_one_winner(tmp_path, s3_engine, size_known):
    if not s3_engine.atomic_conditional_put:
        pytest.skip(f"{s3_engine.name}: conditional PutObject is not atomic")
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    conf = store_conf(tmp_path, s3_engine, bucket)
    store = open_store(conf)
    store.add("bucket-made", iter([b"x"]), 1)
    ids = [f"img-{n:02d}" for n in range(RACES)]

    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results = spawn.Queue()
    writers = [
        spawn.Process(
            target=race, args=(str(conf), ids, size_known, tag, barrier, results)
        )
        for tag in ("a", "b")
    ]
    for writer in writers:
        writer.start()
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    for _ in range(2 * RACES):
        image_id, tag, outcome = results.get(timeout=300)
        outcomes[image_id][tag] = outcome
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0

    for image_id in ids:
        got = outcomes[image_id]
        assert sorted(got.values()) == ["duplicate", "won"], (image_id, got)
        winner = next(tag for tag, outcome in got.items() if outcome == "won")
        location = f"s3://{store.host}/{bucket}/{image_id}"
        assert read_all(store, location) == body(winner, image_id)
    assert uploads(store) == []
    assert keys(store, PREFIX) == []
    assert keys(store) == with_records("bucket-made", *ids)


def test_writer_killed_mid_upload_leaves_nothing_and_frees_its_id(tmp_path, s3_engine):
    lease = 3
    bucket = f"kill-{uuid.uuid4().hex[:12]}"
    conf = store_conf(
        tmp_path,
        s3_engine,
        bucket,
        s3_store_upload_lease=str(lease),
        s3_store_large_object_chunk_size="5",
    )
    store = open_store(conf)
    store.add("bucket-made", iter([b"x"]), 1)
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.engines.s3_writer", str(conf), "victim"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "uploading\n"
    finally:
        writer.kill()
        writer.wait()

    location = f"s3://{store.host}/{bucket}/victim"
    with pytest.raises(exceptions.NotFound):
        store.get_size(location)
    assert keys(store) == sorted([*with_records("bucket-made"), PREFIX + "victim"])
    assert uploads(store) == ["victim"]
    # Within the lease, the dead writer still holds the id.
    with pytest.raises(exceptions.Duplicate, match="another writer"):
        store.add("victim", iter([b"too soon"]), 8)

    # The lease is measured by the engine's clock, in whole seconds.
    time.sleep(lease + 1.5)
    result = store.add("victim", iter([b"after the lease"]), 15)
    assert read_all(store, result.location) == b"after the lease"
    assert uploads(store) == []
    assert keys(store) == with_records("bucket-made", "victim")


def test_two_writers_taking_over_one_stale_claim_have_one_winner(tmp_path, s3_engine):
    # Race: two writers find the same stale claim and both take it over. The
    # interleaving is forced: the second writer runs its whole add from the
    # first writer's take-over request, just before it is sent. (On engines
    # without If-Match on PutObject the take-over is unconditional, and the
    # image check after it is what refuses the first writer.)
    lease = 2
    bucket = f"stale-{uuid.uuid4().hex[:12]}"
    conf = store_conf(tmp_path, s3_engine, bucket, s3_store_upload_lease=str(lease))
    first, second = open_store(conf), open_store(conf)
    first.add("bucket-made", iter([b"x"]), 1)
    first.client.put_object(Bucket=bucket, Key=PREFIX + "img", Body=b"{}")
    time.sleep(lease + 1.5)  # the claim's writer "died" that long ago

    claim_puts = []

    def second_writer_first(params, **kwargs):
        if params["Key"] != PREFIX + "img":
            return
        claim_puts.append(params)
        if len(claim_puts) == 2:  # the take-over, after If-None-Match failed
            second.add("img", iter([b"second"]), 6)

    first.client.meta.events.register(
        "before-parameter-build.s3.PutObject", second_writer_first
    )
    with pytest.raises(exceptions.Duplicate):
        first.add("img", iter([b"first"]), 5)
    assert read_all(first, f"s3://{first.host}/{bucket}/img") == b"second"
    assert keys(first) == with_records("bucket-made", "img")
    assert uploads(first) == []
