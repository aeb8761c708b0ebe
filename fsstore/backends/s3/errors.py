"""What a botocore error says, read in one place, and the fsstore error it
becomes. Messages never carry credentials: botocore's own text is not used,
only the error code, the HTTP status and the class name."""

from __future__ import annotations

from collections.abc import Callable

from fsstore import exceptions

# An fsstore error for a botocore one, given what was being done.
ErrorMapper = Callable[[BaseException, str], exceptions.FsstoreError]

MISSING = ("404", "NoSuchKey", "NotFound")
# What a conditional write that lost (If-None-Match on an existing key) answers.
CONDITION_LOST = ("PreconditionFailed", "ConditionalRequestConflict")
PRECONDITION_FAILED = (*CONDITION_LOST, "412")
DIGEST_REFUSED = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch")


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError; "" for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError; None for anything else."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def is_boto_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def translate(
    exc: BaseException, what: str, store_name: str, bucket: str, host: str
) -> exceptions.FsstoreError:
    """The fsstore error for ``exc`` raised while doing ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code, status = error_code(exc), error_status(exc)
        if code in MISSING or code == "NoSuchBucket" or status == 404:
            if code == "NoSuchBucket":
                return exceptions.BadStoreConfiguration(
                    store_name, f"bucket {bucket!r} does not exist"
                )
            return exceptions.NotFound(f"{what}: not found")
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return exceptions.Forbidden(f"{what}: access denied by {host}")
        if code in DIGEST_REFUSED:
            return exceptions.BackendException(
                f"{what}: the data the engine received differs from what was "
                f"sent ({code}); it kept none of it"
            )
        if code in ("EntityTooLarge", "QuotaExceeded"):
            return exceptions.StorageFull(f"{what}: {code}")
        return exceptions.BackendException(f"{what}: S3 error {code or status}")
    if isinstance(exc, BotoCoreError):
        return exceptions.BackendException(f"{what}: {type(exc).__name__}")
    return exceptions.BackendException(f"{what}: {exc}")
