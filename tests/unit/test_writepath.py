"""The write path alone: the whole-buffer write, the pipeline (O_DIRECT
and its buffered fallback), the image hasher, the path chosen by size, and
the mapping of write errors."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.hashing import THREADED_THRESHOLD, ImageHasher
from fsstore.pipeline import ALIGN, BUFFER_SIZE, WritePipeline, enable_direct_io
from fsstore.streams import CheckedSource
from fsstore.writepath import (
    PIPELINE_THRESHOLD,
    ImageFileWriter,
    WriteFailed,
    one_read_limit,
    write_all,
    write_errors,
)

MiB = 1024 * 1024


def digests(data: bytes, algo: str = "sha512") -> tuple[str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.new(algo, data).hexdigest()


# -- write_all ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "kind"), [(None, bytes), (None, memoryview), (5, memoryview)]
)
def test_write_all_survives_short_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offset: int | None,
    kind: type[bytes] | type[memoryview],
) -> None:
    calls = []
    real_write, real_pwrite = os.write, os.pwrite

    def short_write(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data[:7])

    def short_pwrite(fd: int, data: memoryview, at: int) -> int:
        calls.append(len(data))
        return real_pwrite(fd, data[:7], at)

    monkeypatch.setattr(os, "write", short_write)
    monkeypatch.setattr(os, "pwrite", short_pwrite)
    data = bytes(range(256)) * 3
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        write_all(fd, kind(data), offset)
    finally:
        os.close(fd)
    monkeypatch.undo()
    assert path.read_bytes()[offset or 0 :] == data
    assert len(calls) == -(-len(data) // 7)


# -- the hasher -----------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sha512", "sha256", "sha3_256", "blake2b"])
@pytest.mark.parametrize("size", [0, 100, THREADED_THRESHOLD + 1, 3 * MiB + 17])
def test_hasher_inline_and_threaded_agree_with_hashlib(algo: str, size: int) -> None:
    data = os.urandom(size)
    hasher = ImageHasher(algo)
    for i in range(0, size, 64 * 1024):
        hasher.update(data[i : i + 64 * 1024])
    assert hasher.hexdigests() == digests(data, algo)


@pytest.mark.parametrize("algo", ["nope", "shake_128", "", 5])
def test_hasher_refuses_unknown_algorithms(algo: object) -> None:
    with pytest.raises(exceptions.UnknownHashingAlgo):
        ImageHasher(algo)  # type: ignore[arg-type]


def test_hasher_close_stops_its_threads() -> None:
    before = threading.active_count()
    hasher = ImageHasher()
    hasher.update(os.urandom(THREADED_THRESHOLD + 64 * 1024))
    assert threading.active_count() == before + 2
    hasher.close()
    assert threading.active_count() == before


# -- the pipeline -----------------------------------------------------------------


def run_pipeline(path: Path, data: bytes, direct: bool) -> tuple[WritePipeline, list]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        sums = [hashlib.md5(), hashlib.sha512()]
        pipeline = WritePipeline(fd, sums, direct)
        try:
            pipeline.drain(CheckedSource([data], "image"))
            pipeline.finish()
        finally:
            pipeline.close()
    finally:
        os.close(fd)
    return pipeline, sums


@pytest.mark.parametrize(
    "size", [1, ALIGN, BUFFER_SIZE, BUFFER_SIZE + ALIGN + 100, 3 * BUFFER_SIZE - 1]
)
def test_pipeline_on_a_disk_writes_direct_and_the_unaligned_tail_buffered(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path = tmp_path / "image"
    probe = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if not enable_direct_io(probe):
            pytest.skip("the test directory's file system refuses O_DIRECT")
    finally:
        os.close(probe)
    pipeline, sums = run_pipeline(path, data, direct=True)
    assert path.read_bytes() == data
    assert (sums[0].hexdigest(), sums[1].hexdigest()) == digests(data)
    # Direct from aligned buffers to the end only when the end is aligned.
    assert pipeline.direct == (size % ALIGN == 0)


def test_pipeline_falls_back_where_o_direct_is_refused(
    mount_tmpfs: Callable[[str, str], Path],
) -> None:
    disk = mount_tmpfs("tmpfs", "64m")  # tmpfs refuses O_DIRECT
    data = os.urandom(BUFFER_SIZE + 12345)
    pipeline, sums = run_pipeline(disk / "image", data, direct=True)
    assert not pipeline.direct
    assert (disk / "image").read_bytes() == data
    assert (sums[0].hexdigest(), sums[1].hexdigest()) == digests(data)


def test_pipeline_write_error_is_write_failed_and_maps_to_storage_full(
    mount_tmpfs: Callable[[str, str], Path],
) -> None:
    disk = mount_tmpfs("small", "6m")
    with (
        pytest.raises(exceptions.StorageFull, match="small has no room"),
        write_errors(str(disk), "image", stream_inside=True),
    ):
        try:
            run_pipeline(disk / "image", os.urandom(3 * BUFFER_SIZE), True)
        except WriteFailed as exc:
            assert exc.oserror.errno == errno.ENOSPC
            raise


def test_pipeline_passes_the_callers_stream_error_through(tmp_path: Path) -> None:
    def chunks():
        yield os.urandom(BUFFER_SIZE + 1)
        raise OSError(errno.EIO, "the caller's disk")

    fd = os.open(tmp_path / "image", os.O_WRONLY | os.O_CREAT, 0o600)
    pipeline = WritePipeline(fd, [hashlib.md5()], direct=False)
    try:
        with (
            pytest.raises(OSError, match="the caller's disk"),
            write_errors("there", "image", stream_inside=True),
        ):
            pipeline.drain(CheckedSource(chunks(), "image"))
    finally:
        pipeline.close()
        os.close(fd)


# -- write_errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.ENOSPC, exceptions.StorageFull),
        (errno.EDQUOT, exceptions.StorageFull),
        (errno.EFBIG, exceptions.StorageFull),
        (errno.EROFS, exceptions.StorageWriteDenied),
        (errno.EACCES, exceptions.StorageWriteDenied),
        (errno.EIO, exceptions.BackendException),
    ],
)
def test_write_errors_maps_each_errno(code: int, error: type) -> None:
    with pytest.raises(error, match="image x"), write_errors("data directory /d", "x"):
        raise OSError(code, os.strerror(code))
    with (
        pytest.raises(error),
        write_errors("data directory /d", "x", stream_inside=True),
    ):
        raise WriteFailed(OSError(code, os.strerror(code)))


# -- the path by size -------------------------------------------------------------


def test_one_read_limit_is_the_chunk_up_to_the_threaded_threshold() -> None:
    assert one_read_limit(4096) == 4096
    assert one_read_limit(64 * MiB) == THREADED_THRESHOLD


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 2 * MiB), min_size=1, max_size=6),
    inline=st.booleans(),
    as_view=st.booleans(),
)
def test_image_file_writer_writes_and_hashes_every_path(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    inline: bool,
    as_view: bool,
) -> None:
    path = tmp_path_factory.mktemp("w") / "image"
    pieces = [os.urandom(n) for n in sizes]
    data = b"".join(pieces)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    writer = ImageFileWriter(fd, ImageHasher(), inline=inline)
    try:
        buffer = bytearray(max(sizes))
        for piece in pieces:
            if as_view:
                # One buffer reused for every chunk: what is held back must
                # be a copy.
                buffer[: len(piece)] = piece
                writer.add(memoryview(buffer)[: len(piece)])
            else:
                writer.add(piece)
        writer.finish()
        assert writer.hasher.hexdigests() == digests(data)
        # Held back until past the threshold, then pipelined; inline never.
        assert (writer.pipeline is not None) == (
            not inline and len(data) > PIPELINE_THRESHOLD
        )
    finally:
        writer.close()
        os.close(fd)
    assert path.read_bytes() == data
