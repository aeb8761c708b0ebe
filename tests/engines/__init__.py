"""Real S3 engines for the tests: what each is, and how to reach it.

Each engine runs from nothing in a process (or processes) of its own, on
loopback, started by a fixture in tests/conftest.py and stopped by its
process id: moto's server (a mock), OpenStack Swift with s3api
(tests/engines/swift_cluster.py, always), Ceph RGW (tests/engines/ceph.py, in `make
test-ceph`). An engine's facts are what its tests rely on; a capability
flag only chooses what a test expects, never what it checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsstore.backends.s3.digests import PREFIX as RECORDS_PREFIX


def with_records(*image_ids: str) -> list[str]:
    """The keys an S3 store holds for images it added: each image and its
    digest record (fsstore.backends.s3.digests), sorted as S3 lists them."""
    return sorted([*image_ids, *(RECORDS_PREFIX + i for i in image_ids)])


# moto accepts any credentials; these are what its tests sign with.
MOTO_ACCESS_KEY = "AKIAFSSTORETESTKEY01"
MOTO_SECRET_KEY = "fsstore-test-secret-never-shown-0123456789"


@dataclass(frozen=True)
class S3Engine:
    name: str
    endpoint: str
    access_key: str
    secret_key: str
    # Whether two concurrent conditional PutObjects (If-None-Match: *) of one
    # key can both succeed: the engine checks when the write starts, not
    # when it commits (Swift, moto).
    atomic_conditional_put: bool
    # Whether it refuses a body that differs from the digest sent with it,
    # Content-MD5 or the signed payload's SHA-256 (moto checks neither).
    refuses_damaged_bodies: bool = True

    @property
    def host(self) -> str:
        return self.endpoint.split("://", 1)[1]

    def options(self, bucket: str, **extra: str) -> dict[str, str]:
        """Glance-style s3_store_* options for a bucket of this engine."""
        return {
            "s3_store_host": self.endpoint,
            "s3_store_access_key": self.access_key,
            "s3_store_secret_key": self.secret_key,
            "s3_store_bucket": bucket,
            "s3_store_create_bucket_on_put": "true",
            "s3_store_bucket_url_format": "path",
            **extra,
        }


def first_round_trip(engine: S3Engine, timeout: float = 60.0) -> None:
    """One signed S3 request (ListBuckets), waiting as long as `timeout`."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=engine.endpoint,
        aws_access_key_id=engine.access_key,
        aws_secret_access_key=engine.secret_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1},
        ),
    )
    client.list_buckets()
