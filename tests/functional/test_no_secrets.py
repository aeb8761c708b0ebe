"""No credential is ever shown: every option that can carry one, with any
characters in it, through every command and every surface (stdout, stderr,
fsstore's logs, the locations returned, the files fsstore writes).

The options that carry credentials are ``s3_store_access_key``,
``s3_store_secret_key`` (valid settings: the store must use them and show
them nowhere), ``s3_store_host`` (refused when it holds ``user:password@``,
see test_hardening_config) and ``[database] connection`` (see
test_hardening_central).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.registry import StoreRegistry
from fsstore.testing.suite import payload
from tests.engines import S3Engine
from tests.functional.test_cli import run
from tests.helpers import load_conf, write_conf

# Separators of URLs, of oslo.config and of S3's own signing, in one key.
SECRET_KEY = "wJa/rXU+tnF@EMI:K7M%D#EN?G=bPx;R&fi'CY\"SECRETKEY"
# No "/": SigV4 puts the access key before the "/"-separated scope, and an
# engine reading the scope back (moto) would take part of it as the region.
ACCESS_KEY = "AKIA@ACC:ESS%KEY#ID=X"
DATA = payload(100_000, seed=21)


def fragments(secret: str) -> list[str]:
    """``secret`` and every run of 5 of its characters with two letters or
    digits: a leak of any part of it is a leak (a message may quote the half
    after a separator), a run of punctuation is not evidence of one."""
    runs = [secret[i : i + 5] for i in range(len(secret) - 4)]
    return [secret, *(r for r in runs if sum(c.isalnum() for c in r) >= 2)]


def assert_unshown(text: str, *secrets: str) -> None:
    for secret in secrets:
        for piece in fragments(secret):
            assert piece not in text, f"{piece!r} of a credential shown in: {text}"


def closed_port() -> int:
    # Bound, never listened on, closed: connections to it are refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_conf(path: Path, endpoint: str, access: str, secret: str) -> Path:
    return write_conf(
        path,
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                "s3_store_host": endpoint,
                # oslo.config reads '$' as a substitution: '$$' is one '$'.
                "s3_store_access_key": access.replace("$", "$$"),
                "s3_store_secret_key": secret.replace("$", "$$"),
                "s3_store_bucket": f"b-{uuid.uuid4().hex[:12]}",
                "s3_store_create_bucket_on_put": "true",
                "s3_store_bucket_url_format": "path",
                "s3_store_max_retries": "0",
            }
        },
    )


def every_command(
    tmp_path: Path, conf: Path, location: str | None
) -> list[tuple[list[str], int, str]]:
    """Run each command that touches the store: (args, status, all output)."""
    src = tmp_path / "src"
    src.write_bytes(DATA)
    args = ["--config-file", str(conf)]
    runs: list[list[str]] = [
        ["stores"],
        ["--format", "json", "stores"],
        ["add", "--id", "img", str(src)],
        ["--format", "json", "add", "--id", "img2", str(src)],
        ["scrub", "--checkpoint", str(tmp_path / "checkpoint.json")],
        ["--format", "json", "scrub"],
    ]
    if location is not None:
        runs += [
            ["get", location, "-o", str(tmp_path / "out")],
            ["size", location],
            ["verify", location, "--checksum", hashlib.md5(DATA).hexdigest()],
            ["--format", "json", "size", location],
            ["delete", location],
        ]
    done = []
    for command in runs:
        proc = run(*args, *command)
        text = (proc.stdout + proc.stderr).decode(errors="replace")
        assert "Traceback" not in text, text
        done.append((command, proc.returncode, text))
    return done


def written_files(tmp_path: Path, conf: Path) -> str:
    """What fsstore wrote under ``tmp_path`` (the configuration aside)."""
    return "".join(
        p.read_bytes().decode(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p != conf
    )


def test_s3_keys_are_used_and_never_shown(tmp_path, moto_engine: S3Engine):
    """Keys full of separators (moto takes any key): every command succeeds,
    and neither key is shown anywhere."""
    access, secret = ACCESS_KEY, SECRET_KEY
    conf = s3_conf(tmp_path / "s3.conf", moto_engine.endpoint, access, secret)
    added = run("--config-file", str(conf), "add", "--id", "first", str(_src(tmp_path)))
    assert added.returncode == 0, added.stderr
    location = next(
        line.split()[1]
        for line in added.stdout.decode().splitlines()
        if line.startswith("location:")
    )
    results = every_command(tmp_path, conf, location)
    assert [status for _, status, _ in results] == [0] * len(results), results
    shown = added.stdout.decode() + "".join(text for _, _, text in results)
    assert_unshown(shown + written_files(tmp_path, conf), access, secret)


def test_wrong_s3_keys_are_refused_without_being_shown(tmp_path, s3_engine):
    """Keys the engine does not know (moto knows any: skipped there)."""
    if s3_engine.name == "moto":
        pytest.skip("moto accepts any key")
    conf = s3_conf(tmp_path / "s3.conf", s3_engine.endpoint, ACCESS_KEY, SECRET_KEY)
    host = s3_engine.endpoint.split("://", 1)[1]
    results = every_command(tmp_path, conf, f"s3://{host}/bucket/img")
    failed = [command for command, status, _ in results if status != 0]
    assert ["add", "--id", "img", str(tmp_path / "src")] in failed
    for command, status, text in results:
        if status:
            assert len(text.strip().splitlines()) == 1, (command, text)
    assert_unshown(
        "".join(text for _, _, text in results) + written_files(tmp_path, conf),
        ACCESS_KEY,
        SECRET_KEY,
    )


def test_an_unreachable_endpoint_shows_no_key(tmp_path):
    conf = s3_conf(
        tmp_path / "s3.conf",
        f"http://127.0.0.1:{closed_port()}",
        ACCESS_KEY,
        SECRET_KEY,
    )
    results = every_command(tmp_path, conf, "s3://127.0.0.1:1/bucket/img")
    assert [c for c, status, _ in results if status == 0] == [
        ["stores"],
        ["--format", "json", "stores"],
    ], results
    assert_unshown(
        "".join(text for _, _, text in results) + written_files(tmp_path, conf),
        ACCESS_KEY,
        SECRET_KEY,
    )


# Letters no message has by chance, among every separator there is: a run of
# 5 characters of such a key holding two of the letters is a leak, never a
# coincidence with a word of a message.
RARE = "QXZJVW"
KEYS = st.text(
    st.sampled_from(RARE + "@/:%#?=&+;'\"!*()[]{}<>,.~^`|\\-_$"), min_size=6
).filter(lambda s: sum(c in RARE for c in s) >= 2)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(access=KEYS, secret=KEYS)
def test_any_key_is_never_in_an_error_or_log(tmp_path, caplog, access, secret):
    """In the library: configuring, then adding to and reading from an
    endpoint that refuses connections, with any printable keys. Every
    error message and every fsstore log record is free of them."""
    conf = s3_conf(
        tmp_path / f"{uuid.uuid4().hex}.conf",
        f"http://127.0.0.1:{closed_port()}",
        access,
        secret,
    )
    shown: list[str] = []
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="fsstore"):
        try:
            registry = StoreRegistry(load_conf(conf))
        except exceptions.FsstoreError as exc:
            shown.append(str(exc))
        else:
            for operation in (
                lambda: registry.add("img", iter([DATA[:1000]]), 1000),
                lambda: registry.get_size("s3://127.0.0.1:1/bucket/img"),
                lambda: registry.delete("s3://127.0.0.1:1/bucket/img"),
            ):
                with pytest.raises(exceptions.FsstoreError) as caught:
                    operation()
                shown += [str(caught.value), repr(caught.value)]
    shown += [record.getMessage() for record in caplog.records]
    assert_unshown("\n".join(shown), access, secret)


def _src(tmp_path: Path) -> Path:
    path = tmp_path / "first-src"
    path.write_bytes(DATA)
    return path
