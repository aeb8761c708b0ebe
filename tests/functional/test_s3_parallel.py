"""Reads in parts (fsstore/backends/s3/parallel.py) on real engines: bytes in
order at every part boundary, at most ``s3_store_thread_pools`` parts of at
most a part size in flight, a fault in one part resumed or failed in one
line, a replaced object detected, a reader closed early leaving nothing
running."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.backends.s3 import MiB, S3Store
from fsstore.testing.suite import read_all
from fsstore.tracing import hooked
from tests.engines import S3Engine
from tests.functional.test_s3 import five_mib_parts, make_store
from tests.functional.test_s3_faults import count_calls, proxied_store
from tests.loopback import FaultProxy

PART = 5 * MiB  # the smallest s3_store_large_object_chunk_size
THREADS = 3
IN_PARTS = {
    "s3_store_large_object_chunk_size": "5",
    "s3_store_thread_pools": str(THREADS),
}


def random_bytes(size: int, seed: int) -> bytes:
    """Bytes with no period, so a part misplaced by any offset shows."""
    return random.Random(seed).randbytes(size)


def requested(gets: list[dict[str, object]]) -> list[tuple[int, int]]:
    """(first, last) of each ranged GetObject."""
    ranges = []
    for get in gets:
        first, last = str(get["Range"]).removeprefix("bytes=").split("-")
        ranges.append((int(first), int(last)))
    return ranges


@pytest.fixture
def proxy(s3_engine: S3Engine) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_engine.endpoint)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, s3_engine: S3Engine):
    """A store reading in parts, and one object of 3 parts and 7 bytes,
    written as a multipart upload (unknown size) and as one PUT."""
    tmp = tmp_path_factory.mktemp("parallel")
    store = make_store(tmp, s3_engine, s3_store_large_object_size="100", **IN_PARTS)
    data = random_bytes(3 * PART + 7, seed=1)
    locations = {
        "multipart": store.add("multipart", iter([data]), 0).location,
        "single": store.add("single", iter([data]), len(data)).location,
    }
    return store, data, locations


@pytest.mark.parametrize("shape", ["multipart", "single"])
@pytest.mark.parametrize(
    "size", [PART - 1, PART, PART + 1, 2 * PART - 1, 2 * PART + 1, 4 * PART + 3]
)
def test_every_byte_in_order_at_the_part_boundaries(tmp_path, s3_engine, shape, size):
    store = make_store(
        tmp_path, s3_engine, s3_store_large_object_size="100", **IN_PARTS
    )
    data = random_bytes(size, seed=size)
    location = store.add("img", iter([data]), 0 if shape == "multipart" else size)
    gets = count_calls(store, "GetObject")
    chunks, length = store.get(location.location)
    assert length == size
    assert b"".join(chunks) == data
    # The first request asks for a whole part, whatever the size; the
    # others for exactly the parts after it, none longer than a part.
    parts = -(-size // PART)
    expected = [(0, PART - 1)]
    expected += [(k * PART, min((k + 1) * PART, size) - 1) for k in range(1, parts)]
    assert sorted(requested(gets)) == expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    shape=st.sampled_from(["multipart", "single"]),
    offset=st.one_of(
        st.integers(0, 3 * PART + 6),
        st.sampled_from([PART - 1, PART, PART + 1, 2 * PART, 3 * PART]),
    ),
    limit=st.one_of(
        st.none(),
        st.integers(1, 4 * PART),
        st.sampled_from([1, PART - 1, PART, PART + 1, 2 * PART, 2 * PART + 1]),
    ),
)
def test_any_range_reads_exactly_its_bytes(stored, shape, offset, limit):
    store, data, locations = stored
    chunks, length = store.get(locations[shape], offset=offset, chunk_size=limit)
    expected = data[offset:] if limit is None else data[offset : offset + limit]
    assert length == len(expected)
    assert b"".join(chunks) == expected


def count_in_flight(threads: int) -> tuple[list[int], Callable[[str], None]]:
    """A trace hook counting parts started and not yet taken by the caller,
    and the list of every count it saw. The first ``threads`` parts wait for
    each other, so the bound is reached, not just respected, whatever the
    order the threads run in."""
    lock = threading.Lock()
    seen = [0]
    together = threading.Barrier(threads, timeout=60)

    def hook(name: str) -> None:
        with lock:
            seen.append(seen[-1] + (1 if name == "s3.read.part" else -1))
            first = name == "s3.read.part" and len(seen) <= threads + 1
        if first:
            together.wait()

    return seen, hook


@pytest.mark.parametrize("threads", [1, 2, THREADS])
def test_parts_in_flight_never_exceed_the_thread_pools(tmp_path, s3_engine, threads):
    store = make_store(
        tmp_path,
        s3_engine,
        s3_store_large_object_chunk_size="5",
        s3_store_thread_pools=str(threads),
    )
    data = random_bytes(6 * PART + 1, seed=2)
    location = store.add("img", iter([data]), 0).location
    seen, hook = count_in_flight(threads)
    with hooked(hook, {"s3.read.part", "s3.read.release"}):
        assert read_all(store, location) == data
    if threads == 1:
        assert seen == [0]  # one stream, no parts
    else:
        assert max(seen) == threads and min(seen) == 0
        assert seen[-1] == 0  # every part given back
        assert len(seen) == 1 + 2 * 7  # seven parts, each started and given back


def add_directly(
    tmp_path: Path, engine: S3Engine, proxied: S3Store, data: bytes
) -> str:
    """Add ``data`` as a multipart object to the bucket of ``proxied`` by a
    store not behind the proxy: only the read under test goes through it
    (a location's host is not checked, its bucket is)."""
    direct = make_store(tmp_path, engine, bucket=proxied.bucket, **IN_PARTS)
    return direct.add("img", iter([data]), 0).location


def test_a_fault_in_one_part_resumes_within_that_part(tmp_path, s3_engine, proxy):
    store = proxied_store(tmp_path, s3_engine, proxy, **IN_PARTS)
    data = random_bytes(4 * PART + 3, seed=3)
    location = add_directly(tmp_path, s3_engine, store, data)
    gets = count_calls(store, "GetObject")
    proxy.arm("reset", after=PART // 2, times=2)
    assert read_all(store, location) == data
    assert proxy.faults == 2
    parts = {(f, last) for f, last in requested(gets) if f % PART == 0}
    resumed = [g for g in gets if int(requested([g])[0][0]) % PART]
    assert len(parts) == 5 and len(resumed) == 2
    # Each resume asks for the rest of its own part, of the same object.
    for get in resumed:
        first, last = requested([get])[0]
        assert last == min((first // PART + 1) * PART, len(data)) - 1
        assert get["IfMatch"]


def test_faults_past_the_retry_count_fail_in_one_line(tmp_path, s3_engine, proxy):
    store = proxied_store(
        tmp_path, s3_engine, proxy, s3_store_retry_get_count="1", **IN_PARTS
    )
    data = random_bytes(4 * PART, seed=4)
    location = add_directly(tmp_path, s3_engine, store, data)
    proxy.arm("reset", after=MiB, times=6)
    with pytest.raises(exceptions.BackendException) as caught:
        read_all(store, location)
    assert "reading the body failed" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert proxy.faults >= 2
    assert not read_threads()


def test_an_object_replaced_mid_read_is_never_spliced(tmp_path, s3_engine):
    store = make_store(tmp_path, s3_engine, **IN_PARTS)
    data = random_bytes(3 * PART + 1, seed=5)
    location = store.add("img", iter([data]), 0).location
    lock, replaced = threading.Lock(), []

    def replace(name: str) -> None:
        # Every part's request waits here until the object was replaced.
        with lock:
            if not replaced:
                store.client.put_object(
                    Bucket=store.bucket, Key="img", Body=random_bytes(len(data), 6)
                )
                replaced.append(True)

    got = bytearray()
    with (
        hooked(replace, {"s3.read.part"}),
        pytest.raises(exceptions.BackendException, match="replaced while"),
    ):
        chunks, _ = store.get(location)
        for chunk in chunks:
            got += chunk
    assert replaced and data.startswith(got)
    assert not read_threads()


def read_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fsstore-s3-read")]


def connections_to(engine: S3Engine) -> int:
    port = int(engine.endpoint.rsplit(":", 1)[1].split("/")[0])
    return sum(
        1
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_a_reader_closed_early_stops_every_part(tmp_path: Path, s3_engine: S3Engine):
    before = connections_to(s3_engine)
    store = make_store(tmp_path, s3_engine, **IN_PARTS)
    data = random_bytes(8 * PART, seed=7)
    location = store.add("img", iter([data]), 0).location
    gets = count_calls(store, "GetObject")
    for _ in range(5):
        chunks, _ = store.get(location)
        assert data.startswith(next(iter(chunks)))
        chunks.close()
        assert not read_threads()
        with pytest.raises(StopIteration):
            next(iter(chunks))
    # No part past the first few was asked for, and no connection was left
    # behind: a body closed half-read closes its connection, and the client
    # keeps at most its pool.
    assert len(gets) <= 5 * THREADS
    assert connections_to(s3_engine) <= before + THREADS + 2
    assert read_all(store, location) == data


def test_one_thread_reads_one_stream(tmp_path, s3_engine):
    store = five_mib_parts(tmp_path, s3_engine, 1)
    data = random_bytes(2 * PART + 1, seed=8)
    location = store.add("img", iter([data]), 0).location
    gets = count_calls(store, "GetObject")
    assert read_all(store, location) == data
    assert len(gets) == 1 and "Range" not in gets[0]


def test_an_empty_object_read_whole_in_parts_brings_its_etag_and_metadata(
    tmp_path, s3_engine
):
    # The first part's range of an empty object is not satisfiable; a scrub
    # still needs the object's ETag and kept digests from the response.
    store = make_store(tmp_path, s3_engine, **IN_PARTS)
    added = store.add("empty", iter([b""]), 0)
    chunks, length, response = store._open_object(
        store.parse_location(added.location), 0, None
    )
    assert (b"".join(chunks), length) == (b"", 0)
    assert response.get("ETag")  # the object's: it pins a scrub's read
    kept = store.kept_digests(added.location)
    assert kept is not None and (kept.checksum, kept.size) == (added.checksum, 0)
