"""Dropped, stalled and refused connections between the S3 store and a real
engine: a fault-injecting TCP proxy (tests/loopback.py) sits in front of it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsstore import exceptions
from fsstore.backends.s3 import MiB, S3Store
from fsstore.registry import StoreRegistry
from fsstore.testing.suite import payload, read_all
from tests.engines import S3Engine, with_records
from tests.helpers import load_conf, write_conf
from tests.loopback import FaultProxy


@pytest.fixture
def proxy(s3_engine: S3Engine) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_engine.endpoint)
    yield proxy
    proxy.close()


def proxied_store(
    tmp_path: Path, engine: S3Engine, proxy: FaultProxy, **extra: str
) -> S3Store:
    through = dataclasses.replace(engine, endpoint=proxy.url)
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    conf = write_conf(
        tmp_path / f"{bucket}.conf",
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                **through.options(bucket, **extra),
            }
        },
    )
    store = StoreRegistry(load_conf(conf)).get_store()
    assert isinstance(store, S3Store)
    return store


def count_calls(store: S3Store, operation: str) -> list[dict[str, object]]:
    """The parameters of each `operation` request the store sends (retries too)."""
    seen: list[dict[str, object]] = []
    store.client.meta.events.register(
        f"before-parameter-build.s3.{operation}",
        lambda params, **kw: seen.append(dict(params)),
    )
    return seen


def test_read_resumes_from_the_next_byte_after_resets(tmp_path, s3_engine, proxy):
    # One thread: one stream (reads in parts: tests/functional/test_s3_parallel.py).
    store = proxied_store(tmp_path, s3_engine, proxy, s3_store_thread_pools="1")
    data = payload(12 * MiB + 5, seed=21)
    result = store.add("img", iter([data]), len(data))
    gets = count_calls(store, "GetObject")
    proxy.arm("reset", after=3 * MiB, times=2)
    assert read_all(store, result.location) == data
    assert proxy.faults == 2
    assert len(gets) == 3
    assert "Range" not in gets[0] and "IfMatch" not in gets[0]
    first, second = (int(g["Range"].split("=")[1].split("-")[0]) for g in gets[1:])
    assert 0 < first < second < len(data)
    assert all(g["IfMatch"] for g in gets[1:])


def test_ranged_read_resumes_within_its_range(tmp_path, s3_engine, proxy):
    store = proxied_store(tmp_path, s3_engine, proxy)
    data = payload(12 * MiB, seed=22)
    result = store.add("img", iter([data]), len(data))
    proxy.arm("reset", after=2 * MiB)
    got = b"".join(store.get(result.location, offset=MiB + 3, chunk_size=6 * MiB)[0])
    assert got == data[MiB + 3 : 7 * MiB + 3]
    assert proxy.faults == 1


def test_read_gives_up_after_retry_get_count(tmp_path, s3_engine, proxy):
    store = proxied_store(tmp_path, s3_engine, proxy, s3_store_retry_get_count="2")
    data = payload(8 * MiB, seed=23)
    result = store.add("img", iter([data]), len(data))
    proxy.arm("reset", after=MiB, times=3)
    with pytest.raises(exceptions.BackendException, match="reading the body failed"):
        read_all(store, result.location)
    assert proxy.faults == 3


def test_read_resumes_after_a_stall(tmp_path, s3_engine, proxy):
    store = proxied_store(tmp_path, s3_engine, proxy, s3_store_read_timeout="1")
    data = payload(8 * MiB, seed=24)
    result = store.add("img", iter([data]), len(data))
    proxy.arm("stall", after=2 * MiB)
    assert read_all(store, result.location) == data
    assert proxy.faults == 1


def test_object_replaced_mid_read_is_never_spliced(tmp_path, s3_engine, proxy):
    # One stream (in parts: tests/functional/test_s3_parallel.py).
    store = proxied_store(
        tmp_path,
        s3_engine,
        proxy,
        s3_store_read_timeout="1",
        s3_store_thread_pools="1",
    )
    data = payload(12 * MiB, seed=25)
    result = store.add("img", iter([data]), len(data))
    proxy.arm("stall", after=2 * MiB)
    chunks, _ = store.get(result.location)
    first = next(iter(chunks))
    assert data.startswith(first)
    store.client.put_object(Bucket=store.bucket, Key="img", Body=payload(12 * MiB))
    with pytest.raises(exceptions.BackendException, match="replaced while"):
        for _ in chunks:
            pass


def test_refused_connections_are_retried(tmp_path, s3_engine, proxy):
    # A new store has no pooled connection yet: its first request connects.
    store = proxied_store(tmp_path, s3_engine, proxy, s3_store_max_retries="3")
    data = payload(MiB, seed=26)
    proxy.arm("refuse", times=2)
    result = store.add("img", iter([data]), len(data))
    assert proxy.faults == 2
    assert read_all(store, result.location) == data


def test_refused_past_max_retries_is_one_clear_error(tmp_path, s3_engine, proxy):
    store = proxied_store(tmp_path, s3_engine, proxy, s3_store_max_retries="1")
    proxy.arm("refuse", times=2)
    with pytest.raises(exceptions.BackendException) as caught:
        store.add("img", iter([b"x"]), 1)
    assert "\n" not in str(caught.value)
    assert s3_engine.secret_key not in str(caught.value)
    assert proxy.faults == 2


@pytest.mark.parametrize("size_known", [True, False], ids=["put", "multipart"])
def test_a_write_dropped_mid_body_is_retried(tmp_path, s3_engine, proxy, size_known):
    store = proxied_store(
        tmp_path,
        s3_engine,
        proxy,
        s3_store_large_object_size="100",
        s3_store_large_object_chunk_size="5",
        s3_store_thread_pools="1",
    )
    store.add("bucket-made", iter([b"x"]), 1)
    operation = "PutObject" if size_known else "UploadPart"
    sent = count_calls(store, operation)
    data = payload(12 * MiB + 1, seed=27)
    proxy.arm("reset", after=2 * MiB, direction="up")
    result = store.add("img", iter([data]), len(data) if size_known else 0)
    assert proxy.faults == 1
    assert read_all(store, result.location) == data
    if not size_known:
        # Three parts: the one that was cut off went up again on its own.
        assert sorted(p["PartNumber"] for p in sent) == [1, 2, 3]
    assert (
        store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        == []
    )


def body_digests(store: S3Store) -> list[dict[str, str]]:
    """The digests sent with each PutObject and UploadPart of image data:
    the body's own SHA-256 and MD5, and the Content-MD5 and payload SHA-256
    headers sent with it ("" when absent)."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **kwargs: Any) -> None:
        body = request.body
        if ".fsstore-claims" in request.url:
            return  # a claim, not image data
        if isinstance(body, (bytes, bytearray)) and body:
            headers = {
                name: value.decode() if isinstance(value, bytes) else value
                for name, value in request.headers.items()
            }
            seen.append(
                {
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "md5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                    "Content-MD5": headers.get("Content-MD5", ""),
                    "X-Amz-Content-SHA256": headers.get("X-Amz-Content-SHA256", ""),
                }
            )

    for operation in ("PutObject", "UploadPart"):
        store.client.meta.events.register(f"before-send.s3.{operation}", record)
    return seen


@pytest.mark.parametrize("size_known", [True, False], ids=["put", "multipart"])
def test_every_body_carries_one_digest_the_engine_checks(
    tmp_path, s3_engine, proxy, size_known
):
    # Over http SigV4 signs every body's SHA-256, which the engine checks;
    # a Content-MD5 beside it would be a second hash of every byte.
    store = proxied_store(
        tmp_path, s3_engine, proxy, s3_store_large_object_chunk_size="5"
    )
    sent = body_digests(store)
    data = payload(7 * MiB, seed=29)
    store.add("img", iter([data]), len(data) if size_known else 0)
    assert len(sent) >= (1 if size_known else 2)
    assert all(d["X-Amz-Content-SHA256"] == d["sha256"] for d in sent), sent
    assert not any(d["Content-MD5"] for d in sent), sent


class _Answered:
    """A response body botocore can read: empty."""

    def stream(self, **kwargs: Any) -> Any:
        return iter([b""])


@pytest.mark.parametrize(
    ("endpoint", "content_md5", "signed"),
    [
        ("https://s3.example.com", True, False),  # MD5 instead of SHA-256
        ("https://s3.example.com", False, True),
        ("http://s3.example.com", True, True),  # both: why http sends no MD5
        ("http://s3.example.com", False, True),
    ],
)
@pytest.mark.parametrize("operation", ["put_object", "upload_part"])
def test_botocore_signs_every_body_sha256_but_over_https_with_content_md5(
    endpoint, content_md5, signed, operation
):
    # What the store's choice of one digest per body rests on, checked
    # against the botocore installed: nothing is sent anywhere.
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    client = boto3.session.Session(
        aws_access_key_id="key", aws_secret_access_key="secret", region_name="x"
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    sent: dict[str, Any] = {}

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        sent.update(request.headers)
        return AWSResponse(request.url, 200, {"ETag": '"e"'}, _Answered())

    client.meta.events.register("before-send.s3.*", answer)
    body = bytearray(b"image bytes")
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    call = dict(
        Bucket="b", Key="k", Body=body, **({"ContentMD5": md5} if content_md5 else {})
    )
    if operation == "upload_part":
        call.update(UploadId="u", PartNumber=1)
    getattr(client, operation)(**call)
    expected = hashlib.sha256(body).hexdigest() if signed else "UNSIGNED-PAYLOAD"
    assert sent["X-Amz-Content-SHA256"].decode() == expected


@pytest.mark.parametrize(
    ("host", "options", "content_md5"),
    [
        ("https://s3.example.com", {}, True),
        ("http://s3.example.com", {}, False),
        ("s3.example.com", {}, True),  # a bare host is https
        (
            "https://s3.example.com",
            {
                "s3_store_enable_data_integrity_protection": "true",
                "s3_store_request_checksum_calculation": "when_supported",
            },
            False,  # botocore's x-amz-checksum instead
        ),
    ],
)
def test_the_store_sends_content_md5_only_where_nothing_else_checks_the_body(
    tmp_path, host, options, content_md5
):
    conf = write_conf(
        tmp_path / "s3.conf",
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                "s3_store_host": host,
                "s3_store_access_key": "key",
                "s3_store_secret_key": "secret",
                "s3_store_bucket": "bucket",
                **options,
            }
        },
    )
    store = StoreRegistry(load_conf(conf)).get_store()
    assert isinstance(store, S3Store)
    body = bytearray(b"image bytes")
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert store._body_checksum(body) == ({"ContentMD5": md5} if content_md5 else {})


@pytest.mark.parametrize("size_known", [True, False], ids=["put", "multipart"])
def test_data_corrupted_in_transit_is_refused_by_the_engine(
    tmp_path, s3_engine, proxy, size_known
):
    # The engine itself refuses what differs from what was sent; nothing is
    # stored, no upload is left.
    if not s3_engine.refuses_damaged_bodies:
        pytest.skip(f"{s3_engine.name} checks no digest of a body")
    store = proxied_store(
        tmp_path, s3_engine, proxy, s3_store_large_object_chunk_size="5"
    )
    store.add("bucket-made", iter([b"x"]), 1)
    data = payload(7 * MiB, seed=28)
    proxy.arm("corrupt", after=MiB, direction="up")
    with pytest.raises(exceptions.BackendException, match="differs from what was sent"):
        store.add("img", iter([data]), len(data) if size_known else 0)
    assert proxy.faults == 1
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    assert [o["Key"] for o in listed.get("Contents", [])] == with_records("bucket-made")
    assert (
        store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        == []
    )


def test_content_md5_gives_way_to_botocore_checksums_when_asked(
    tmp_path, s3_engine, proxy
):
    sent: list[dict[str, str]] = []
    store = proxied_store(
        tmp_path,
        s3_engine,
        proxy,
        s3_store_enable_data_integrity_protection="true",
        s3_store_request_checksum_calculation="when_supported",
    )
    store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **kw: sent.append(dict(request.headers)),
    )
    result = store.add("img", iter([b"checked"]), 7)
    assert read_all(store, result.location) == b"checked"
    image = [h for h in sent if "x-amz-checksum-crc32" in {k.lower() for k in h}]
    assert image and not any("Content-MD5" in h for h in image)
