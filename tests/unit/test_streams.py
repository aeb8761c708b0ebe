"""The checked source every write path reads through (fsstore.streams)."""

from __future__ import annotations

import array
import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.streams import CheckedSource, byte_view, read_chunks
from fsstore.testing.streams import SHAPES, NoneRead, Recorder, TextRead, shaped


class _Trickle:
    """A stream that returns at most ``step`` bytes per read, as sockets do."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def read(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + min(n, self.step)]
        self.pos += len(chunk)
        return chunk


def test_read_whole_gathers_short_reads():
    assert CheckedSource(_Trickle(b"abcdefg", 3), "img", 7).read_whole() == b"abcdefg"
    assert CheckedSource(io.BytesIO(b"abc"), "img", 3).read_whole() == b"abc"


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (b"abcdefgh", 7, "larger than the declared size of 7 bytes"),
        (b"abcdef", 7, "data is 6 bytes, not the declared 7 bytes"),
    ],
)
def test_read_whole_checks_the_size(data, size, message):
    with pytest.raises(exceptions.Invalid, match=message):
        CheckedSource(_Trickle(data, 2), "img", size).read_whole()


def test_read_whole_refuses_text():
    with pytest.raises(exceptions.Invalid, match="data must be bytes, not str"):
        CheckedSource(io.StringIO("abc"), "img", 3).read_whole()


class _Scripted:
    """A file whose reads return what a script says, whatever size is asked
    (b"" once the script ends)."""

    def __init__(self, reads: list[object]) -> None:
        self.reads = list(reads)
        self.calls = 0

    def read(self, n: int) -> object:
        self.calls += 1
        return self.reads.pop(0) if self.reads else b""


def _general_path(reads: list[object], size: int) -> bytes | str:
    """What the per-chunk path makes of ``reads``: the bytes, or the error."""
    source = CheckedSource(_Scripted(reads), "img", size)
    try:
        whole = b"".join(source.chunks())
        source.finish()
    except exceptions.Invalid as exc:
        return str(exc)
    return whole


_READ = st.one_of(
    st.binary(max_size=6),
    st.binary(max_size=6).map(bytearray),
    st.binary(max_size=6).map(memoryview),
    # Items of four bytes: a length in items is no length in bytes.
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=2).map(
        lambda items: memoryview(array.array("i", items))
    ),
    st.just(None),
    st.just(""),
)


@settings(max_examples=300, deadline=None)
@given(reads=st.lists(_READ, max_size=4), size=st.integers(1, 8))
def test_read_whole_agrees_with_the_per_chunk_path(reads, size):
    # read_whole reads a whole file in two reads when it can: whatever the
    # reads give, it must answer exactly as the general path does.
    recorder = Recorder()
    source = CheckedSource(_Scripted(reads), "img", size, recorder)
    try:
        got: bytes | str = source.read_whole()
    except exceptions.Invalid as exc:
        got = str(exc)
    expected = _general_path(reads, size)
    assert got == expected and type(got) is type(expected)  # never the caller's
    if isinstance(got, bytes):
        assert recorder.md5() == hashlib.md5(got).hexdigest()
        assert source.finish() == size


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        ([b"abc"], b"abc"),  # the two reads of the usual file
        ([b"abc", b"d"], "larger than the declared size of 3 bytes"),
        ([b"abc", None], "read\\(\\) returned None"),
        ([b"abc", ""], "not str"),
        ([b"abc", bytearray()], b"abc"),  # an empty bytes-like is the end
        ([bytearray(b"abc")], b"abc"),
        ([b"ab", b"c"], b"abc"),
        ([b"abcd"], "larger than the declared size of 3 bytes"),
    ],
)
def test_read_whole_of_a_three_byte_image(reads, expected):
    source = _Scripted(reads)
    if isinstance(expected, bytes):
        assert CheckedSource(source, "img", 3).read_whole() == expected
        # Read to the first empty read, which is the end (an overrun would
        # show), and no further.
        ends = [i for i, r in enumerate(reads) if r is not None and not len(r)]
        assert source.calls == (ends[0] if ends else len(reads)) + 1
    else:
        with pytest.raises(exceptions.Invalid, match=expected):
            CheckedSource(source, "img", 3).read_whole()


def test_a_file_read_whole_at_once_takes_two_reads_and_one_verification():
    # The usual small add: the bytes read() gave, as they are, without
    # the per-chunk path's copies, and shown to the verifier once.
    first = bytes(range(7))
    source, recorder = _Scripted([first]), Recorder()
    checked = CheckedSource(source, "img", 7, recorder)
    assert checked.read_whole() is first
    assert source.calls == 2
    assert recorder.calls == 1 and recorder.md5() == hashlib.md5(first).hexdigest()
    assert checked.finish() == 7


def test_sizes_are_bytes_not_items():
    ints = array.array("i", range(1000))
    source = CheckedSource(iter([memoryview(ints)]), "img")
    assert b"".join(source.chunks()) == ints.tobytes()
    assert source.finish() == 4000
    assert byte_view(memoryview(ints), "img").nbytes == 4000


def test_a_declared_size_counts_bytes():
    ints = array.array("i", range(10))
    with pytest.raises(exceptions.Invalid, match="larger than the declared size"):
        list(read_chunks(iter([memoryview(ints)]), 10, "img", expected_size=10))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (NoneRead(b"abc"), "read\\(\\) returned None"),
        (TextRead("abc"), "not str"),
        (io.StringIO(""), "not str"),  # '' from a text file is no end of data
        (iter([b"ab", None]), "not NoneType"),
        (iter([b"ab", 3]), "not int"),
        (iter(["text"]), "not str"),
        (42, "not int"),
        (memoryview(bytes(16)).cast("B", (4, 4))[::2], "not contiguous"),
    ],
    ids=[
        "read-None",
        "read-str",
        "read-empty-str",
        "None",
        "int",
        "str",
        "int-data",
        "strided",
    ],
)
def test_refused_shapes(data, message):
    with pytest.raises(exceptions.Invalid, match=message):
        list(CheckedSource(data, "img").chunks())


def test_readinto_returning_none_is_refused():
    class NonBlocking(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            return None

    source = CheckedSource(NonBlocking(), "img")
    with pytest.raises(exceptions.Invalid, match="readinto\\(\\) returned None"):
        source.readinto(memoryview(bytearray(10)))


def test_a_reused_buffer_is_copied_when_kept():
    data = bytes(range(256)) * 1000
    kept = list(CheckedSource(shaped(data, "reused-view", 777), "img").chunks())
    assert b"".join(kept) == data


def test_views_continue_where_chunks_stopped():
    data = bytes(range(256)) * 100
    source = CheckedSource(io.BytesIO(data), "img", read_size=1000)
    chunks = source.chunks()
    head = [next(chunks) for _ in range(3)]
    rest = [bytes(v) for v in source.views()]
    assert b"".join(head + rest) == data
    assert source.finish() == len(data)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=5000),
    shape=st.sampled_from(SHAPES),
    step=st.integers(1, 600),
    declared=st.sampled_from(["unknown", "exact", "over", "under"]),
)
def test_any_shape_gives_the_callers_bytes(data, shape, step, declared):
    size = {"unknown": 0, "exact": len(data), "over": len(data) + 1}.get(
        declared,
        max(0, len(data) - 1),  # a declared size of 0 is "unknown"
    )
    recorder = Recorder()
    source = CheckedSource(shaped(data, shape, step), "img", size, recorder)
    if size and size != len(data):
        with pytest.raises(exceptions.Invalid, match="declared"):
            list(source.chunks())
            source.finish()
        return
    kept = list(source.chunks())
    assert b"".join(kept) == data
    assert source.finish() == len(data)
    assert recorder.md5() == hashlib.md5(data).hexdigest()
