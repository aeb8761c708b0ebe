"""The lock-file protocol (fsstore.locking), alone: holders and reapers in
real processes, and both sides of the open/flock race forced by hooks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fsstore import locking

HOLDER = """
import sys
from fsstore import locking
fd = locking.hold(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path):
    """A real process holding ``tmp_path/lock``, until killed."""
    path = tmp_path / "lock"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    yield path, process
    process.kill()
    process.wait()


def test_hold_creates_and_locks(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    fd = locking.hold(str(path))
    try:
        assert path.is_file()
        assert locking.is_held(str(path))
        with pytest.raises(locking.LockHeld):
            locking.hold(str(path), wait=False)  # another open file description
    finally:
        os.close(fd)
    assert not locking.is_held(str(path))


def test_a_live_holder_is_never_reaped(holder) -> None:
    path, _ = holder
    assert locking.is_held(str(path))
    assert locking.reap(str(path)) == "held"
    assert path.exists()
    with pytest.raises(locking.LockHeld):
        locking.hold(str(path), wait=False)


def test_a_killed_holder_is_reaped_at_once(holder) -> None:
    path, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not locking.is_held(str(path))
    assert locking.reap(str(path)) == "reaped"
    assert not path.exists()
    assert locking.reap(str(path)) == "gone"


def test_holder_retries_when_the_name_is_reaped_between_open_and_flock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock"
    opened: list[int] = []

    def reaper_wins() -> None:
        # The race: a reaper locks, checks and unlinks the file this holder
        # just opened, before the holder's flock.
        opened.append(os.stat(path).st_ino)
        if len(opened) == 1:
            assert locking.reap(str(path)) == "reaped"

    fd = locking.hold(str(path), between=reaper_wins)
    try:
        assert len(opened) == 2  # the first file was given up
        assert os.fstat(fd).st_ino == os.stat(path).st_ino
        assert locking.reap(str(path)) == "held"
    finally:
        os.close(fd)


def test_holder_gives_up_when_the_name_keeps_moving(tmp_path: Path) -> None:
    path = tmp_path / "lock"

    def always_replaced() -> None:
        os.unlink(path)

    with pytest.raises(locking.LockHeld, match="kept being replaced"):
        locking.hold(str(path), between=always_replaced)
    assert not path.exists()


def test_reaper_leaves_a_file_that_replaced_the_locked_one(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_bytes(b"old")

    def new_holder_wins() -> None:
        # The race from the reaper's side: between its open and its unlink,
        # the name came to refer to a new holder's file.
        os.unlink(path)
        path.write_bytes(b"new")

    assert locking.reap(str(path), between=new_holder_wins) == "gone"
    assert path.read_bytes() == b"new"


def test_fresh_names_and_dir_fd(tmp_path: Path) -> None:
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = locking.hold("a", dir_fd=dir_fd, flags=os.O_WRONLY | os.O_EXCL)
        try:
            with pytest.raises(FileExistsError):
                locking.hold("a", dir_fd=dir_fd, flags=os.O_WRONLY | os.O_EXCL)
            assert locking.is_held("a", dir_fd=dir_fd)
        finally:
            os.close(fd)
        assert locking.reap("a", dir_fd=dir_fd) == "reaped"
        assert not (tmp_path / "a").exists()
    finally:
        os.close(dir_fd)


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError):
        locking.hold(str(tmp_path / "link"))
    assert locking.reap(str(tmp_path / "link")) == "gone"
    assert target.read_bytes() == b"keep"


def test_a_fifo_does_not_hang_the_reaper(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert locking.reap(str(fifo)) == "reaped"  # nobody holds it


def test_flocked_excludes_another_description(tmp_path: Path) -> None:
    path = tmp_path / "mutex"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with locking.flocked(fd):
            assert locking.is_held(str(path))
        assert not locking.is_held(str(path))
    finally:
        os.close(fd)
