"""The lock-file protocol (fsstore.locking), alone: holders and reapers in
real processes, and both sides of the open/flock race forced at their trace
points; the LockFile mutex against another process, another thread and a
forked child."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fsstore import locking, tracing

HOLDER = """
import sys
from fsstore import locking, tracing
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

    with tracing.hooked(lambda _: reaper_wins(), ["locking.hold.opened"]):
        fd = locking.hold(str(path))
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

    with (
        tracing.hooked(lambda _: always_replaced(), ["locking.hold.opened"]),
        pytest.raises(locking.LockHeld, match="kept being replaced"),
    ):
        locking.hold(str(path))
    assert not path.exists()


def test_reaper_leaves_a_file_that_replaced_the_locked_one(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_bytes(b"old")

    def new_holder_wins() -> None:
        # The race from the reaper's side: between its open and its unlink,
        # the name came to refer to a new holder's file.
        os.unlink(path)
        path.write_bytes(b"new")

    with tracing.hooked(lambda _: new_holder_wins(), ["locking.reap.locked"]):
        assert locking.reap(str(path)) == "gone"
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


LOCKFILE_HOLDER = """
import sys
from fsstore import locking
lock = locking.LockFile(sys.argv[1])
with lock.held():
    print("held", flush=True)
    sys.stdin.read()
"""


def test_lock_file_excludes_another_process(tmp_path: Path) -> None:
    path = tmp_path / "mutex"
    process = subprocess.Popen(
        [sys.executable, "-c", LOCKFILE_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        assert process.stdout.readline() == "held\n"
        lock = locking.LockFile(str(path))
        got = threading.Event()

        def take() -> None:
            with lock.held():
                got.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not got.wait(0.3)  # the other process has it
        process.stdin.close()  # it ends, and its lock with it
        assert got.wait(10)
        taker.join()
        lock.close()
    finally:
        process.kill()
        process.wait()


def test_lock_file_excludes_another_thread_and_is_reentrant(tmp_path: Path) -> None:
    lock = locking.LockFile("mutex", dir_fd=os.open(tmp_path, os.O_RDONLY))
    inside: list[str] = []
    entered = threading.Event()

    def other() -> None:
        with lock.held():
            inside.append("other")

    with lock.held():
        with lock.held():  # re-entrant: no deadlock
            assert locking.is_held(str(tmp_path / "mutex"))
        assert locking.is_held(str(tmp_path / "mutex"))  # still, after the inner
        thread = threading.Thread(target=lambda: (entered.set(), other()))
        thread.start()
        entered.wait()
        time.sleep(0.2)
        assert inside == []  # waiting for us
        inside.append("us")
    thread.join(10)
    assert inside == ["us", "other"]
    assert not locking.is_held(str(tmp_path / "mutex"))
    lock.close()
    assert lock.dir_fd is not None
    os.close(lock.dir_fd)


def test_a_forked_child_gets_its_own_lock(tmp_path: Path) -> None:
    """A child forked while the parent holds the lock does not share it:
    it waits for the parent like any other process, and the block it
    inherited leaves the parent's lock alone when it ends."""
    lock = locking.LockFile(str(tmp_path / "mutex"))
    read, write = os.pipe()
    with lock.held():
        pid = os.fork()
        if pid == 0:  # the child: no pytest machinery from here on
            code = 1
            try:
                os.close(read)
                with lock.held():  # not re-entrant: the hold was the parent's
                    os.write(write, b"child held")
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        ready, _, _ = select.select([read], [], [], 0.3)
        assert ready == []  # the child waits for us
    ready, _, _ = select.select([read], [], [], 10)
    assert ready == [read]
    assert os.read(read, 64) == b"child held"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.close(read)
    with lock.held():  # still ours to take, in the parent
        assert locking.is_held(str(tmp_path / "mutex"))
    lock.close()


def test_a_lock_file_removed_while_kept_open_is_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "mutex"
    lock = locking.LockFile(str(path))
    with lock.held():
        pass
    os.unlink(path)  # an operator's clean-up; another process creates it anew
    os.close(locking.hold(str(path)))
    # Locked is the inode at the name now, which others lock too.
    with lock.held(), pytest.raises(locking.LockHeld):
        os.close(locking.hold(str(path), wait=False))
    lock.close()


def test_trace_points_of_holding_and_reaping_fire_in_order(tmp_path: Path) -> None:
    seen: list[str] = []
    with tracing.hooked(seen.append):
        os.close(locking.hold(str(tmp_path / "lock")))
        assert locking.reap(str(tmp_path / "lock")) == "reaped"
    assert seen == ["locking.hold.opened", "locking.reap.locked"]


def test_a_failed_recheck_leaves_the_lock_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The re-check after the flock fails (EACCES on a path component, EIO):
    # the caller gets the error, and the flock is not kept behind its back.
    lock = locking.LockFile(str(tmp_path / "lock"))
    with lock.held():
        pass  # the descriptor is open now; the next held() re-checks
    real_stat = os.stat

    def denied(path, *args, **kwargs):
        if str(path).endswith("lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(PermissionError), lock.held():
        pass
    monkeypatch.undo()
    other = os.open(tmp_path / "lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no BlockingIOError
    finally:
        os.close(other)
    with lock.held():  # and the lock file still works
        pass
