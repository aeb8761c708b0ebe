"""Real processes: kill -9 of a writer mid-add, and racing adds of one id."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fsstore.backends.filesystem import STAGING_DIR, FilesystemStore
from fsstore.backends.filesystem.digests import RECORDS_DIR
from fsstore.safefiles import TEMPORARY_PREFIX
from fsstore.testing.suite import payload
from tests.helpers import load_conf, write_conf

ROOT = Path(__file__).resolve().parents[2]
SIZE = 2 * 1024 * 1024 + 123


def start_writer(conf: Path, image_id: str, seed: int, staging: str, stop_at: str):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.functional.writer",
            str(conf),
            image_id,
            str(SIZE),
            str(seed),
            staging,
            stop_at,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "READY"
    return proc


@pytest.fixture(params=["disk", "no-xattrs"])
def fs(request: pytest.FixtureRequest) -> str:
    """The data directories on the test's disk, or on ramfs file systems,
    which have no user xattrs: digests are kept as records there."""
    if request.param == "no-xattrs":
        mount = request.getfixturevalue("mount_ramfs")
        mount("a")
        mount("b")
    return str(request.param)


@pytest.fixture
def conf(tmp_path: Path, fs: str) -> Path:
    return write_conf(
        tmp_path / "glance-api.conf",
        {
            "glance_store": {
                "filesystem_store_datadirs": [
                    f"{tmp_path / 'a'}:1",
                    f"{tmp_path / 'b'}:1",
                ]
            }
        },
    )


def datadirs(tmp_path: Path) -> list[Path]:
    return [tmp_path / "a", tmp_path / "b"]


def images(tmp_path: Path) -> dict[str, bytes]:
    found = {}
    for d in datadirs(tmp_path):
        for name in os.listdir(d):
            if not name.startswith(".fsstore-"):
                found[name] = (d / name).read_bytes()
    return found


def assert_digests_kept(conf: Path, tmp_path: Path, leftovers: int = 0) -> None:
    """Every published image has its digests, and they are right; on file
    systems without xattrs, at most ``leftovers`` records belong to no image
    (a writer killed between its record and its link)."""
    store = FilesystemStore(load_conf(conf))
    store.configure()
    try:
        published = images(tmp_path)
        for image_id, location, _ in store.images():
            kept = store.kept_digests(location)
            assert kept is not None, image_id
            assert kept.checksum == hashlib.md5(published[image_id]).hexdigest()
    finally:
        store.close()
    inodes = {
        str(os.stat(d / name).st_ino)
        for d in datadirs(tmp_path)
        for name in os.listdir(d)
        if name in published
    }
    records = {
        name
        for d in datadirs(tmp_path)
        if (d / RECORDS_DIR).is_dir()
        for name in os.listdir(d / RECORDS_DIR)
        if not name.startswith(TEMPORARY_PREFIX)  # cut short by a kill: never read
    }
    assert len(records - inodes) <= leftovers, (records, inodes)


def staging_files(tmp_path: Path) -> list[str]:
    found = []
    for d in datadirs(tmp_path):
        if (d / STAGING_DIR).is_dir():
            found += os.listdir(d / STAGING_DIR)
    return found


@pytest.mark.parametrize("staging", ["tmpfile", "named"])
@pytest.mark.parametrize(
    "stop_at", ["start", "mid", "end", "fsync", "recorded", "linked"]
)
def test_kill_9_leaves_absent_or_complete(tmp_path, fs, conf, staging, stop_at):
    if stop_at == "recorded" and fs != "no-xattrs":
        pytest.skip("digest records are kept only where there are no xattrs")
    proc = start_writer(conf, "victim", 1, staging, stop_at)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "STOPPED"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    found = images(tmp_path)
    if stop_at == "linked":
        assert found == {"victim": payload(SIZE, seed=1)}
    else:
        assert found == {}
    # A named staging file may survive the kill; the next configure removes it.
    if staging == "tmpfile":
        assert staging_files(tmp_path) == []
    after = start_writer(conf, "next", 2, staging, "none")
    after.stdin.write("go\n")
    after.stdin.flush()
    assert json.loads(after.stdout.readline()) == {
        "ok": hashlib.md5(payload(SIZE, seed=2)).hexdigest()
    }
    after.wait()
    assert staging_files(tmp_path) == []
    assert set(images(tmp_path)) == {"next"} | set(found)
    assert_digests_kept(conf, tmp_path, leftovers=int(stop_at == "recorded"))


@pytest.mark.parametrize("ndirs", [1, 2])
@pytest.mark.parametrize("staging", ["tmpfile", "named"])
def test_concurrent_adds_of_one_id_exactly_one_wins(tmp_path, fs, staging, ndirs):
    # One directory: link(2)'s EEXIST decides. Two: the publish lock does.
    conf = write_conf(
        tmp_path / "race.conf",
        {
            "glance_store": {
                "filesystem_store_datadirs": [
                    f"{d}:1" for d in datadirs(tmp_path)[:ndirs]
                ]
            }
        },
    )
    for d in datadirs(tmp_path):  # configure makes none while another exists
        d.mkdir(exist_ok=True)
    writers = [
        start_writer(conf, "contested", seed, staging, "none") for seed in range(8)
    ]
    for w in writers:  # all are READY: release them together
        w.stdin.write("go\n")
        w.stdin.flush()
    results = []
    for w in writers:
        results.append(json.loads(w.stdout.readline()))
        w.wait()
    winners = [r["ok"] for r in results if "ok" in r]
    assert len(winners) == 1, results
    assert sorted(r.get("error", "") for r in results) == [""] + ["Duplicate"] * 7
    stored = images(tmp_path)
    assert list(stored) == ["contested"]
    assert hashlib.md5(stored["contested"]).hexdigest() == winners[0]
    assert staging_files(tmp_path) == []
    # The losers' records (written before their link failed) are gone; the
    # winner's is the one left.
    assert_digests_kept(conf, tmp_path)
