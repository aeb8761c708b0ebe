"""Digests kept where the file system has no user extended attributes (a
real ramfs): a record per image, keyed by inode, written before the link.
The same promises as with attributes, each attacked here."""

from __future__ import annotations

import errno
import json
import os

import pytest

from fsstore import exceptions
from fsstore.backends.filesystem.digests import RECORDS_DIR
from fsstore.hashing import KeptDigests
from fsstore.scrub import Verdict, scrub
from fsstore.testing.suite import payload
from tests.scrub_races import kept_while_recording, readd_while_recording


@pytest.fixture
def images(mount_ramfs):
    return mount_ramfs("images")


@pytest.fixture
def store(make_fs_store, images):
    return make_fs_store(filesystem_store_datadir=str(images))


def _add(store, image_id: str, data: bytes) -> str:
    return store.add(image_id, iter([data]), len(data)).location


def records(images) -> dict[str, dict]:
    found = {}
    for name in os.listdir(images / RECORDS_DIR):
        found[name] = json.loads((images / RECORDS_DIR / name).read_text())
    return found


def test_the_digests_are_a_record_named_by_inode(store, images):
    data = payload(70_000, seed=1)
    result = store.add("img", iter([data]), 0, hashing_algo="sha256")
    with pytest.raises(OSError) as caught:
        os.setxattr(images / "img", "user.probe", b"1")
    assert caught.value.errno == errno.EOPNOTSUPP  # no attributes here
    inode = str(os.stat(images / "img").st_ino)
    assert records(images) == {
        inode: {
            "id": "img",
            "md5": result.checksum,
            "multihash": result.multihash,
            "hashing_algo": "sha256",
            "size": len(data),
        }
    }
    assert store.kept_digests(result.location) == KeptDigests(
        result.checksum, result.multihash, "sha256", len(data)
    )
    store.delete(result.location)
    assert records(images) == {}


def test_a_duplicate_add_leaves_the_first_record(store, images):
    first = store.add("img", iter([b"first"]), 5)
    with pytest.raises(exceptions.Duplicate):
        store.add("img", iter([b"second!"]), 7)
    assert [r["md5"] for r in records(images).values()] == [first.checksum]
    assert store.kept_digests(first.location).checksum == first.checksum


def test_each_damage_is_found_and_named(store, images):
    for i, image_id in enumerate(["flipped", "truncated", "replaced", "whole"]):
        _add(store, image_id, payload(50_000, seed=i))
    with open(images / "flipped", "r+b") as f:
        f.seek(777)
        f.write(b"\xff")
    os.truncate(images / "truncated", 49_999)
    # A new file in its place has a new inode: no record is its.
    (images / "new").write_bytes(payload(50_000, seed=9))
    os.replace(images / "new", images / "replaced")
    verdicts = {c.image_id: c.verdict for c in scrub(store).checks}
    assert verdicts == {
        "flipped": Verdict.CORRUPT,
        "truncated": Verdict.TRUNCATED,
        "replaced": Verdict.UNVERIFIABLE,
        "whole": Verdict.OK,
    }
    recorded = scrub(store, record=True).checks
    assert [c.image_id for c in recorded if c.verdict is Verdict.RECORDED] == [
        "replaced"
    ]
    assert {c.image_id: c.verdict for c in scrub(store).checks}["replaced"] is (
        Verdict.OK
    )


def test_a_record_naming_another_image_is_not_trusted(store, images):
    # A stale record meeting a reused inode: it names the id it was for.
    location = _add(store, "img", b"data")
    [name] = os.listdir(images / RECORDS_DIR)
    record = json.loads((images / RECORDS_DIR / name).read_text())
    (images / RECORDS_DIR / name).write_text(json.dumps({**record, "id": "other"}))
    assert store.kept_digests(location) is None


@pytest.mark.parametrize(
    "planted", [b"not json", b"[]", b'{"id": "img", "md5": 1}', b" " * 5000]
)
def test_a_damaged_record_is_never_trusted(store, images, planted):
    location = _add(store, "img", b"data")
    [name] = os.listdir(images / RECORDS_DIR)
    (images / RECORDS_DIR / name).write_bytes(planted)
    assert store.kept_digests(location) is None


def test_a_symlink_planted_as_the_records_directory_is_not_followed(
    make_fs_store, mount_ramfs, tmp_path
):
    images = mount_ramfs("images")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, images / RECORDS_DIR)
    store = make_fs_store(filesystem_store_datadir=str(images))
    with pytest.raises(exceptions.FsstoreError) as caught:
        store.add("img", iter([b"data"]), 4)
    assert "img" in str(caught.value) and "\n" not in str(caught.value)
    assert os.listdir(elsewhere) == []
    assert sorted(os.listdir(images)) == [RECORDS_DIR]  # nothing published


def test_verify_on_read_without_xattrs(make_fs_store, images):
    store = make_fs_store(
        filesystem_store_datadir=str(images), filesystem_store_verify_on_read="true"
    )
    data = payload(200_000, seed=4)
    location = _add(store, "img", data)
    with open(images / "img", "r+b") as f:
        f.seek(199_000)
        f.write(b"\0\0")
    chunks, _ = store.get(location)
    with pytest.raises(exceptions.Corrupt, match="img"):
        b"".join(chunks)


def test_a_record_that_cannot_be_removed_does_not_fail_the_delete(store, images):
    location = _add(store, "img", b"data")
    [name] = os.listdir(images / RECORDS_DIR)
    os.unlink(images / RECORDS_DIR / name)
    (images / RECORDS_DIR / name).mkdir()  # unlink(2) refuses a directory
    (images / RECORDS_DIR / name / "x").write_bytes(b"")
    store.delete(location)
    with pytest.raises(exceptions.NotFound):
        store.get_size(location)


def test_a_failed_add_reports_its_own_error(store, images):
    # The records path is a file: the add fails on it, and removing the
    # loser's record on the way out (there is none) adds nothing to that.
    (images / RECORDS_DIR).write_bytes(b"not a directory")
    with pytest.raises(exceptions.BackendException, match="Not a directory"):
        store.add("img", iter([b"data"]), 4)
    assert sorted(os.listdir(images)) == [RECORDS_DIR]


def test_a_record_that_cannot_be_written_publishes_nothing(store, images, monkeypatch):
    # The disk fills while the record is written (ramfs has no size limit,
    # so the write is made to fail as a full disk fails it).
    import fsstore.safefiles as safefiles

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    # Records are written through the one helper that writes state files.
    monkeypatch.setattr(safefiles, "write_all", full)
    with pytest.raises(exceptions.StorageFull):
        store.add("img", iter([b"data"]), 4)
    assert os.listdir(images / RECORDS_DIR) == []  # no temporary left
    assert sorted(os.listdir(images)) == [RECORDS_DIR]  # no image
    monkeypatch.undo()
    result = store.add("img", iter([b"data"]), 4)
    assert store.kept_digests(result.location).checksum == result.checksum


# -- recording races what happens to the image meanwhile ----------------------------


def _unrecorded(store, images, image_id: str, data: bytes) -> str:
    """An image with no record, as if stored before digests were kept."""
    location = _add(store, image_id, data)
    inode = os.stat(images / image_id).st_ino
    os.unlink(images / RECORDS_DIR / str(inode))
    return location


def test_record_never_gives_a_readded_image_the_old_bytes_digests(
    make_fs_store, images
):
    store = make_fs_store(
        filesystem_store_datadir=str(images), filesystem_store_verify_on_read="true"
    )
    location = _unrecorded(store, images, "img", payload(300_000, seed=1))
    readd_while_recording(store, location, payload(300_000, seed=2), 300_000)
    inode = str(os.stat(images / "img").st_ino)
    assert list(records(images)) == [inode]  # nothing left for the old file


def test_record_never_replaces_a_record_written_while_it_read(store, images):
    data = payload(300_000, seed=3)
    location = _unrecorded(store, images, "img", data)
    kept_while_recording(store, location, data)


# -- a second name for one file (a hard link) ----------------------------------------


def test_two_names_of_one_file_both_verify_and_record_leaves_them(store, images):
    data = payload(70_000, seed=5)
    location = _add(store, "img", data)
    os.link(images / "img", images / "alias")  # an operator's second name
    before = records(images)
    assert {c.image_id: c.verdict for c in scrub(store).checks} == {
        "alias": Verdict.OK,
        "img": Verdict.OK,
    }
    # Nothing to record: both are verified by the one record, untouched.
    assert {c.image_id: c.verdict for c in scrub(store, record=True).checks} == {
        "alias": Verdict.OK,
        "img": Verdict.OK,
    }
    for _ in range(2):
        assert {c.verdict for c in scrub(store).checks} == {Verdict.OK}
    assert records(images) == before
    with open(images / "alias", "r+b") as f:  # one file: both names rot
        f.write(b"\0")
    assert {c.verdict for c in scrub(store).checks} == {Verdict.CORRUPT}
    assert store.kept_digests(location) is not None


def test_deleting_one_name_hands_the_record_to_the_other(store, images):
    location = _add(store, "img", payload(70_000, seed=6))
    os.link(images / "img", images / "alias")
    store.delete(location)
    [check] = scrub(store).checks
    assert (check.image_id, check.verdict) == ("alias", Verdict.OK)
    [record] = records(images).values()
    assert record["id"] == "alias"
    store.delete(check.location)
    assert records(images) == {}  # the last name takes it along


def test_a_record_is_not_trusted_through_a_name_of_another_file(store, images):
    # A stale record of a reused inode names an image that still exists,
    # but as another file: not a second name of this one.
    _add(store, "other", payload(100, seed=7))
    location = _add(store, "img", b"data")
    inode = str(os.stat(images / "img").st_ino)
    record = json.loads((images / RECORDS_DIR / inode).read_text())
    (images / RECORDS_DIR / inode).write_text(json.dumps({**record, "id": "other"}))
    assert store.kept_digests(location) is None
