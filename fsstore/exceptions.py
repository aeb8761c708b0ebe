"""fsstore's exceptions: one hierarchy, rooted at :class:`FsstoreError`.

Every class a caller can act on carries a one-sentence message that names the
thing at fault, so that ``str(exc)`` is fit to show to an operator as it is.
The names follow ``glance_store.exceptions`` so that code written against
glance_store can catch the same names.
"""

from __future__ import annotations


class FsstoreError(Exception):
    """Base class of every error fsstore raises on purpose."""


class BackendException(FsstoreError):
    """A store failed in a way that is not the caller's fault."""


class StoreTimeout(BackendException):
    """A store operation did not finish in the configured time (a stalled
    network file system); glance_store's ``TimeoutError``."""

    def __init__(self, message: str, timeout: float = 0) -> None:
        super().__init__(message)
        self.timeout = timeout


class NotFound(FsstoreError):
    """The image or location does not exist."""


class Duplicate(FsstoreError):
    """An image with this id already exists in the store."""


class StorageFull(FsstoreError):
    """No data directory (or bucket) had room for the image."""


class StorageWriteDenied(FsstoreError):
    """The store refused the write for lack of permission."""


class Forbidden(FsstoreError):
    """The location is not one this store may touch, or access was denied."""


class Invalid(FsstoreError):
    """The request is malformed: a bad image id, a size mismatch, a bad range."""


class UnknownHashingAlgo(Invalid):
    """The hashing algorithm is not one hashlib provides."""

    def __init__(self, algo: str) -> None:
        super().__init__(f"unknown hashing algorithm {algo!r}")
        self.algo = algo


class BadStoreUri(FsstoreError):
    """A location URI cannot be parsed by the store that owns its scheme."""


class UnknownScheme(FsstoreError):
    """No configured store handles this URI scheme."""


class BadStoreConfiguration(FsstoreError):
    """A store's configuration is wrong; names the store and the reason."""

    def __init__(self, store_name: str, reason: str) -> None:
        super().__init__(f"store {store_name!r} is misconfigured: {reason}")
        self.store_name = store_name
        self.reason = reason


class DriverLoadFailure(BadStoreConfiguration):
    """A driver named in the configuration could not be loaded."""

    def __init__(self, driver_name: str, reason: str) -> None:
        FsstoreError.__init__(
            self, f"driver {driver_name!r} could not be loaded: {reason}"
        )
        self.store_name = driver_name
        self.driver_name = driver_name
        self.reason = reason


class BadDriverConfiguration(FsstoreError):
    """A cache driver cannot work with its configuration; names the reason."""

    def __init__(self, driver_name: str, reason: str) -> None:
        super().__init__(f"cache driver {driver_name!r} is misconfigured: {reason}")
        self.driver_name = driver_name
        self.reason = reason


class Corrupt(FsstoreError):
    """An image's data differs from the digests kept when it was stored."""


class StoreCapabilityError(FsstoreError):
    """The store does not offer the operation asked of it."""

    operation = "this operation"

    def __init__(self, store_name: str) -> None:
        super().__init__(f"store {store_name!r} does not support {self.operation}")
        self.store_name = store_name


class StoreListNotSupported(StoreCapabilityError):
    operation = "listing its images (scrub)"


class StoreKeepDigestsNotSupported(StoreCapabilityError):
    operation = "keeping digests with images"


class StoreGetNotSupported(StoreCapabilityError):
    operation = "reading images"


class StoreRandomGetNotSupported(StoreCapabilityError):
    operation = "ranged reads (offset or chunk_size)"


class StoreAddDisabled(StoreCapabilityError):
    operation = "adding images"


class StoreDeleteNotSupported(StoreCapabilityError):
    operation = "deleting images"
