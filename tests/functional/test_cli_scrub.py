"""``fsstore scrub`` as a user runs it, ``kill -9`` included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from fsstore.testing.suite import payload
from tests.functional.test_cli import FSSTORE, add_json, conf, run  # noqa: F401


def test_scrub_reports_and_exits_1_on_corruption(conf, tmp_path):  # noqa: F811
    for i in range(3):
        src = tmp_path / f"src{i}"
        src.write_bytes(payload(10_000, seed=i))
        add_json(conf, "--id", f"img{i}", str(src))
    checkpoint = ["--checkpoint", str(tmp_path / "scrub.json")]
    clean = run(*conf, "scrub", *checkpoint)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.decode().splitlines() == ["3 images, 29.3 KiB read: 3 ok"]
    with open(tmp_path / "hi" / "img1", "r+b") as f:
        f.write(b"\0")
    found = run(*conf, "--format", "json", "scrub", *checkpoint)
    assert found.returncode == 1
    record = json.loads(found.stdout)
    assert record["counts"]["corrupt"] == 1 and record["counts"]["ok"] == 2
    bad = [i for i in record["images"] if i["verdict"] != "ok"]
    assert [i["image_id"] for i in bad] == ["img1"]
    assert found.stderr == b""


@pytest.mark.parametrize("rate", ["0", "-1", "fast", "nan"])
def test_a_bad_rate_is_a_usage_error(conf, rate):  # noqa: F811
    proc = run(*conf, "scrub", "--rate", rate)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and b"--rate" in proc.stderr


def test_kill_9_then_resume(conf, tmp_path):  # noqa: F811
    for i in range(4):
        src = tmp_path / f"src{i}"
        src.write_bytes(payload(300_000, seed=i))
        add_json(conf, "--id", f"img{i}", str(src))
    checkpoint = tmp_path / "scrub.json"
    # 0.5 MB/s: 0.6 s an image, slow enough to kill it mid-scrub.
    args = [*conf, "scrub", "--rate", "0.5", "--checkpoint", str(checkpoint)]
    proc = subprocess.Popen([FSSTORE, *args], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (checkpoint.exists() and json.loads(checkpoint.read_text())["images"]):
        assert proc.poll() is None, "the scrub ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)  # polling for the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(json.loads(checkpoint.read_text())["images"])
    assert 1 <= done < 4
    resumed = run(
        *conf, "--format", "json", "scrub", "--resume", "--checkpoint", str(checkpoint)
    )
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["resumed"] == done
    assert [i["image_id"] for i in record["images"]] == [f"img{i}" for i in range(4)]
    assert record["counts"]["ok"] == 4


def test_record_and_expected_from_the_command(conf, tmp_path):  # noqa: F811
    src = tmp_path / "src"
    data = payload(5000, seed=1)
    src.write_bytes(data)
    record = add_json(conf, "--id", "img", str(src))
    path = tmp_path / "hi" / "img"
    for name in os.listxattr(path):
        os.removexattr(path, name)
    checkpoint = ["--checkpoint", str(tmp_path / "scrub.json")]
    expected = tmp_path / "glance.csv"
    expected.write_text(f"id,checksum\nimg,{'0' * 32}\n")
    differs = run(*conf, "scrub", "--record", "--expected", str(expected), *checkpoint)
    assert differs.returncode == 1
    assert differs.stdout.decode().startswith("corrupt img ")
    assert os.listxattr(path) == []  # a mismatch is never recorded
    expected.write_text(f"id,checksum\nimg,{record['checksum']}\n")
    kept = run(*conf, "scrub", "--record", "--expected", str(expected), *checkpoint)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.decode().splitlines()[-1].endswith("1 recorded")
    assert run(*conf, "scrub", *checkpoint).stdout.decode().endswith("1 ok\n")
    bad = run(*conf, "scrub", "--expected", str(tmp_path / "none.csv"))
    assert bad.returncode == 1 and b"cannot read" in bad.stderr


def _three_images(conf, tmp_path) -> list[dict]:  # noqa: F811
    added = []
    for i in range(3):
        src = tmp_path / f"src{i}"
        src.write_bytes(payload(10_000, seed=i))
        added.append(add_json(conf, "--id", f"img{i}", str(src)))
    return added


def test_expected_of_the_wrong_type_is_refused_before_any_read(conf, tmp_path):  # noqa: F811
    added = _three_images(conf, tmp_path)
    expected = tmp_path / "glance.json"
    expected.write_text(
        json.dumps(
            [
                {"id": "img0", "checksum": added[0]["checksum"]},
                {"id": "img1", "checksum": 12345},
            ]
        )
    )
    checkpoint = tmp_path / "scrub.json"
    proc = run(
        *conf, "scrub", "--expected", str(expected), "--checkpoint", str(checkpoint)
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(err.splitlines()) == 1, err
    assert "row 2" in err and "checksum" in err and "12345" in err, err
    assert "Error" not in err and "Traceback" not in err, err
    assert not checkpoint.exists()  # nothing was read
    assert proc.stdout == b""
