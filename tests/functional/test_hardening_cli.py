"""The command under hostile output paths, configuration and servers.

Every failed operation is one line and exit 1, bad usage or configuration
exit 2, never a traceback; ``-o`` replaces nothing but a regular file; no
credential is ever shown.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from fsstore.safefiles import TEMPORARY_PREFIX
from fsstore.testing.suite import payload
from tests.functional.test_cli import fails, ok, run
from tests.functional.test_s3 import s3_options
from tests.helpers import is_root, write_conf
from tests.loopback import RawServer, TruncatingProxy, response_head

DATA = payload(200_000, seed=8)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[list[str], str]:
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "glance_store": {
                "stores": "file,http",
                "filesystem_store_datadir": str(tmp_path / "images"),
            }
        },
    )
    (tmp_path / "src").write_bytes(DATA)
    args = ["--config-file", str(conf)]
    ok(*args, "add", "--id", "img", str(tmp_path / "src"))
    return args, f"file://{tmp_path}/images/img"


def leftovers(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith(TEMPORARY_PREFIX)]


# -- get -o --------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_output_keeps_an_existing_files_mode(stored, tmp_path, mode):
    conf, location = stored
    out = tmp_path / "out"
    out.write_bytes(b"old")
    out.chmod(mode)
    ok(*conf, "get", location, "-o", str(out))
    assert out.read_bytes() == DATA
    assert stat.S_IMODE(out.stat().st_mode) == mode


def test_output_new_file_gets_the_umask_mode(stored, tmp_path):
    conf, location = stored
    old = os.umask(0o022)
    try:
        ok(*conf, "get", location, "-o", str(tmp_path / "new"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o644


def test_output_follows_a_symlink(stored, tmp_path):
    conf, location = stored
    (tmp_path / "target").write_bytes(b"old")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    ok(*conf, "get", location, "-o", str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "target").read_bytes() == DATA


def test_output_writes_through_a_fifo(stored, tmp_path):
    conf, location = stored
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    ok(*conf, "get", location, "-o", str(fifo))
    reader.join(timeout=60)
    assert received == [DATA]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(not is_root(), reason="replacing /dev/null needs root")
def test_output_to_a_device_is_written_through(stored):
    conf, location = stored
    before = os.stat("/dev/null")
    ok(*conf, "get", location, "-o", "/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert leftovers(Path("/dev")) == []


def test_output_to_a_directory_names_the_path(stored, tmp_path):
    conf, location = stored
    target = tmp_path / "adir"
    target.mkdir()
    err = fails(2, *conf, "get", location, "-o", str(target), match=str(target))
    assert "directory" in err and TEMPORARY_PREFIX not in err
    assert leftovers(tmp_path) == []


def test_output_to_a_socket_is_refused(stored, tmp_path):
    conf, location = stored
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        fails(2, *conf, "get", location, "-o", str(path), match=str(path))
    assert leftovers(tmp_path) == []


# -- configuration -------------------------------------------------------------


def test_a_config_file_that_is_a_directory_is_exit_2(tmp_path):
    fails(2, "--config-file", str(tmp_path), "stores", match=str(tmp_path))


def test_a_missing_config_file_is_exit_2(tmp_path):
    fails(2, "--config-file", str(tmp_path / "none.conf"), "stores", match="none.conf")


# -- bodies that fail while being read -----------------------------------------


@pytest.fixture
def raw_servers():
    made: list[RawServer] = []

    def make(script: list[bytes]) -> RawServer:
        made.append(RawServer(script))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.mark.parametrize(
    ("script", "match"),
    [
        ([response_head("10240") + b"x" * 5000], "5240 bytes short"),
        (
            [response_head(chunked=True) + b"1000\r\n" + b"x" * 100],
            "reading the body failed",
        ),
        ([response_head("-5") + b"x"], "invalid Content-Length"),
    ],
    ids=["short", "chunked", "negative"],
)
def test_a_bad_http_body_is_one_line_and_leaves_no_file(
    stored, raw_servers, tmp_path, script, match
):
    conf, _ = stored
    server = raw_servers(script)
    out = tmp_path / "out"
    fails(1, *conf, "get", f"{server.url}/img", "-o", str(out), match=match)
    assert not out.exists()
    assert leftovers(tmp_path) == []


SECRET = "wJal/rXUtn+FEMI@K7MD%ENG:bPxRfi/CYEXAMPLEKEY"


def test_a_truncated_s3_body_and_secrets_in_locations(tmp_path, s3_endpoint):
    proxy = TruncatingProxy(s3_endpoint, keep=1000)
    try:
        options = s3_options(proxy.url, "trunc")
        conf = write_conf(
            tmp_path / "s3.conf",
            {"glance_store": {"stores": "s3", "default_store": "s3", **options}},
        )
        args = ["--config-file", str(conf)]
        (tmp_path / "src").write_bytes(DATA)
        # Added straight to the endpoint: the proxy cuts every response it
        # passes, and only the reads are its subject.
        direct = write_conf(
            tmp_path / "direct.conf",
            {
                "glance_store": {
                    "stores": "s3",
                    "default_store": "s3",
                    **s3_options(s3_endpoint, "trunc"),
                }
            },
        )
        ok("--config-file", str(direct), "add", "--id", "img", str(tmp_path / "src"))
        host = proxy.url.split("://", 1)[1]
        out = tmp_path / "out"
        fails(
            1,
            *args,
            "get",
            f"s3://{host}/trunc/img",
            "-o",
            str(out),
            match="reading the body failed",
        )
        assert not out.exists()
        # glance_store's location form, with a secret full of separators:
        # never shown, whatever fails.
        for uri in (
            f"s3+http://AKIAEXAMPLE:{SECRET}@{host}/trunc/img",
            f"s3+http://AKIAEXAMPLE:{SECRET}@{host}/trunc/missing",
            f"s3+http://AKIAEXAMPLE:{SECRET}@elsewhere:1/other-bucket/img",
            f"s3://AKIAEXAMPLE:{SECRET}@",
        ):
            for command in (["get", uri, "-o", str(out)], ["size", uri]):
                proc = run(*args, *command)
                # Only the size of the stored image succeeds (its body is
                # cut by the proxy; the others do not exist or are elsewhere).
                expected = (
                    0
                    if command[0] == "size" and uri.endswith("@" + host + "/trunc/img")
                    else 1
                )
                assert proc.returncode == expected, proc.stderr
                text = (proc.stdout + proc.stderr).decode()
                assert "Traceback" not in text and len(text.splitlines()) == 1
                for part in SECRET.split("/") + SECRET.split("@"):
                    assert part not in text, text
    finally:
        proxy.close()


def test_a_secret_in_a_queued_location_is_never_shown(stored, tmp_path):
    conf, _ = stored
    cache_dir = tmp_path / "cache"
    conf_path = Path(conf[1])
    conf_path.write_text(
        conf_path.read_text() + f"\n[DEFAULT]\nimage_cache_dir = {cache_dir}\n"
    )
    location = f"s3://AKIAEXAMPLE:{SECRET}@s3.example.com/bucket/img"
    # No store here reads s3://: refused at queue time, not dropped later.
    queued = run(
        *conf, "cache", "queue", "img", "--location", location, "--checksum", "0" * 32
    )
    prefetched = run(*conf, "cache", "prefetch", "--format", "json")
    assert queued.returncode == 1 and prefetched.returncode == 0
    shown = (
        queued.stdout
        + queued.stderr
        + prefetched.stdout
        + prefetched.stderr
        + b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    )
    assert b"no configured store handles scheme 's3'" in queued.stderr
    for part in SECRET.split("/") + SECRET.split("@"):
        assert part.encode() not in shown


@pytest.mark.parametrize("command", ["list", "size", "prune", "queued", "check"])
def test_a_damaged_cache_database_is_one_line(stored, tmp_path, command):
    conf, _ = stored
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "cache.db").write_bytes(b"not a database" * 100)
    conf_path = Path(conf[1])
    conf_path.write_text(
        conf_path.read_text() + f"\n[DEFAULT]\nimage_cache_dir = {cache_dir}\n"
    )
    if command == "queued":  # the queue is files: no records needed
        ok(*conf, "cache", command)
        return
    if command == "check":
        proc = run(*conf, "cache", "check")
        assert proc.returncode == 1
        assert b"damaged-records" in proc.stdout and b"Traceback" not in proc.stderr
        ok(*conf, "cache", "check", "--fix")
        ok(*conf, "cache", "list")
        return
    err = fails(1, *conf, "cache", command, match="cache.db is unusable")
    assert "check --fix" in err
