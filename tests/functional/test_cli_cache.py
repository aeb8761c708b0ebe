"""``fsstore cache ...``: glance-cache-manage, -pruner, -cleaner, -prefetcher."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from fsstore.hashing import hashing_algo_problem
from tests.functional.test_cli import FSSTORE, fails, ok, run
from tests.helpers import write_conf


@pytest.fixture(params=["sqlite", "xattr"])
def driver(request) -> str:
    return request.param


@pytest.fixture
def conf(driver: str, tmp_path: Path) -> list[str]:
    path = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {
                "image_cache_dir": str(tmp_path / "cache"),
                "image_cache_driver": driver,
                "image_cache_max_size": "1000000",
            },
            "glance_store": {"filesystem_store_datadir": str(tmp_path / "images")},
        },
    )
    return ["--config-file", str(path)]


def add(conf: list[str], tmp_path: Path, image_id: str, data: bytes) -> dict:
    src = tmp_path / f"{image_id}.src"
    src.write_bytes(data)
    return json.loads(
        ok(*conf, "--format", "json", "add", "--id", image_id, str(src)).stdout
    )


def js(conf: list[str], *args: str):
    return json.loads(ok(*conf, "cache", *args, "--format", "json").stdout)


def test_queue_prefetch_list_delete(conf, tmp_path):
    images = {f"img{i}": os.urandom(100_000 + i) for i in range(3)}
    for image_id, data in images.items():
        record = add(conf, tmp_path, image_id, data)
        ok(
            *conf,
            "cache",
            "queue",
            image_id,
            "--location",
            record["location"],
            "--checksum",
            record["checksum"],
        )
    assert js(conf, "queued") == ["img0", "img1", "img2"]
    assert ok(*conf, "cache", "queued").stdout.decode().split() == list(images)
    again = ["cache", "queue", "img0", "--location", f"file://{tmp_path}/images/img0"]
    fails(1, *conf, *again, match="queued already")
    report = js(conf, "prefetch")
    assert report == {"cached": sorted(images), "failed": {}, "skipped": []}
    assert js(conf, "queued") == []
    rows = js(conf, "list")
    assert [(r["image_id"], r["size"], r["hits"], r["verified"]) for r in rows] == [
        (i, len(d), 0, True) for i, d in images.items()
    ]
    text = ok(*conf, "cache", "list").stdout.decode().splitlines()
    assert text[0].split() == ["ID", "SIZE", "HITS", "VERIFIED", "LAST", "ACCESSED"]
    assert text[1].split()[:5] == ["img0", "97.7", "KiB", "0", "yes"]
    assert js(conf, "size") == {
        "size": sum(map(len, images.values())),
        "max_size": 1000000,
    }
    fails(1, *conf, *again, match="it is cached")
    assert js(conf, "delete", "img0") == {"image_id": "img0", "deleted": True}
    fails(1, *conf, "cache", "delete", "img0", match="not cached")
    assert js(conf, "delete-all") == {"deleted": 2}
    assert js(conf, "list") == []


def test_prefetch_reports_failures_and_goes_on(conf, tmp_path):
    record = add(conf, tmp_path, "good", b"good data")
    ok(
        *conf,
        "cache",
        "queue",
        "good",
        "--location",
        record["location"],
        "--checksum",
        record["checksum"],
    )
    gone = f"file://{tmp_path}/images/gone"
    ok(*conf, "cache", "queue", "gone", "--location", gone, "--allow-unverified")
    proc = run(*conf, "cache", "prefetch", "--no-progress")
    assert proc.returncode == 1
    assert proc.stdout.decode().splitlines() == [
        "cached good",
        f"failed gone: image file://{tmp_path}/images/gone not found",
    ]
    assert [r["image_id"] for r in js(conf, "list")] == ["good"]
    assert js(conf, "clean") == {"invalid": 1, "incomplete": 0, "left": []}


def test_queue_management(conf, tmp_path):
    for image_id in ["a", "b", "c"]:
        location = f"file://{tmp_path}/images/{image_id}"
        ok(*conf, "cache", "queue", image_id, "--location", location)
    assert js(conf, "delete-queued", "b") == {"image_id": "b", "dequeued": True}
    fails(1, *conf, "cache", "delete-queued", "b", match="not queued")
    assert js(conf, "delete-all-queued") == {"dequeued": 2}


def test_queue_needs_a_location_the_stores_accept(conf, tmp_path):
    # The prefetcher reads a queued image from the location it was queued
    # with and from nowhere else: without one, or with one no configured
    # store accepts, the entry could only ever fail, so it is not made.
    fails(2, *conf, "cache", "queue", "img", match="--location")
    for location, match in [
        ("file:///etc/passwd", "/etc/passwd"),
        ("nosuch://host/img", "'nosuch'"),
        (f"file://{tmp_path}/images/../outside", "outside"),
    ]:
        fails(1, *conf, "cache", "queue", "img", "--location", location, match=match)
    assert js(conf, "queued") == []
    assert os.listdir(tmp_path / "cache" / "queue") == []


def test_prune_and_check(conf, driver, tmp_path):
    cache_dir = tmp_path / "cache"
    for i in range(3):
        record = add(conf, tmp_path, f"i{i}", os.urandom(400_000))
        location, checksum = record["location"], record["checksum"]
        ok(
            *conf,
            "cache",
            "queue",
            f"i{i}",
            "--location",
            location,
            "--checksum",
            checksum,
        )
        js(conf, "prefetch")
    # The limit held at every commit: one image was evicted for the third.
    assert len(js(conf, "list")) == 2
    assert js(conf, "prune") == {"files": 0, "bytes": 0}
    assert js(conf, "check") == {"problems": [], "fixed": False}
    assert ok(*conf, "cache", "check").stdout == b"no problems\n"
    survivors = [r["image_id"] for r in js(conf, "list")]
    os.unlink(cache_dir / survivors[0])
    (cache_dir / "stray").write_bytes(b"x")
    if driver == "xattr":
        os.setxattr(cache_dir / survivors[1], "user.hits", b"garbage")
    (cache_dir / "image_cache_db_init").write_bytes(b"never an image")
    found = run(*conf, "cache", "check", "--format", "json")
    assert found.returncode == 1
    problems = sorted(
        (p["kind"], p["image_id"]) for p in json.loads(found.stdout)["problems"]
    )
    if driver == "sqlite":
        assert problems == [
            ("missing-file", survivors[0]),
            ("unrecorded-file", "stray"),
        ]
    else:  # the files are the records; one without user.hits is no entry
        assert problems == [("bad-hits", survivors[1])]
        assert "stray" not in [r["image_id"] for r in js(conf, "list")]
    fixed = json.loads(ok(*conf, "cache", "check", "--fix", "--format", "json").stdout)
    assert fixed["fixed"] is True
    assert js(conf, "check") == {"problems": [], "fixed": False}
    assert (cache_dir / "image_cache_db_init").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["cache", "delete", "../x"], "'../x'"),
        (["cache", "queue", "a/b", "--location", "file:///x/a/b"], "'a/b'"),
        (["cache", "nosuch"], "invalid choice"),
        (["cache", "clean", "--stall-time", "-1"], "negative"),
    ],
)
def test_cache_errors_are_one_line(conf, args, match):
    code = 2 if "invalid choice" in match or "negative" in match else 1
    fails(code, *conf, *args, match=match)


def test_misconfigured_cache(tmp_path):
    path = write_conf(
        tmp_path / "c.conf",
        {"DEFAULT": {"image_cache_driver": "nosuch", "image_cache_dir": str(tmp_path)}},
    )
    fails(2, "--config-file", str(path), "cache", "list", match="'nosuch'")
    path = write_conf(tmp_path / "d.conf", {"DEFAULT": {}})
    fails(2, "--config-file", str(path), "cache", "size", match="image_cache_dir")


@pytest.mark.parametrize(
    ("algo", "accepted"),
    [("sha256", True), ("SHA256", True), ("shake_128", False), ("crc99", False)],
)
def test_the_command_and_the_library_share_one_rule_for_an_algorithm(
    conf, tmp_path, algo, accepted
):
    """fsstore.hashing.hashing_algo_problem decides for both: an algorithm
    the library refuses is a one-line usage error of the command, before
    anything is stored or queued."""
    assert (hashing_algo_problem(algo) is None) is accepted
    src = tmp_path / "src"
    src.write_bytes(b"data")
    add_args = ["add", "--id", "img", "--hashing-algo", algo, str(src)]
    multihash = hashlib.sha256(b"data").hexdigest()
    location = f"file://{tmp_path}/images/img"
    queue_args = ["cache", "queue", "img", "--location", location]
    queue_args += ["--multihash", multihash, "--hashing-algo", algo]
    if accepted:
        ok(*conf, *add_args)
        ok(*conf, *queue_args)
        assert js(conf, "queued") == ["img"]
        return
    problem = str(hashing_algo_problem(algo))
    fails(2, *conf, *add_args, match=problem)
    fails(2, *conf, *queue_args, match=problem)
    assert not (tmp_path / "images" / "img").exists()
    assert js(conf, "queued") == []


def _cache_one(conf: list[str], tmp_path: Path) -> None:
    record = add(conf, tmp_path, "img", b"cached bytes")
    where = ["--location", record["location"], "--checksum", record["checksum"]]
    ok(*conf, "cache", "queue", "img", *where)
    assert js(conf, "prefetch")["cached"] == ["img"]


def _on_a_terminal(conf: list[str], answer: bytes, *more: str) -> tuple[int, bytes]:
    """``cache delete-all`` with a terminal for stdin, answering ``answer``."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, answer)
        proc = subprocess.run(
            [FSSTORE, *conf, "cache", "delete-all", *more],
            stdin=follower,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(leader)
        os.close(follower)
    return proc.returncode, proc.stderr


def test_delete_all_asks_on_a_terminal(conf, tmp_path):
    _cache_one(conf, tmp_path)
    status, err = _on_a_terminal(conf, b"n\n")
    assert status == 1 and err.endswith(b"[y/N] fsstore: nothing deleted\n"), err
    assert "delete every cached image in" in err.decode()
    assert [r["image_id"] for r in js(conf, "list")] == ["img"]
    status, err = _on_a_terminal(conf, b"y\n")
    assert status == 0, err
    assert js(conf, "list") == []


def test_delete_all_yes_asks_nothing(conf, tmp_path):
    _cache_one(conf, tmp_path)
    status, err = _on_a_terminal(conf, b"", "--yes")
    assert status == 0 and b"[y/N]" not in err, err
    assert js(conf, "list") == []
