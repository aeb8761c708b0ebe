"""The installed ``fsstore`` command, run as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fsstore.testing.suite import payload
from tests import bad_configs
from tests.helpers import write_conf

FSSTORE = str(Path(sys.executable).with_name("fsstore"))


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FSSTORE, *args], input=stdin, capture_output=True, timeout=120
    )


def ok(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    proc = run(*args, stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def fails(code: int, *args: str, match: str, stdin: bytes | None = None) -> str:
    proc = run(*args, stdin=stdin)
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert match in err, err
    return err


@pytest.fixture
def conf(tmp_path: Path) -> list[str]:
    path = write_conf(
        tmp_path / "glance-api.conf",
        {
            "glance_store": {
                "filesystem_store_datadir": "",
                "filesystem_store_datadirs": [
                    f"{tmp_path}/hi:200",
                    f"{tmp_path}/lo:100",
                ],
            }
        },
    )
    return ["--config-file", str(path)]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "image.raw"
    path.write_bytes(payload(300_000, seed=1))
    return path


def add_json(conf: list[str], *args: str, stdin: bytes | None = None) -> dict:
    return json.loads(ok(*conf, "--format", "json", "add", *args, stdin=stdin).stdout)


def test_add_get_size_verify_delete(conf, image, tmp_path):
    data = image.read_bytes()
    text = ok(*conf, "add", "--id", "img-1", str(image)).stdout.decode()
    location = f"file://{tmp_path}/hi/img-1"
    assert f"location:  {location}\n" in text
    assert f"checksum:  {hashlib.md5(data).hexdigest()} (md5)" in text
    assert f"multihash: {hashlib.sha512(data).hexdigest()} (sha512)" in text
    assert ok(*conf, "get", location).stdout == data
    out = tmp_path / "out.raw"
    ok(*conf, "get", location, "-o", str(out))
    assert out.read_bytes() == data
    assert (
        ok(*conf, "get", location, "--offset", "10", "--length", "5").stdout
        == (data[10:15])
    )
    assert ok(*conf, "size", location).stdout == b"300000\n"
    ok(*conf, "verify", location, "--checksum", hashlib.md5(data).hexdigest())
    ok(
        *conf,
        "verify",
        location,
        "--hashing-algo",
        "sha256",
        "--multihash",
        hashlib.sha256(data).hexdigest(),
    )
    assert ok(*conf, "delete", location).stdout.decode() == f"deleted {location}\n"
    fails(1, *conf, "size", location, match="not found")


def test_json_output(conf, image):
    record = add_json(conf, str(image), "--hashing-algo", "sha256")
    uuid.UUID(record["id"])  # a fresh UUID when no --id is given
    assert record["size"] == 300_000
    assert record["hashing_algo"] == "sha256"
    assert record["multihash"] == hashlib.sha256(image.read_bytes()).hexdigest()
    location = record["location"]
    size = json.loads(ok(*conf, "size", location, "--format", "json").stdout)
    assert size == {"location": location, "size": 300_000}
    verify = json.loads(
        ok(
            *conf,
            "--format",
            "json",
            "verify",
            location,
            "--checksum",
            record["checksum"],
        ).stdout
    )
    assert verify["ok"] is True
    deleted = json.loads(ok(*conf, "delete", location, "--format", "json").stdout)
    assert deleted == {"location": location, "deleted": True}


def json_error(code: int, *args: str) -> dict:
    """Run a command that fails with ``--format json``: its stderr is one
    JSON object and its stdout holds no record."""
    proc = run(*args)
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert len(err.splitlines()) == 1, err
    error = json.loads(err)
    assert set(error) == {"error", "type"}, error
    return error


@pytest.mark.parametrize("where", ["before", "after"])
def test_errors_are_json_with_format_json(conf, image, tmp_path, where):
    def cmd(*args: str) -> list[str]:
        fmt = ["--format", "json"]
        return [*fmt, *args] if where == "before" else [*args, *fmt]

    missing = f"file://{tmp_path}/hi/missing"
    error = json_error(1, *conf, *cmd("size", missing))
    assert error["type"] == "NotFound" and "missing" in error["error"]
    # Bad usage, found while parsing: still JSON, still exit 2.
    error = json_error(2, *conf, *cmd("get", missing, "--offset", "-1"))
    assert error["type"] == "UsageError" and "negative" in error["error"]
    error = json_error(2, *cmd("stores", "--config-file", str(tmp_path / "none")))
    assert error["type"] == "UsageError"
    bad = write_conf(
        tmp_path / "bad.conf",
        {
            "glance_store": {
                "filesystem_store_datadir": "",
                "filesystem_store_datadirs": [f"{tmp_path}/x:first"],
            }
        },
    )
    error = json_error(2, "--config-file", str(bad), *cmd("stores"))
    assert error["type"] == "BadStoreConfiguration"


def test_a_digest_mismatch_is_a_record_and_a_json_error(conf, image):
    location = add_json(conf, str(image))["location"]
    proc = run(*conf, "--format", "json", "verify", location, "--checksum", "0" * 32)
    assert proc.returncode == 1
    record = json.loads(proc.stdout)
    assert record["ok"] is False and record["expected"] == "0" * 32
    error = json.loads(proc.stderr)
    assert error["type"] == "ChecksumMismatch"
    assert location in error["error"] and record["actual"] in error["error"]


def test_text_errors_stay_one_line_with_the_program_name(conf, tmp_path):
    err = fails(2, *conf, "get", "x", "--offset", "-1", match="negative")
    assert err.startswith("fsstore get: ")
    err = fails(1, *conf, "size", f"file://{tmp_path}/hi/missing", match="not found")
    assert err.startswith("fsstore: ")
    fails(2, *conf, "--format", "xml", "stores", match="invalid choice: 'xml'")
    fails(2, *conf, "stores", "--format", match="expected one argument")


def test_add_from_stdin(conf):
    data = payload(100_000, seed=2)
    record = add_json(conf, "--id", "piped", "-", stdin=data)
    assert record["size"] == len(data)
    assert record["checksum"] == hashlib.md5(data).hexdigest()
    fails(
        1,
        *conf,
        "add",
        "--id",
        "short",
        "--size",
        "5",
        "-",
        stdin=b"123",
        match="not the declared 5 bytes",
    )


def test_stores(conf, tmp_path, image):
    # A read-only command makes no data directory: they are missing...
    text = ok(*conf, "stores").stdout.decode()
    assert f"{tmp_path}/hi  priority 200  missing" in text, text
    assert not (tmp_path / "hi").exists() and not (tmp_path / "lo").exists()
    # ...until the first add makes them, as glance_store does.
    ok(*conf, "add", str(image))
    text = ok(*conf, "stores").stdout.decode()
    assert "file (default): driver file, schemes file" in text
    assert f"{tmp_path}/hi  priority 200  free " in text
    records = json.loads(ok(*conf, "stores", "--format", "json").stdout)
    assert [r["name"] for r in records] == ["file", "http"]  # glance_store's default
    assert records[1]["schemes"] == ["http", "https"]
    assert records[1]["capabilities"] == ["read"]
    dirs = records[0]["datadirs"]
    assert [(d["path"], d["priority"]) for d in dirs] == [
        (f"{tmp_path}/hi", 200),
        (f"{tmp_path}/lo", 100),
    ]
    assert all(d["free_bytes"] > 0 for d in dirs)


def test_stores_names_a_missing_data_directory(conf, tmp_path):
    """The operator's first look when a directory is unmounted: the store
    is listed with that directory missing, never an error."""
    ok(*conf, "add", "/dev/null")  # a fresh store: both made
    os.rename(tmp_path / "hi", tmp_path / "hi.unmounted")
    text = ok(*conf, "stores").stdout.decode()
    assert f"{tmp_path}/hi  priority 200  missing" in text, text
    assert f"{tmp_path}/lo  priority 100  free " in text, text
    records = json.loads(ok(*conf, "--format", "json", "stores").stdout)
    assert [d["free_bytes"] is None for d in records[0]["datadirs"]] == [True, False]
    assert not (tmp_path / "hi").exists()


def test_multi_store_backend_choice(tmp_path, image):
    path = write_conf(
        tmp_path / "multi.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:file,slow:file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": str(tmp_path / "fast")},
            "slow": {"filesystem_store_datadir": str(tmp_path / "slow")},
        },
    )
    conf = ["--config-file", str(path)]
    record = add_json(conf, "--backend", "slow", str(image))
    assert record["location"].startswith(f"file://{tmp_path}/slow/")
    assert record["metadata"] == {"store": "slow"}
    fails(1, *conf, "add", "--backend", "nosuch", str(image), match="'nosuch'")


def test_config_dir(tmp_path, image):
    confd = tmp_path / "conf.d"
    confd.mkdir()
    write_conf(
        confd / "10-store.conf",
        {"glance_store": {"filesystem_store_datadir": str(tmp_path / "d")}},
    )
    record = add_json(["--config-dir", str(confd)], str(image))
    assert record["location"].startswith(f"file://{tmp_path}/d/")


def test_verify_mismatch(conf, image):
    location = add_json(conf, str(image))["location"]
    err = fails(
        1, *conf, "verify", location, "--checksum", "0" * 32, match="checksum mismatch"
    )
    assert hashlib.md5(image.read_bytes()).hexdigest() in err


def test_failed_get_keeps_existing_output_file(conf, tmp_path):
    out = tmp_path / "precious"
    out.write_bytes(b"keep me")
    fails(
        1,
        *conf,
        "get",
        f"file://{tmp_path}/hi/missing",
        "-o",
        str(out),
        match="not found",
    )
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_progress_bar(conf, image):
    shown = run(*conf, "add", "--progress", str(image))
    assert b"B/s" in shown.stderr or b"100%" in shown.stderr
    hidden = run(*conf, "add", "--no-progress", str(image))
    assert hidden.stderr == b""
    # Not a terminal, no flag: no bar.
    assert run(*conf, "add", str(image)).stderr == b""


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["--config-file", "/nonexistent.conf", "stores"], 2, "nonexistent.conf"),
        (["nosuchcommand"], 2, "invalid choice"),
        (["get"], 2, "required"),
        (["get", "file:///x", "--offset", "-3"], 2, "negative"),
        (["get", "file:///x", "--length", "0"], 2, "greater than 0"),
        (["add", "--hashing-algo", "md6", "-"], 2, "md6"),
        (["add", "/nonexistent/image"], 2, "cannot read /nonexistent/image"),
        (["add", "--id", "../escape", "{image}"], 1, "'../escape'"),
        (["add", "--id", "", "{image}"], 1, "must not be empty"),
        (["get", "file:///etc/passwd"], 1, "outside the data directories"),
        (["delete", "file:///etc/passwd"], 1, "outside the data directories"),
        (["size", "file://{tmp}/hi/../../../etc/passwd"], 1, "outside"),
        (["get", "swift://c/o"], 1, "scheme 'swift'"),
        (["get", "not a uri"], 1, "no image 'not a uri' in store 'file'"),
        (["get", "../x"], 1, "contains '/'"),
        (["verify", "file:///x"], 2, "required"),
    ],
)
def test_errors_are_one_line(conf, image, tmp_path, args, code, match):
    args = [a.format(image=image, tmp=tmp_path) for a in args]
    passwd = Path("/etc/passwd").read_bytes()
    fails(code, *conf, *args, match=match, stdin=b"")
    assert Path("/etc/passwd").read_bytes() == passwd


def test_duplicate_keeps_the_stored_image(conf, image, tmp_path):
    first = add_json(conf, "--id", "dup", str(image))
    other = tmp_path / "other.raw"
    other.write_bytes(b"different")
    fails(1, *conf, "add", "--id", "dup", str(other), match="already exists")
    assert ok(*conf, "get", first["location"]).stdout == image.read_bytes()


@pytest.mark.parametrize("output_format", ["text", "json"])
@pytest.mark.parametrize(
    "case", bad_configs.cases("store", "registry", "cache"), ids=bad_configs.ids
)
def test_bad_configuration_is_one_line(tmp_path, case, output_format):
    assert bad_configs.command_refuses(FSSTORE, case, tmp_path, output_format) is None


def test_large_file_with_progress(conf, tmp_path):
    # Past 4 MiB the store reads the file straight into its pipeline's
    # buffers, through the progress bar's readinto.
    data = payload(9 * 1024 * 1024 + 17, seed=6)
    src = tmp_path / "large.raw"
    src.write_bytes(data)
    proc = ok(*conf, "--format", "json", "add", "--progress", str(src))
    record = json.loads(proc.stdout)
    assert record["checksum"] == hashlib.md5(data).hexdigest()
    assert b"add" in proc.stderr  # the bar was shown
    assert ok(*conf, "get", record["location"]).stdout == data


def test_add_from_stdin_keeps_the_size_of_a_regular_file(conf, tmp_path):
    # `add - < image`: stdin is the file itself, whose size fstat gives; the
    # progress bar shows it as a total (a pipe has none).
    data = payload(300_000, seed=3)
    image = tmp_path / "image"
    image.write_bytes(b"skipped" + data)
    with image.open("rb") as f:
        f.seek(len(b"skipped"))  # the size is what is left to read
        proc = subprocess.run(
            [FSSTORE, *conf, "add", "--progress", "--id", "redirected", "-"],
            stdin=f,
            capture_output=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    assert "/293k" in proc.stderr.decode()  # 300,000 bytes, as a total
    piped = run(*conf, "add", "--progress", "--id", "piped-again", "-", stdin=data)
    assert piped.returncode == 0, piped.stderr.decode()
    assert "/293k" not in piped.stderr.decode()
