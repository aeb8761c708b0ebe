"""The Store base class, image-id validation, chunking and hashing."""

from __future__ import annotations

import errno
import gc
import hashlib
import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oslo_config import cfg

from fsstore import exceptions
from fsstore.hashing import THREADED_THRESHOLD, ImageHasher
from fsstore.location import FileLocation, redact, split_scheme
from fsstore.store import (
    FileChunkIterator,
    Store,
    read_chunks,
    validate_image_id,
)
from fsstore.testing.suite import HOSTILE_IDS
from tests.helpers import load_conf, write_conf


@pytest.mark.parametrize("image_id", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_hostile_ids(image_id):
    with pytest.raises(exceptions.Invalid):
        validate_image_id(image_id)


@pytest.mark.parametrize(
    "image_id", ["a", "x" * 255, "é" * 127, "6f1e3c2a-uuid", "..a", "a..", ".hidden"]
)
def test_good_ids(image_id):
    assert validate_image_id(image_id) == image_id


def test_non_string_id():
    with pytest.raises(exceptions.Invalid, match="bytes"):
        validate_image_id(b"abc")


def test_read_chunks_from_file_and_iterable():
    data = bytes(range(256)) * 10
    assert b"".join(read_chunks(io.BytesIO(data), 100, "x")) == data
    assert [len(c) for c in read_chunks(io.BytesIO(data), 1000, "x")] == [1000] * 2 + [
        560
    ]
    assert b"".join(read_chunks(iter([data, b"", data]), 7, "x", 2 * len(data))) == (
        data * 2
    )


def test_read_chunks_refuses_text():
    with pytest.raises(exceptions.Invalid, match="str"):
        list(read_chunks(iter(["text"]), 10, "x"))


@pytest.mark.parametrize("size", [0, 1, 4096, THREADED_THRESHOLD + 1, 5 * 2**20 + 3])
@pytest.mark.parametrize("algo", ["sha512", "sha256", "blake2b"])
def test_hasher_matches_hashlib(size, algo):
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    hasher = ImageHasher(algo)
    for pos in range(0, size, 65536):
        hasher.update(data[pos : pos + 65536])
    assert hasher.hexdigests() == (
        hashlib.md5(data).hexdigest(),
        hashlib.new(algo, data).hexdigest(),
    )


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=3 * 2**20), min_size=1, max_size=12),
    st.sampled_from(["bytes", "bytearray", "memoryview"]),
)
def test_hasher_with_reused_buffers_matches_hashlib(sizes, kind):
    # Whatever the chunk sizes and types, and though the caller overwrites
    # its buffer right after each update (as a reader reusing one buffer
    # does), the digests are of what was given.
    data = (bytes(range(251)) * (sum(sizes) // 251 + 1))[: sum(sizes)]
    hasher = ImageHasher("sha256")
    pos = 0
    for size in sizes:
        buffer = bytearray(data[pos : pos + size])
        chunk = {"bytes": bytes(buffer), "bytearray": buffer}.get(
            kind, memoryview(buffer)
        )
        hasher.update(chunk)
        buffer[:] = bytes(size)  # reused
        pos += size
    assert hasher.hexdigests() == (
        hashlib.md5(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


@pytest.mark.parametrize("algo", ["nosuch", "shake_128", ""])
def test_hasher_refuses_unusable_algorithms(algo):
    with pytest.raises(exceptions.UnknownHashingAlgo):
        ImageHasher(algo)


def test_hasher_close_stops_threads():
    hasher = ImageHasher()
    for _ in range(40):
        hasher.update(bytes(65536))
    threads = [t._thread for t in hasher._threads]
    assert len(threads) == 2 and all(t.is_alive() for t in threads)
    hasher.close()
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "noscheme",
        "://x",
        "1x://y",
        "fi le://x",
        "file:///a\0b",
        42,
        "f\u00efle://x",  # RFC 3986: a scheme is ASCII
        "file\n://x",
        "+x://y",
    ],
)
def test_split_scheme_refuses_malformed(uri):
    with pytest.raises(exceptions.BadStoreUri):
        split_scheme(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://AKIA:s3cr3t/k3y@host/b/k\0",  # a NUL byte
        "s3:/AKIA:s3cr3t/k3y@host/b/k",  # no ://
        "s 3://AKIA:s3cr3t/k3y@host/b/k",  # an invalid scheme
        "s3:/AKIA:s3cr3t/k3y@host/b/k?next=https://x",  # :// only later
        "AKIA:s3cr3t/k3y@s3://host/b/k",  # credentials first
    ],
)
def test_split_scheme_never_shows_credentials(uri):
    with pytest.raises(exceptions.BadStoreUri) as refused:
        split_scheme(uri)
    assert "s3cr3t" not in str(refused.value) and "k3y" not in str(refused.value)
    assert "host/b/k" in str(refused.value)  # the rest is shown, to be found


@pytest.mark.parametrize(
    "text", ["/srv/glance@2/images/x", "image x@y", "no at sign", "s3://host/b/k"]
)
def test_redact_leaves_what_holds_no_credentials(text):
    assert redact(text) == text


def test_split_scheme_lowercases():
    assert split_scheme("S3+HTTPS://host/b/k") == ("s3+https", "host/b/k")
    assert split_scheme("x-1.y://z") == ("x-1.y", "z")  # every character allowed


def test_file_location_round_trip():
    loc = FileLocation.from_uri("file:///var/lib/glance/images/abc")
    assert loc.path == "/var/lib/glance/images/abc"
    assert loc.uri == "file:///var/lib/glance/images/abc"
    assert str(loc) == loc.uri


def test_base_store_is_abstract():
    store = Store(conf=None)  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError):
        store.add("x", iter([b""]), 0)
    with pytest.raises(NotImplementedError):
        store.get("file:///x")


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


@pytest.fixture
def image_fd(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(bytes(range(256)) * 1000)
    return os.open(path, os.O_RDONLY)


def test_file_chunks_outlive_the_iterator_object(image_fd):
    # The loop holds only what iter() returned: the file must stay open.
    chunks = [c for c in FileChunkIterator(image_fd, 10, 256_000 - 20, 4096)]
    assert b"".join(chunks) == (bytes(range(256)) * 1000)[10:-10]
    assert [len(c) for c in chunks[:-1]] == [4096] * (len(chunks) - 1)
    assert not _is_open(image_fd)


def test_file_chunks_close_early_and_when_dropped(image_fd):
    it = FileChunkIterator(image_fd, 0, 256_000, 4096)
    assert next(it) == bytes(range(256)) * 16
    it.close()
    assert not _is_open(image_fd)
    assert list(it) == []

    fd = os.open(os.devnull, os.O_RDONLY)
    unstarted = FileChunkIterator(fd, 0, 1, 1)
    assert _is_open(fd)
    del unstarted
    gc.collect()
    assert not _is_open(fd)


def test_file_chunks_of_a_borrowed_descriptor_never_close_it(image_fd):
    # A scrub reads through a descriptor it goes on using after the chunks.
    read = FileChunkIterator(image_fd, 0, 256_000, 65536, owned=False)
    assert b"".join(read) == bytes(range(256)) * 1000
    assert _is_open(image_fd)
    closed = FileChunkIterator(image_fd, 0, 256_000, 65536, owned=False)
    next(closed)
    closed.close()
    dropped = FileChunkIterator(image_fd, 0, 1, 1, owned=False)
    del dropped
    gc.collect()
    assert _is_open(image_fd)
    os.close(image_fd)


class _SecretStore(Store):
    OPTIONS = [
        cfg.StrOpt("x_store_password", secret=True),
        cfg.IntOpt("x_store_port", secret=True),
        cfg.StrOpt("x_store_user"),
    ]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("x_store_password", "pw$hunter2-rest"),
        ("x_store_password", "pw${hunter2rest}"),
        ("x_store_port", "hunter2-rest"),
    ],
)
def test_a_secret_option_that_cannot_be_read_is_not_quoted(tmp_path, option, value):
    """Any driver's secret=True option: oslo.config's error would name the
    rest of the value after a '$', or quote the value whole."""
    conf = load_conf(write_conf(tmp_path / "x.conf", {"glance_store": {option: value}}))
    conf.register_opts(_SecretStore.OPTIONS, group="glance_store")
    with pytest.raises(exceptions.BadStoreConfiguration) as caught:
        _SecretStore(conf).option(option)
    message = str(caught.value)
    assert "hunter2" not in message and "rest" not in message, message
    assert option in message and "not shown" in message


def test_an_option_that_is_not_secret_is_quoted(tmp_path):
    conf = load_conf(
        write_conf(tmp_path / "x.conf", {"glance_store": {"x_store_user": "u$nobody"}})
    )
    conf.register_opts(_SecretStore.OPTIONS, group="glance_store")
    with pytest.raises(exceptions.BadStoreConfiguration, match="nobody"):
        _SecretStore(conf).option("x_store_user")
