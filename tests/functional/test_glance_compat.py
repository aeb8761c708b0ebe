"""What an unchanged Glance reads from fsstore's adapters, and the options
glance_store honours that fsstore must honour the same way.

Each case runs glance_store's public API in a process of its own
(tests/functional/glance_scenarios.py).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.registry import StoreRegistry
from tests.functional.test_glance_adapter import scenario
from tests.functional.test_s3 import s3_options
from tests.helpers import load_conf, write_conf


def test_url_prefix_and_discovery_attributes(tmp_path, s3_endpoint):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file, cloud:fsstore_s3"},
            "glance_store": {"default_backend": "fast"},
            "fast": {
                "filesystem_store_datadir": str(tmp_path / "fast"),
                "filesystem_store_chunk_size": "131072",
                "filesystem_thin_provisioning": "true",
            },
            "cloud": {
                **s3_options(s3_endpoint, "prefix"),
                "s3_store_large_object_size": "50",
                "s3_store_large_object_chunk_size": "8",
                "s3_store_thread_pools": "3",
            },
        },
    )
    out = scenario("store_attributes", str(conf), "fast", "cloud")
    host = s3_endpoint.split("://", 1)[1]
    assert out["fast"] == {
        "url_prefix": f"file://{tmp_path}/fast",
        "datadir": f"{tmp_path}/fast",
        "chunk_size": 131072,
        "thin_provisioning": True,
    }
    assert out["cloud"] == {
        "url_prefix": f"s3://{host}/prefix",
        "s3_store_large_object_size": 50 * 1024 * 1024,
        "s3_store_large_object_chunk_size": 8 * 1024 * 1024,
        "s3_store_thread_pools": 3,
    }


def test_url_prefix_names_the_best_of_several_datadirs(tmp_path):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {
                "filesystem_store_datadirs": [
                    f"{tmp_path}/low:100",
                    f"{tmp_path}/high:200",
                ],
            },
        },
    )
    out = scenario("store_attributes", str(conf), "fast")
    assert out["fast"]["url_prefix"] == f"file://{tmp_path}/high"


def test_legacy_filesystem_locations_are_read(tmp_path):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": str(tmp_path / "fast")},
        },
    )
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "old").write_text("legacy image")
    out = scenario(
        "legacy_location", str(conf), "fast", f"filesystem://{tmp_path}/fast/old"
    )
    assert out == {"data": "legacy image", "length": 12}


def _s3_conf(tmp_path: Path, options: dict[str, str], *more: dict[str, str]) -> Path:
    """A single-store S3 configuration of ``options`` and ``more``."""
    merged = {k: v for d in (options, *more) for k, v in d.items()}
    return write_conf(
        tmp_path / "s3.conf",
        {"glance_store": {"stores": "s3", "default_store": "s3", **merged}},
    )


def _fs_registry(tmp_path: Path, **options: object) -> StoreRegistry:
    conf = write_conf(tmp_path / "fs.conf", {"glance_store": options})
    return StoreRegistry(load_conf(conf))


def test_legacy_filesystem_locations_in_fsstore(tmp_path):
    registry = _fs_registry(tmp_path, filesystem_store_datadir=str(tmp_path / "d"))
    location = registry.add("img", iter([b"abc"]), 3).location
    legacy = location.replace("file://", "filesystem://", 1)
    assert registry.get_size(legacy) == 3
    assert b"".join(registry.get(legacy)[0]) == b"abc"
    with pytest.raises(exceptions.Forbidden):
        registry.get_size("filesystem:///etc/passwd")
    registry.delete(legacy)
    with pytest.raises(exceptions.NotFound):
        registry.get_size(location)


@pytest.mark.parametrize(
    ("perm", "expected_bits"),
    [
        (640, stat.S_IXGRP),
        (604, stat.S_IXOTH),
        (644, stat.S_IXGRP | stat.S_IXOTH),
        (600, 0),
    ],
)
def test_file_perm_lets_group_and_others_search_the_datadir(
    tmp_path, perm, expected_bits
):
    datadir = tmp_path / "d"
    datadir.mkdir(mode=0o700)
    datadir.chmod(0o700)
    registry = _fs_registry(
        tmp_path, filesystem_store_datadir=str(datadir), filesystem_store_file_perm=perm
    )
    location = registry.add("img", iter([b"abc"]), 3).location
    mode = stat.S_IMODE(datadir.stat().st_mode)
    assert mode == 0o700 | expected_bits
    assert stat.S_IMODE((datadir / "img").stat().st_mode) == int(str(perm), 8)
    registry.delete(location)


def test_a_datadir_twice_at_one_priority_is_a_warning(tmp_path, caplog):
    d = tmp_path / "d"
    registry = _fs_registry(
        tmp_path,
        filesystem_store_datadir="",
        filesystem_store_datadirs=[f"{d}:100", f"{d}:100"],
    )
    store = registry.get_store("file")
    assert [x.path for x in store.datadirs] == [str(d)]
    assert "listed twice" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING


def test_a_datadir_at_two_priorities_is_an_error(tmp_path):
    d = tmp_path / "d"
    with pytest.raises(exceptions.BadStoreConfiguration, match="listed twice"):
        _fs_registry(
            tmp_path,
            filesystem_store_datadir="",
            filesystem_store_datadirs=[f"{d}:100", f"{d}:200"],
        )


@pytest.mark.parametrize("region", ["not a region!", "us_east_1/", "-bad-"])
def test_a_bad_region_is_a_configuration_error(tmp_path, s3_endpoint, region):
    conf = _s3_conf(
        tmp_path, s3_options(s3_endpoint, "region"), {"s3_store_region_name": region}
    )
    with pytest.raises(exceptions.BadStoreConfiguration, match="s3_store_region_name"):
        StoreRegistry(load_conf(conf))


# -- [backend_defaults] ---------------------------------------------------------


def test_backend_defaults_fill_what_a_backend_does_not_set(tmp_path, s3_endpoint):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "a:file, b:file, cloud:s3"},
            "glance_store": {"default_backend": "a"},
            "backend_defaults": {
                "filesystem_store_file_perm": "640",
                "filesystem_store_chunk_size": "4096",
                "s3_store_bucket": "from-defaults",
            },
            "a": {"filesystem_store_datadir": str(tmp_path / "a")},
            "b": {
                "filesystem_store_datadir": str(tmp_path / "b"),
                "filesystem_store_file_perm": "600",
            },
            "cloud": {
                k: v
                for k, v in s3_options(s3_endpoint, "x").items()
                if k != "s3_store_bucket"
            },
        },
    )
    registry = StoreRegistry(load_conf(conf))
    a, b = registry.get_store("a"), registry.get_store("b")
    assert (a.file_mode, a.io_size) == (0o640, 4096)
    assert (b.file_mode, b.io_size) == (0o600, 4096)
    cloud = registry.get_store("cloud")
    assert cloud.bucket == "from-defaults"
    result = registry.add("img", iter([b"data"]), 4, backend="cloud")
    assert result.location.endswith("/from-defaults/img")


def test_backend_defaults_through_glance_store(tmp_path):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file"},
            "glance_store": {"default_backend": "fast"},
            "backend_defaults": {"filesystem_store_chunk_size": "8192"},
            "fast": {"filesystem_store_datadir": str(tmp_path / "fast")},
        },
    )
    out = scenario("store_attributes", str(conf), "fast")
    assert out["fast"]["chunk_size"] == 8192


# -- filesystem_store_timeout ---------------------------------------------------


class _Stall:
    """Stands in for a file system call on a stalled mount: blocks until
    released (the hook that forces the stall, instead of a real NFS hang)."""

    def __init__(self, real):
        self.real, self.release = real, threading.Event()
        self.__name__ = real.__name__

    def __call__(self, *args, **kwargs):
        self.release.wait(timeout=60)
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("call", ["stat", "unlink", "open"])
def test_a_stalled_call_times_out_as_glance_store_does(tmp_path, monkeypatch, call):
    registry = _fs_registry(
        tmp_path,
        filesystem_store_datadir=str(tmp_path / "d"),
        filesystem_store_timeout=1,
        filesystem_store_thread_pool_size=2,
    )
    location = registry.add("img", iter([b"abc"]), 3).location
    stall = _Stall(getattr(os, call))
    monkeypatch.setattr(os, call, stall)
    op = {"stat": registry.get_size, "unlink": registry.delete, "open": registry.get}
    try:
        with pytest.raises(exceptions.StoreTimeout, match="filesystem_store_timeout"):
            op[call](location)
    finally:
        stall.release.set()
    monkeypatch.undo()
    # The store goes on working (the stalled call finishes in its thread).
    after = registry.add("after", iter([b"ok"]), 2).location
    assert registry.get_size(after) == 2


def test_no_timeout_runs_in_the_callers_thread(tmp_path, monkeypatch):
    registry = _fs_registry(tmp_path, filesystem_store_datadir=str(tmp_path / "d"))
    location = registry.add("img", iter([b"abc"]), 3).location
    threads = []
    real = os.stat
    monkeypatch.setattr(
        os,
        "stat",
        lambda *a, **k: threads.append(threading.get_ident()) or real(*a, **k),
    )
    registry.get_size(location)
    assert set(threads) == {threading.get_ident()}


def test_a_timeout_is_glance_stores_timeout_error():
    from glance_store import exceptions as gs

    from fsstore.glance import to_glance

    err = to_glance(exceptions.StoreTimeout("stalled", timeout=3))
    assert isinstance(err, gs.TimeoutError)
    assert "3s" in str(err)


@pytest.mark.parametrize("thin", [True, False])
def test_thin_provisioning_leaves_holes_on_a_real_file(tmp_path, thin):
    chunk = 64 * 1024
    data = b"\0" * (8 * chunk) + b"x" * chunk + b"\0" * (8 * chunk)
    registry = _fs_registry(
        tmp_path,
        filesystem_store_datadir=str(tmp_path / "d"),
        filesystem_store_chunk_size=chunk,
        filesystem_thin_provisioning=str(thin).lower(),
        filesystem_store_fsync="false",
    )
    location = registry.add(
        "img", iter([data[i : i + chunk] for i in range(0, len(data), chunk)]), 0
    ).location
    st = (tmp_path / "d" / "img").stat()
    assert st.st_size == len(data)
    assert b"".join(registry.get(location)[0]) == data
    allocated = st.st_blocks * 512
    if thin:
        assert allocated <= 2 * chunk  # the one chunk of data, not the zeros
    else:
        assert allocated >= len(data)


# -- S3 locations and regions ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("https://s3-us-west-2.amazonaws.com", "us-west-2"),
        ("s3.eu-west-1.amazonaws.com", "eu-west-1"),
        ("https://s3-cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("https://s3.amazonaws.com", "us-east-1"),
        ("http://127.0.0.1:9000", "us-east-1"),
    ],
)
def test_the_region_follows_a_legacy_aws_host(tmp_path, host, region):
    conf = _s3_conf(tmp_path, s3_options(host, "bucket"))
    store = StoreRegistry(load_conf(conf)).get_store("s3")
    assert store.client.meta.region_name == region


def test_a_configured_region_wins_over_the_host(tmp_path):
    options = s3_options("https://s3-us-west-2.amazonaws.com", "b")
    conf = _s3_conf(tmp_path, options, {"s3_store_region_name": "eu-central-1"})
    store = StoreRegistry(load_conf(conf)).get_store("s3")
    assert store.client.meta.region_name == "eu-central-1"


def test_of_two_s3_backends_with_one_bucket_the_named_host_wins(tmp_path, s3_endpoint):
    host = s3_endpoint.split("://", 1)[1]
    other = f"http://localhost:{host.rsplit(':', 1)[1]}"
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "one:s3, two:s3"},
            "glance_store": {"default_backend": "one"},
            "one": s3_options(s3_endpoint, "shared"),
            "two": s3_options(other, "shared"),
        },
    )
    registry = StoreRegistry(load_conf(conf))
    location = registry.add("img", iter([b"data"]), 4, backend="two").location
    assert location.startswith("s3://localhost:")
    assert registry.store_for(location)[0].name == "two"
    assert registry.store_for(location.replace("localhost", "127.0.0.1"))[0].name == (
        "one"
    )
    assert registry.get_size(location.replace("localhost", "elsewhere")) == 4


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ("when_required", "when_required")),
        (
            {
                "s3_store_request_checksum_calculation": "when_supported",
                "s3_store_response_checksum_validation": "when_supported",
            },
            ("when_required", "when_required"),  # ignored while protection is off
        ),
        (
            {
                "s3_store_enable_data_integrity_protection": "true",
                "s3_store_request_checksum_calculation": "when_supported",
            },
            ("when_supported", "when_required"),
        ),
    ],
)
def test_data_integrity_options_as_glance_store(
    tmp_path, s3_endpoint, options, expected
):
    conf = _s3_conf(tmp_path, s3_options(s3_endpoint, "integrity"), options)
    store = StoreRegistry(load_conf(conf)).get_store("s3")
    config = store.client.meta.config
    assert (
        config.request_checksum_calculation,
        config.response_checksum_validation,
    ) == expected
    # The engine takes what the client sends either way.
    location = store.add(str(uuid.uuid4()), iter([b"checked"]), 7).location
    assert b"".join(store.get(location)[0]) == b"checked"


def test_a_bad_checksum_option_is_a_configuration_error(tmp_path, s3_endpoint):
    conf = _s3_conf(
        tmp_path,
        s3_options(s3_endpoint, "integrity"),
        {"s3_store_request_checksum_calculation": "always"},
    )
    with pytest.raises(
        exceptions.BadStoreConfiguration, match="s3_store_request_checksum_calculation"
    ):
        StoreRegistry(load_conf(conf))


def test_reserved_stores_as_fsstore_file(tmp_path):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": str(tmp_path / "fast")},
            "os_glance_staging_store": {
                "filesystem_store_datadir": str(tmp_path / "staging")
            },
            "os_glance_tasks_store": {
                "filesystem_store_datadir": str(tmp_path / "tasks")
            },
        },
    )
    out = scenario("reserved", str(conf))
    for backend, directory in [
        ("os_glance_staging_store", "staging"),
        ("os_glance_tasks_store", "tasks"),
    ]:
        assert out[backend] == {
            "location": f"file://{tmp_path}/{directory}/staged",
            "data": "staged data",
            "store": backend,
        }
