"""Test-side shim for glance_store's S3 unit tests (copied into the derived
package by glance_store_suite.py; never imported by fsstore).

glance_store's S3 driver makes a boto3 client for each operation, and its
tests replace ``boto3.session.Session.client`` around each call with one that
returns a stubbed client. fsstore's store makes its client once, at
configure. Here the store asks boto3 for a client on each use instead, so the
stub is what it gets; everything else is fsstore's code.
"""

from typing import Any

import boto3

from fsstore.backends.s3 import S3Store


def _client(self: S3Store) -> Any:
    return boto3.session.Session().client("s3")


S3Store.client = property(_client, lambda self, value: None)  # type: ignore[assignment]
