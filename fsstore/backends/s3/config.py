"""The S3 store's options, its endpoint parsing and its boto3 client."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from fsstore import exceptions

MiB = 1024 * 1024

OPTIONS = [
    cfg.StrOpt(
        "s3_store_host",
        # Secret: a host written with user:password@ is refused, and no
        # refusal, nor oslo.config's logging of options, shows the value.
        secret=True,
        help="The S3 endpoint, e.g. https://s3.example.com:8080. An http:// or "
        "https:// prefix sets the location scheme s3+http or s3+https; without "
        "one, https is used and the scheme is s3.",
    ),
    cfg.StrOpt("s3_store_access_key", secret=True, help="The S3 access key."),
    cfg.StrOpt("s3_store_secret_key", secret=True, help="The S3 secret key."),
    cfg.StrOpt("s3_store_bucket", help="The bucket images are stored in."),
    cfg.StrOpt("s3_store_region_name", default="", help="The S3 region name."),
    cfg.BoolOpt(
        "s3_store_create_bucket_on_put",
        default=False,
        help="Create the bucket on the first add if it does not exist.",
    ),
    cfg.StrOpt(
        "s3_store_bucket_url_format",
        default="auto",
        choices=("auto", "virtual", "path"),
        help="Addressing style: virtual (bucket.host/key), path (host/bucket/key) "
        "or auto.",
    ),
    cfg.IntOpt(
        "s3_store_large_object_size",
        default=100,
        min=1,
        help="Size, in MB, from which an image goes up as a multipart upload.",
    ),
    cfg.IntOpt(
        "s3_store_large_object_chunk_size",
        default=10,
        min=5,
        help="Part size, in MB, of multipart uploads.",
    ),
    cfg.IntOpt(
        "s3_store_thread_pools",
        default=10,
        min=1,
        help="Parts uploaded in parallel.",
    ),
    cfg.BoolOpt(
        "s3_store_enable_data_integrity_protection",
        default=False,
        help="Let botocore compute request checksums and validate response "
        "checksums as s3_store_request_checksum_calculation and "
        "s3_store_response_checksum_validation say. Off (the default): both "
        "only when required, which S3-compatible engines without the newer "
        "checksums accept.",
    ),
    cfg.StrOpt(
        "s3_store_request_checksum_calculation",
        default="when_required",
        choices=("when_required", "when_supported"),
        help="botocore's request_checksum_calculation, used only with "
        "s3_store_enable_data_integrity_protection.",
    ),
    cfg.StrOpt(
        "s3_store_response_checksum_validation",
        default="when_required",
        choices=("when_required", "when_supported"),
        help="botocore's response_checksum_validation, used only with "
        "s3_store_enable_data_integrity_protection.",
    ),
    cfg.FloatOpt(
        "s3_store_connect_timeout",
        default=60.0,
        min=0.1,
        help="Seconds to wait for a connection to the endpoint.",
    ),
    cfg.FloatOpt(
        "s3_store_read_timeout",
        default=60.0,
        min=0.1,
        help="Seconds to wait for each read from a connection (the stall that "
        "counts as a dropped connection).",
    ),
    cfg.IntOpt(
        "s3_store_max_retries",
        default=4,
        min=0,
        help="Retries of each request (each part of a multipart upload on its "
        "own) after a connection error, a timeout, throttling or a 5xx answer, "
        "with exponential backoff and jitter.",
    ),
    cfg.IntOpt(
        "s3_store_retry_get_count",
        default=5,
        min=0,
        help="Times one read of an image resumes, from the next byte, after its "
        "connection drops mid-body (as swift_store_retry_get_count).",
    ),
    cfg.BoolOpt(
        "s3_store_verify_on_read",
        default=False,
        help="Check every read of a whole image against the digests kept with "
        "it when it was stored: one that differs raises an error at its end "
        "instead of ending normally (the image cache then never keeps it). "
        "Ranged reads are not checked. Costs one more request per read.",
    ),
    cfg.IntOpt(
        "s3_store_upload_lease",
        default=300,
        min=1,
        help="Seconds a multipart upload's claim on its image id lasts without "
        "renewal (renewed while parts go up). A writer killed mid-upload "
        "blocks its id this long; a writer that stalls longer than this "
        "between its last part and completing may lose exactly-one-winner.",
    ),
    cfg.StrOpt(
        "s3_store_cacert",
        default="",
        help="CA bundle to verify the endpoint's certificate with; empty: the "
        "system's.",
    ),
]


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """What the store's one boto3 client is made with."""

    endpoint: str
    region: str | None
    addressing_style: str
    connections: int
    timeouts: tuple[float, float]  # connect, read
    max_retries: int
    checksums: tuple[str, str]  # request calculation, response validation
    cacert: str | None


def make_client(
    store_name: str, settings: ClientSettings, access_key: str, secret_key: str
) -> Any:
    """The one boto3 client of a store (thread-safe, reused by every
    operation: no session per operation)."""
    try:
        import boto3
    except ImportError:
        raise exceptions.BadStoreConfiguration(
            store_name, "boto3 is not installed (pip install 'fsstore[s3]')"
        ) from None
    from botocore.config import Config
    from botocore.exceptions import InvalidRegionError

    session = boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=settings.region,
    )
    s3: dict[str, Any] = {"addressing_style": settings.addressing_style}
    config = Config(
        s3=s3,
        max_pool_connections=settings.connections,
        connect_timeout=settings.timeouts[0],
        read_timeout=settings.timeouts[1],
        # botocore's standard mode: exponential backoff with jitter; its
        # max_attempts counts retries, not attempts.
        retries={"max_attempts": settings.max_retries, "mode": "standard"},
        request_checksum_calculation=settings.checksums[0],
        response_checksum_validation=settings.checksums[1],
    )
    try:
        return session.client(
            "s3", endpoint_url=settings.endpoint, verify=settings.cacert, config=config
        )
    except InvalidRegionError:
        raise exceptions.BadStoreConfiguration(
            store_name,
            f"s3_store_region_name {settings.region!r} is not a valid region",
        ) from None


def checksum_policy(option: Callable[[str], Any]) -> tuple[str, str]:
    """botocore's request_checksum_calculation and
    response_checksum_validation, from the store's ``option``. As
    glance_store: with integrity protection off, both only when required
    (what engines without the newer checksums accept); on, as the two
    options say. Both are read (and so checked) whether or not they are
    used."""
    checksums = (
        option("s3_store_request_checksum_calculation"),
        option("s3_store_response_checksum_validation"),
    )
    if option("s3_store_enable_data_integrity_protection"):
        return checksums
    return ("when_required", "when_required")


# host[:port]: a name, an IPv4 address or a bracketed IPv6 one, and a port.
_NETLOC = re.compile(r"(?:\[[0-9A-Za-z:.%]+\]|[\w.-]+)(?::\d{1,5})?")
# The options whose values may hold credentials: declared secret=True, so no
# refusal quotes them (see Store.option).
CREDENTIAL_OPTIONS = ("s3_store_host", "s3_store_access_key", "s3_store_secret_key")


def parse_endpoint(store_name: str, host: str) -> tuple[str, str, str]:
    """``s3_store_host`` as (location scheme, endpoint URL, host[:port]).

    Locations take glance_store's form: s3+https:// for an https endpoint,
    s3:// otherwise, so that either driver places the other's (s3+http://
    locations are still read). A bare host means https.

    A refusal never quotes the value: a ``user:password@`` in it would be
    shown, and a value refused for another reason may be one whose ``@`` a
    typo lost, with any part of it a password.
    """
    if "@" in host:
        # Wherever the "@" is: a password may hold "/", ":" or "@" itself.
        raise exceptions.BadStoreConfiguration(
            store_name,
            "s3_store_host must not hold credentials (user:password@, not "
            "shown); set s3_store_access_key and s3_store_secret_key instead",
        )
    if host.startswith("https://"):
        scheme, endpoint = "s3+https", host
    elif host.startswith("http://"):
        scheme, endpoint = "s3", host
    elif "://" in host:
        raise exceptions.BadStoreConfiguration(
            store_name, "s3_store_host must start with http:// or https:// (or neither)"
        )
    else:
        scheme, endpoint = "s3", "https://" + host
    netloc = endpoint.split("://", 1)[1].rstrip("/")
    if not _NETLOC.fullmatch(netloc):
        raise exceptions.BadStoreConfiguration(
            store_name,
            "s3_store_host must be host[:port] after its http:// or https://, "
            "with no path, query or fragment (e.g. https://s3.example.com:8080)",
        )
    return scheme, endpoint, netloc


def region_from_host(host: str) -> str | None:
    """The AWS region a legacy regional endpoint names
    (``s3-us-west-2.amazonaws.com``, ``s3.eu-west-1.amazonaws.com``), so
    that requests are signed for it; None for any other host, and for the
    global ``s3.amazonaws.com``."""
    match = re.fullmatch(
        r"s3[.-]([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?",
        host.split(":", 1)[0].lower(),
    )
    return match.group(1) if match else None
