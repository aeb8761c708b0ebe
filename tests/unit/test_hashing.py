"""Expected digests and the one comparison (fsstore.hashing): what a cache
entry, a verified read and a scrub are all judged by, and the one rule for
a hashing algorithm."""

from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsstore import exceptions, hashing
from fsstore.hashing import (
    Expected,
    InvalidExpected,
    KeptDigests,
    differs,
    hashing_algo_problem,
    mismatch,
    new_multihash,
)


def digests_of(data: bytes, algo: str = "sha512") -> KeptDigests:
    multihash = hashlib.new(algo, data).hexdigest()
    return KeptDigests(hashlib.md5(data).hexdigest(), multihash, algo, len(data))


@pytest.mark.parametrize(
    ("algo", "accepted"),
    [
        ("sha512", True),  # Glance's os_hash_algo default
        ("sha256", True),
        ("sha3_256", True),
        ("blake2b", True),
        ("shake_128", False),  # no fixed length: its hex digest needs one
        ("shake_256", False),
        ("SHA512", True),  # hashlib's other spelling, as glance_store takes it
        ("crc99", False),
        ("", False),
    ],
)
def test_one_rule_for_a_hashing_algorithm(algo, accepted):
    assert (hashing_algo_problem(algo) is None) is accepted
    if accepted:
        assert new_multihash(algo).digest_size > 0
        assert Expected(multihash=hashlib.new(algo).hexdigest(), hashing_algo=algo)
        return
    with pytest.raises(exceptions.UnknownHashingAlgo):
        new_multihash(algo)
    with pytest.raises(exceptions.Invalid, match="expected digests"):
        Expected(hashing_algo=algo)


def test_a_name_that_is_no_string_is_refused_in_words():
    assert "not the name of a hashing algorithm" in str(hashing_algo_problem(5))


def test_expected_keeps_lower_case_and_an_empty_digest_is_none():
    md5 = "AB" * 16
    assert Expected(md5).checksum == md5.lower()
    assert Expected("", "").digests is False
    assert Expected(None, None) == Expected()


@pytest.mark.parametrize(
    "fields",
    [
        {"checksum": "a" * 31},
        {"checksum": "z" * 32},
        {"checksum": 12345},
        {"multihash": "a" * 64},  # sha256's length, sha512 expected
        {"size": -1},
        {"size": True},
    ],
)
def test_what_could_never_match_is_invalid_in_one_line(fields):
    with pytest.raises(exceptions.Invalid) as caught:
        Expected(**fields)
    assert "\n" not in str(caught.value)
    # The error names the field that failed, for callers naming their own.
    assert isinstance(caught.value, InvalidExpected)
    [caught.value.field] = fields
    assert caught.value.problem in str(caught.value)


def test_an_unknown_algorithm_is_named_as_the_failed_field():
    with pytest.raises(InvalidExpected) as caught:
        Expected("a" * 31, hashing_algo="crc99")
    assert caught.value.field == "hashing_algo"
    assert "crc99" in caught.value.problem


def test_allow_unverified_is_asked_for_by_name_only():
    with pytest.raises(TypeError):
        Expected(None, None, "sha512", None, True)
    assert Expected(allow_unverified=True).allow_unverified


def test_differs_keeps_its_words():
    kept = digests_of(b"abc")
    assert differs(kept, kept) is None
    assert differs(kept, digests_of(b"ab")) == "2 of 3 bytes"
    assert differs(kept, digests_of(b"abcd")) == "4 bytes, 3 were kept"
    other = digests_of(b"abd")
    assert differs(kept, other) == f"md5 {other.checksum}, {kept.checksum} was kept"
    same_md5 = kept._replace(multihash="0" * 128)
    assert differs(same_md5, kept) == f"sha512 {kept.multihash}, {'0' * 128} was kept"


@given(
    data=st.binary(max_size=64),
    other=st.binary(max_size=64),
    given_fields=st.sets(st.sampled_from(["checksum", "multihash", "size"])),
    algo=st.sampled_from(["sha512", "sha256", "md5"]),
)
def test_bytes_match_exactly_when_every_digest_given_matches(
    data, other, given_fields, algo
):
    """The one comparison: bytes whose digests are ``read`` match what was
    expected of ``data`` exactly when each field given agrees."""
    wanted_of = digests_of(data, algo)
    read = digests_of(other, algo)
    wanted = Expected(
        **{name: getattr(wanted_of, name) for name in given_fields},
        hashing_algo=algo,
    )
    agree = all(getattr(read, name) == getattr(wanted, name) for name in given_fields)
    words = mismatch(wanted, read)
    assert (words is None) is agree
    if words is not None:
        assert "\n" not in words and words.endswith(("expected", "bytes"))


class _Gated:
    """A digest whose update waits for ``gate``: what a slow hash looks like
    to the thread feeding it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.hashed = 0

    def update(self, chunk: bytes) -> None:
        self.gate.wait()
        self.hashed += len(chunk)


@pytest.mark.parametrize("queue_bytes", [None, 4 << 20])
def test_a_digest_thread_is_fed_at_most_queue_bytes_ahead(
    queue_bytes: int | None,
) -> None:
    digest = _Gated()
    if queue_bytes is None:
        thread = hashing._DigestThread(digest)
        queue_bytes = hashing.QUEUE_BYTES
    else:
        thread = hashing._DigestThread(digest, queue_bytes)
    size = 1 << 20
    batch = [bytes(size)]
    for _ in range(queue_bytes // size):  # exactly the room: never waits
        thread.put(batch, size)
    one_more = threading.Thread(target=thread.put, args=(batch, size))
    one_more.start()
    one_more.join(0.5)
    assert one_more.is_alive()  # waiting for room: nothing hashed yet
    digest.gate.set()
    one_more.join(30)
    assert not one_more.is_alive()
    thread.join()
    assert digest.hashed == queue_bytes + size


def test_a_batch_larger_than_queue_bytes_still_goes_alone() -> None:
    digest = _Gated()
    digest.gate.set()
    thread = hashing._DigestThread(digest)
    big = hashing.QUEUE_BYTES + 1
    thread.put([bytes(big)], big)  # on an empty queue: never waits
    thread.put([b"x"], 1)
    thread.join()
    assert digest.hashed == big + 1


@given(
    data=st.binary(max_size=3000),
    algo=st.sampled_from(["sha256", "sha512", "SHA384", "md5"]),
)
def test_digests_of_one_piece_are_those_of_a_stream(data, algo):
    hasher = hashing.ImageHasher(algo)
    hasher.update(data)
    assert hashing.hexdigests_of(data, algo) == hasher.hexdigests()
    assert hashing.hexdigests_of(data, algo)[0] == hashlib.md5(data).hexdigest()


def test_an_image_hasher_bounds_each_digest_thread_by_its_queue_bytes() -> None:
    hasher = hashing.ImageHasher("sha256", queue_bytes=3 << 20)
    chunk = bytes(64 * 1024)
    for _ in range(hashing.THREADED_THRESHOLD // len(chunk) + 1):
        hasher.update(chunk)
    threads = list(hasher._threads)
    assert len(threads) == 2
    assert all(thread._queue_bytes == 3 << 20 for thread in threads)
    hasher.close()
