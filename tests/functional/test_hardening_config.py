"""Configuration values that must be refused without being shown, and
options that must mean what their help says.

* ``s3_store_host`` with ``user:password@`` in it: refused, naming the
  options that take credentials, and the password is nowhere in what the
  command prints, whatever characters it holds.
* ``filesystem_store_metadata_file`` mountpoints match an image's path on
  directory boundaries, not as string prefixes.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.backends.filesystem.config import holds, metadata_for
from fsstore.backends.s3.config import parse_endpoint
from fsstore.cli.main import main as fsstore_main
from fsstore.registry import StoreRegistry
from tests.functional.test_cli import run
from tests.helpers import load_conf, write_conf

SECRET = "S3cr3t-in-the-host"
ACCESS = "AKIA-in-the-host"


def s3_conf(path: Path, **options: str) -> Path:
    glance_store = {
        "stores": "s3",
        "default_store": "s3",
        "s3_store_host": "http://127.0.0.1:9000",
        "s3_store_access_key": "AKIAFSSTORECONFKEY",
        "s3_store_secret_key": "fsstore-conf-secret",
        "s3_store_bucket": "images",
        **options,
    }
    return write_conf(path, {"glance_store": glance_store})


def refusal(conf: Path) -> str:
    with pytest.raises(exceptions.BadStoreConfiguration) as caught:
        StoreRegistry(load_conf(conf))
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


def command(*args: str) -> tuple[int, str, str]:
    """The real ``fsstore`` command: exit status, stdout, stderr."""
    proc = run(*args)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def in_process(*args: str) -> tuple[int, str, str]:
    """The command's own main(), for the many examples of a property test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = fsstore_main(list(args))
    return status, out.getvalue(), err.getvalue()


# -- credentials in s3_store_host -----------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        f"http://{ACCESS}:{SECRET}@127.0.0.1:9000",
        f"https://{ACCESS}:{SECRET}@s3.example.com",
        f"{ACCESS}:{SECRET}@s3.example.com:8080",  # no scheme: https
        f"http://{ACCESS}:{SECRET}@127.0.0.1:9000/",
        f"http://{ACCESS}:{SECRET}/with/slashes@127.0.0.1:9000",
        f"http://{ACCESS}:{SECRET}:colons@127.0.0.1:9000",
        f"http://{ACCESS}:{SECRET}@at@127.0.0.1:9000",
        f"http://:{SECRET}@127.0.0.1:9000",
        f"http://{ACCESS}@127.0.0.1:9000",  # the access key alone
        f"ftp://{ACCESS}:{SECRET}@127.0.0.1:9000",
    ],
)
def test_credentials_in_s3_store_host_are_refused_unshown(tmp_path, host):
    message = refusal(s3_conf(tmp_path / "c.conf", s3_store_host=host))
    assert "s3_store_host" in message
    assert "s3_store_access_key" in message
    assert "s3_store_secret_key" in message
    assert SECRET not in message
    assert ACCESS not in message
    with pytest.raises(exceptions.BadStoreConfiguration) as caught:
        parse_endpoint("s3", host)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "host",
    [
        "ftp://marker-value",
        "http://127.0.0.1:9000/marker-value",
        "http://127.0.0.1:marker-value",
        "http://127.0.0.1:9000?marker-value",
        "http://127.0.0.1:9000#marker-value",
        "http://marker-value:",
        "http://",
    ],
)
def test_a_malformed_s3_store_host_is_refused_unquoted(tmp_path, host):
    # With a password cut short by a typo, any part of the value could be a
    # secret: no refusal quotes it.
    message = refusal(s3_conf(tmp_path / "c.conf", s3_store_host=host))
    assert "s3_store_host" in message
    assert "marker-value" not in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("s3_store_host", f"http://{ACCESS}:ab$sec{SECRET}@127.0.0.1:9000"),
        ("s3_store_secret_key", f"ab$sec{SECRET}"),
        ("s3_store_access_key", f"ab${ACCESS}"),
    ],
)
def test_an_unreadable_credential_option_is_not_quoted(tmp_path, option, value):
    # oslo.config reads "$name" as a substitution of option `name`, and its
    # error quotes the name: the rest of the secret.
    message = refusal(s3_conf(tmp_path / "c.conf", **{option: value}))
    assert option in message
    assert SECRET not in message
    assert ACCESS not in message
    assert "$$" in message  # how to write a "$"


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_the_command_refuses_credentials_in_s3_store_host(tmp_path, output_format):
    conf = s3_conf(
        tmp_path / "c.conf", s3_store_host=f"http://{ACCESS}:{SECRET}@127.0.0.1:9000"
    )
    status, out, err = command(
        "--config-file", str(conf), "--format", output_format, "stores"
    )
    assert status == 2, err
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    if output_format == "json":
        assert json.loads(err)["type"] == "BadStoreConfiguration"
    for option in ("s3_store_host", "s3_store_access_key", "s3_store_secret_key"):
        assert option in err
    assert SECRET not in out + err
    assert ACCESS not in out + err


# Any printable characters, "@", "/", ":", "$" and "%" among them.
printable = st.text(
    st.characters(
        codec="utf-8", categories=("L", "M", "N", "P", "S"), include_characters=" "
    ),
    max_size=24,
)
hostile_examples = [
    ("user", "pass/word"),
    ("us@er", "p@ss"),
    ("a:b", "c:d:e"),
    ("", "only-a-password"),
    ("user", "$dollar"),
    ("user", "%40percent"),
    ("user", "hash#semi;colon"),
    ("user", "s3_store_host"),
]


_REFUSALS: dict[object, set[str]] = {}


def refusal_lines(tmp_path: Path, runner) -> set[str]:
    """What the command may answer: the refusals of neutral credentials,
    plain and with a "$" (which oslo.config cannot read)."""
    if runner in _REFUSALS:
        return _REFUSALS[runner]
    lines = set()
    for password in ("neutral", "neu$tral"):
        conf = s3_conf(
            tmp_path / "neutral.conf",
            s3_store_host=f"http://someone:{password}@127.0.0.1:9000",
        )
        status, out, err = runner("--config-file", str(conf), "stores")
        assert status == 2 and out == ""
        lines.add(err)
    _REFUSALS[runner] = lines
    return lines


def check_unshown(tmp_path: Path, runner, user: str, password: str) -> None:
    conf = s3_conf(
        tmp_path / "c.conf", s3_store_host=f"http://{user}:{password}@127.0.0.1:9000"
    )
    status, out, err = runner("--config-file", str(conf), "stores")
    assert status == 2
    assert out == ""
    # The answer does not depend on the credentials: it is one of the
    # refusals of neutral ones, so it cannot show them.
    assert err in refusal_lines(tmp_path, runner)
    assert "s3_store_host" in err


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(user=printable, password=printable)
@example(*hostile_examples[0])
@example(*hostile_examples[1])
@example(*hostile_examples[2])
@example(*hostile_examples[3])
@example(*hostile_examples[4])
@example(*hostile_examples[5])
@example(*hostile_examples[6])
@example(*hostile_examples[7])
def test_credentials_in_s3_store_host_never_shown_property(tmp_path, user, password):
    check_unshown(tmp_path, in_process, user, password)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(user=printable, password=printable)
@example(*hostile_examples[0])
@example(*hostile_examples[1])
@example(*hostile_examples[2])
@example(*hostile_examples[4])
@example(*hostile_examples[6])
def test_credentials_in_s3_store_host_never_shown_by_the_command(
    tmp_path, user, password
):
    check_unshown(tmp_path, command, user, password)


# -- filesystem_store_metadata_file: mountpoints on directory boundaries ---------


@pytest.mark.parametrize(
    ("mountpoint", "path", "held"),
    [
        ("/srv/imag", "/srv/images/img", False),  # glance_store: True
        ("/srv/images", "/srv/images/img", True),
        ("/srv/images/", "/srv/images/img", True),
        ("/srv/images//", "/srv/images/img", True),
        ("/srv/images", "/srv/images//img", True),
        ("/srv/images", "/srv/images/x/img", True),
        ("/srv/images/x", "/srv/images/img", False),
        ("/srv/images/x", "/srv/images/xy/img", False),
        ("/srv/images/x/", "/srv/images/x/img", True),
        ("/srv/images/img", "/srv/images/img", True),
        ("/srv/./images", "/srv/images/img", True),
        ("/", "/srv/images/img", True),
        ("srv/images", "/srv/images/img", False),  # relative never holds
        ("/srv/images", "/srv/imagesX", False),
    ],
)
def test_mountpoints_hold_paths_on_directory_boundaries(mountpoint, path, held):
    assert holds(mountpoint, path) is held


def test_metadata_for_takes_the_first_entry_that_holds_the_path():
    entries = [
        {"id": "prefix-only", "mountpoint": "/srv/imag"},
        {"id": "deeper", "mountpoint": "/srv/images/x"},
        {"id": "images", "mountpoint": "/srv/images/", "extra": ["a"]},
        {"id": "root", "mountpoint": "/"},
    ]
    found = metadata_for(entries, "/srv/images/img")
    assert found == {"id": "images", "mountpoint": "/srv/images/", "extra": ["a"]}
    found["id"] = "changed"  # a copy: the configuration stays as it was
    assert entries[2]["id"] == "images"
    assert metadata_for(entries, "/srv/images/x/img")["id"] == "deeper"
    assert metadata_for(entries, "/var/img")["id"] == "root"
    assert metadata_for(entries[:3], "/var/img") == {}
