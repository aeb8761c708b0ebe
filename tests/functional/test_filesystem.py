"""Filesystem-store behaviour beyond the shared conformance suite."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsstore import exceptions, tracing
from fsstore.backends.filesystem import PUBLISH_LOCK, STAGING_DIR
from fsstore.testing.suite import FailingStream, payload, read_all
from tests import bad_configs
from tests.helpers import is_root, load_conf, tree

MiB = 1024 * 1024


def add(store: Any, image_id: str, data: bytes, size: int | None = None) -> Any:
    return store.add(image_id, iter([data]), len(data) if size is None else size)


# -- data directories, priorities, free space ----------------------------------


def test_highest_priority_with_room_then_most_free_space(mount_tmpfs, make_fs_store):
    small_high = mount_tmpfs("small_high", "4m")
    low_a = mount_tmpfs("low_a", "8m")
    low_b = mount_tmpfs("low_b", "16m")
    store = make_fs_store(
        filesystem_store_datadirs=[f"{small_high}:200", f"{low_a}:100", f"{low_b}:100"]
    )
    # Fits the highest priority: goes there, known size or not.
    assert add(store, "small", payload(MiB)).location == f"file://{small_high}/small"
    unknown = store.add("unknown", iter([b"x"]), 0)
    assert unknown.location == f"file://{small_high}/unknown"
    # Too big for the 4 MiB directory: the lower priority, most free space.
    big = add(store, "big", payload(6 * MiB))
    assert big.location == f"file://{low_b}/big"
    # Too big for anything: StorageFull before a byte is written.
    with pytest.raises(exceptions.StorageFull, match="no data directory"):
        store.add("huge", iter([b"x"]), 64 * MiB)
    assert "huge" not in os.listdir(small_high) + os.listdir(low_a) + os.listdir(low_b)


def test_duplicate_id_across_data_directories(make_fs_store, tmp_path):
    store = make_fs_store(
        filesystem_store_datadirs=[f"{tmp_path / 'a'}:1", f"{tmp_path / 'b'}:2"]
    )
    add(store, "img", b"one")
    # Move it to the other directory, as an operator rebalancing would.
    os.rename(tmp_path / "b" / "img", tmp_path / "a" / "img")
    with pytest.raises(exceptions.Duplicate):
        add(store, "img", b"two")
    assert (tmp_path / "a" / "img").read_bytes() == b"one"
    assert not (tmp_path / "b" / "img").exists()


def test_enospc_is_storage_full_and_leaves_nothing(mount_tmpfs, make_fs_store):
    small = mount_tmpfs("small", "2m")
    store = make_fs_store(filesystem_store_datadir=str(small))
    keep = add(store, "keep", payload(512 * 1024, seed=1))
    before = tree(small)
    free_before = os.statvfs(small).f_bfree
    with pytest.raises(exceptions.StorageFull, match=str(small)):
        store.add("too-big", iter([payload(3 * MiB)]), 0)  # size unknown
    assert tree(small) == before
    assert os.statvfs(small).f_bfree == free_before
    assert read_all(store, keep.location) == payload(512 * 1024, seed=1)


@pytest.mark.parametrize(
    ("code", "error", "words"),
    [
        (errno.ENOSPC, exceptions.StorageFull, "has no room for image img"),
        (errno.EDQUOT, exceptions.StorageFull, "has no room for image img"),
        (errno.EACCES, exceptions.StorageWriteDenied, "writing image img to"),
        (errno.EIO, exceptions.BackendException, "writing image img to .* failed"),
    ],
)
@pytest.mark.parametrize("shape", ["file read whole", "chunks"])
def test_a_failed_write_is_a_store_error_naming_the_directory(
    make_fs_store, tmp_path, monkeypatch, code, error, words, shape
):
    from fsstore.backends.filesystem import store as store_module

    def refused(fd, data, offset=None):
        raise OSError(code, os.strerror(code))

    store = make_fs_store()
    monkeypatch.setattr(store_module, "write_all", refused)
    data = b"x" * 10
    source = io.BytesIO(data) if shape == "file read whole" else iter([data])
    with pytest.raises(error, match=words) as refusal:
        store.add("img", source, len(data))
    assert str(tmp_path / "images") in str(refusal.value)
    assert tree(tmp_path / "images") == {}


def test_full_file_system_small_file_add_is_storage_full(mount_tmpfs, make_fs_store):
    small = mount_tmpfs("small", "1m")
    store = make_fs_store(filesystem_store_datadir=str(small))
    keep = store.add("keep", io.BytesIO(b"k" * 4096), 4096)
    with pytest.raises(OSError) as full, open(small / "ballast", "wb") as ballast:
        while True:  # fill what is left, outside the store
            ballast.write(b"b" * 65536)
            ballast.flush()
    assert full.value.errno == errno.ENOSPC
    before = tree(small)
    with pytest.raises(exceptions.StorageFull, match=str(small)):
        store.add("small", io.BytesIO(b"s" * 4096), 4096)
    assert tree(small) == before
    assert read_all(store, keep.location) == b"k" * 4096


@pytest.mark.skipif(not is_root(), reason="remounting read-only needs root")
def test_read_only_file_system_is_write_denied(mount_tmpfs, make_fs_store):
    path = mount_tmpfs("ro", "1m")
    store = make_fs_store(filesystem_store_datadir=str(path))
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    with pytest.raises(exceptions.StorageWriteDenied, match=str(path)):
        add(store, "img", b"data")


@pytest.mark.skipif(is_root(), reason="root is never denied by permissions")
def test_unwritable_directory_is_write_denied(make_fs_store, tmp_path):
    store = make_fs_store()
    os.chmod(tmp_path / "images", 0o555)
    try:
        with pytest.raises(exceptions.StorageWriteDenied):
            add(store, "img", b"data")
    finally:
        os.chmod(tmp_path / "images", 0o755)


# -- configuration errors --------------------------------------------------------


@pytest.mark.parametrize("case", bad_configs.cases("store"), ids=bad_configs.ids)
def test_bad_configuration(case, tmp_path):
    conf = load_conf(case.write(tmp_path))
    with pytest.raises(case.error) as raised:
        bad_configs.build_store(conf)
    assert case.matches(str(raised.value)), raised.value


def test_missing_datadir_is_created(make_fs_store, tmp_path):
    target = tmp_path / "deep" / "er" / "images"
    store = make_fs_store(filesystem_store_datadir=str(target))
    assert target.is_dir()
    assert add(store, "x", b"1").location == f"file://{target}/x"


@pytest.mark.skipif(not is_root(), reason="a read-only mount needs root")
def test_a_read_only_datadir_is_read_and_refuses_writes(mount_tmpfs, make_fs_store):
    path = mount_tmpfs("ro", "1m")
    location = add(make_fs_store(filesystem_store_datadir=str(path)), "img", b"data")
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    store = make_fs_store(filesystem_store_datadir=str(path))  # configures
    assert b"".join(store.get(location.location)[0]) == b"data"
    assert [i.image_id for i in store.images()] == ["img"]
    with pytest.raises(exceptions.StorageWriteDenied, match=f"not writable: {path}"):
        add(store, "new", b"data")
    with pytest.raises(exceptions.Forbidden, match="Read-only file system"):
        store.delete(location.location)
    assert b"".join(store.get(location.location)[0]) == b"data"
    assert sorted(os.listdir(path)) == ["img"]


# -- metadata file ---------------------------------------------------------------


def test_metadata_file_dict(make_fs_store, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps({"id": "fs1", "mountpoint": "/", "extra": ["a", {"b": "c"}]})
    )
    store = make_fs_store(filesystem_store_metadata_file=str(meta))
    assert add(store, "x", b"1").metadata == {
        "id": "fs1",
        "mountpoint": "/",
        "extra": ["a", {"b": "c"}],
    }


def test_metadata_file_list_matches_on_directory_boundaries(make_fs_store, tmp_path):
    # glance_store's rule, the first entry in the file's order whose
    # mountpoint holds the image's path, on directory boundaries as the
    # option's help says: glance_store compares strings, so its
    # mountpoint .../imag claims the images of .../images.
    images = tmp_path / "images"
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            [
                {"id": "elsewhere", "mountpoint": "/nonexistent"},
                {"id": "prefix", "mountpoint": str(tmp_path / "imag")},
                {"id": "name-prefix", "mountpoint": str(images / "im")},
                {"id": "exact", "mountpoint": str(images) + "/"},
            ]
        )
    )
    store = make_fs_store(filesystem_store_metadata_file=str(meta))
    assert add(store, "img", b"1").metadata["id"] == "exact"
    for content in ([{"id": "other", "mountpoint": "/nonexistent"}], []):
        meta.write_text(json.dumps(content))
        store = make_fs_store(
            filesystem_store_metadata_file=str(meta), conf_name=f"c{len(content)}.conf"
        )
        assert add(store, f"y{len(content)}", b"1").metadata == {}


# -- file permissions, chunk size, thin provisioning ------------------------------


def test_file_perm(make_fs_store, tmp_path):
    store = make_fs_store(filesystem_store_file_perm="640")
    add(store, "x", b"data")
    assert stat.S_IMODE(os.stat(tmp_path / "images" / "x").st_mode) == 0o640


def test_chunk_size_drives_reads(make_fs_store):
    store = make_fs_store(filesystem_store_chunk_size="1000")
    data = payload(4500)
    location = add(store, "x", data).location
    chunks, length = store.get(location)
    sizes = [len(c) for c in chunks]
    assert length == 4500
    assert sizes == [1000, 1000, 1000, 1000, 500]


def test_thin_provisioning_makes_holes(make_fs_store, tmp_path):
    store = make_fs_store(
        filesystem_thin_provisioning="true", filesystem_store_chunk_size="65536"
    )
    chunk = 65536
    # Zero chunks in the middle and at the end (the trailing hole has no write).
    data = payload(chunk) + bytes(8 * chunk) + payload(chunk, seed=2) + bytes(8 * chunk)
    result = store.add(
        "sparse", iter([data[i : i + chunk] for i in range(0, len(data), chunk)]), 0
    )
    st = os.stat(tmp_path / "images" / "sparse")
    assert st.st_size == len(data)
    assert st.st_blocks * 512 < len(data) // 2
    assert read_all(store, result.location) == data


def test_no_thin_provisioning_by_default(make_fs_store, tmp_path):
    store = make_fs_store()
    store.add("dense", iter([bytes(1 << 20)]), 0)
    st = os.stat(tmp_path / "images" / "dense")
    assert st.st_blocks * 512 >= 1 << 20


# -- reads -------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_get_iterator_closes_its_file(make_fs_store):
    store = make_fs_store(filesystem_store_chunk_size="1024")
    location = add(store, "x", payload(10_000)).location
    base = _open_fds()
    chunks, _ = store.get(location)
    assert _open_fds() == base + 1
    b"".join(chunks)
    assert _open_fds() == base
    chunks, _ = store.get(location)
    next(chunks)
    chunks.close()
    assert _open_fds() == base
    with store.get(location)[0] as chunks:
        next(chunks)
    assert _open_fds() == base


def test_offset_without_length_reports_the_rest(make_fs_store):
    store = make_fs_store()
    location = add(store, "x", payload(1000)).location
    chunks, length = store.get(location, offset=900)
    assert length == 100
    assert b"".join(chunks) == payload(1000)[900:]


def test_empty_image_reads_at_offset_zero(make_fs_store):
    store = make_fs_store()
    location = add(store, "empty", b"").location
    assert read_all(store, location, offset=0) == b""
    with pytest.raises(exceptions.Invalid, match="past the end"):
        store.get(location, offset=1)


# -- containment ---------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside" / "secret"
    target.parent.mkdir()
    target.write_bytes(b"do not touch")
    return target


def _assert_forbidden_everywhere(store: Any, location: str) -> None:
    with pytest.raises(exceptions.Forbidden):
        store.get(location)
    with pytest.raises(exceptions.Forbidden):
        store.get_size(location)
    with pytest.raises(exceptions.Forbidden):
        store.delete(location)


@pytest.mark.parametrize(
    "template",
    [
        "file:///etc/passwd",
        "file://{outside}",
        "file://{images}/../outside/secret",
        "file://{images}/./../outside/secret",
        "file://{images}//..//outside/secret",
        "file://{images}/",
        "file://{images}",
        "file://{images}/.fsstore-publish.lock",
        "file://{images}/sub/x",
    ],
)
def test_locations_outside_the_datadirs_are_forbidden(
    make_fs_store, tmp_path, outside, template
):
    store = make_fs_store()
    images = tmp_path / "images"
    (images / "sub").mkdir()
    (images / "sub" / "x").write_bytes(b"not an image")
    before = outside.read_bytes(), Path("/etc/passwd").read_bytes()
    _assert_forbidden_everywhere(store, template.format(outside=outside, images=images))
    assert (outside.read_bytes(), Path("/etc/passwd").read_bytes()) == before
    assert (images / "sub" / "x").exists()


def test_symlink_planted_in_datadir_is_forbidden(make_fs_store, tmp_path, outside):
    store = make_fs_store()
    link = tmp_path / "images" / "evil"
    link.symlink_to(outside)
    _assert_forbidden_everywhere(store, f"file://{link}")
    assert link.is_symlink()
    assert outside.read_bytes() == b"do not touch"


def test_fifo_in_datadir_is_refused_without_blocking(make_fs_store, tmp_path):
    store = make_fs_store()
    fifo = tmp_path / "images" / "fifo"
    os.mkfifo(fifo)
    _assert_forbidden_everywhere(store, f"file://{fifo}")


def test_location_through_a_symlinked_datadir_path(make_fs_store, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    store = make_fs_store(filesystem_store_datadir=str(tmp_path / "alias"))
    location = add(store, "x", b"abc").location
    assert location == f"file://{tmp_path}/alias/x"
    assert store.get_size(f"file://{tmp_path}/real/x") == 3


_PARTS = ["a", "b", "alias", "..", ".", "", "img", "a:b", ".fsstore-x", "\u00e9"]


def test_find_takes_the_usual_location_apart_as_the_general_lookup_does(
    make_fs_store, tmp_path
):
    # DataDirs.find answers a location spelled as an add writes it without
    # normalizing it; for every spelling it must agree with find_path.
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "a")
    store = make_fs_store(
        filesystem_store_datadirs=[f"{tmp_path / 'a'}:1", f"{tmp_path / 'a' / 'b'}:2"]
    )
    dirs = store._dirs
    from fsstore.location import FileLocation

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.sampled_from(_PARTS), min_size=1, max_size=4))
    def agrees(parts: list[str]) -> None:
        path = "/".join([str(tmp_path), *parts])
        assert dirs.find(FileLocation.from_path(path)) == dirs.find_path(path)

    agrees()
    found = dirs.find(FileLocation.from_path(f"{tmp_path}/a/b/img"))
    assert found is not None and found[0].path == str(tmp_path / "a" / "b")


@pytest.mark.parametrize("uri", ["file://host/etc/passwd", "file:relative", "images/x"])
def test_malformed_file_uris(make_fs_store, uri):
    store = make_fs_store()
    with pytest.raises(exceptions.BadStoreUri):
        store.get(uri)


# -- staging files ---------------------------------------------------------------


def test_stale_named_staging_files_are_removed_but_live_ones_kept(
    make_fs_store, tmp_path
):
    store = make_fs_store(staging="named")
    add(store, "x", b"1")  # creates the staging directory
    staging = tmp_path / "images" / STAGING_DIR
    (staging / "stale").write_bytes(b"left by a crash")
    live = staging / "live"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        make_fs_store(staging="named")  # a second configure of the same dir
        assert sorted(os.listdir(staging)) == ["live"]
    assert (tmp_path / "images" / "x").read_bytes() == b"1"


def test_tmpfile_staging_leaves_no_named_file(make_fs_store, tmp_path):
    store = make_fs_store()
    add(store, "x", b"1")
    assert sorted(os.listdir(tmp_path / "images")) == ["x"]


def test_fsync_can_be_turned_off(make_fs_store):
    store = make_fs_store(filesystem_store_fsync="false")
    assert store.fsync is False
    assert read_all(store, add(store, "x", b"abc").location) == b"abc"


@pytest.mark.parametrize("ndirs", [1, 2])
@pytest.mark.parametrize("staging", ["tmpfile", "named"])
def test_add_that_loses_the_publish_race_is_duplicate(
    make_fs_store, tmp_path, staging, ndirs
):
    # The loser passed the early existence check; only publishing can tell.
    store = make_fs_store(
        staging=staging,
        filesystem_store_datadirs=[f"{tmp_path / str(i)}:1" for i in range(ndirs)],
    )

    def loser_data():
        yield b"loser "
        store.add("contested", iter([b"winner"]), 6)
        yield b"data"

    with pytest.raises(exceptions.Duplicate, match="contested"):
        store.add("contested", loser_data(), 0)
    found = {
        name: (tmp_path / str(i) / name).read_bytes()
        for i in range(ndirs)
        for name in os.listdir(tmp_path / str(i))
        if not name.startswith(".fsstore-")
    }
    assert found == {"contested": b"winner"}
    assert all(
        not os.listdir(tmp_path / str(i) / STAGING_DIR)
        for i in range(ndirs)
        if (tmp_path / str(i) / STAGING_DIR).exists()
    )


def _blocked_on(lock_path: Path) -> bool:
    """Whether some process or thread waits for an flock on ``lock_path``
    (a waiter's line in /proc/locks reads "N: -> FLOCK ...")."""
    try:
        ino = f":{os.stat(lock_path).st_ino} "
    except FileNotFoundError:
        return False  # nobody took it
    with open("/proc/locks") as f:
        return any("->" in line and ino in line for line in f)


def test_the_check_and_the_link_are_one_step_across_directories(
    make_fs_store, tmp_path
):
    # Two stores on the same two directories, each preferring another one:
    # without the publish lock, both would pass the check for the other
    # directory and link, one copy each. The hook holds the first inside
    # its window until the second is seen waiting for the lock.
    first = make_fs_store(
        filesystem_store_datadirs=[f"{tmp_path}/x:2", f"{tmp_path}/y:1"]
    )
    second = make_fs_store(
        conf_name="second.conf",
        filesystem_store_datadirs=[f"{tmp_path}/x:1", f"{tmp_path}/y:2"],
    )
    lock = tmp_path / "x" / PUBLISH_LOCK  # the first directory by path
    outcome: list[BaseException | str] = []

    def add_second() -> None:
        try:
            add(second, "contested", b"second")
            outcome.append("linked")
        except BaseException as exc:  # noqa: BLE001 - examined below
            outcome.append(exc)

    def inside_the_window(_: str) -> None:
        if threads:
            return  # the contender's own pass, once the first has linked
        contender = threading.Thread(target=add_second)
        threads.append(contender)
        contender.start()
        deadline = time.monotonic() + 30
        while not _blocked_on(lock) and contender.is_alive():
            assert time.monotonic() < deadline, "the contender neither ran nor waited"
            time.sleep(0.001)  # polling a condition, not waiting out a race

    threads: list[threading.Thread] = []
    with tracing.hooked(inside_the_window, ["filesystem.publish.locked"]):
        add(first, "contested", b"first")
        threads[0].join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], exceptions.Duplicate), outcome
    assert (tmp_path / "x" / "contested").read_bytes() == b"first"
    assert not (tmp_path / "y" / "contested").exists()


def test_a_child_forked_while_a_thread_publishes_can_publish(make_fs_store, tmp_path):
    """A fork while another thread holds the publish lock: the child
    inherits neither the thread's hold nor its flock (no deadlock on a lock
    nobody in the child will release); its add waits for the parent's
    publish like another process's would, then links."""
    store = make_fs_store(
        filesystem_store_datadirs=[f"{tmp_path}/x:2", f"{tmp_path}/y:1"]
    )
    inside, release = threading.Event(), threading.Event()

    def hold_the_window(_: str) -> None:
        if threading.current_thread() is publisher:
            inside.set()
            assert release.wait(30)

    publisher = threading.Thread(target=add, args=(store, "parent", b"p"))
    with tracing.hooked(hold_the_window, ["filesystem.publish.locked"]):
        publisher.start()
        assert inside.wait(30)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's outcome is its exit status
            code = 1
            try:
                add(store, "child", b"c")
                code = 0
            finally:
                os._exit(code)
        time.sleep(0.2)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # waiting for our flock
        release.set()
        publisher.join(30)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child never published: it inherited a held lock")
        time.sleep(0.01)  # polling the child's exit, not waiting out a race
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert (tmp_path / "x" / "child").read_bytes() == b"c"
    assert (tmp_path / "x" / "parent").read_bytes() == b"p"


@pytest.mark.parametrize("staging", ["tmpfile", "named"])
def test_the_trace_points_of_an_add_fire_in_order(make_fs_store, tmp_path, staging):
    """A named staging file is held (locking.hold) before the write; the
    publish lock is opened once per process, then only flocked again."""
    store = make_fs_store(
        staging=staging,
        filesystem_store_datadirs=[f"{tmp_path}/x:2", f"{tmp_path}/y:1"],
    )
    held = ["locking.hold.opened"] if staging == "named" else []
    for image_id, lock_opened in (("one", True), ("two", False)):
        seen: list[str] = []
        with tracing.hooked(seen.append):
            add(store, image_id, b"data")
        assert seen == [
            *held,
            *(["locking.hold.opened"] if lock_opened else []),
            "filesystem.publish.locked",
        ]


# -- the write pipeline for large images ------------------------------------------

BIG = 13 * MiB + 123


def _sources(data: bytes, tmp_path: Path):
    path = tmp_path / "source.raw"
    path.write_bytes(data)
    odd = [data[i : i + 100_003] for i in range(0, len(data), 100_003)]
    return {
        "file": lambda: open(path, "rb"),  # noqa: SIM115 - closed by the store's reader
        "bytesio": lambda: __import__("io").BytesIO(data),
        "odd-chunks": lambda: iter(odd),
        "one-chunk": lambda: iter([data]),
    }


@pytest.mark.parametrize("source", ["file", "bytesio", "odd-chunks", "one-chunk"])
@pytest.mark.parametrize("known", [True, False], ids=["known-size", "unknown-size"])
def test_large_images_through_the_pipeline(make_fs_store, tmp_path, source, known):
    store = make_fs_store()
    data = payload(BIG, seed=5)
    result = store.add("big", _sources(data, tmp_path)[source](), BIG if known else 0)
    assert result.size == BIG
    assert result.checksum == hashlib.md5(data).hexdigest()
    assert result.multihash == hashlib.sha512(data).hexdigest()
    assert (tmp_path / "images" / "big").read_bytes() == data


@pytest.mark.parametrize("declared", [BIG - 1, BIG + 1])
def test_pipeline_size_mismatch(make_fs_store, tmp_path, declared):
    store = make_fs_store()
    data = payload(BIG)
    with pytest.raises(exceptions.Invalid, match="declared"):
        store.add("big", _sources(data, tmp_path)["file"](), declared)
    assert os.listdir(tmp_path / "images") == []


def test_pipeline_stream_failure(make_fs_store, tmp_path):
    store = make_fs_store()
    with pytest.raises(FailingStream.Boom):
        store.add("big", FailingStream(payload(BIG), 9 * MiB), 0)
    assert os.listdir(tmp_path / "images") == []


def test_pipeline_enospc(mount_tmpfs, make_fs_store):
    small = mount_tmpfs("small", "6m")
    store = make_fs_store(filesystem_store_datadir=str(small))
    with pytest.raises(exceptions.StorageFull):
        store.add("big", iter([payload(BIG)]), 0)
    assert tree(small) == {}
    assert os.statvfs(small).f_bfree == os.statvfs(small).f_blocks


def test_pipeline_verifier_sees_every_byte(make_fs_store, tmp_path):
    store = make_fs_store()
    data = payload(BIG, seed=9)
    seen = hashlib.sha256()

    class Verifier:
        def update(self, chunk):
            seen.update(chunk)

    store.add("big", _sources(data, tmp_path)["file"](), BIG, verifier=Verifier())
    assert seen.digest() == hashlib.sha256(data).digest()


def test_a_file_system_without_capacity_figures_takes_images(
    make_fs_store, mount_ramfs
):
    # ramfs reports zero blocks in statvfs: room unknown, not none.
    images = mount_ramfs("images")
    assert os.statvfs(images).f_blocks == 0
    store = make_fs_store(filesystem_store_datadir=str(images))
    result = store.add("img", iter([b"data"]), 4)
    assert store.get_size(result.location) == 4


# -- durability: the order of writes, fsyncs and the link -------------------------


class DurabilityLog:
    """The store's writes, fsyncs and links, in order, each naming the inode
    it touched (os's functions wrapped: the store calls them through os)."""

    CHANGES = ("write", "pwrite", "ftruncate", "fchmod", "setxattr")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, tuple[int, int]]] = []
        for name in self.CHANGES:
            monkeypatch.setattr(os, name, self._wrapped(name, getattr(os, name)))
        monkeypatch.setattr(os, "fsync", self._wrapped("fsync", os.fsync))
        real_link = os.link

        def link(src: Any, dst: Any, **kwargs: Any) -> None:
            real_link(src, dst, **kwargs)
            st = os.stat(dst, dir_fd=kwargs.get("dst_dir_fd"), follow_symlinks=False)
            self.events.append(("link", (st.st_dev, st.st_ino)))

        monkeypatch.setattr(os, "link", link)

    def _wrapped(self, name: str, real: Any) -> Any:
        def call(target: Any, *args: Any, **kwargs: Any) -> Any:
            result = real(target, *args, **kwargs)
            if isinstance(target, int):  # a descriptor; paths are not the image's
                st = os.fstat(target)
                self.events.append((name, (st.st_dev, st.st_ino)))
            return result

        return call

    def check(self, image: Path) -> None:
        """The image's data and metadata, then its fsync, then its link, then
        an fsync of its data directory."""
        file, directory = (
            (st.st_dev, st.st_ino) for st in (os.stat(image), os.stat(image.parent))
        )
        events = self.events
        linked = events.index(("link", file))
        synced = [i for i, e in enumerate(events) if e == ("fsync", file)]
        changes = [
            i for i, (n, f) in enumerate(events) if f == file and n in self.CHANGES
        ]
        assert synced and synced[-1] < linked, (
            "the file is not fsync'ed before its link"
        )
        assert not changes or changes[-1] < synced[-1], (
            "the file changes after its fsync"
        )
        assert ("fsync", directory) in events[linked + 1 :], (
            "the data directory is not fsync'ed after the link"
        )


ADD_PATHS = {
    # file-like, small and of known size: read at once (writepath.one_read_limit)
    "one-read": lambda data: (io.BytesIO(data), len(data)),
    "streamed": lambda data: (iter([data[:1000], data[1000:]]), len(data)),
    "unknown-size": lambda data: (iter([data[:1000], data[1000:]]), 0),
}


@pytest.mark.parametrize("path", [*ADD_PATHS, "pipeline"])
@pytest.mark.parametrize("ndirs", [1, 2])
@pytest.mark.parametrize("staging", ["tmpfile", "named"])
def test_image_is_fsynced_before_its_link_and_its_directory_after(
    make_fs_store, tmp_path, monkeypatch, staging, ndirs, path
):
    store = make_fs_store(
        staging=staging,
        filesystem_store_datadirs=[f"{tmp_path / str(i)}:1" for i in range(ndirs)],
    )
    assert store.fsync  # the default
    log = DurabilityLog(monkeypatch)
    if path == "pipeline":
        data = payload(6 * MiB + 5)  # past PIPELINE_THRESHOLD, of unknown size
        source, size = iter([data]), 0
    else:
        data = payload(5000)
        source, size = ADD_PATHS[path](data)
    result = store.add("img", source, size)
    image = Path(result.location.removeprefix("file://"))
    log.check(image)
    assert image.read_bytes() == data


@pytest.mark.parametrize("skipped", ["file", "directory"])
def test_the_durability_check_catches_a_skipped_fsync(
    make_fs_store, monkeypatch, skipped
):
    # The check above is sharp: a store that skips either fsync fails it.
    store = make_fs_store()
    log = DurabilityLog(monkeypatch)
    logged_fsync = os.fsync

    def fsync(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if is_dir != (skipped == "file"):
            return  # the skipped one
        logged_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = store.add("img", iter([b"data"]), 4)
    with pytest.raises(AssertionError, match="not fsync'ed"):
        log.check(Path(result.location.removeprefix("file://")))
