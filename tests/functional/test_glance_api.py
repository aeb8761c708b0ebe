"""An unchanged Glance 33.0.0 API on fsstore_file and fsstore_s3, end to end.

One Glance API for the module (tests/glance_api.py): `fast` is fsstore_file,
`cloud` is fsstore_s3 on moto's server, beside the reserved staging and
tasks stores Glance makes itself (glance_store's own `file` driver). Every
check goes through Glance's HTTP API; the stores' contents are then looked
at directly (the data directory, the bucket) to see that Glance's word is
the truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_s3 import make_store, objects, s3_options
from tests.glance_api import GlanceAPI
from tests.helpers import tree

BACKENDS = ["fast", "cloud"]
# Large enough to take several reads of glance_store's 64 KiB chunks and,
# chunked, more than one part of a 5 MiB multipart upload.
SIZE = 11 * 1024 * 1024 + 7


@pytest.fixture(scope="module")
def bucket() -> str:
    return f"glance-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def glance(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, bucket: str
) -> Iterator[GlanceAPI]:
    work = tmp_path_factory.mktemp("glance")
    data = work / "data"
    api = GlanceAPI(
        work,
        {
            "DEFAULT": {
                "enabled_backends": "fast:fsstore_file, cloud:fsstore_s3",
                "enabled_import_methods": "[glance-direct, copy-image]",
            },
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": str(data / "fast")},
            # Small parts, so that a chunked upload is a real multipart one.
            "cloud": s3_options(
                s3_endpoint, bucket, s3_store_large_object_chunk_size="5"
            ),
        },
    )
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def bucket_store(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, bucket: str
) -> Any:
    """fsstore's own view of the bucket Glance writes to."""
    return make_store(tmp_path_factory.mktemp("view"), s3_endpoint, bucket=bucket)


def datadir(glance: GlanceAPI, name: str) -> Path:
    return glance.workdir / "data" / name


def stored(glance: GlanceAPI, bucket_store: Any, backend: str) -> list[str]:
    """The image ids the backend holds, read from the store itself."""
    if backend == "fast":
        return sorted(os.listdir(datadir(glance, "fast")))
    return objects(bucket_store)


def chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transfer", ["sized", "chunked"])
def test_upload_download_delete(glance, bucket_store, backend, transfer):
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    body = data if transfer == "sized" else chunks(data)
    glance.upload(image_id, body, backend)
    assert glance.image(image_id)["stores"] == backend
    assert image_id in stored(glance, bucket_store, backend)
    glance.assert_serves(image_id, data)

    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status == 204, deleted.body
    assert glance.request("GET", f"/v2/images/{image_id}").status == 404
    assert image_id not in stored(glance, bucket_store, backend)
    if backend == "cloud":
        listed = bucket_store.client.list_multipart_uploads(Bucket=bucket_store.bucket)
        assert not listed.get("Uploads")


@pytest.mark.parametrize("backend", BACKENDS)
def test_glance_direct_import_through_the_staging_store(glance, bucket_store, backend):
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    staged = glance.request("PUT", f"/v2/images/{image_id}/stage", data)
    assert staged.status == 204, staged.body
    staging = datadir(glance, "staging")
    assert (staging / image_id).read_bytes() == data
    assert glance.image(image_id)["status"] == "uploading"

    image = glance.import_image(image_id, "glance-direct", [backend])
    assert image["stores"] == backend
    assert image_id in stored(glance, bucket_store, backend)
    glance.assert_serves(image_id, data)
    # Glance removes the staged copy once the import is done.
    assert not (staging / image_id).exists()


def untag_locations(glance: GlanceAPI, image_id: str) -> None:
    """Make the image's locations as a pre-multi-store Glance wrote them."""
    with sqlite3.connect(glance.database) as db:
        changed = db.execute(
            "UPDATE image_locations SET meta_data = '{}' "
            "WHERE image_id = ? AND status = 'active'",
            (image_id,),
        ).rowcount
    assert changed == 1


def location_tags(glance: GlanceAPI, image_id: str) -> list[str]:
    return [meta for _, meta in glance.locations(image_id)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_untagged_location_is_claimed_by_its_store(glance, bucket_store, backend):
    """Glance tags a legacy location with the store whose url_prefix it has.

    Without that, an untagged file:// location is served by the reserved
    staging store, glance_store's own driver, which reads any path.
    """
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    glance.upload(image_id, data, backend)
    untag_locations(glance, image_id)
    assert location_tags(glance, image_id) == ["{}"]

    assert glance.image(image_id)["stores"] == backend
    assert location_tags(glance, image_id) == [f'{{"store": "{backend}"}}']
    glance.assert_serves(image_id, data)


def test_copy_image_then_delete_from_one_store(glance, bucket_store):
    data = os.urandom(SIZE)
    image_id = glance.create_image()
    glance.upload(image_id, data, "fast")

    image = glance.import_image(image_id, "copy-image", ["cloud"])
    assert image["os_glance_failed_import"] == ""
    assert image_id in stored(glance, bucket_store, "fast")
    assert image_id in stored(glance, bucket_store, "cloud")

    removed = glance.request("DELETE", f"/v2/stores/fast/{image_id}")
    assert removed.status == 204, removed.body
    assert glance.image(image_id)["stores"] == "cloud"
    assert image_id not in stored(glance, bucket_store, "fast")
    glance.assert_serves(image_id, data)
    # The copy in the bucket is the whole image, byte for byte.
    body = bucket_store.client.get_object(Bucket=bucket_store.bucket, Key=image_id)
    assert body["Body"].read() == data


def test_stores_are_listed(glance):
    listed = glance.request("GET", "/v2/info/stores")
    assert listed.status == 200
    assert listed.json()["stores"] == [
        {"id": "fast", "default": "true"},
        {"id": "cloud"},
    ]


def test_stores_detail_fails_in_glance_for_any_unknown_type(glance):
    """Glance 33 picks the properties function by the driver's type name.

    fsstore cannot change that: docs/glance.md says what an operator sees.
    This test notices the day Glance stops failing here.
    """
    detail = glance.request("GET", "/v2/info/stores/detail")
    assert detail.status == 500
    assert "TypeError" in glance.log_tail(200)


# -- locations the stores refuse ---------------------------------------------------
#
# Glance lets a user set an image's locations (PATCH /locations, with
# show_multiple_locations). Before it looks at a location it asks the store
# for the size (glance/quota: get_size, handling only NotFound, UnknownScheme
# and BadStoreUri), then checks it (glance/location.py: the same three). A
# location fsstore refuses must come back as a 4xx there, and as a 4xx when
# a location already in Glance's database is read or deleted.

MODES = ["single", "multi"]


@pytest.fixture(scope="module", params=MODES)
def locations_glance(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    s3_endpoint: str,
) -> Iterator[GlanceAPI]:
    """A Glance whose users may set locations: fsstore_file (`fast`) and
    fsstore_s3 (`cloud`), in single-store or multi-store mode."""
    mode = request.param
    work = tmp_path_factory.mktemp(f"glance-{mode}")
    data = work / "data"
    cloud = s3_options(s3_endpoint, f"{mode}-{uuid.uuid4().hex[:12]}")
    fast = {"filesystem_store_datadir": str(data / "fast")}
    sections: dict[str, dict[str, str]]
    if mode == "single":
        sections = {
            "DEFAULT": {"show_multiple_locations": "true"},
            "glance_store": {
                "stores": "fsstore_file, fsstore_s3",
                "default_store": "file",
                **fast,
                **cloud,
            },
        }
    else:
        sections = {
            "DEFAULT": {
                "enabled_backends": "fast:fsstore_file, cloud:fsstore_s3",
                "show_multiple_locations": "true",
            },
            "glance_store": {"default_backend": "fast"},
            "fast": fast,
            "cloud": cloud,
        }
    api = GlanceAPI(work, sections)
    api.start()
    yield api
    api.stop()


def refused_locations(
    glance: GlanceAPI, s3_endpoint: str, outside: Path
) -> dict[str, dict[str, Any]]:
    """Locations fsstore refuses, each with the store a user may tag it with
    in multi-store mode: outside the data directory (by path, by `..`, by a
    symlink planted in it), outside the bucket, and the store's own claims."""
    fast = datadir(glance, "fast")
    host = s3_endpoint.split("://", 1)[1]
    group = "cloud" if "cloud" in glance.sections else "glance_store"
    bucket = glance.sections[group]["s3_store_bucket"]
    return {
        "passwd": {"url": "file:///etc/passwd", "store": "fast"},
        "dotdot": {"url": f"file://{fast}/../../outside/secret", "store": "fast"},
        "symlink": {"url": f"file://{fast}/planted-link", "store": "fast"},
        "other-bucket": {"url": f"s3://{host}/not-the-bucket/key", "store": "cloud"},
        "claims": {"url": f"s3://{host}/{bucket}/.fsstore-claims/x", "store": "cloud"},
    }


@pytest.fixture
def outside(locations_glance: GlanceAPI) -> Path:
    """A file outside the data directory, and a symlink to it planted in it."""
    secret = locations_glance.workdir / "outside" / "secret"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(b"not an image")
    fast = datadir(locations_glance, "fast")
    fast.mkdir(parents=True, exist_ok=True)
    link = fast / "planted-link"
    if not link.is_symlink():
        link.symlink_to(secret)
    return secret


def location_value(case: dict[str, Any], tagged: bool) -> dict[str, Any]:
    metadata = {"store": case["store"]} if tagged else {}
    return {"url": case["url"], "metadata": metadata}


def patch(glance: GlanceAPI, image_id: str, changes: list[Any]) -> Any:
    return glance.request(
        "PATCH",
        f"/v2/images/{image_id}",
        changes,
        {"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )


def snapshot(glance: GlanceAPI, outside: Path) -> Any:
    fast = datadir(glance, "fast")
    return (
        tree(fast),
        outside.read_bytes(),
        os.readlink(fast / "planted-link"),
    )


def tagged_variants(glance: GlanceAPI) -> list[bool]:
    # In multi-store mode a user may tag a location with a backend, which
    # sends it to that backend's driver whatever its URL.
    return (
        [False, True] if "enabled_backends" in glance.sections["DEFAULT"] else [False]
    )


CASES = ["passwd", "dotdot", "symlink", "other-bucket", "claims"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("op", ["replace", "add"])
def test_setting_a_refused_location_is_a_4xx(
    locations_glance, s3_endpoint, outside, case, op
):
    glance = locations_glance
    before = snapshot(glance, outside)
    for tagged in tagged_variants(glance):
        image_id = glance.create_image()
        value = location_value(
            refused_locations(glance, s3_endpoint, outside)[case], tagged
        )
        change = (
            {"op": "replace", "path": "/locations", "value": [value]}
            if op == "replace"
            else {"op": "add", "path": "/locations/-", "value": value}
        )
        response = patch(glance, image_id, [change])
        assert 400 <= response.status < 500, (
            tagged,
            response.status,
            response.body[:300],
            glance.log_tail(30),
        )
        image = glance.image(image_id)
        assert image["status"] == "queued"
        assert image["locations"] == []
        assert image["size"] is None
    assert snapshot(glance, outside) == before


def set_location(glance: GlanceAPI, image_id: str, url: str, store: str) -> None:
    """Point an image's location elsewhere behind Glance's back, as a
    location written before fsstore (or by hand) would be."""
    meta = json.dumps({"store": store} if tagged_variants(glance)[-1] else {})
    with sqlite3.connect(glance.database) as db:
        changed = db.execute(
            "UPDATE image_locations SET value = ?, meta_data = ? "
            "WHERE image_id = ? AND status = 'active'",
            (url, meta, image_id),
        ).rowcount
    assert changed == 1


@pytest.mark.parametrize("case", CASES)
def test_reading_and_deleting_a_refused_location_is_a_4xx(
    locations_glance, s3_endpoint, outside, case
):
    glance = locations_glance
    image_id = glance.create_image()
    glance.upload(image_id, b"real image data")
    before = snapshot(glance, outside)
    location = refused_locations(glance, s3_endpoint, outside)[case]
    set_location(glance, image_id, location["url"], location["store"])

    download = glance.request("GET", f"/v2/images/{image_id}/file")
    assert 400 <= download.status < 500, (download.status, download.body[:300])
    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert 400 <= deleted.status < 500, (deleted.status, deleted.body[:300])
    assert snapshot(glance, outside) == before


# -- an image in two stores, one of its locations refused -------------------------
#
# DELETE /v2/stores/{store}/{image} (Glance's delete_from_store, multi-store
# only, and never for an image's last location) pops the image's location in
# that store: glance/common/store_utils.py safe_delete_from_backend asks the
# store to delete it, taking NotFound and StoreDeleteNotSupported as done;
# any other error puts the location back, and Glance answers by its class.
# The image delete goes through the same function; PATCH remove /locations/N
# too, where Glance answers 500 whatever the store raised.


@pytest.fixture
def s3_victims(
    locations_glance: GlanceAPI,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[], dict[str, dict[str, str]]]:
    """Objects at the refused S3 locations (a key of another bucket, a
    claim in Glance's bucket); what both buckets hold, each key's ETag."""
    group = "cloud" if "cloud" in locations_glance.sections else "glance_store"
    bucket = locations_glance.sections[group]["s3_store_bucket"]
    client = make_store(tmp_path_factory.mktemp("s3"), s3_endpoint).client
    buckets = (bucket, "not-the-bucket")
    for name in buckets:
        with contextlib.suppress(
            client.exceptions.BucketAlreadyOwnedByYou,
            client.exceptions.BucketAlreadyExists,
        ):
            client.create_bucket(Bucket=name)
    client.put_object(Bucket="not-the-bucket", Key="key", Body=b"not an image")
    client.put_object(Bucket=bucket, Key=".fsstore-claims/x", Body=b"a claim")

    def listed() -> dict[str, dict[str, str]]:
        return {
            name: {
                o["Key"]: o["ETag"]
                for o in client.list_objects_v2(Bucket=name).get("Contents", [])
            }
            for name in buckets
        }

    return listed


def add_location(
    glance: GlanceAPI, image_id: str, url: str, store: str, first: bool
) -> None:
    """A second location for the image, in `store`, behind Glance's back:
    before its own (Glance lists them in the order of their ids) or after."""
    meta = json.dumps({"store": store})
    with sqlite3.connect(glance.database) as db:
        db.execute(
            "INSERT INTO image_locations "
            "(image_id, value, meta_data, status, created_at, updated_at, deleted) "
            "SELECT image_id, value, meta_data, status, created_at, updated_at, "
            "deleted FROM image_locations WHERE image_id = ? AND status = 'active'",
            (image_id,),
        )
        ids = db.execute(
            "SELECT id FROM image_locations WHERE image_id = ? ORDER BY id",
            (image_id,),
        ).fetchall()
        assert len(ids) == 2
        (target,) = ids[0] if first else ids[1]
        db.execute(
            "UPDATE image_locations SET value = ?, meta_data = ? WHERE id = ?",
            (url, meta, target),
        )


def without(state: dict[str, Any], image_id: str) -> dict[str, Any]:
    """``state`` less the files and objects of the image ``image_id``."""
    return {
        "fast": {k: v for k, v in state["fast"].items() if image_id not in k},
        "buckets": {
            name: {k: v for k, v in keys.items() if image_id not in k}
            for name, keys in state["buckets"].items()
        },
        "victims": state["victims"],
    }


@pytest.mark.parametrize("locations_glance", ["multi"], indirect=True)
@pytest.mark.parametrize("first", ["refused", "other"])
@pytest.mark.parametrize("case", CASES)
def test_deleting_a_refused_location_from_its_store_is_a_4xx(
    locations_glance, s3_endpoint, outside, s3_victims, case, first
):
    """An image in both stores, its location in one of them refused."""
    glance = locations_glance
    refused = refused_locations(glance, s3_endpoint, outside)[case]
    store = refused["store"]
    other = next(b for b in BACKENDS if b != store)
    data = os.urandom(100_000)
    image_id = glance.create_image()
    glance.upload(image_id, data, other)
    add_location(glance, image_id, refused["url"], store, first == "refused")
    image = glance.image(image_id)
    listed = [loc["metadata"]["store"] for loc in image["locations"]]
    assert listed == ([store, other] if first == "refused" else [other, store])
    fast = datadir(glance, "fast")

    def state() -> dict[str, Any]:
        return {
            "fast": tree(fast),
            "buckets": s3_victims(),
            "victims": (outside.read_bytes(), os.readlink(fast / "planted-link")),
        }

    before = state()

    def unchanged() -> None:
        assert glance.image(image_id) == image
        assert state() == before
        download = glance.request("GET", f"/v2/images/{image_id}/file")
        assert (download.status, download.body) == (200, data)

    removed = glance.request("DELETE", f"/v2/stores/{store}/{image_id}")
    assert removed.status == 409, (removed.status, removed.body[:300])
    assert b"\n\nlocation " in removed.body  # fsstore's message, as it is
    unchanged()

    # Glance 33 answers 500 here whatever the store raised; safe all the same
    # (a test notices the day that changes).
    position = listed.index(store)
    change = {"op": "remove", "path": f"/locations/{position}"}
    removed = patch(glance, image_id, [change])
    assert removed.status == 500, (removed.status, removed.body[:300])
    unchanged()

    # Glance deletes an image's locations one by one and stops at the refused
    # one: a copy it reached first is gone, the refused location stays.
    deleted = glance.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status == 403, (deleted.status, deleted.body[:300])
    if first == "refused":
        unchanged()
    else:
        left = [loc for loc in image["locations"] if loc["metadata"]["store"] == store]
        assert glance.image(image_id) == {**image, "locations": left, "stores": store}
        assert state() == without(before, image_id) != before
