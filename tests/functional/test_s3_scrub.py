"""Digests kept with S3 images, checked on real engines: objects damaged
behind the store's back in each way are found and named, and nothing else is
reported. Runs on every engine --s3-engines names."""

from __future__ import annotations

import hashlib
import json

import pytest

from fsstore import exceptions
from fsstore.backends.s3.digests import record_key
from fsstore.hashing import KeptDigests
from fsstore.scrub import Verdict, scrub
from fsstore.testing.suite import payload, read_all
from tests.engines import with_records
from tests.functional.test_cli import run
from tests.functional.test_s3 import make_store, objects
from tests.helpers import write_conf
from tests.scrub_races import kept_while_recording, readd_while_recording

#: Past this, images go up in parts (s3_store_large_object_size, MiB).
LARGE = 6 * 1024 * 1024


def big_store(tmp_path, engine, **extra):
    return make_store(
        tmp_path,
        engine,
        s3_store_large_object_size="5",
        s3_store_large_object_chunk_size="5",
        **extra,
    )


def _put_behind(store, key: str, body: bytes, **extra) -> None:
    """Another program writes the object: the store is not asked."""
    store.client.put_object(Bucket=store.bucket, Key=key, Body=body, **extra)


@pytest.mark.parametrize("size", [1000, LARGE + 7], ids=["put", "multipart"])
def test_digests_are_kept_on_both_paths(tmp_path, s3_engine, size):
    store = big_store(tmp_path, s3_engine)
    data = payload(size, seed=5)
    result = store.add("img", iter([data]), 0 if size > LARGE else size, "sha256")
    kept = KeptDigests(result.checksum, result.multihash, "sha256", size)
    assert result.checksum == hashlib.md5(data).hexdigest()
    assert store.kept_digests(result.location) == kept
    record = store.client.get_object(Bucket=store.bucket, Key=record_key("img"))
    assert json.loads(record["Body"].read()) == {
        "md5": kept.checksum,
        "multihash": kept.multihash,
        "hashing_algo": "sha256",
        "size": size,
    }
    head = store.client.head_object(Bucket=store.bucket, Key="img")
    metadata = {name.lower(): value for name, value in head["Metadata"].items()}
    if size > LARGE:
        # Metadata is fixed before the first part: the record alone.
        assert "fsstore-md5" not in metadata
    else:
        assert metadata["fsstore-md5"] == kept.checksum
        assert metadata["fsstore-multihash"] == kept.multihash
        assert metadata["fsstore-hashing-algo"] == "sha256"
        assert metadata["fsstore-size"] == str(size)
    assert list(store.images()) == [
        (result.location.rsplit("/")[-1], result.location, size)
    ]
    store.delete(result.location)
    assert objects(store) == []


@pytest.fixture
def damaged(tmp_path, s3_engine):
    """Images added by the store, then damaged behind its back, each its
    own way; and two it never wrote."""
    store = big_store(tmp_path, s3_engine)
    sizes = {
        "whole": 3000,
        "whole-parts": LARGE + 11,
        "empty": 0,
        "overwritten": 4000,
        "overwritten-parts": LARGE + 13,
        "overwritten-keeping-metadata": 5000,
        "truncated": 7000,
        "record-lost": 2000,
    }
    for i, (image_id, size) in enumerate(sorted(sizes.items())):
        data = payload(size, seed=i)
        store.add(image_id, iter([data]), 0 if size > LARGE else size)
    # A plain PutObject of other bytes: the metadata goes, the record stays.
    _put_behind(store, "overwritten", payload(4000, seed=90))
    _put_behind(store, "overwritten-parts", payload(100, seed=91))
    # The same, by a program that copies the old metadata over.
    head = store.client.head_object(
        Bucket=store.bucket, Key="overwritten-keeping-metadata"
    )
    _put_behind(
        store,
        "overwritten-keeping-metadata",
        payload(5000, seed=92),
        Metadata=head["Metadata"],
    )
    truncated = read_all(store, f"s3://{store.host}/{store.bucket}/truncated")
    _put_behind(store, "truncated", truncated[:6999])
    # A lost record: the object's own metadata still tells.
    store.client.delete_object(Bucket=store.bucket, Key=record_key("record-lost"))
    # Written by another program (Glance's own driver): nothing kept.
    _put_behind(store, "foreign", payload(3333, seed=93))
    return store


def test_each_damage_is_found_and_named(damaged):
    report = scrub(damaged)
    verdicts = {c.image_id: c.verdict for c in report.checks}
    assert verdicts == {
        "empty": Verdict.OK,
        "foreign": Verdict.UNVERIFIABLE,
        "overwritten": Verdict.CORRUPT,
        "overwritten-keeping-metadata": Verdict.CORRUPT,
        "overwritten-parts": Verdict.TRUNCATED,
        "record-lost": Verdict.OK,
        "truncated": Verdict.TRUNCATED,
        "whole": Verdict.OK,
        "whole-parts": Verdict.OK,
    }
    details = {c.image_id: c.detail for c in report.checks}
    assert details["truncated"] == "6999 of 7000 bytes"
    assert details["overwritten"].startswith("md5 ")
    assert report.failed


def test_record_then_scrub_again(damaged):
    first = scrub(damaged, record=True)
    assert {c.image_id for c in first.checks if c.verdict is Verdict.RECORDED} == {
        "foreign"
    }
    second = scrub(damaged)
    verdicts = {c.image_id: c.verdict for c in second.checks}
    assert verdicts["foreign"] is Verdict.OK
    # Recording never blesses a damaged image: it had digests kept.
    assert verdicts["overwritten"] is Verdict.CORRUPT


def test_the_listing_leaves_out_claims_records_and_foreign_keys(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine)
    store.add("img", iter([b"abc"]), 3)
    _put_behind(store, ".fsstore-claims/other", b"{}")
    _put_behind(store, "dir/nested", b"no add writes a key with a slash")
    assert list(store.images()) == [("img", f"s3://{store.host}/{store.bucket}/img", 3)]


@pytest.mark.parametrize(
    "planted",
    [b"not json", b"[]", b'{"md5": 1}', b" " * 5000],
    ids=["text", "list", "fields", "oversized"],
)
def test_a_damaged_record_is_never_trusted(tmp_path, s3_engine, planted):
    store = big_store(tmp_path, s3_engine)
    location = store.add("img", iter([payload(LARGE + 1)]), 0).location
    _put_behind(store, record_key("img"), planted)
    assert store.kept_digests(location) is None
    [check] = scrub(store).checks
    assert check.verdict is Verdict.UNVERIFIABLE


def test_verify_on_read_raises_at_the_end_of_an_overwritten_image(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine, s3_store_verify_on_read="true")
    location = store.add("img", iter([payload(4000)]), 4000).location
    assert read_all(store, location) == payload(4000)
    _put_behind(store, "img", payload(4000, seed=1))
    chunks, _ = store.get(location)
    with pytest.raises(exceptions.Corrupt, match="img"):
        b"".join(chunks)
    # A range is not checked.
    chunks, _ = store.get(location, 0, 10)
    assert b"".join(chunks) == payload(4000, seed=1)[:10]


def test_scrub_command_on_an_s3_store(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine)
    store.add("kept", iter([payload(2000)]), 2000)
    _put_behind(store, "rotten", payload(2000, seed=1))
    store.keep_digests(
        f"s3://{store.host}/{store.bucket}/rotten",
        KeptDigests(hashlib.md5(b"x").hexdigest(), "00", "sha512", 2000),
    )
    conf = write_conf(
        tmp_path / "cli.conf",
        {
            "glance_store": {
                "stores": "s3",
                "default_store": "s3",
                **s3_engine.options(store.bucket),
            }
        },
    )
    found = run(
        "--config-file",
        str(conf),
        "--format",
        "json",
        "scrub",
        "--checkpoint",
        str(tmp_path / "scrub.json"),
    )
    assert found.returncode == 1, found.stderr
    record = json.loads(found.stdout)
    verdicts = {i["image_id"]: i["verdict"] for i in record["images"]}
    assert verdicts == {"kept": "ok", "rotten": "corrupt"}
    assert found.stderr == b""


@pytest.mark.parametrize("size", [1000, LARGE + 7], ids=["put", "multipart"])
def test_an_image_whose_record_cannot_be_written_is_not_published(
    tmp_path, s3_engine, size
):
    from botocore.exceptions import ConnectionClosedError

    store = big_store(tmp_path, s3_engine)
    store.add("bucket-made", iter([b"x"]), 1)

    def refuse_records(params, **kwargs):
        if params["Key"].startswith(".fsstore-digests/img"):
            raise ConnectionClosedError(endpoint_url=s3_engine.endpoint)

    store.client.meta.events.register(
        "before-parameter-build.s3.PutObject", refuse_records
    )
    with pytest.raises(exceptions.BackendException, match="keeping the digests"):
        store.add("img", iter([payload(size)]), 0 if size > LARGE else size)
    assert objects(store) == with_records("bucket-made")
    listed = store.client.list_multipart_uploads(Bucket=store.bucket)
    assert listed.get("Uploads", []) == []


def test_a_stale_record_is_replaced_by_the_next_add(tmp_path, s3_engine):
    # Left by an add that died between its record and its publish.
    store = big_store(tmp_path, s3_engine)
    store.add("bucket-made", iter([b"x"]), 1)
    stale = KeptDigests("0" * 32, "0" * 128, "sha512", 3)
    store.records.put("img", stale)
    result = store.add("img", iter([b"new image"]), 9)
    assert store.kept_digests(result.location) == KeptDigests(
        result.checksum, result.multihash, "sha512", 9
    )
    assert {c.image_id: c.verdict for c in scrub(store).checks}["img"] is Verdict.OK


def test_a_delete_whose_record_cannot_be_removed_still_deletes(tmp_path, s3_engine):
    from botocore.exceptions import ConnectionClosedError

    store = big_store(tmp_path, s3_engine)
    location = store.add("img", iter([b"old"]), 3).location

    def refuse_record_deletes(params, **kwargs):
        if params["Key"].startswith(".fsstore-digests/"):
            raise ConnectionClosedError(endpoint_url=s3_engine.endpoint)

    store.client.meta.events.register(
        "before-parameter-build.s3.DeleteObject", refuse_record_deletes
    )
    store.delete(location)
    with pytest.raises(exceptions.NotFound):
        store.get_size(location)
    assert objects(store) == [record_key("img")]  # left, and harmless:
    store.client.meta.events.unregister(
        "before-parameter-build.s3.DeleteObject", refuse_record_deletes
    )
    result = store.add("img", iter([b"new!"]), 4)
    assert store.kept_digests(result.location).checksum == result.checksum


def test_a_checkpoint_of_another_bucket_is_refused(tmp_path, s3_engine):
    # Both stores are named "s3": a checkpoint is told apart by endpoint
    # and bucket, never by the name.
    good, bad = big_store(tmp_path, s3_engine), big_store(tmp_path, s3_engine)
    for store in (good, bad):
        store.add("img", iter([payload(3000)]), 3000)
    _put_behind(bad, "img", payload(3000, seed=1))
    checkpoint = tmp_path / "scrub.json"
    assert not scrub(good, checkpoint=checkpoint).failed
    with pytest.raises(exceptions.Invalid, match="another store"):
        scrub(bad, checkpoint=checkpoint, resume=True)
    assert good.identity() != bad.identity()
    assert scrub(bad, checkpoint=checkpoint).failed


# -- recording races what happens to the image meanwhile ----------------------------


@pytest.mark.parametrize("size", [3000, LARGE + 7], ids=["put", "multipart"])
def test_record_never_gives_a_readded_image_the_old_bytes_digests(
    tmp_path, s3_engine, size
):
    store = big_store(tmp_path, s3_engine, s3_store_verify_on_read="true")
    store.bucket_ready.ensure()
    _put_behind(store, "img", payload(size, seed=1))  # nothing kept
    location = f"s3://{store.host}/{store.bucket}/img"
    readd_while_recording(
        store, location, payload(size, seed=2), 0 if size > LARGE else size
    )


def test_record_never_replaces_a_record_written_while_it_read(tmp_path, s3_engine):
    store = big_store(tmp_path, s3_engine)
    data = payload(3000, seed=3)
    store.bucket_ready.ensure()
    _put_behind(store, "img", data)
    location = f"s3://{store.host}/{store.bucket}/img"
    kept_while_recording(store, location, data)


def test_an_image_replaced_between_its_record_and_its_body_is_read_again(
    tmp_path, s3_engine
):
    # The record and the image are two objects, read one after the other:
    # an add of the id in between must not make the new image corrupt.
    store = big_store(tmp_path, s3_engine)
    location = store.add("img", iter([payload(3000, seed=1)]), 3000).location
    new = payload(3000, seed=2)
    replaced = []

    def readd(params, **kwargs):
        if params["Key"] == "img" and not replaced:
            replaced.append(True)
            store.delete(location)
            store.add("img", iter([new]), len(new))

    event = "before-parameter-build.s3.GetObject"
    store.client.meta.events.register(event, readd)
    try:
        [check] = scrub(store).checks
    finally:
        store.client.meta.events.unregister(event, readd)
    assert replaced
    assert (check.verdict, check.detail) == (Verdict.OK, "")
    assert check.bytes_read == 2 * len(new)  # read once more, whole
