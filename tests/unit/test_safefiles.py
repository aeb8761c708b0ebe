"""safefiles: every planted name is refused, never followed or replaced."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from fsstore import locking, safefiles, tracing


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the directory under attack, worth destroying."""
    path = tmp_path / "victim"
    path.write_bytes(b"precious")
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def plant(kind: str, path: Path, victim: Path) -> None:
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling":
        path.symlink_to(victim.parent / "not-there")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        raise AssertionError(kind)


PLANTS = ["symlink", "dangling", "fifo", "directory"]


@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_RDWR | os.O_CREAT, os.O_WRONLY])
def test_open_regular_refuses_what_is_planted(
    work: Path, victim: Path, kind: str, flags: int
) -> None:
    plant(kind, work / "name", victim)
    # A FIFO opened without O_NONBLOCK would block here forever.
    with pytest.raises(OSError) as raised:
        os.close(safefiles.open_regular(str(work / "name"), flags))
    assert isinstance(raised.value, safefiles.NotRegularFile)
    assert str(work / "name") in str(raised.value)
    assert victim.read_bytes() == b"precious"
    assert not (victim.parent / "not-there").exists()


def test_open_regular_opens_and_creates_regular_files(work: Path) -> None:
    (work / "old").write_bytes(b"abc")
    fd = safefiles.open_regular(str(work / "old"))
    try:
        assert os.read(fd, 10) == b"abc"
        assert os.get_blocking(fd)
    finally:
        os.close(fd)
    fd = safefiles.open_regular(str(work / "new"), os.O_RDWR | os.O_CREAT, mode=0o640)
    os.close(fd)
    assert stat.S_IMODE((work / "new").stat().st_mode) == 0o640 & ~_umask()


def test_open_regular_never_truncates_before_the_check() -> None:
    with pytest.raises(AssertionError):
        safefiles.open_regular("/nonexistent", os.O_WRONLY | os.O_TRUNC)


@pytest.mark.parametrize("kind", [*PLANTS, "regular"])
def test_create_new_refuses_any_existing_name(
    work: Path, victim: Path, kind: str
) -> None:
    if kind == "regular":
        (work / "name").write_bytes(b"theirs")
    else:
        plant(kind, work / "name", victim)
    with pytest.raises(FileExistsError):
        safefiles.create_new(str(work / "name"))
    assert victim.read_bytes() == b"precious"
    assert not (victim.parent / "not-there").exists()
    if kind == "regular":
        assert (work / "name").read_bytes() == b"theirs"


def test_create_new_relative_to_a_directory(work: Path) -> None:
    dir_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(safefiles.create_new("new", dir_fd=dir_fd, mode=0o600))
    finally:
        os.close(dir_fd)
    assert stat.S_IMODE((work / "new").stat().st_mode) == 0o600


def test_replace_contents_writes_a_private_file_whole(work: Path) -> None:
    target = work / "state.json"
    safefiles.replace_contents(str(target), b"one")
    safefiles.replace_contents(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(work)) == ["state.json"]


@pytest.mark.parametrize("kind", PLANTS)
def test_replace_contents_refuses_a_planted_name(
    work: Path, victim: Path, kind: str
) -> None:
    target = work / "state.json"
    plant(kind, target, victim)
    with pytest.raises(safefiles.NotRegularFile):
        safefiles.replace_contents(str(target), b"{}")
    assert victim.read_bytes() == b"precious"
    assert not (victim.parent / "not-there").exists()
    assert os.path.lexists(target)  # left as it was: not replaced
    assert sorted(os.listdir(work)) == ["state.json"]  # no temporary left


def test_replace_contents_flushes_file_then_renames_then_flushes_directory(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        real_fsync(fd)

    def replace(*args: object, **kwargs: object) -> None:
        calls.append("rename")
        real_replace(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    safefiles.replace_contents(str(work / "state.json"), b"x")
    assert calls == ["fsync", "rename", "fsync-dir"]
    calls.clear()
    safefiles.replace_contents(str(work / "state.json"), b"y", fsync=False)
    assert calls == ["rename"]


def test_replace_contents_that_fails_keeps_the_old_contents(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = work / "state.json"
    target.write_bytes(b"old")

    def full(fd: int, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safefiles, "write_all", full)
    with pytest.raises(OSError, match="No space"):
        safefiles.replace_contents(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(work)) == ["state.json"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_lock_files_refuse_what_is_planted(work: Path, victim: Path, kind: str) -> None:
    plant(kind, work / "lock", victim)
    with pytest.raises(safefiles.NotRegularFile):
        locking.hold(str(work / "lock"))
    assert victim.read_bytes() == b"precious"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("kind", [*PLANTS, "regular"])
@pytest.mark.parametrize("proc", [True, False])
def test_link_new_never_replaces_what_is_at_the_name(
    work: Path, victim: Path, kind: str, proc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safefiles, "HAVE_PROC_FD", proc)
    if kind == "regular":
        (work / "dst").write_bytes(b"theirs")
    else:
        plant(kind, work / "dst", victim)
    before = os.lstat(work / "dst")
    fd = safefiles.create_new(str(work / "src"))
    try:
        os.write(fd, b"ours")
        with pytest.raises(FileExistsError):
            safefiles.link_new(fd, str(work / "dst"), src=str(work / "src"))
    finally:
        os.close(fd)
    after = os.lstat(work / "dst")
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert victim.read_bytes() == b"precious"


def test_link_new_publishes_the_open_file_though_its_name_was_swapped(
    work: Path, victim: Path
) -> None:
    """With /proc: the descriptor is linked, not whatever the name holds."""
    fd = safefiles.create_new(str(work / "src"))
    try:
        os.write(fd, b"ours")
        os.rename(work / "src", work / "moved")
        (work / "src").symlink_to(victim)
        safefiles.link_new(fd, str(work / "dst"), src=str(work / "src"))
        assert (work / "dst").read_bytes() == b"ours"
        assert not (work / "dst").is_symlink()
        # Once our file has no name left, nothing is published at all.
        os.unlink(work / "moved")
        os.unlink(work / "dst")
        with pytest.raises(FileNotFoundError):
            safefiles.link_new(fd, str(work / "dst2"), src=str(work / "src"))
    finally:
        os.close(fd)
    assert not os.path.lexists(work / "dst2")
    assert not (work / "dst").is_symlink()
    assert victim.stat().st_nlink == 1


def test_link_new_without_proc_unlinks_a_stranger_linked_in_our_stead(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safefiles, "HAVE_PROC_FD", False)
    fd = safefiles.create_new(str(work / "src"))
    try:
        os.unlink(work / "src")
        (work / "src").write_bytes(b"stranger")
        with pytest.raises(safefiles.NotRegularFile):
            safefiles.link_new(fd, str(work / "dst"), src=str(work / "src"))
    finally:
        os.close(fd)
    assert not os.path.lexists(work / "dst")


def test_link_new_publishes_an_unnamed_file(work: Path) -> None:
    dir_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, b"anonymous")
            safefiles.link_new(fd, "dst", dst_dir_fd=dir_fd)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    assert (work / "dst").read_bytes() == b"anonymous"


def test_reaping_leaves_a_directory_at_a_lock_files_name(work: Path) -> None:
    (work / "lock").mkdir()
    assert locking.reap(str(work / "lock")) == "gone"
    assert (work / "lock").is_dir()


def test_same_inode(work: Path) -> None:
    (work / "a").write_bytes(b"a")
    (work / "b").write_bytes(b"a")
    os.link(work / "a", work / "hard")
    assert safefiles.same_inode(os.stat(work / "a"), os.stat(work / "hard"))
    assert not safefiles.same_inode(os.stat(work / "a"), os.stat(work / "b"))
    fd = os.open(work / "a", os.O_RDONLY)
    try:
        assert safefiles.same_inode(os.fstat(fd), os.lstat(work / "a"))
    finally:
        os.close(fd)


def _dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("proc", [True, False])
def test_atomic_file_appears_whole_only_when_the_block_succeeds(
    work: Path, replace: bool, proc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safefiles, "HAVE_PROC_FD", proc)
    seen: list[bool] = []
    dir_fd = _dir(work)
    try:
        with (
            tracing.hooked(
                lambda _: seen.append((work / "name").exists()),
                ["safefiles.atomic_file.publishing"],
            ),
            safefiles.atomic_file(dir_fd, "name", replace=replace, mode=0o640) as fd,
        ):
            safefiles.write_all(fd, b"first half, ")
            assert not (work / "name").exists()
            safefiles.write_all(fd, b"second half")
    finally:
        os.close(dir_fd)
    assert seen == [False]  # not there until published
    assert (work / "name").read_bytes() == b"first half, second half"
    assert stat.S_IMODE(os.stat(work / "name").st_mode) == 0o640 & ~_umask()
    assert os.listdir(work) == ["name"]


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("proc", [True, False])
def test_atomic_file_leaves_nothing_when_the_block_fails(
    work: Path, replace: bool, proc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safefiles, "HAVE_PROC_FD", proc)
    (work / "kept").write_bytes(b"old")
    for name in ("new", "kept"):
        with (
            pytest.raises(RuntimeError),
            safefiles.atomic_file(None, str(work / name), replace=replace) as fd,
        ):
            safefiles.write_all(fd, b"partial")
            raise RuntimeError("the source failed")
    assert os.listdir(work) == ["kept"]
    assert (work / "kept").read_bytes() == b"old"


@pytest.mark.parametrize("proc", [True, False])
def test_atomic_file_never_replaces_without_replace(
    work: Path, victim: Path, proc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safefiles, "HAVE_PROC_FD", proc)
    (work / "taken").write_bytes(b"theirs")

    def rival(_: str) -> None:  # the race: a name taken while we write
        (work / "late").symlink_to(victim)

    for name in ("taken", "late"):
        with (
            tracing.hooked(rival if name == "late" else lambda _: None),
            pytest.raises(FileExistsError),
            safefiles.atomic_file(None, str(work / name), replace=False) as fd,
        ):
            safefiles.write_all(fd, b"ours")
    assert (work / "taken").read_bytes() == b"theirs"
    assert (work / "late").is_symlink()
    assert victim.read_bytes() == b"precious"
    assert sorted(os.listdir(work)) == ["late", "taken"]


def test_atomic_file_replaces_with_replace(work: Path, victim: Path) -> None:
    (work / "state").write_bytes(b"old")
    with safefiles.atomic_file(None, str(work / "state"), replace=True) as fd:
        safefiles.write_all(fd, b"new")
    assert (work / "state").read_bytes() == b"new"
    (work / "link").symlink_to(victim)
    with (
        pytest.raises(safefiles.NotRegularFile),
        safefiles.atomic_file(None, str(work / "link"), replace=True),
    ):
        raise AssertionError("never reached: refused before the write")
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("replace", [False, True])
def test_atomic_file_flushes_the_file_before_publishing_and_the_directory_after(
    work: Path, replace: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with (
        tracing.hooked(calls.append),
        safefiles.atomic_file(None, str(work / "f"), replace=replace) as fd,
    ):
        safefiles.write_all(fd, b"x")
    assert calls == ["fsync", "safefiles.atomic_file.publishing", "fsync-dir"]
    calls.clear()
    with safefiles.atomic_file(
        None, str(work / "g"), replace=replace, fsync=False
    ) as fd:
        safefiles.write_all(fd, b"x")
    assert calls == []


def test_atomic_file_wants_a_name_with_dir_fd(work: Path) -> None:
    dir_fd = _dir(work)
    try:
        with (
            pytest.raises(ValueError),
            safefiles.atomic_file(dir_fd, "sub/name", replace=False),
        ):
            pass
    finally:
        os.close(dir_fd)


def test_open_directory_never_follows_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_bytes(b"")
    fd = safefiles.open_directory(str(tmp_path / "real"))
    try:
        assert os.listdir(fd) == []
    finally:
        os.close(fd)
    parent = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(NotADirectoryError, match="a symbolic link where a dir"):
            safefiles.open_directory("link", dir_fd=parent)
    finally:
        os.close(parent)
    with pytest.raises(NotADirectoryError) as refused:
        safefiles.open_directory(str(tmp_path / "file"))
    assert "symbolic link" not in str(refused.value)
    with pytest.raises(FileNotFoundError):
        safefiles.open_directory(str(tmp_path / "none"))
