"""The S3 store: images as objects in one bucket of an S3-compatible service.

Options keep glance_store's ``s3_store_*`` names. What it does differently:

* Streaming with bounded memory. An image of unknown size, or of a known size
  at or past ``s3_store_large_object_size``, goes up as a multipart upload:
  parts of ``s3_store_large_object_chunk_size`` fill ``thread_pools + 1``
  buffers in turn and go to at most ``s3_store_thread_pools`` upload threads;
  the reader blocks while that many are in flight, its digests about 4 MiB
  behind. Memory stays below about ``(thread_pools + 2) x chunk size``.
* One pass. MD5 and the multihash are computed while reading, as in the
  filesystem store, and kept with the image (s3/digests.py) before it is
  published; a scrub or a verifying read checks the image against them.
* Nothing orphaned. Any failure after a multipart upload started (a part
  error, the caller's stream raising, a size mismatch, losing a race) aborts
  the upload.
* Exactly one winner, where the engine's conditional PutObject is atomic
  (AWS S3, Ceph RGW; not Swift, not moto): of concurrent adds of one id, one
  wins and the others get ``Duplicate``. Every add runs under a claim
  object (s3/claim.py), because engines do not all honour ``If-None-Match``
  on CompleteMultipartUpload; the writes themselves still carry it.
* One client per store, made at configure time and shared by all threads.
* Locations (``s3://``, ``s3+http://``, ``s3+https://`` host/bucket/key) carry
  no credentials, and credentials never appear in messages or logs. A location
  outside the configured host and bucket is ``Forbidden``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.backends.s3.bucket import Bucket
from fsstore.backends.s3.claim import EngineSupport, UploadClaim
from fsstore.backends.s3.config import (
    CREDENTIAL_OPTIONS,
    OPTIONS,
    ClientSettings,
    MiB,
    checksum_policy,
    make_client,
    parse_endpoint,
    region_from_host,
)
from fsstore.backends.s3.digests import (
    DigestRecords,
    ScrubbedObject,
    as_metadata,
    keep_first,
)
from fsstore.backends.s3.errors import (
    CONDITION_LOST,
    error_code,
    is_boto_error,
    translate,
)
from fsstore.backends.s3.keys import key_problem
from fsstore.backends.s3.multipart import DIGEST_QUEUE, MAX_PARTS, MultipartUpload
from fsstore.backends.s3.read import Span, open_object
from fsstore.hashing import ImageHasher, KeptDigests
from fsstore.location import Location, S3Location
from fsstore.store import (
    RESERVED_PREFIX,
    AddResult,
    ListedImage,
    Store,
    validate_image_id,
)
from fsstore.streams import (
    READ_CHUNK,
    CheckedSource,
    ImageChunks,
    ImageData,
    Verifier,
)

__all__ = ["OPTIONS", "MiB", "S3Store", "key_problem"]

LOG = logging.getLogger(__name__)

MIN_PART = 5 * MiB


class S3Store(Store):
    __doc__ = __doc__
    OPTIONS = OPTIONS
    SCHEMES = ("s3", "s3+http", "s3+https")
    DRIVER_NAME = "s3"

    def __init__(self, conf: cfg.ConfigOpts, backend_group: str | None = None) -> None:
        super().__init__(conf, backend_group)
        self.client: Any = None
        self.bucket = ""
        self.scheme, self.endpoint, self.host = "s3", "", ""
        self.large_object_size = 0
        self.part_size = 0
        self.thread_pools = 1
        self.upload_lease = 0
        self.retry_get_count = 0
        self.timeouts: tuple[float, float] = (0.0, 0.0)
        self.max_retries = 0
        self.addressing_style = "auto"
        self.checksums: tuple[str, str] = ("when_required", "when_required")
        self.content_md5 = True
        self._engine = EngineSupport()
        self.records = DigestRecords(None, "")

    # -- configuration ---------------------------------------------------

    def configure(self) -> None:
        """Read the options and make the one client every thread shares;
        BadStoreConfiguration if host, bucket or either key is not set."""
        host, access_key, secret_key = (
            self.option(name) for name in CREDENTIAL_OPTIONS
        )
        self.bucket = self.option("s3_store_bucket")
        for name, value in [
            ("s3_store_host", host),
            ("s3_store_bucket", self.bucket),
            ("s3_store_access_key", access_key),
            ("s3_store_secret_key", secret_key),
        ]:
            if not value:
                raise exceptions.BadStoreConfiguration(self.name, f"{name} is not set")
        self.scheme, self.endpoint, self.host = parse_endpoint(self.name, host)
        self.large_object_size = self.option("s3_store_large_object_size") * MiB
        self.part_size = self.option("s3_store_large_object_chunk_size") * MiB
        self.thread_pools = self.option("s3_store_thread_pools")
        self.upload_lease = self.option("s3_store_upload_lease")
        self.retry_get_count = self.option("s3_store_retry_get_count")
        # A read's resumes, then its parts: size, and how many in flight.
        self._reads = (self.retry_get_count, self.part_size, self.thread_pools)
        self.timeouts = (
            self.option("s3_store_connect_timeout"),
            self.option("s3_store_read_timeout"),
        )
        self.max_retries = self.option("s3_store_max_retries")
        self.addressing_style = self.option("s3_store_bucket_url_format")
        self.checksums = checksum_policy(self.option)
        # One digest per body, which the engine checks: botocore's checksum
        # if it makes one; over http the SHA-256 SigV4 signs for every body
        # (an MD5 beside it cost a seventh of an add); over https our
        # Content-MD5, with which botocore signs no SHA-256 (README).
        https = self.endpoint.startswith("https://")
        self.content_md5 = https and self.checksums[0] != "when_supported"
        self.verify_on_read = self.option("s3_store_verify_on_read")
        self.client = make_client(
            self.name, self._client_settings(), access_key, secret_key
        )
        self.records = DigestRecords(self.client, self.bucket)
        self.bucket_ready = Bucket(
            self.client,
            self.bucket,
            store_name=self.name,
            host=self.host,
            create=self.option("s3_store_create_bucket_on_put"),
            error=self._error,
        )

    def _client_settings(self) -> ClientSettings:
        return ClientSettings(
            endpoint=self.endpoint,
            region=self.option("s3_store_region_name") or region_from_host(self.host),
            addressing_style=self.addressing_style,
            connections=self.thread_pools + 2,
            timeouts=self.timeouts,
            max_retries=self.max_retries,
            checksums=self.checksums,
            cacert=self.path_option("s3_store_cacert") or None,
        )

    def describe(self) -> dict[str, Any]:
        """Store.describe, with the endpoint, the bucket, the addressing style,
        and as its scheme the one new locations get."""
        info = super().describe()
        info.update(
            schemes=[self.scheme],
            endpoint=self.endpoint,
            bucket=self.bucket,
            addressing=self.addressing_style,
        )
        return info

    def get_schemes(self) -> tuple[str, ...]:
        return self.SCHEMES

    # -- errors ----------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> exceptions.FsstoreError:
        return translate(exc, what, self.name, self.bucket, self.host)

    # -- locations -------------------------------------------------------

    def parse_location(self, uri: str) -> S3Location:
        """An ``s3[+http|+https]://`` location, credentials dropped."""
        return S3Location.from_uri(uri)

    def owns(self, location: Location) -> bool:
        """Whether ``location`` is in this store's bucket.

        Its host is not checked, as glance_store does not check it: every
        request goes to the configured endpoint with the configured
        credentials, so a location cannot reach another server, and images
        stay readable when s3_store_host is spelled anew (127.0.0.1 as
        localhost, a global AWS name as a regional one). The bucket is
        checked: another bucket is data the operator did not configure.
        """
        return isinstance(location, S3Location) and location.bucket == self.bucket

    def preference(self, location: Location) -> int:
        """Of several S3 stores with this bucket, the one whose host the
        location names is preferred."""
        return int(isinstance(location, S3Location) and location.host == self.host)

    def _key(self, location: Location) -> str:
        if not self.owns(location):
            raise exceptions.Forbidden(
                f"location {location.uri} is outside bucket {self.bucket!r} of "
                f"store {self.name!r}"
            )
        assert isinstance(location, S3Location)
        if key_problem(location.key) is not None:
            raise exceptions.Forbidden(
                f"location {location.uri} does not name an image"
            )
        return location.key

    # -- operations ------------------------------------------------------

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int]:
        chunks, length, _ = self._open_object(location, offset, limit)
        return chunks, length

    def _open_object(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int, dict[str, Any]]:
        """``_get``, and the first GET's response (ETag, Metadata)."""
        key = self._key(location)
        try:
            return open_object(
                self.client,
                self.bucket,
                key,
                Span(offset, limit, READ_CHUNK, *self._reads),
                location.uri,
            )
        except exceptions.FsstoreError:
            raise
        except Exception as exc:
            raise self._error(exc, f"image {location.uri}") from None

    def _head(self, key: str, what: str) -> int:
        try:
            return int(
                self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
            )
        except Exception as exc:
            raise self._error(exc, what) from None

    def _get_size(self, location: Location) -> int:
        return self._head(self._key(location), f"image {location.uri}")

    def _delete(self, location: Location) -> None:
        key = self._key(location)
        what = f"image {location.uri}"
        self._head(key, what)  # S3 deletes missing keys silently
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._error(exc, what) from None
        # After the image: a crash between the two leaves a record of no
        # image, which the next add of the id replaces.
        self.records.forget(key)

    # -- integrity -------------------------------------------------------

    def images(self) -> Iterator[ListedImage]:
        """The bucket's objects, but claims, digest records and keys no add writes."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket
        )
        try:
            for page in pages:
                for listed in page.get("Contents", []):
                    key = listed["Key"]
                    # Claims and digest records; an object no add could
                    # have written is not this store's image either.
                    if key.startswith(RESERVED_PREFIX) or key_problem(key):
                        continue
                    location = S3Location(self.scheme, self.host, self.bucket, key)
                    yield ListedImage(key, location.uri, int(listed["Size"]))
        except Exception as exc:
            raise self._error(exc, f"listing bucket {self.bucket!r}") from None

    def find_image(self, image_id: str) -> ListedImage | None:
        """One HEAD of the object ``image_id`` names, never a listing."""
        validate_image_id(image_id)
        if key_problem(image_id) is not None:
            return None  # no add writes such a key
        location = S3Location(self.scheme, self.host, self.bucket, image_id)
        try:
            size = self._get_size(location)
        except exceptions.NotFound:
            return None
        return ListedImage(image_id, location.uri, size)

    def identity(self) -> str:
        """``s3:``, the endpoint (lowercase, no trailing ``/``), and the bucket."""
        return f"s3:{self.endpoint.rstrip('/').lower()}/{self.bucket}"

    def kept_digests(self, location: Location | str) -> KeptDigests | None:
        """The image's digest record; for an image without one, the digests
        its metadata carries (see s3/digests.py)."""
        where = self._location(location)
        key = self._key(where)
        try:
            kept = self.records.kept(key)
        except Exception as exc:
            error = self._error(exc, f"digests of image {where.uri}")
            if isinstance(error, exceptions.NotFound):
                return None  # reading it will name the problem
            raise error from None
        return kept

    def read_image(self, location: Location | str) -> ScrubbedObject:
        """The object opened for a scrub; its ``keep`` keeps digests only for
        the object of the ETag read (see ImageRead)."""
        where = self._location(location)
        key = self._key(where)
        try:
            record = self.records.fetch(key)
        except Exception as exc:
            raise self._error(exc, f"digests of image {where.uri}") from None
        chunks, _, response = self._open_object(where, 0, None)
        return ScrubbedObject(
            self.records, key, where.uri, chunks, response, record, self._error
        )

    def keep_digests(self, location: Location | str, kept: KeptDigests) -> None:
        """Keep ``kept`` for the image at ``location`` if it has no record
        and ``kept.size`` bytes; never over a record (digests.keep_first)."""
        where = self._location(location)
        keep_first(self.records, self._key(where), where.uri, None, kept, self._error)

    def _add(
        self,
        image_id: str,
        data: ImageData,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        problem = key_problem(image_id)
        if problem is not None:
            raise exceptions.Invalid(problem)
        self.bucket_ready.ensure()
        location = S3Location(self.scheme, self.host, self.bucket, image_id)
        try:
            self.client.head_object(Bucket=self.bucket, Key=image_id)
        except Exception as exc:
            if not isinstance(self._error(exc, ""), exceptions.NotFound):
                raise self._error(exc, f"image {location.uri}") from None
        else:
            raise exceptions.Duplicate(f"image {location.uri} already exists")
        claim = UploadClaim(
            self.client, self.bucket, image_id, self.upload_lease, self._engine
        )
        try:
            claim.take()
        except exceptions.FsstoreError:
            raise
        except Exception as exc:
            raise self._error(exc, f"claiming image {location.uri}") from None
        hasher = ImageHasher(hashing_algo, queue_bytes=DIGEST_QUEUE)
        source = CheckedSource(data, image_id, size, verifier, READ_CHUNK)
        try:
            if 0 < size < self.large_object_size:
                kept = self._put_whole(location, source, hasher, claim)
            else:
                kept = self._put_multipart(location, source, size, hasher, claim)
        finally:
            hasher.close()
            claim.release()
        return AddResult(location.uri, kept.size, kept.checksum, kept.multihash, {})

    def _keep(
        self,
        location: S3Location,
        hasher: ImageHasher,
        size: int,
        claim: UploadClaim,
    ) -> KeptDigests:
        """Write the digest record of the image about to be published, with
        a whole lease ahead for the publish (see s3/digests.py)."""
        checksum, multihash = hasher.hexdigests()
        kept = KeptDigests(checksum, multihash, hasher.hashing_algo, size)
        claim.renew(force=True)
        try:
            self.records.put(location.key, kept)
        except Exception as exc:
            raise self._error(exc, f"keeping the digests of {location.uri}") from None
        return kept

    def _conditional_write_error(
        self, exc: Exception, location: S3Location
    ) -> Exception:
        if error_code(exc) in CONDITION_LOST:
            return exceptions.Duplicate(f"image {location.uri} already exists")
        return self._error(exc, f"writing image {location.uri}")

    def _put_whole(
        self,
        location: S3Location,
        source: CheckedSource,
        hasher: ImageHasher,
        claim: UploadClaim,
    ) -> KeptDigests:
        body = bytearray()
        for chunk in _hashed(source, hasher):
            body += chunk
        kept = self._keep(location, hasher, len(body), claim)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=location.key,
                Body=body,
                IfNoneMatch="*",
                Metadata=as_metadata(kept),
                **self._body_checksum(body),
            )
        except Exception as exc:
            self.records.forget(location.key)
            raise self._conditional_write_error(exc, location) from None
        return kept

    def _body_checksum(self, body: bytes | bytearray) -> dict[str, str]:
        if not self.content_md5:
            return {}
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        return {"ContentMD5": base64.b64encode(digest).decode()}

    def _part_size_for(self, size: int) -> int:
        part: int = self.part_size
        if size and size > part * MAX_PARTS:
            part = -(-size // MAX_PARTS)  # the fewest bytes that fit in 10000 parts
        return max(part, MIN_PART)

    def _put_multipart(
        self,
        location: S3Location,
        source: CheckedSource,
        size: int,
        hasher: ImageHasher,
        claim: UploadClaim,
    ) -> KeptDigests:
        what = f"writing image {location.uri}"
        upload = MultipartUpload(
            self.client,
            self.bucket,
            location.key,
            threads=self.thread_pools,
            what=what,
            error=self._error,
            body_checksum=self._body_checksum,
        )
        kept: KeptDigests | None = None
        try:
            written = upload.send(
                _hashed(source, hasher), self._part_size_for(size), claim.renew
            )
            kept = self._keep(location, hasher, written, claim)
            try:
                upload.complete(IfNoneMatch="*")
            except Exception as exc:
                raise self._conditional_write_error(exc, location) from None
        except BaseException as exc:
            upload.abort()
            if kept is not None:
                self.records.forget(location.key)
            if isinstance(exc, exceptions.FsstoreError) or not is_boto_error(exc):
                raise
            raise self._error(exc, what) from None
        return kept


def _hashed(source: CheckedSource, hasher: ImageHasher) -> Iterator[bytes]:
    """The checked stream's chunks, hashed on the way; at its end, the
    source's own checks (size, verifier)."""
    for chunk in source.chunks():
        hasher.update(chunk)
        yield chunk
    source.finish()
