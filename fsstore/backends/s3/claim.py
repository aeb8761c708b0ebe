"""Upload claims: one writer per image id for multipart uploads.

Engines check ``If-None-Match: *`` on CompleteMultipartUpload each their own
way (Ceph RGW ignores it: the second of two concurrent uploads silently
replaces the first), so the multipart path does not trust it. Before an
upload starts, the writer takes a claim object; only the claim holder
uploads. The protocol needs nothing but an atomic conditional PutObject.

Layout, in the store's bucket::

    <image id>                      the image (ids never contain '/')
    .fsstore-claims/<image id>      the claim, while an upload is under way

Protocol:

take     PUT the claim with ``If-None-Match: *``. If it exists, HEAD it: a
         claim whose age (the server's Date minus its Last-Modified, both
         the engine's clock) is under the lease belongs to a live writer,
         so this add is Duplicate. An older one is stale (its writer died
         or stalled): take it over with ``If-Match: <its ETag>`` and abort
         the multipart uploads of the key it left. Then HEAD the image:
         present means a writer completed and released between our
         existence check and our claim, so this add is Duplicate.
renew    PUT the claim with ``If-Match: <our ETag>`` at least every third
         of the lease while parts go up, and once just before Complete, so
         Complete always starts with a whole lease ahead. 412 means the
         claim was taken over: the upload is abandoned and the claim is
         not ours to release.
release  DELETE the claim after Complete or abort (engines ignore If-Match
         on DELETE; a claim we no longer hold is never released).

Races, each handled where named below: two writers create the claim at
once (the engine's atomic If-None-Match lets one through); two writers take
over one stale claim (If-Match lets one through); a writer finishes and
releases just before another takes the claim (the image HEAD after taking).
The one race no lease closes: a writer that stalls for longer than the
lease between its last renewal and Complete can complete beside the writer
that took its claim over. The lease (``s3_store_upload_lease``) is that
bound.

ETags go into If-Match without quotes: Ceph RGW 16 compares the bare value
(a quoted ETag never matches there); AWS S3 and moto accept both. An engine
that refuses If-Match on PutObject as NotImplemented (Swift's s3api) has its
claims renewed and taken over unconditionally: such an engine's
If-None-Match is not atomic either (see the README's table of engines), so
nothing is lost that it gave.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from fsstore import exceptions
from fsstore.backends.s3.errors import (
    MISSING,
    PRECONDITION_FAILED,
    error_code,
    error_status,
)

LOG = logging.getLogger(__name__)

PREFIX = ".fsstore-claims/"


def claim_key(image_key: str) -> str:
    return PREFIX + image_key


def _failed_precondition(exc: Exception, if_match: bool = False) -> bool:
    """Whether a conditional PUT of the claim found it other than expected.

    If-Match on a claim that is gone (released by whoever took it over) is
    404 on some engines and 412 on others: the same answer here. For
    If-None-Match only 412 is (a 404 there is a missing bucket).
    """
    status = error_status(exc)
    if error_code(exc) in PRECONDITION_FAILED or status == 412:
        return True
    return if_match and (error_code(exc) in MISSING or status == 404)


def _bare(etag: str) -> str:
    return etag.strip('"')


class EngineSupport:
    """What a store learned about its engine, shared by its claims."""

    def __init__(self) -> None:
        self.if_match = True


class UploadClaim:
    """The claim on one image key: take() before the upload, renew() while
    it runs, release() after it, whatever its end."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        image_key: str,
        lease: int,
        support: EngineSupport,
    ) -> None:
        self.client = client
        self.support = support
        self.bucket = bucket
        self.image_key = image_key
        self.key = claim_key(image_key)
        self.lease = lease
        self.etag = ""
        self.lost = False
        self._renewed = 0.0
        self._body = json.dumps(
            {
                "image": image_key,
                "writer": uuid.uuid4().hex,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        ).encode()

    # -- take ------------------------------------------------------------

    def take(self) -> None:
        """Hold the claim or raise Duplicate; see the module docstring."""
        try:
            self._put(IfNoneMatch="*")
        except Exception as exc:
            if not _failed_precondition(exc):
                raise
            # Race: two writers created the claim at once; this one lost, or
            # a writer holds it, live or dead.
            self._take_over_if_stale()
        # Race: a writer completed and released between our existence check
        # and our claim. Its image is there now.
        if self._image_exists():
            self.release()
            raise exceptions.Duplicate(f"image {self.image_key!r} already exists")

    def _take_over_if_stale(self) -> None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if error_code(exc) in MISSING:
                # Released since our PUT failed: whoever held it has finished
                # (its image is checked next) or given up; try once more.
                self._put_or_duplicate(IfNoneMatch="*")
                return
            raise
        age = self._age(head)
        if age < self.lease:
            raise self._taken()
        # Race: two writers take over one stale claim; If-Match lets one.
        self._put_or_duplicate(IfMatch=_bare(head["ETag"]))
        LOG.warning(
            "took over the claim on %s, stale for %d s: its writer died or "
            "stalled; aborting the uploads it left",
            self.image_key,
            age,
        )
        self._abort_left_uploads()

    def _taken(self) -> exceptions.Duplicate:
        return exceptions.Duplicate(
            f"image {self.image_key!r} is being written by another writer"
        )

    def _put_or_duplicate(self, **condition: str) -> None:
        """The claim's conditional PUT; a failed condition means another
        writer holds the claim now."""
        try:
            self._put(**condition)
        except Exception as exc:
            if _failed_precondition(exc, if_match="IfMatch" in condition):
                raise self._taken() from None
            raise

    @staticmethod
    def _age(head: dict[str, Any]) -> float:
        """The claim's age by the engine's own clock (no clock skew)."""
        date = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date) if date else None
        if now is None:
            return 0.0  # cannot tell: treat it as live
        age: float = (now - head["LastModified"]).total_seconds()
        return age

    def _abort_left_uploads(self) -> None:
        listed = self.client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=self.image_key
        )
        for upload in listed.get("Uploads", []):
            if upload["Key"] != self.image_key:
                continue
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.image_key, UploadId=upload["UploadId"]
                )
            except Exception as exc:
                LOG.error(
                    "could not abort a left multipart upload of %s: %s",
                    self.image_key,
                    type(exc).__name__,
                )

    def _image_exists(self) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.image_key)
        except Exception as exc:
            if error_code(exc) in MISSING:
                return False
            raise
        return True

    def _put(self, **condition: str) -> None:
        if "IfMatch" in condition and not self.support.if_match:
            condition = {}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._body, **condition
            )
        except Exception as exc:
            if "IfMatch" not in condition or error_code(exc) != "NotImplemented":
                raise
            LOG.info(
                "%s: no If-Match on PutObject; claims renew unconditionally",
                self.bucket,
            )
            self.support.if_match = False
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._body
            )
        if not response.get("ETag"):
            raise exceptions.BackendException(
                f"image {self.image_key!r}: the engine's answer to the claim's "
                "PutObject has no ETag"
            )
        self.etag = _bare(response["ETag"])
        self._renewed = time.monotonic()

    # -- hold ------------------------------------------------------------

    def renew(self, force: bool = False) -> None:
        """Push the lease forward if a third of it has passed (or `force`)."""
        if not force and time.monotonic() - self._renewed < self.lease / 3:
            return
        try:
            self._put(IfMatch=self.etag)
        except Exception as exc:
            if not _failed_precondition(exc, if_match=True):
                raise
            self.lost = True
            raise exceptions.BackendException(
                f"image {self.image_key!r}: another writer took over this "
                f"upload's claim (no renewal within s3_store_upload_lease, "
                f"{self.lease} s)"
            ) from None

    def release(self) -> None:
        if self.lost or not self.etag:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            LOG.error(
                "could not release the claim on %s (it expires after %d s): %s",
                self.image_key,
                self.lease,
                type(exc).__name__,
            )
        self.etag = ""
