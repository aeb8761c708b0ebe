"""Scrub on real files: damage one image in each way behind the store's back;
each is found and named, and nothing else is reported."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.backends.filesystem.digests import (
    ATTRIBUTE,
    PREFIX,
    encode_attribute,
    parse_attribute,
)
from fsstore.cache import ImageCache, Prefetcher
from fsstore.hashing import KeptDigests
from fsstore.registry import StoreRegistry
from fsstore.scrub import Expected, Verdict, load_expected, scrub
from fsstore.testing.cache_suite import make_cache_conf
from fsstore.testing.suite import payload
from tests.scrub_races import kept_while_recording, readd_while_recording


def _add(store, image_id: str, data: bytes) -> str:
    return store.add(image_id, iter([data]), len(data)).location


@pytest.fixture
def damaged(make_fs_store, tmp_path):
    """A store of eight images, five of them damaged, each its own way."""
    store = make_fs_store(
        filesystem_store_datadirs=[f"{tmp_path}/a:2", f"{tmp_path}/b:1"]
    )
    images = tmp_path / "a"
    sizes = {
        "flipped": 300_000,
        "truncated": 70_000,
        "replaced": 5000,
        "stripped": 1000,
        "grown": 4096,
        "whole": 2 * 1024 * 1024 + 5,
        "empty": 0,
        "also-whole": 12,
    }
    for i, (image_id, size) in enumerate(sorted(sizes.items())):
        _add(store, image_id, payload(size, seed=i))
    with open(images / "flipped", "r+b") as f:
        f.seek(123_456)
        byte = f.read(1)
        f.seek(123_456)
        f.write(bytes([byte[0] ^ 0x01]))
    os.truncate(images / "truncated", 69_999)
    with open(images / "grown", "ab") as f:
        f.write(b"x")
    # Replaced by a copy with the digests kept too (cp --preserve=xattr):
    # only the content tells.
    other = tmp_path / "other"
    other.write_bytes(payload(5000, seed=99))
    for name in os.listxattr(images / "replaced"):
        os.setxattr(other, name, os.getxattr(images / "replaced", name))
    os.replace(other, images / "replaced")
    for name in os.listxattr(images / "stripped"):
        os.removexattr(images / "stripped", name)
    return store


def test_each_damage_is_found_and_named(damaged):
    report = scrub(damaged)
    verdicts = {c.image_id: c.verdict for c in report.checks}
    assert verdicts == {
        "also-whole": Verdict.OK,
        "empty": Verdict.OK,
        "flipped": Verdict.CORRUPT,
        "grown": Verdict.CORRUPT,
        "replaced": Verdict.CORRUPT,
        "stripped": Verdict.UNVERIFIABLE,
        "truncated": Verdict.TRUNCATED,
        "whole": Verdict.OK,
    }
    assert report.failed
    details = {c.image_id: c.detail for c in report.checks}
    assert details["truncated"] == "69999 of 70000 bytes"
    assert details["flipped"].startswith("md5 ")
    assert report.bytes_read == sum(c.bytes_read for c in report.checks) > 0


def test_digests_are_kept_before_publish(make_fs_store, tmp_path):
    store = make_fs_store()
    data = payload(70_000, seed=3)
    result = store.add("img", iter([data]), 0, hashing_algo="sha256")
    path = tmp_path / "images" / "img"
    # One attribute, set once (digests.py says why).
    assert os.listxattr(path) == [ATTRIBUTE]
    assert os.getxattr(path, ATTRIBUTE).decode() == (
        f"{result.checksum} sha256 {result.multihash} {len(data)}"
    )
    assert store.kept_digests(result.location) == KeptDigests(
        result.checksum, result.multihash, "sha256", len(data)
    )


LEGACY = ("md5", "multihash", "hashing_algo", "size")


def legacy_digests(path: Path, kept: KeptDigests) -> None:
    """Keep ``kept`` with ``path`` as earlier releases did: four attributes."""
    os.removexattr(path, ATTRIBUTE)
    values = (kept.checksum, kept.multihash, kept.hashing_algo, str(kept.size))
    for field, value in zip(LEGACY, values, strict=True):
        os.setxattr(path, PREFIX + field, value.encode())


def test_digests_kept_by_earlier_releases_are_read_and_never_replaced(
    make_fs_store, tmp_path
):
    store = make_fs_store()
    data = payload(5000, seed=8)
    result = store.add("old", iter([data]), len(data))
    kept = store.kept_digests(result.location)
    assert kept is not None
    path = tmp_path / "images" / "old"
    legacy_digests(path, kept)
    assert store.kept_digests(result.location) == kept
    report = scrub(store, record=True)
    assert [c.verdict for c in report.checks] == [Verdict.OK]
    # Recording found them kept: nothing new was written.
    assert sorted(os.listxattr(path)) == sorted(PREFIX + f for f in LEGACY)
    # Any one of the four missing or malformed: not kept (never trusted).
    os.setxattr(path, PREFIX + "size", b"5k")
    assert store.kept_digests(result.location) is None
    os.removexattr(path, PREFIX + "size")
    assert store.kept_digests(result.location) is None


@given(st.binary(max_size=300))
def test_any_attribute_value_is_parsed_or_refused(value):
    parsed = parse_attribute(value)
    if parsed is not None:
        assert encode_attribute(parsed) == value


@given(
    st.text("0123456789abcdef", min_size=1, max_size=128),
    st.sampled_from(["sha256", "sha512", "sha3_512", "blake2b"]),
    st.text("0123456789abcdef", min_size=1, max_size=128),
    st.integers(min_value=0, max_value=2**63),
)
def test_the_attribute_round_trips(md5, algo, multihash, size):
    kept = KeptDigests(md5, multihash, algo, size)
    assert parse_attribute(encode_attribute(kept)) == kept


def test_an_image_that_cannot_be_read_is_unreadable(damaged, tmp_path):
    # Listed, then removed before its turn: the read fails, the scrub goes on.
    def remove_whole(check) -> None:
        if check.image_id == "also-whole":
            os.unlink(tmp_path / "a" / "whole")

    report = scrub(damaged, on_image=remove_whole)
    checks = {c.image_id: c for c in report.checks}
    assert checks["whole"].verdict is Verdict.UNREADABLE
    assert "not found" in checks["whole"].detail
    assert len(checks) == 8


def _stopped_after_three(
    store, checkpoint: Path, every: float, **options: object
) -> list[str]:
    """Scrub (with ``options``) with a checkpoint written at most every
    ``every`` seconds, interrupted after its third image; the images it
    checked."""
    seen: list[str] = []

    def stop_after_three(check) -> None:
        seen.append(check.image_id)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scrub(
            store,
            checkpoint=checkpoint,
            on_image=stop_after_three,
            checkpoint_every=every,
            **options,
        )
    return seen


def test_resume_skips_what_was_checked(damaged, tmp_path):
    checkpoint = tmp_path / "scrub.json"
    seen = _stopped_after_three(damaged, checkpoint, every=0)  # every image
    again: list[str] = []
    totals: list[int] = []
    report = scrub(
        damaged,
        checkpoint=checkpoint,
        resume=True,
        on_image=lambda c: again.append(c.image_id),
        on_total=totals.append,
    )
    assert seen == ["also-whole", "empty", "flipped"]
    assert again == ["grown", "replaced", "stripped", "truncated", "whole"]
    assert [c.image_id for c in report.checks] == seen + again
    # The bytes left when resumed: what the images not yet checked held.
    assert totals == [sum(c.bytes_read for c in report.checks[3:])]


def test_between_checkpoints_a_stopped_scrub_checks_again_only_since(damaged, tmp_path):
    # Written after the first image, then at most once an hour here: the
    # images after the first are checked again, each reported once.
    checkpoint = tmp_path / "scrub.json"
    _stopped_after_three(damaged, checkpoint, every=3600)
    report = scrub(damaged, checkpoint=checkpoint, resume=True)
    assert report.resumed == 1
    ids = [c.image_id for c in report.checks]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 8


# -- verify on read ---------------------------------------------------------------


def _flip(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x80]))


@pytest.fixture
def rotten(make_fs_store, tmp_path):
    """A store that verifies on read, one of whose images rotted."""
    store = make_fs_store(filesystem_store_verify_on_read="true")
    data = payload(3 * 1024 * 1024 + 7, seed=5)
    location = _add(store, "rotten", data)
    whole = _add(store, "whole", data)
    _flip(tmp_path / "images" / "rotten", len(data) - 3)
    return store, location, data, whole


def test_a_whole_read_of_a_rotten_image_raises_at_its_end(rotten):
    store, location, data, whole_location = rotten
    chunks, length = store.get(location)
    received = bytearray()
    with pytest.raises(exceptions.Corrupt, match="rotten.*md5"):
        for chunk in chunks:
            received += chunk
    assert len(received) == length == len(data)  # every byte, then the error
    whole = store.get(whole_location)[0]
    assert b"".join(whole) == data


def test_ranged_reads_and_stores_that_do_not_verify_are_unchanged(
    rotten, make_fs_store, tmp_path
):
    store, location, data, _ = rotten
    chunks, _ = store.get(location, offset=0, chunk_size=len(data))
    assert len(b"".join(chunks)) == len(data)  # a range is not checked
    plain = make_fs_store(conf_name="plain.conf")
    assert plain.verify_on_read is False
    assert len(b"".join(plain.get(location)[0])) == len(data)


def test_the_cache_never_keeps_a_rotten_image(rotten, tmp_path):
    store, location, _, whole = rotten
    registry = StoreRegistry(store.conf)
    cache = ImageCache(make_cache_conf(tmp_path / "cache", "sqlite"))
    # Unverified on purpose: only the store's own check can stop it.
    unverified = Expected(allow_unverified=True)
    cache.queue_image("rotten", location=location, expected=unverified)
    cache.queue_image("whole", location=whole, expected=unverified)
    report = Prefetcher(cache, registry, workers=1).run()
    assert sorted(report.cached) == ["whole"]
    assert "rotten" in report.failed and "md5" in report.failed["rotten"]
    assert not cache.is_cached("rotten")
    assert os.listdir(tmp_path / "cache" / "incomplete") == []


def test_scrub_on_a_store_that_verifies_still_says_corrupt(rotten):
    store = rotten[0]
    verdicts = {c.image_id: c.verdict for c in scrub(store).checks}
    assert verdicts == {"rotten": Verdict.CORRUPT, "whole": Verdict.OK}


# -- images without kept digests: --record, --expected ------------------------------


def test_record_keeps_digests_once_then_they_are_checked(damaged, tmp_path):
    first = {c.image_id: c for c in scrub(damaged, record=True).checks}
    assert first["stripped"].verdict is Verdict.RECORDED
    assert first["flipped"].verdict is Verdict.CORRUPT  # never recorded over
    kept = damaged.kept_digests(first["stripped"].location)
    assert kept is not None and kept.size == 1000
    again = {c.image_id: c.verdict for c in scrub(damaged).checks}
    assert again["stripped"] is Verdict.OK
    _flip(tmp_path / "a" / "stripped", 10)
    assert {c.image_id: c.verdict for c in scrub(damaged).checks}[
        "stripped"
    ] is Verdict.CORRUPT


def test_expected_digests_name_what_differs(damaged, tmp_path):
    def digests(image_id: str, seed: int, size: int) -> dict[str, str]:
        data = payload(size, seed=seed)
        return {
            "id": image_id,
            "checksum": hashlib.md5(data).hexdigest(),
            "os_hash_algo": "sha512",
            "os_hash_value": hashlib.sha512(data).hexdigest(),
        }

    # Seeds as the fixture gave them, in sorted id order.
    rows = [
        digests("stripped", 5, 1000),  # nothing kept: the expectation decides
        digests("whole", 7, 2 * 1024 * 1024 + 5),
        {**digests("also-whole", 0, 12), "checksum": "0" * 32},  # Glance disagrees
    ]
    listed = tmp_path / "expected.json"
    listed.write_text(json.dumps(rows))
    verdicts = {
        c.image_id: c.verdict
        for c in scrub(damaged, expected=load_expected(listed), record=True).checks
    }
    assert verdicts["stripped"] is Verdict.RECORDED
    assert verdicts["whole"] is Verdict.OK
    # It matches what was kept: not corrupt, but a conflict (a failure too).
    assert verdicts["also-whole"] is Verdict.CONFLICT
    assert verdicts["empty"] is Verdict.OK  # no expectation: what was kept


def test_a_scrub_goes_on_when_digests_cannot_be_kept(damaged, tmp_path):
    # "stripped" grows while it is read (after its size was taken): the
    # digests just computed are not its own, so they are not kept.
    reading_stripped = []

    def after(check) -> None:
        reading_stripped.append(check.image_id == "replaced")

    def grow(_n: int) -> None:
        if reading_stripped and reading_stripped[-1]:
            with open(tmp_path / "a" / "stripped", "ab") as f:
                f.write(b"late")
            reading_stripped.append(False)

    report = scrub(damaged, record=True, on_image=after, on_bytes=grow)
    checks = {c.image_id: c for c in report.checks}
    assert checks["stripped"].verdict is Verdict.UNVERIFIABLE
    assert "changed while it was scrubbed" in checks["stripped"].detail
    assert os.listxattr(tmp_path / "a" / "stripped") == []
    assert checks["truncated"].verdict is Verdict.TRUNCATED  # and it went on
    assert len(checks) == 8


def test_a_fifo_at_an_image_name_neither_hangs_nor_gets_digests(
    make_fs_store, tmp_path
):
    store = make_fs_store()
    os.mkfifo(tmp_path / "images" / "planted")
    location = f"file://{tmp_path}/images/planted"
    outcome: list[object] = []

    def touch_it() -> None:
        outcome.append(store.kept_digests(location))
        try:
            store.keep_digests(location, KeptDigests("a" * 32, "b" * 128, "sha512", 0))
        except exceptions.Forbidden as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=touch_it, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "opening a FIFO blocked"
    assert outcome[0] is None
    assert "is not an image file" in str(outcome[1])
    assert os.listxattr(tmp_path / "images" / "planted") == []


# -- expected digests in another algorithm than the kept ones ------------------------


def _glance_row(image_id: str, data: bytes, algo: str, **changed: str) -> dict:
    return {
        "id": image_id,
        "checksum": hashlib.md5(data).hexdigest(),
        "os_hash_algo": algo,
        "os_hash_value": hashlib.new(algo, data).hexdigest(),
        **changed,
    }


def test_expected_in_another_algorithm_is_computed_in_the_same_pass(
    make_fs_store, tmp_path
):
    store = make_fs_store()
    data = {f"img{i}": payload(3 * 1024 * 1024 + i, seed=i) for i in range(3)}
    for image_id, body in data.items():
        _add(store, image_id, body)  # kept: sha512
    listed = tmp_path / "expected.json"
    listed.write_text(
        json.dumps(
            [
                _glance_row("img0", data["img0"], "sha256"),
                _glance_row("img1", data["img1"], "sha384"),
                _glance_row("img2", data["img2"], "sha256", os_hash_value="0" * 64),
            ]
        )
    )
    report = scrub(store, expected=load_expected(listed))
    checks = {c.image_id: c for c in report.checks}
    assert checks["img0"].verdict is Verdict.OK
    assert checks["img1"].verdict is Verdict.OK
    # The bytes match what was kept: never corrupt, but Glance disagrees.
    assert checks["img2"].verdict is Verdict.CONFLICT
    assert "sha256" in checks["img2"].detail and "0" * 64 in checks["img2"].detail
    assert report.bytes_read == sum(len(body) for body in data.values())  # one pass


def test_bytes_that_match_the_expected_digests_are_never_corrupt(damaged, tmp_path):
    # "replaced" has the kept digests of other bytes; Glance's are of these.
    body = payload(5000, seed=99)
    listed = tmp_path / "expected.json"
    listed.write_text(json.dumps([_glance_row("replaced", body, "sha256")]))
    report = scrub(damaged, expected=load_expected(listed))
    [check] = [c for c in report.checks if c.image_id == "replaced"]
    assert check.verdict is Verdict.CONFLICT
    assert "kept" in check.detail
    assert report.failed


# -- the checkpoint file ---------------------------------------------------------------


def test_no_name_beside_the_checkpoint_redirects_its_write(damaged, tmp_path):
    # Links planted at every name a temporary file could have had: the
    # old pid-named one, and the checkpoint's own name with a dot.
    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "precious"
    victim.write_bytes(b"precious")
    for name in (f".scrub.json.{os.getpid()}", ".scrub.json"):
        (state / name).symlink_to(victim)
    scrub(damaged, checkpoint=state / "scrub.json")
    assert victim.read_bytes() == b"precious"
    assert json.loads((state / "scrub.json").read_text())["images"]
    assert sorted(os.listdir(state)) == sorted(
        [f".scrub.json.{os.getpid()}", ".scrub.json", "scrub.json"]
    )
    assert (state / f".scrub.json.{os.getpid()}").is_symlink()


def test_a_missing_data_directory_is_named_and_fails_the_scrub(damaged, tmp_path):
    os.rename(tmp_path / "a", tmp_path / "a.unmounted")
    report = scrub(damaged)
    assert report.unavailable[0] == f"data directory {tmp_path}/a is missing"
    assert report.failed
    assert report.checks == []  # b holds nothing
    os.rename(tmp_path / "a.unmounted", tmp_path / "a")
    # b, made by configure, is empty below a directory holding images.
    assert damaged.unavailable() == []


# -- recording races what happens to the image meanwhile ----------------------------


def _strip(path: Path) -> None:
    for name in os.listxattr(path):
        os.removexattr(path, name)


@pytest.mark.parametrize("staging", ["tmpfile", "named"])
def test_record_never_gives_a_readded_image_the_old_bytes_digests(
    make_fs_store, tmp_path, staging
):
    store = make_fs_store(staging, filesystem_store_verify_on_read="true")
    old = payload(300_000, seed=1)
    location = _add(store, "img", old)
    _strip(tmp_path / "images" / "img")  # as if stored before digests were kept
    readd_while_recording(store, location, payload(300_000, seed=2), 300_000)


def test_record_never_replaces_digests_kept_while_it_read(make_fs_store, tmp_path):
    store = make_fs_store()
    data = payload(300_000, seed=3)
    location = _add(store, "img", data)
    _strip(tmp_path / "images" / "img")
    # Another recorder (a second scrub, in another algorithm) gets there
    # first, while this one reads.
    kept_while_recording(store, location, data)
    assert [c.verdict for c in scrub(store).checks] == [Verdict.OK]


def test_a_resumed_verdict_of_an_image_deleted_since_is_dropped(damaged, tmp_path):
    """Checked ok before the kill, deleted before the resume: not ok in
    this pass (it is not there), and missing when Glance expects it."""
    checkpoint = tmp_path / "scrub.json"
    expected = {"also-whole": Expected(None, None)}
    seen = _stopped_after_three(damaged, checkpoint, every=0, expected=expected)
    assert seen[0] == "also-whole"
    os.unlink(tmp_path / "a" / "also-whole")
    report = scrub(damaged, checkpoint=checkpoint, resume=True, expected=expected)
    verdicts = {c.image_id: c.verdict for c in report.checks}
    assert verdicts["also-whole"] is Verdict.MISSING
    assert report.resumed == 2  # empty, flipped
    assert report.failed


def test_a_checkpoint_path_holding_another_file_is_left_alone(damaged, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"important user data")
    report = json.dumps(scrub(damaged).as_dict()).encode()  # a scrub's JSON report
    glance = b'{"images": [{"id": "x"}], "first": "/v2/images", "schema": "s"}'
    for body in (b"important user data", b"[1, 2]", glance, report):
        notes.write_bytes(body)
        for resume in (False, True):
            with pytest.raises(exceptions.Invalid, match="is not a scrub checkpoint"):
                scrub(damaged, checkpoint=notes, resume=resume)
        assert notes.read_bytes() == body
    # A checkpoint of any store is the scrub's to start over.
    scrub(damaged, checkpoint=tmp_path / "scrub.json")
    scrub(damaged, checkpoint=tmp_path / "scrub.json")
