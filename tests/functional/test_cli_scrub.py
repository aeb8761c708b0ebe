"""``fsstore scrub`` as a user runs it, ``kill -9`` included."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from fsstore.testing.suite import payload
from tests.functional.test_cli import FSSTORE, add_json, conf, run  # noqa: F401
from tests.helpers import write_conf


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


# -- the checkpoint: a state file written the safe way -------------------------------


@pytest.mark.parametrize("resume", [False, True], ids=["new", "resume"])
def test_a_link_planted_at_the_checkpoint_is_refused_not_followed(
    conf,  # noqa: F811
    tmp_path,
    resume,
):
    _three_images(conf, tmp_path)
    victim = tmp_path / "precious"
    victim.write_text('{"images": []}')
    checkpoint = tmp_path / "scrub.json"
    checkpoint.symlink_to(victim)
    args = ["--checkpoint", str(checkpoint)] + (["--resume"] if resume else [])
    proc = run(*conf, "scrub", *args)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(checkpoint) in err and "symbolic link" in err, err
    assert checkpoint.is_symlink() and os.readlink(checkpoint) == str(victim)
    assert victim.read_text() == '{"images": []}'
    assert proc.stdout == b""  # refused before any image was read


def test_the_checkpoint_is_private_and_leaves_nothing_beside_it(conf, tmp_path):  # noqa: F811
    _three_images(conf, tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    old = os.umask(0o022)
    try:
        proc = run(*conf, "scrub", "--checkpoint", str(state / "scrub.json"))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(state) == ["scrub.json"]
    assert stat.S_IMODE(os.stat(state / "scrub.json").st_mode) == 0o600


# -- the checkpoint belongs to one pass of one store ----------------------------------


def _store_conf(tmp_path, name: str) -> list[str]:
    """A configuration whose single store is named ``file``, as any other's."""
    path = write_conf(
        tmp_path / f"{name}.conf",
        {"glance_store": {"filesystem_store_datadir": str(tmp_path / name)}},
    )
    return ["--config-file", str(path)]


def run_in(state, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    return subprocess.run([FSSTORE, *args], capture_output=True, timeout=120, env=env)


def test_resume_never_takes_another_stores_verdicts(tmp_path):
    good, bad = _store_conf(tmp_path, "good"), _store_conf(tmp_path, "bad")
    src = tmp_path / "src"
    src.write_bytes(payload(10_000, seed=1))
    for conf_ in (good, bad):
        add_json(conf_, "--id", "img", str(src))
    with open(tmp_path / "bad" / "img", "r+b") as f:
        f.write(b"\0")
    state = tmp_path / "state"
    # Both stores are called "file": the good one's finished scrub must not
    # stand for the bad one's.
    assert run_in(state, *good, "scrub").returncode == 0
    resumed = run_in(state, *bad, "--format", "json", "scrub", "--resume")
    assert resumed.returncode == 1, resumed.stderr
    assert json.loads(resumed.stdout)["counts"]["corrupt"] == 1
    # Given the other's checkpoint by name: refused, in one line.
    shared = ["--checkpoint", str(tmp_path / "shared.json")]
    assert run_in(state, *good, "scrub", *shared).returncode == 0
    refused = run_in(state, *bad, "scrub", "--resume", *shared)
    err = refused.stderr.decode()
    assert refused.returncode == 1 and len(err.splitlines()) == 1, err
    assert "another store" in err and "shared.json" in err, err
    assert refused.stdout == b""


def test_resume_after_a_finished_scrub_starts_a_new_pass(conf, tmp_path):  # noqa: F811
    _three_images(conf, tmp_path)
    checkpoint = ["--checkpoint", str(tmp_path / "scrub.json")]
    assert run(*conf, "scrub", *checkpoint).returncode == 0
    with open(tmp_path / "hi" / "img1", "r+b") as f:
        f.write(b"\0")
    again = run(*conf, "scrub", "--resume", *checkpoint)
    assert again.returncode == 1, again.stderr
    lines = again.stdout.decode().splitlines()
    assert any("new pass" in line for line in lines), lines
    assert lines[-1].endswith("2 ok, 1 corrupt"), lines


# -- what a scrub cannot reach ------------------------------------------------------


def test_a_missing_data_directory_fails_the_scrub(conf, tmp_path):  # noqa: F811
    added = _three_images(conf, tmp_path)
    os.rename(tmp_path / "hi", tmp_path / "hi.unmounted")
    checkpoint = ["--checkpoint", str(tmp_path / "scrub.json")]
    proc = run(*conf, "scrub", *checkpoint)
    out = proc.stdout.decode()
    assert proc.returncode == 1, (out, proc.stderr)
    assert f"{tmp_path}/hi is missing" in out, out
    assert out.splitlines()[-1] == "0 images, 0 B read: nothing checked, 1 unavailable"
    # Never made anew while another data directory exists: the next scrub
    # names it again, and the ids Glance expects.
    assert not os.path.lexists(tmp_path / "hi")
    expected = tmp_path / "glance.json"
    rows = [{"id": f"img{i}", "checksum": a["checksum"]} for i, a in enumerate(added)]
    expected.write_text(json.dumps(rows))
    listed = run(
        *conf, "--format", "json", "scrub", "--expected", str(expected), *checkpoint
    )
    assert listed.returncode == 1, listed.stderr
    record = json.loads(listed.stdout)
    assert {i["image_id"]: i["verdict"] for i in record["images"]} == {
        "img0": "missing",
        "img1": "missing",
        "img2": "missing",
    }
    [unavailable] = record["unavailable"]
    assert unavailable == f"data directory {tmp_path}/hi is missing"
