"""Hostile input and faults against the filesystem store and the locations.

Each test names the promise it attacks; the stream shapes are attacked in the
conformance suite (every store) and in tests/unit/test_streams.py.
"""

from __future__ import annotations

import os
import shutil
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.location import redact, without_credentials
from fsstore.store import image_id_problem
from fsstore.testing.suite import read_all
from tests.helpers import tree

# -- every accepted id round-trips --------------------------------------------


@pytest.mark.parametrize("image_id", ["img?v=2", "img#1", "a%2fb", "%", "a b", "?#"])
def test_ids_with_uri_characters_round_trip(make_fs_store, image_id):
    store = make_fs_store()
    result = store.add(image_id, iter([b"data"]), 4)
    assert store.get_size(result.location) == 4
    assert read_all(store, result.location) == b"data"
    store.delete(result.location)
    with pytest.raises(exceptions.NotFound):
        store.get_size(result.location)


@pytest.mark.parametrize("name", ["with?query", "with#fragment", "per%2Fcent"])
def test_a_datadir_path_with_uri_characters(make_fs_store, tmp_path, name):
    store = make_fs_store(filesystem_store_datadir=str(tmp_path / name / "images"))
    result = store.add("x", iter([b"abc"]), 3)
    assert read_all(store, result.location) == b"abc"
    store.delete(result.location)


# Any text the store may accept as an id (the hostile ones are refused).
ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80
) | st.text(alphabet=string.printable, min_size=1, max_size=30)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(image_id=ids)
def test_every_accepted_id_round_trips(make_fs_store, image_id):
    store = make_fs_store()
    try:
        result = store.add(image_id, iter([b"payload"]), 7)
    except exceptions.Invalid:
        assert image_id_problem(image_id) is not None
        return
    except exceptions.Duplicate:
        return  # hypothesis tried this id already in this store
    assert store.get_size(result.location) == 7
    assert read_all(store, result.location) == b"payload"
    store.delete(result.location)


# -- no accepted location reaches outside -------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    tail=st.lists(
        st.sampled_from(
            ["..", ".", "", "x", "outside", "images", "%2e%2e", "?", "#", "link", "@"]
        ),
        min_size=1,
        max_size=5,
    ),
    prefix=st.sampled_from(["file://", "file:///", "file:////", "file://localhost/"]),
)
def test_no_location_reaches_outside(make_fs_store, tmp_path, tail, prefix):
    datadir = tmp_path / "images"
    store = make_fs_store(filesystem_store_datadir=str(datadir))
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "x").write_bytes(b"secret")
    link = datadir / "link"
    if not link.is_symlink():
        link.symlink_to(outside / "x")
    before = tree(tmp_path)
    uri = prefix + str(datadir).lstrip("/") + "/" + "/".join(tail)
    for op in (store.get, store.get_size, store.delete):
        try:
            result = op(uri)
        except (exceptions.Forbidden, exceptions.NotFound, exceptions.BadStoreUri):
            continue
        # Anything that was served is an image file in the data directory.
        if isinstance(result, tuple):
            data = b"".join(result[0])
            assert data != b"secret"
    assert (outside / "x").read_bytes() == b"secret"
    assert {k: v for k, v in tree(tmp_path).items() if "outside" in k} == {
        k: v for k, v in before.items() if "outside" in k
    }


# -- a data directory replaced at runtime -------------------------------------


def test_a_replaced_datadir_is_reopened(make_fs_store, tmp_path):
    datadir = tmp_path / "images"
    store = make_fs_store(filesystem_store_datadir=str(datadir))
    old = store.add("before", iter([b"old"]), 3)
    shutil.rmtree(datadir)
    datadir.mkdir()
    # Put back by the operator: readable at once, no restart.
    (datadir / "before").write_bytes(b"restored")
    assert read_all(store, old.location) == b"restored"
    new = store.add("after", iter([b"new"]), 3)
    assert (datadir / "after").read_bytes() == b"new"
    assert read_all(store, new.location) == b"new"


@pytest.mark.parametrize("size", [3, 5 * 1024 * 1024])
def test_a_removed_datadir_falls_back_to_the_next(make_fs_store, tmp_path, size):
    high, low = tmp_path / "high", tmp_path / "low"
    store = make_fs_store(filesystem_store_datadirs=[f"{high}:200", f"{low}:100"])
    shutil.rmtree(high)
    result = store.add("x", iter([b"a" * size]), size)
    assert result.location == f"file://{low}/x"
    assert not high.exists()  # never recreated: it may be a mount point
    high.mkdir()
    assert store.add("y", iter([b"b"]), 1).location == f"file://{high}/y"


def test_a_remounted_datadir_is_reopened(mount_tmpfs, make_fs_store, tmp_path):
    datadir = mount_tmpfs("images", "4m")
    store = make_fs_store(filesystem_store_datadir=str(datadir))
    store.add("first", iter([b"1"]), 1)
    # A lazy unmount leaves the store's descriptor on the old file system;
    # writes through it would land where nobody sees them.
    os.system(f"umount -l {datadir}")
    mount_tmpfs("images", "4m")
    result = store.add("second", iter([b"2"]), 1)
    assert (datadir / "second").read_bytes() == b"2"
    assert read_all(store, result.location) == b"2"
    with pytest.raises(exceptions.NotFound):
        store.get_size(f"file://{datadir}/first")


def test_a_missing_single_datadir_is_storage_full_naming_it(make_fs_store, tmp_path):
    datadir = tmp_path / "images"
    store = make_fs_store(filesystem_store_datadir=str(datadir))
    shutil.rmtree(datadir)
    with pytest.raises(exceptions.StorageFull, match=f"missing: {datadir}"):
        store.add("x", iter([b"abc"]), 3)
    with pytest.raises(exceptions.NotFound, match="is missing"):
        store.get_size(f"file://{datadir}/x")


# -- credentials --------------------------------------------------------------

SECRET_CHARS = "/+@%:?#"


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(alphabet=string.ascii_letters + SECRET_CHARS, min_size=1),
    scheme=st.sampled_from(["s3", "s3+http", "s3+https", "http", "https", "file"]),
)
def test_redact_never_shows_a_secret(secret, scheme):
    marked = f"SECRET{secret}MARK"
    uri = f"{scheme}://AKIAKEY:{marked}@host.example/bucket/key"
    assert marked not in redact(uri)
    assert "AKIAKEY" not in redact(uri)
    assert marked not in without_credentials(uri)
    assert without_credentials(uri) == f"{scheme}://host.example/bucket/key"


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
@pytest.mark.parametrize("staging", ["tmpfile", "named"])
def test_a_name_planted_at_the_publish_lock_is_refused(
    make_fs_store, tmp_path, kind, staging
):
    """The publish lock (with several data directories, in the first by
    path) is a regular file of the store's own: a link there is never
    followed (its target never opened), a FIFO or a directory is refused,
    and nothing is published meanwhile."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    lock = first / ".fsstore-publish.lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    store = make_fs_store(
        staging=staging, filesystem_store_datadirs=[f"{first}:200", f"{second}:100"]
    )
    atime = victim.stat().st_atime_ns
    with pytest.raises(exceptions.FsstoreError, match="publish.lock"):
        store.add("img", iter([b"data"]), 4)
    assert victim.stat().st_atime_ns == atime  # never opened
    assert victim.read_bytes() == b"precious"
    assert not (first / "img").exists() and not (second / "img").exists()


def test_a_refused_publish_lock_leaves_no_stale_descriptor(make_fs_store, tmp_path):
    """A process that finds a FIFO at the publish lock (here a forked child,
    which opens its own lock) is refused, and its next add must not close
    or flock the number the refused lock once had (reused by then)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    store = make_fs_store(filesystem_store_datadirs=[f"{first}:200", f"{second}:100"])
    store.add("one", iter([b"1"]), 1)  # the lock is open in the parent
    lock = first / ".fsstore-publish.lock"
    lock.unlink()
    os.mkfifo(lock)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's outcome is its exit status
        code = 3
        try:
            for image_id in ("two", "three"):
                try:
                    store.add(image_id, iter([b"2"]), 1)
                except exceptions.BackendException:
                    pass
                else:
                    code = 2
                    break
                if image_id == "two":
                    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]
            else:
                for fd in spare:
                    os.fstat(fd)  # EBADF if the refused lock's number was closed
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_data_directory_that_appears_later_gets_the_search_bits(
    make_fs_store, tmp_path
):
    first, late = tmp_path / "a", tmp_path / "late"
    first.mkdir()
    store = make_fs_store(
        filesystem_store_datadirs=[f"{late}:200", f"{first}:100"],
        filesystem_store_file_perm="644",
    )
    assert not late.exists()  # never made while another exists
    late.mkdir(mode=0o700)
    os.chmod(late, 0o700)
    result = store.add("img", iter([b"data"]), 4)
    assert result.location == f"file://{late}/img"
    assert os.stat(late).st_mode & 0o001  # others may enter to read it
