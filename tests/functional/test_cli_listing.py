"""``fsstore ls`` and ``info``, images named by id, and the command's own
manners (--version, python -m fsstore, a terminal, /dev/stdout)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fsstore.testing.suite import payload
from tests.helpers import write_conf

FSSTORE = str(Path(sys.executable).with_name("fsstore"))


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [FSSTORE, *args], stderr=subprocess.PIPE, timeout=120, **kwargs
    )


def ok(*args: str) -> bytes:
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def fails(code: int, *args: str, match: str) -> None:
    proc = run(*args)
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


@pytest.fixture
def multi(tmp_path: Path) -> list[str]:
    """Two filesystem backends, ``fast`` (the default) and ``slow``."""
    path = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:file, slow:file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": f"{tmp_path}/fast"},
            "slow": {"filesystem_store_datadir": f"{tmp_path}/slow"},
        },
    )
    return ["--config-file", str(path)]


def add(
    conf: list[str], tmp_path: Path, image_id: str, data: bytes, *more: str
) -> dict:
    src = tmp_path / f"{image_id}.src"
    src.write_bytes(data)
    out = ok(*conf, "--format", "json", "add", "--id", image_id, *more, str(src))
    return json.loads(out)  # type: ignore[no-any-return]


def test_ls_lists_each_store_by_id_in_order(multi, tmp_path):
    for image_id in ("b", "a", "c"):
        add(multi, tmp_path, image_id, payload(100, seed=ord(image_id)))
    add(multi, tmp_path, "z", b"zz", "--backend", "slow")
    assert ok(*multi, "ls").decode() == "a\nb\nc\n"
    assert ok(*multi, "ls", "--backend", "slow").decode() == "z\n"
    records = json.loads(ok(*multi, "--format", "json", "ls", "--backend", "slow"))
    assert records == [{"id": "z", "size": 2, "location": f"file://{tmp_path}/slow/z"}]


def test_ls_long_says_which_images_have_digests(multi, tmp_path):
    data = payload(1000, seed=3)
    add(multi, tmp_path, "kept", data)
    (tmp_path / "fast" / "planted").write_bytes(b"x" * 7)  # put there by hand
    lines = ok(*multi, "ls", "-l").decode().splitlines()
    assert lines[0].split() == ["ID", "SIZE", "DIGESTS", "LOCATION"]
    assert lines[1].split() == ["kept", "1000", "kept", f"file://{tmp_path}/fast/kept"]
    assert lines[2].split() == [
        "planted",
        "7",
        "none",
        f"file://{tmp_path}/fast/planted",
    ]
    records = json.loads(ok(*multi, "--format", "json", "ls", "--long"))
    assert records[0]["digests"] == {
        "checksum": hashlib.md5(data).hexdigest(),
        "multihash": hashlib.sha512(data).hexdigest(),
        "hashing_algo": "sha512",
        "size": 1000,
    }
    assert records[1]["digests"] is None


def test_an_empty_store_lists_nothing(multi, tmp_path):
    # A store never written to has no data directory yet: missing, and said so.
    fails(
        1, *multi, "ls", match=f"not listed: data directory {tmp_path}/fast is missing"
    )
    ok(*multi, "delete", add(multi, tmp_path, "gone", b"x")["location"])
    assert ok(*multi, "ls") == b""
    assert json.loads(ok(*multi, "--format", "json", "ls", "-l")) == []


def test_info_by_id_and_by_uri(multi, tmp_path):
    data = payload(5000, seed=4)
    location = add(multi, tmp_path, "img", data, "--backend", "slow")["location"]
    by_uri = json.loads(ok(*multi, "--format", "json", "info", location))
    by_id = json.loads(
        ok(*multi, "--format", "json", "info", "img", "--backend", "slow")
    )
    assert by_id == by_uri
    assert by_id["store"] == "slow" and by_id["size"] == 5000
    assert by_id["location"] == f"file://{tmp_path}/slow/img"
    assert by_id["digests"]["checksum"] == hashlib.md5(data).hexdigest()
    text = ok(*multi, "info", location).decode()
    assert f"multihash: {hashlib.sha512(data).hexdigest()} (sha512)" in text
    # Not in the default store: an id is looked for where it is told.
    fails(1, *multi, "info", "img", match="no image 'img' in store 'fast'")


def test_an_image_id_is_taken_wherever_a_uri_is(multi, tmp_path):
    data = payload(3000, seed=5)
    add(multi, tmp_path, "img", data)
    assert ok(*multi, "get", "img") == data
    assert (
        ok(*multi, "get", "img", "--offset", "1000", "--length", "10")
        == data[1000:1010]
    )
    assert ok(*multi, "size", "img").decode() == "3000\n"
    md5 = hashlib.md5(data).hexdigest()
    assert ok(*multi, "verify", "img", "--checksum", md5).decode().startswith("OK ")
    ok(*multi, "delete", "img")
    assert not (tmp_path / "fast" / "img").exists()
    fails(1, *multi, "get", "img", match="no image 'img' in store 'fast'")


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (
            ["get", "img", "--backend", "nosuch"],
            1,
            "no backend or scheme named 'nosuch'",
        ),
        (
            ["get", "file:///x/img", "--backend", "fast"],
            2,
            "--backend is for an image id",
        ),
        (["info", ".fsstore-lock"], 1, "reserved prefix"),
        (["delete", ".."], 1, "'..' is not allowed"),
        (["ls", "--backend", "nosuch"], 1, "no backend or scheme named 'nosuch'"),
    ],
)
def test_bad_ids_and_backends_are_one_line(multi, tmp_path, args, code, match):
    add(multi, tmp_path, "img", b"data")
    fails(code, *multi, *args, match=match)
    assert (tmp_path / "fast" / "img").read_bytes() == b"data"


def test_a_store_that_cannot_list_wants_a_uri(tmp_path):
    conf = write_conf(
        tmp_path / "http.conf",
        {"glance_store": {"stores": "http", "default_store": "http"}},
    )
    args = ["--config-file", str(conf)]
    fails(2, *args, "get", "img", match="store 'http' cannot find an image by its id")
    fails(1, *args, "ls", match="store 'http' does not support listing its images")


def test_version_and_python_m(multi):
    from fsstore import __version__

    assert ok("--version").decode() == f"fsstore {__version__}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "fsstore", *multi, "--format", "json", "stores"],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert [s["name"] for s in json.loads(proc.stdout)] == ["fast", "slow"]


def test_every_argument_has_help():
    from fsstore.cli.main import build_parser

    def walk(parser):
        for action in parser._actions:
            if action.choices and isinstance(action.choices, dict):
                for sub in action.choices.values():
                    yield from walk(sub)
            elif action.dest != "help":
                yield parser.prog, action

    actions = list(walk(build_parser()))
    missing = [(prog, a.dest) for prog, a in actions if not a.help]
    assert missing == []
    # Plain text: no RST markup reaches a terminal.
    texts = [a.help for _, a in actions] + [
        ok(*args, "--help").decode() for args in ([], ["cache"], ["scrub"], ["config"])
    ]
    assert [t for t in texts if "``" in t or ":param" in t or ":class:" in t] == []
    help_text = ok("add", "--help").decode()
    assert "sha256" in help_text and "sha512" in help_text and "shake" not in help_text


def test_get_refuses_a_terminal_without_o_or_force(multi, tmp_path):
    add(multi, tmp_path, "img", b"secret bytes")
    leader, follower = pty.openpty()
    try:
        proc = run(*multi, "get", "img", stdout=follower)
        assert proc.returncode == 2
        assert b"refusing to write an image to a terminal" in proc.stderr
        proc = run(*multi, "get", "img", "--force", stdout=follower)
        assert proc.returncode == 0, proc.stderr
        assert os.read(leader, 100).replace(b"\r\n", b"\n") == b"secret bytes"
    finally:
        os.close(leader)
        os.close(follower)


def test_get_to_dev_stdout_writes_into_the_pipe(multi, tmp_path):
    data = payload(200_000, seed=6)
    add(multi, tmp_path, "img", data)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = run(*multi, "get", "img", "-o", "/dev/stdout", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    assert list(work.iterdir()) == []  # no file made in its place


def test_times_are_shown_in_utc_whatever_the_zone(monkeypatch):
    import time

    from fsstore.cli.output import when

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no daylight saving
    time.tzset()
    try:
        assert when(0) == "never"
        assert when(365 * 86400 + 3661) == "1971-01-01 01:01:01 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_missing_subcommand_is_named_as_a_user_sees_it():
    fails(
        2, "cache", match="fsstore cache: the following arguments are required: COMMAND"
    )
    fails(2, match="fsstore: the following arguments are required: COMMAND")


@pytest.mark.parametrize("change", [b"", b"grown by more bytes"])
def test_a_file_that_changes_during_add_is_named_so(
    tmp_path, monkeypatch, capsys, change
):
    """The command took the size from the file; the file then shrank or
    grew before the store read it: said as such, not as a declared size."""
    from fsstore.cli.main import main
    from fsstore.registry import StoreRegistry

    conf = write_conf(
        tmp_path / "f.conf",
        {"glance_store": {"filesystem_store_datadir": f"{tmp_path}/images"}},
    )
    src = tmp_path / "image"
    src.write_bytes(payload(100_000, seed=7))
    real_add = StoreRegistry.add

    def add_after_a_change(self, *args, **kwargs):
        with open(src, "r+b") as f:
            if change:
                f.seek(0, os.SEEK_END)
                f.write(change)
            else:
                f.truncate(50_000)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(StoreRegistry, "add", add_after_a_change)
    status = main(["--config-file", str(conf), "add", "--id", "img", str(src)])
    err = capsys.readouterr().err
    now = 50_000 if not change else 100_000 + len(change)
    assert status == 1
    assert err == (
        f"fsstore: {src} changed while it was read (100000 bytes when the add "
        f"began, {now} now); nothing was stored\n"
    )
    assert not (tmp_path / "images" / "img").exists()
    # A size the user gave is theirs: its mismatch is said as it was.
    src.write_bytes(b"x" * 10)
    status = main(["--config-file", str(conf), "add", "--size", "9", str(src)])
    assert status == 1 and "changed while it was read" not in capsys.readouterr().err


def test_get_to_dev_stdout_appends_to_the_file_or_socket_stdout_is(multi, tmp_path):
    """As a shell redirection: into a file opened for appending, and into a
    socket (as under ssh or systemd), never replacing or refusing them."""
    data = payload(100_000, seed=8)
    add(multi, tmp_path, "img", data)
    out = tmp_path / "out"
    out.write_bytes(b"kept ")
    with open(out, "ab") as appended:
        proc = run(*multi, "get", "img", "-o", "/dev/stdout", stdout=appended)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == b"kept " + data
    ours, theirs = socket.socketpair()
    with ours, theirs:
        proc = run(*multi, "get", "img", "-o", "/dev/stdout", stdout=theirs)
        assert proc.returncode == 0, proc.stderr
        theirs.close()
        got = b""
        while chunk := ours.recv(65536):
            got += chunk
    assert got == data


def test_get_never_writes_over_the_image_it_reads(multi, tmp_path):
    data = payload(5000, seed=9)
    add(multi, tmp_path, "img", data)
    image = tmp_path / "fast" / "img"
    before = image.stat()
    fails(2, *multi, "get", "img", "-o", str(image), match="it is the image being read")
    assert image.stat().st_ino == before.st_ino and image.read_bytes() == data
    listed = json.loads(ok(*multi, "--format", "json", "ls", "-l"))
    assert listed[0]["digests"]["checksum"] == hashlib.md5(data).hexdigest()


def test_a_missing_data_directory_is_said_not_taken_for_no_image(tmp_path):
    conf = write_conf(
        tmp_path / "f.conf",
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
    args = ["--config-file", str(conf)]
    add(args, tmp_path, "up", b"up")
    os.rename(tmp_path / "hi", tmp_path / "hi.unmounted")  # where "up" went
    (tmp_path / "lo" / "other").write_bytes(b"x")
    proc = run(*args, "ls")
    assert proc.returncode == 1
    assert proc.stdout == b"other\n"
    assert proc.stderr.decode() == (
        f"fsstore: not listed: data directory {tmp_path}/hi is missing\n"
    )
    fails(
        1,
        *args,
        "info",
        "up",
        match=f"no image 'up' in store 'file' (data directory {tmp_path}/hi is "
        "missing: not looked in)",
    )
