"""Test-side shim for glance_store's S3 unit tests (copied into the derived
package by glance_store_suite.py; never imported by fsstore).

glance_store's S3 driver makes a boto3 client for each operation, and its
tests replace ``boto3.session.Session.client`` around each call with one that
returns a stubbed client. fsstore's store makes its client once, at
configure. Here the store, and the helpers it makes at configure with its
client (the bucket check, the digest records), ask boto3 for a client on
each use instead, so the stub is what they get; everything else is
fsstore's code.
"""

from typing import Any

import boto3

from fsstore.backends.s3 import S3Store
from fsstore.backends.s3.bucket import Bucket
from fsstore.backends.s3.digests import DigestRecords


def _client(self: object) -> Any:
    return boto3.session.Session().client("s3")


for _user in (S3Store, Bucket, DigestRecords):
    _user.client = property(_client, lambda self, value: None)  # type: ignore[assignment]
