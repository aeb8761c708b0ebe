"""The S3 store against real S3 endpoints over HTTP.

Every test that takes `s3_engine` runs on each engine --s3-engines names
(moto's server and Swift in `make test`, Ceph RGW in `make test-ceph`), with
the same assertions on each.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import re
import socket
import threading
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.backends.s3 import MiB, S3Store, key_problem
from fsstore.registry import StoreRegistry
from fsstore.testing import StoreConformanceTests
from fsstore.testing.suite import FailingStream, payload, read_all
from tests.engines import MOTO_ACCESS_KEY, MOTO_SECRET_KEY, S3Engine, with_records
from tests.functional.test_cli import fails, ok
from tests.helpers import load_conf, write_conf

ACCESS_KEY = MOTO_ACCESS_KEY
SECRET_KEY = MOTO_SECRET_KEY


def moto_like(endpoint: str) -> S3Engine:
    """An endpoint signed with moto's test credentials."""
    return S3Engine("moto", endpoint, ACCESS_KEY, SECRET_KEY, False, False)


def s3_options(endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    return moto_like(endpoint).options(bucket, **extra)


def make_store(tmp_path: Path, engine: S3Engine | str, **extra: str) -> S3Store:
    if isinstance(engine, str):
        engine = moto_like(engine)
    bucket = extra.pop("bucket", f"b-{uuid.uuid4().hex[:12]}")
    conf = write_conf(
        tmp_path / f"{bucket}.conf",
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                **engine.options(bucket, **extra),
            }
        },
    )
    store = StoreRegistry(load_conf(conf)).get_store("s3")
    assert isinstance(store, S3Store)
    return store


def uploads(store: S3Store) -> list[str]:
    listed = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


def objects(store: S3Store) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


class S3Conformance(StoreConformanceTests):
    extra: dict[str, str] = {}
    keeps_digests = True

    @pytest.fixture
    def store(self, tmp_path, s3_engine):
        self.engine = s3_engine
        store = make_store(tmp_path, s3_engine, **self.extra)
        store.add("bucket-made", iter([b"x"]), 1)  # create the bucket up front
        return store

    def leftovers(self, store: S3Store) -> Any:
        return objects(store), uploads(store)

    def one_winner_gap(self, store: S3Store) -> str | None:
        # As the README's table of engines says.
        if self.engine.atomic_conditional_put:
            return None
        return (
            f"{self.engine.name}: two concurrent conditional PUTs of one key can "
            "both succeed, so two adds of an id can both win (README)"
        )


class TestS3Conformance(S3Conformance):
    pass


class TestS3MultipartConformance(S3Conformance):
    """Every image of a known size past 1 MB, and every unknown size, in parts."""

    extra = {
        "s3_store_large_object_size": "1",
        "s3_store_large_object_chunk_size": "5",
        "s3_store_thread_pools": "3",
    }


# -- streaming, memory, parallelism ------------------------------------------------


def generated(total: int, piece: int = 256 * 1024):
    block = payload(piece, seed=42)
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        yield block[:n]
        sent += n


class HeldBytes:
    """The image bytes a store holds during an add: read from the caller's
    stream and not yet acknowledged by the engine (its answer to the
    UploadPart that carried them), at the most.

    Counted, not measured from the allocator: the peak is what the store
    chose to hold, the same on a loaded machine as on an idle one, and
    buffering the stream shows as it is, whatever the memory it costs.
    """

    def __init__(self, store: S3Store) -> None:
        self.lock = threading.Lock()
        self.read = self.acknowledged = self.peak = 0
        events = store.client.meta.events
        events.register("before-parameter-build.s3.UploadPart", self._sending)
        events.register("after-call.s3.UploadPart", self._answered)

    def stream(self, total: int):
        for piece in generated(total):
            with self.lock:
                self.read += len(piece)
                self.peak = max(self.peak, self.read - self.acknowledged)
            yield piece

    @staticmethod
    def _sending(params, context, **kwargs):
        context["fsstore-part-bytes"] = len(params["Body"])

    def _answered(self, http_response, context, **kwargs):
        if http_response.status_code == 200:
            with self.lock:
                self.acknowledged += context["fsstore-part-bytes"]


PIECE = 256 * 1024  # what generated() yields at a time


def five_mib_parts(tmp_path, s3_engine, threads: int) -> S3Store:
    """A store cutting images into the smallest parts, ``threads`` at once."""
    return make_store(
        tmp_path,
        s3_engine,
        s3_store_thread_pools=str(threads),
        s3_store_large_object_chunk_size="5",
    )


def bounded_store(tmp_path, s3_engine) -> S3Store:
    store = five_mib_parts(tmp_path, s3_engine, 2)
    store.add("warm-up", iter([b"x"]), 1)  # the bucket exists first
    return store


# The parts going up (thread_pools of them), the one being filled, and the
# rest of the caller's chunk being cut into it.
HELD_BOUND = (2 + 1) * 5 * MiB + PIECE


def test_memory_stays_bounded_for_a_large_unknown_size_stream(tmp_path, s3_engine):
    store = bounded_store(tmp_path, s3_engine)
    total = 200 * MiB
    expected = hashlib.md5()
    for piece in generated(total):
        expected.update(piece)
    held = HeldBytes(store)
    result = store.add("big", held.stream(total), 0)
    assert result.size == total
    assert result.checksum == expected.hexdigest()
    assert held.acknowledged == total
    assert held.peak <= HELD_BOUND, f"held {held.peak / MiB:.2f} MiB"
    assert store.get_size(result.location) == total
    assert uploads(store) == []


def test_held_bytes_catch_a_store_that_buffers_the_stream(
    tmp_path, s3_engine, monkeypatch
):
    # The measure above is sharp: a store that reads the whole stream
    # before its first part goes up (glance_store, for an unknown size)
    # holds all of it.
    from fsstore.backends.s3 import multipart as s3_multipart

    send = s3_multipart.MultipartUpload.send

    def buffering_send(self, chunks, part_size, before_part):
        return send(self, iter(list(chunks)), part_size, before_part)

    monkeypatch.setattr(s3_multipart.MultipartUpload, "send", buffering_send)
    store = bounded_store(tmp_path, s3_engine)
    total = 30 * MiB
    held = HeldBytes(store)
    store.add("buffered", held.stream(total), 0)
    assert held.peak == total > HELD_BOUND


def test_parts_upload_in_parallel_up_to_thread_pools(tmp_path, s3_engine):
    store = make_store(tmp_path, s3_engine, s3_store_thread_pools="3")
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def before(**kwargs):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)

    def after(**kwargs):
        nonlocal in_flight
        with lock:
            in_flight -= 1

    store.client.meta.events.register("before-call.s3.UploadPart", before)
    store.client.meta.events.register("after-call.s3.UploadPart", after)
    data = payload(60 * MiB + 3, seed=1)
    result = store.add("parallel", iter([data]), 0)
    assert 1 < most <= 3
    assert read_all(store, result.location) == data


def test_one_upload_thread_still_reads_the_next_part_while_one_goes_up(
    tmp_path, s3_engine
):
    # s3_store_thread_pools bounds the parts in flight, not the reader: the
    # first part's upload is held until the reader has begun the second,
    # which it can only do while that part is in flight.
    store = five_mib_parts(tmp_path, s3_engine, 1)
    second_begun = threading.Event()
    overlapped: list[bool] = []

    def hold_the_first(**kwargs):
        if not overlapped:
            overlapped.append(second_begun.wait(timeout=30))

    store.client.meta.events.register("before-call.s3.UploadPart", hold_the_first)
    data = payload(12 * MiB, seed=2)

    def chunks():
        for start in range(0, len(data), MiB):
            if start >= 5 * MiB:
                second_begun.set()
            yield data[start : start + MiB]

    result = store.add("overlap", chunks(), 0)
    assert overlapped == [True]
    assert read_all(store, result.location) == data


def test_an_add_holds_its_parts_and_a_short_digest_queue(
    tmp_path, s3_engine, monkeypatch
):
    # The S3 store's hasher lags by DIGEST_QUEUE. The last assertion guards
    # the constants: at the defaults the parts in flight, the one filled and
    # that lag stay within the documented (thread_pools + 2) x chunk size
    # (bench/engines.py measures the process's peak against it).
    from fsstore.backends.s3 import store as s3_store
    from fsstore.backends.s3.multipart import DIGEST_QUEUE
    from fsstore.hashing import HASH_BATCH, ImageHasher

    queues: list[int] = []

    class Recorded(ImageHasher):
        def __init__(self, *args, queue_bytes, **kwargs):
            queues.append(queue_bytes)
            super().__init__(*args, queue_bytes=queue_bytes, **kwargs)

    monkeypatch.setattr(s3_store, "ImageHasher", Recorded)
    store = make_store(tmp_path, s3_engine)
    data = payload(3 * MiB, seed=4)
    result = store.add("queued", iter([data]), 0)
    assert queues == [DIGEST_QUEUE]
    assert result.checksum == hashlib.md5(data).hexdigest()
    pools, part = store.thread_pools, store.part_size
    assert (pools, part) == (10, 10 * MiB)  # the defaults
    assert (pools + 1) * part + DIGEST_QUEUE + HASH_BATCH <= (pools + 2) * part


def _part_number(request) -> int:
    match = re.search(r"[?&]partNumber=(\d+)", request.url)
    assert match is not None, request.url
    return int(match.group(1))


def test_parts_fill_at_most_thread_pools_plus_one_buffers(tmp_path, s3_engine):
    # Every body is kept alive here, so a buffer allocated per part would
    # show as one object per part; refilled ones show as the same objects.
    store = five_mib_parts(tmp_path, s3_engine, 2)
    bodies: list[bytearray] = []
    sent: dict[int, bytes] = {}

    def sending(request, **kwargs):
        bodies.append(request.body)
        sent[_part_number(request)] = bytes(request.body)

    store.client.meta.events.register("before-send.s3.UploadPart", sending)
    data = payload(41 * MiB + 7, seed=3)
    result = store.add(
        "refilled", iter([data[i : i + MiB] for i in range(0, len(data), MiB)]), 0
    )
    assert sorted(sent) == list(range(1, 10))
    assert len({id(body) for body in bodies}) <= 2 + 1
    # What each part's request carried as it went is the image, in order.
    assert b"".join(sent[n] for n in sorted(sent)) == data
    assert read_all(store, result.location) == data


def test_a_refilled_buffer_still_viewed_is_copied_for_the_last_part(
    tmp_path, s3_engine
):
    # An SSL send that fails keeps a slice of the body in its error, and
    # a bytearray with a view on it cannot be cut short. Here a view of
    # part 1's buffer is held; with one thread, that buffer comes back
    # before the third, short, part is filled.
    store = five_mib_parts(tmp_path, s3_engine, 1)
    views: list[memoryview] = []

    def hold_a_view(request, **kwargs):
        if _part_number(request) == 1:
            views.append(memoryview(request.body))

    store.client.meta.events.register("before-send.s3.UploadPart", hold_a_view)
    data = payload(12 * MiB, seed=5)
    result = store.add("viewed", iter([data[: 6 * MiB], data[6 * MiB :]]), 0)
    assert len(views) == 1
    assert read_all(store, result.location) == data


def test_a_failed_add_error_does_not_hold_the_sent_parts(tmp_path, s3_engine):
    # Whoever keeps the error keeps its traceback, and the frames in it:
    # the part being filled and the chunks they name (a MiB or two), but
    # not the buffers of the parts sent (5 MiB each).
    store = bounded_store(tmp_path, s3_engine)

    def breaks_in_the_fourth_part():
        for _ in range(16):
            yield bytes(MiB)
        raise OSError("the source broke")

    # Once before measuring: what the client keeps of its first multipart
    # upload and abort is not the add's.
    with pytest.raises(OSError, match="the source broke"):
        store.add("broken-before", breaks_in_the_fourth_part(), 0)
    tracemalloc.start()
    try:
        with pytest.raises(OSError, match="the source broke") as caught:
            store.add("broken", breaks_in_the_fourth_part(), 0)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.__traceback__ is not None  # held, frames and all
    assert held <= 5 * MiB + 2 * MiB, f"{held / MiB:.1f} MiB held"
    assert uploads(store) == []


def test_known_size_past_the_threshold_goes_multipart(tmp_path, s3_engine):
    store = make_store(
        tmp_path,
        s3_engine,
        s3_store_large_object_size="6",
        s3_store_large_object_chunk_size="5",
    )
    calls = []
    store.client.meta.events.register(
        "before-call.s3.*", lambda event_name, **kw: calls.append(event_name)
    )
    small = payload(5 * MiB)
    store.add("small", iter([small]), len(small))
    assert "before-call.s3.PutObject" in calls
    assert "before-call.s3.UploadPart" not in calls
    calls.clear()
    large = payload(6 * MiB)
    result = store.add("large", iter([large]), len(large))
    assert calls.count("before-call.s3.UploadPart") == 2
    assert read_all(store, result.location) == large


# -- nothing orphaned ---------------------------------------------------------------


def big_store(tmp_path, endpoint) -> S3Store:
    store = make_store(
        tmp_path,
        endpoint,
        s3_store_large_object_chunk_size="5",
        s3_store_thread_pools="2",
    )
    store.add("bucket-made", iter([b"x"]), 1)
    return store


def test_part_error_aborts_the_upload(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine)

    from botocore.exceptions import ConnectionClosedError

    def fail_third(params, **kwargs):
        if params["PartNumber"] == 3:
            raise ConnectionClosedError(endpoint_url=s3_engine.endpoint)

    store.client.meta.events.register(
        "before-parameter-build.s3.UploadPart", fail_third
    )
    with pytest.raises(exceptions.BackendException, match="part 3"):
        store.add("img", generated(40 * MiB), 0)
    assert uploads(store) == []
    assert objects(store) == with_records("bucket-made")


def test_stream_exception_aborts_the_upload(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine)
    with pytest.raises(FailingStream.Boom):
        store.add("img", FailingStream(payload(30 * MiB), 12 * MiB), 0)
    assert uploads(store) == []
    assert objects(store) == with_records("bucket-made")


def test_size_mismatch_aborts_the_upload(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine)
    with pytest.raises(exceptions.Invalid, match="declared"):
        store.add("img", generated(12 * MiB), 200 * MiB)
    assert uploads(store) == []
    assert objects(store) == with_records("bucket-made")


def test_conditional_put_refuses_an_image_that_appeared(tmp_path, s3_engine):
    # An image written behind the claims' back (another program on the
    # bucket) after this add's checks: its conditional PUT (If-None-Match:
    # *) is what refuses it. Forced from inside the add's own stream.
    store = big_store(tmp_path, s3_engine)
    loser = payload(5 * MiB, seed=1)
    other = payload(6 * MiB, seed=2)

    def loser_data():
        yield loser[: 4 * MiB]
        store.client.put_object(Bucket=store.bucket, Key="contested", Body=other)
        yield loser[4 * MiB :]

    with pytest.raises(exceptions.Duplicate, match="contested"):
        store.add("contested", loser_data(), len(loser))
    assert read_all(store, f"s3://{store.host}/{store.bucket}/contested") == other
    # The loser's digest record is gone with it: only the other program's
    # object is there, and it has none.
    assert objects(store) == sorted([*with_records("bucket-made"), "contested"])


@pytest.mark.parametrize("size_known", [True, False], ids=["put", "multipart"])
def test_add_under_way_holds_its_id(tmp_path, s3_engine, size_known):
    # The first writer holds the id's claim from before its first byte: any
    # add of the id while it writes is Duplicate, on either path, whatever
    # the engine does with If-None-Match on CompleteMultipartUpload.
    store = big_store(tmp_path, s3_engine)
    first = payload(7 * MiB, seed=1)
    refused = []

    def first_data():
        yield first[: 6 * MiB]
        for size in (6 * MiB, 0):  # single PUT and multipart alike
            with pytest.raises(exceptions.Duplicate, match="contested") as caught:
                store.add("contested", iter([payload(6 * MiB)]), size)
            refused.append(str(caught.value))
        yield first[6 * MiB :]

    result = store.add("contested", first_data(), len(first) if size_known else 0)
    assert len(refused) == 2
    assert read_all(store, result.location) == first
    assert uploads(store) == []
    assert objects(store) == with_records("bucket-made", "contested")


def test_claim_taken_after_the_image_appeared_is_duplicate(tmp_path, s3_engine):
    # Race: another writer completes and releases its claim between this
    # add's existence check and its claim. Forced by adding the image from
    # the claim's own PUT hook.
    store = big_store(tmp_path, s3_engine)
    other = payload(6 * MiB, seed=3)
    done = []

    def other_writer_finishes(params, **kwargs):
        if params["Key"].startswith(".fsstore-claims/") and not done:
            done.append(True)
            store.client.put_object(Bucket=store.bucket, Key="contested", Body=other)

    store.client.meta.events.register(
        "before-parameter-build.s3.PutObject", other_writer_finishes
    )
    with pytest.raises(exceptions.Duplicate, match="already exists"):
        store.add("contested", iter([payload(7 * MiB)]), 0)
    assert read_all(store, f"s3://{store.host}/{store.bucket}/contested") == other
    assert uploads(store) == []
    assert objects(store) == sorted([*with_records("bucket-made"), "contested"])


# -- buckets, addressing, locations ----------------------------------------------------


def test_missing_bucket_is_a_configuration_error(tmp_path, s3_engine):
    store = make_store(tmp_path, s3_engine, s3_store_create_bucket_on_put="false")
    with pytest.raises(exceptions.BadStoreConfiguration, match="does not exist"):
        store.add("img", iter([b"x"]), 1)


def test_bucket_created_on_put(tmp_path, s3_engine):
    from botocore.exceptions import ClientError

    store = make_store(tmp_path, s3_engine)
    with pytest.raises(ClientError):
        store.client.head_bucket(Bucket=store.bucket)
    store.add("img", iter([b"x"]), 1)
    store.client.head_bucket(Bucket=store.bucket)
    assert objects(store) == with_records("img")


def test_virtual_host_addressing(tmp_path, s3_engine, monkeypatch):
    # Virtual-host addressing puts the bucket in the host name. Resolve
    # *.localhost to the loopback address, as DNS would for a real endpoint.
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    endpoint = s3_engine.endpoint.replace("127.0.0.1", "localhost")
    local = dataclasses.replace(s3_engine, endpoint=endpoint)
    store = make_store(tmp_path, local, s3_store_bucket_url_format="virtual")
    urls = []
    store.client.meta.events.register(
        "before-send.s3", lambda request, **kw: urls.append(request.url)
    )
    result = store.add("img", iter([b"virtual"]), 7)
    assert all(url.startswith(f"http://{store.bucket}.localhost:") for url in urls), (
        urls
    )
    assert read_all(store, result.location) == b"virtual"


def test_locations(tmp_path, s3_engine):
    store = make_store(tmp_path, s3_engine)
    result = store.add("img", iter([b"data"]), 4)
    host = s3_engine.host
    # glance_store's form for an http endpoint.
    assert result.location == f"s3://{host}/{store.bucket}/img"
    # glance_store wrote credentials into locations: accepted, never kept;
    # locations fsstore wrote before as s3+http:// are read too.
    legacy = (
        f"s3://{s3_engine.access_key}:{s3_engine.secret_key}@{host}/{store.bucket}/img"
    )
    assert store.get_size(legacy) == 4
    assert store.get_size(f"s3+http://{host}/{store.bucket}/img") == 4
    # The host is not checked, as in glance_store: the configured endpoint
    # serves it, so re-spelling s3_store_host orphans nothing.
    assert store.get_size(f"s3://localhost-alias:9000/{store.bucket}/img") == 4
    for uri in [
        f"s3://{host}/other-bucket/img",
        "s3://elsewhere:9000/other-bucket/img",
        f"s3://{host}/{store.bucket}/a%2Fb",
    ]:
        with pytest.raises(exceptions.Forbidden):
            store.get(uri)
        with pytest.raises(exceptions.Forbidden):
            store.delete(uri)
    for uri in [f"s3+http://{host}/{store.bucket}", "s3+http:///b/k", "s3+ftp://h/b/k"]:
        with pytest.raises(exceptions.BadStoreUri):
            store.get(uri)


@pytest.mark.parametrize(
    ("missing", "option"),
    [
        ("s3_store_host", "s3_store_host"),
        ("s3_store_bucket", "s3_store_bucket"),
        ("s3_store_access_key", "s3_store_access_key"),
        ("s3_store_secret_key", "s3_store_secret_key"),
    ],
)
def test_required_options(tmp_path, missing, option):
    options = s3_options("http://127.0.0.1:1", "b")
    del options[missing]
    conf = write_conf(
        tmp_path / "c.conf",
        {"glance_store": {"stores": "s3", "default_store": "s3", **options}},
    )
    with pytest.raises(exceptions.BadStoreConfiguration, match=option):
        StoreRegistry(load_conf(conf))


def test_bad_url_format_and_chunk_size(tmp_path):
    for extra, option in [
        ({"s3_store_bucket_url_format": "sideways"}, "url_format"),
        ({"s3_store_large_object_chunk_size": "4"}, "chunk_size"),
        ({"s3_store_host": "ftp://h"}, "s3_store_host"),
    ]:
        conf = write_conf(
            tmp_path / "c.conf",
            {
                "glance_store": {
                    "stores": "s3",
                    "default_store": "s3",
                    **s3_options("http://127.0.0.1:1", "b"),
                    **extra,
                }
            },
        )
        with pytest.raises(exceptions.BadStoreConfiguration, match=option):
            StoreRegistry(load_conf(conf))


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    store = make_store(tmp_path, f"http://127.0.0.1:{port}")
    with pytest.raises(exceptions.BackendException, match="bucket") as caught:
        store.add("img", iter([b"x"]), 1)
    assert SECRET_KEY not in str(caught.value)


def test_credentials_never_shown(tmp_path, s3_engine, caplog):
    caplog.set_level(logging.DEBUG, logger="fsstore")
    access, secret = s3_engine.access_key, s3_engine.secret_key
    store = make_store(tmp_path, s3_engine)
    messages = []
    result = store.add("img", iter([b"data"]), 4)
    messages.append(result.location)
    host = s3_engine.host
    for call in [
        lambda: store.add("img", iter([b"data"]), 4),
        lambda: store.get(f"s3+http://{access}:{secret}@{host}/other/img"),
        lambda: store.get(f"s3+http://{access}:{secret}@{host}/"),
        lambda: store.get(f"s3+http://{access}:{secret}@{host}/{store.bucket}/nope"),
        lambda: store.add("big", FailingStream(payload(8 * MiB), 6 * MiB), 0),
    ]:
        with pytest.raises(Exception) as caught:
            call()
        messages.append(str(caught.value))
    messages.append(json.dumps(store.describe()))
    text = "\n".join(messages) + caplog.text
    assert secret not in text
    assert access not in text


# -- the command, single- and multi-store ----------------------------------------------


def test_cli_single_store(tmp_path, s3_engine):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                **s3_engine.options(f"cli-{uuid.uuid4().hex[:8]}"),
            }
        },
    )
    args = ["--config-file", str(conf)]
    src = tmp_path / "image.raw"
    data = payload(3 * MiB + 5, seed=8)
    src.write_bytes(data)
    record = json.loads(
        ok(*args, "--format", "json", "add", "--id", "img", str(src)).stdout
    )
    assert record["checksum"] == hashlib.md5(data).hexdigest()
    location = record["location"]
    assert ok(*args, "get", location).stdout == data
    assert (
        ok(*args, "get", location, "--offset", "5", "--length", "10").stdout
        == data[5:15]
    )
    assert ok(*args, "size", location).stdout == f"{len(data)}\n".encode()
    stores = ok(*args, "stores").stdout.decode()
    assert "s3 (default): driver s3" in stores
    assert s3_engine.secret_key not in stores
    ok(*args, "delete", location)
    fails(1, *args, "size", location, match="not found")


def test_cli_multi_store_file_and_s3(tmp_path, s3_engine):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "local:file, cloud:s3"},
            "glance_store": {"default_backend": "local"},
            "local": {"filesystem_store_datadir": str(tmp_path / "images")},
            "cloud": s3_engine.options(f"multi-{uuid.uuid4().hex[:8]}"),
        },
    )
    args = ["--config-file", str(conf)]
    src = tmp_path / "image.raw"
    src.write_bytes(b"side by side")
    local = json.loads(
        ok(*args, "--format", "json", "add", "--id", "a", str(src)).stdout
    )
    cloud = json.loads(
        ok(
            *args,
            "--format",
            "json",
            "add",
            "--id",
            "a",
            "--backend",
            "cloud",
            str(src),
        ).stdout
    )
    assert local["location"].startswith("file://")
    assert cloud["location"].startswith("s3://")
    assert cloud["metadata"] == {"store": "cloud"}
    for location in (local["location"], cloud["location"]):
        assert ok(*args, "get", location).stdout == b"side by side"
        assert ok(*args, "size", location).stdout == b"12\n"
        ok(*args, "delete", location)


# -- every accepted id round-trips --------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    image_id=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
    )
)
def test_every_accepted_id_round_trips(tmp_path, s3_engine, image_id):
    store = _id_store(tmp_path, s3_engine)
    try:
        result = store.add(image_id, iter([b"payload"]), 7)
    except exceptions.Invalid:
        assert key_problem(image_id) is not None
        return
    except exceptions.Duplicate:
        return  # hypothesis tried this id already
    assert store.get_size(result.location) == 7
    assert read_all(store, result.location) == b"payload"
    store.delete(result.location)
    with pytest.raises(exceptions.NotFound):
        store.get_size(result.location)


_ID_STORES: dict[str, S3Store] = {}


def _id_store(tmp_path: Path, engine: S3Engine) -> S3Store:
    if engine.endpoint not in _ID_STORES:
        _ID_STORES[engine.endpoint] = make_store(tmp_path, engine)
    return _ID_STORES[engine.endpoint]
