"""The digests the S3 store keeps with each image.

Layout, in the store's bucket::

    <image id>                      the image; sent in one PutObject, it
                                    carries the digests as its metadata:
                                    x-amz-meta-fsstore-md5, -multihash,
                                    -hashing-algo, -size
    .fsstore-digests/<image id>     the digest record, for every image:
                                    {"md5", "multihash", "hashing_algo", "size"}

The record is what the store trusts; the metadata is what any S3 tool shows.
Both are needed because each misses a case the other covers:

* A multipart upload fixes its metadata at CreateMultipartUpload, before
  the first byte is read, so an image sent in parts cannot carry its own
  digests (copying it onto itself to add them would rewrite the image, and
  past 5 GiB needs a second multipart upload).
* An object overwritten behind the store by a plain PutObject loses its
  metadata: judged by metadata alone it would be merely unverifiable, while
  the record, which the overwrite does not touch, names it corrupt.

Protocol. The record is written while the writer holds the image's upload
claim (s3/claim.py), after the whole stream was read and checked and before
the PutObject or CompleteMultipartUpload that publishes the image, so an
image the store published never exists without its record. It is written
unconditionally: a record already there is stale (left by an add that
crashed before publishing, or by a delete that crashed before removing it),
since the claim admits one writer per id. A failed add removes its record;
a delete removes the image, then the record.

A scrub keeping digests for an image that has none (``ScrubbedObject``)
writes the record only if the image is still the object it read (its ETag
and size), and with ``If-None-Match: *``: never over a record written since
(by an add of the id, after a delete, or by another scrub).

Races, each handled where named: a crash between the record and the publish
leaves a record with no image (harmless: never listed, replaced by the next
add of the id); a writer that outlives its claim's lease (the one race the
claim cannot close) can leave a record of its own data beside the other
writer's image, which a scrub then reports as corrupt: a false alarm, never
a false ok.
"""

from __future__ import annotations

import logging
from typing import Any

from fsstore import exceptions
from fsstore.backends.s3.errors import CONDITION_LOST, MISSING, ErrorMapper, error_code
from fsstore.hashing import (
    MAX_RECORD_BYTES,
    KeptDigests,
    encode_record,
    kept_from_record,
    parse_record,
)
from fsstore.store import ImageRead
from fsstore.streams import ImageChunks

LOG = logging.getLogger(__name__)

PREFIX = ".fsstore-digests/"
_META = ("fsstore-md5", "fsstore-multihash", "fsstore-hashing-algo", "fsstore-size")


def record_key(image_key: str) -> str:
    return PREFIX + image_key


def as_metadata(kept: KeptDigests) -> dict[str, str]:
    """``kept`` as the user metadata of a PutObject."""
    values = (kept.checksum, kept.multihash, kept.hashing_algo, str(kept.size))
    return dict(zip(_META, values, strict=True))


def from_metadata(metadata: dict[str, str]) -> KeptDigests | None:
    """What ``as_metadata`` put on an object; None when any of it is missing
    or malformed. Names are matched in any case: HTTP header names have none,
    and engines differ (Swift's s3api answers ``Fsstore-Md5``)."""
    named = {name.lower(): value for name, value in metadata.items()}
    md5, multihash, algo, size = (named.get(name) for name in _META)
    if size is None or not (size.isascii() and size.isdigit()):
        return None
    return kept_from_record(
        {"md5": md5, "multihash": multihash, "hashing_algo": algo, "size": int(size)}
    )


class DigestRecords:
    """The records of one bucket. Errors are botocore's, for the store to
    translate; a missing record is None, never an error."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, image_key: str, kept: KeptDigests, first: bool = False) -> None:
        """Write the record; with ``first``, only if there is none (a lost
        condition is botocore's error, CONDITION_LOST)."""
        self.client.put_object(
            Bucket=self.bucket,
            Key=record_key(image_key),
            Body=encode_record(kept),
            ContentType="application/json",
            **({"IfNoneMatch": "*"} if first else {}),
        )

    def get(self, image_key: str) -> KeptDigests | None:
        """The record of ``image_key``; None when there is none, or when
        what is there is not a record (a scrub then calls the image
        unverifiable rather than trust it)."""
        return self.fetch(image_key)[1]

    def fetch(self, image_key: str) -> tuple[bool, KeptDigests | None]:
        """Whether an object is where the record of ``image_key`` belongs,
        and the record, if that object is one."""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=record_key(image_key)
            )
        except Exception as exc:
            if error_code(exc) in MISSING:
                return False, None
            raise
        stream = response["Body"]
        try:
            body = stream.read(MAX_RECORD_BYTES + 1)
        finally:
            stream.close()
        return True, kept_from_record(parse_record(body))

    def kept(self, image_key: str) -> KeptDigests | None:
        """What the store trusts for ``image_key``: its record, or for an
        image without one, the digests its metadata carries."""
        kept = self.get(image_key)
        if kept is None:
            head = self.client.head_object(Bucket=self.bucket, Key=image_key)
            kept = from_metadata(head.get("Metadata", {}))
        return kept

    def delete(self, image_key: str) -> None:
        """Remove the record; engines answer a missing key with success."""
        self.client.delete_object(Bucket=self.bucket, Key=record_key(image_key))

    def forget(self, image_key: str) -> None:
        """``delete``, for a deleted image or an add that failed after
        writing the record. A failure is logged: the image is gone all the
        same, and the next add of the id replaces the record."""
        try:
            self.delete(image_key)
        except Exception as exc:
            LOG.error(
                "could not remove the digest record of %s in bucket %s: %s",
                image_key,
                self.bucket,
                type(exc).__name__,
            )


class ScrubbedObject(ImageRead):
    """An image object opened for a scrub (S3Store.read_image): its body,
    pinned to the ETag of the first response, and what was kept for it
    then (its record, or the metadata of the object read)."""

    def __init__(
        self,
        records: DigestRecords,
        image_key: str,
        uri: str,
        chunks: ImageChunks,
        response: dict[str, Any],
        record: tuple[bool, KeptDigests | None],
        error: ErrorMapper,
    ) -> None:
        kept = record[1] or from_metadata(response.get("Metadata", {}))
        super().__init__(chunks, kept)
        self._records, self._key, self._uri = records, image_key, uri
        self._etag: str | None = response.get("ETag")
        self._record_there = record[0]
        self._error = error

    def kept_now(self) -> KeptDigests | None:
        try:
            return self._records.kept(self._key)
        except Exception as exc:
            raise self._error(exc, f"digests of image {self._uri}") from None

    def keep(self, kept: KeptDigests) -> None:
        if self._record_there:
            raise exceptions.Invalid(
                f"image {self._uri} has a digest record that is not whole; "
                f"remove {record_key(self._key)} to keep its digests anew"
            )
        keep_first(self._records, self._key, self._uri, self._etag, kept, self._error)


def keep_first(
    records: DigestRecords,
    image_key: str,
    uri: str,
    etag: str | None,
    kept: KeptDigests,
    error: ErrorMapper,
) -> None:
    """Write the record of an image that has none, if the object there is
    still the one whose ETag is ``etag`` (None: any) and has ``kept.size``
    bytes; never over a record written meanwhile.

    Race: the image deleted (and added again) between that look and the
    write: a delete removes the record after the image, and an add writes
    its record unconditionally before it publishes, so ours is removed or
    replaced, or, written after the add's, refused. An object replaced
    behind the store's back in that instant gets these digests: the next
    scrub calls it corrupt, a false alarm, never a false ok.
    """
    changed = exceptions.Invalid(f"image {uri} changed while it was scrubbed")
    try:
        head = records.client.head_object(Bucket=records.bucket, Key=image_key)
    except Exception as exc:
        if error_code(exc) in MISSING:
            raise changed from None  # deleted since it was read
        raise error(exc, f"image {uri}") from None
    if int(head["ContentLength"]) != kept.size:
        raise changed
    if etag is not None and head.get("ETag") != etag:
        raise changed
    try:
        records.put(image_key, kept, first=True)
    except Exception as exc:
        if error_code(exc) in CONDITION_LOST:
            raise exceptions.Invalid(
                f"digests were kept for image {uri} while it was scrubbed"
            ) from None
        raise error(exc, f"keeping the digests of {uri}") from None
