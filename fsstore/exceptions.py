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
    """A store failed in a way that is not the caller's fault: an error of
    the storage or the server it names, not mapped to a narrower class.

    The module-level functions (fsstore.registry) raise it too when no
    stores were created.
    """


class StoreTimeout(BackendException):
    """A store operation did not finish in the configured time (a stalled
    network file system); glance_store's ``TimeoutError``.

    :param message: what did not finish, and where
    :param timeout: the seconds it was given, for a caller's own message
    """

    def __init__(self, message: str, timeout: float = 0) -> None:
        super().__init__(message)
        self.timeout = timeout


class NotFound(FsstoreError):
    """The image or location does not exist (get, get_size, delete, a cache
    entry); an image in a data directory that is missing reads as one."""


class Duplicate(FsstoreError):
    """An image with this id already exists in the store, or another add of
    it won the race; nothing of the refused add is left."""


class StorageFull(FsstoreError):
    """The storage has no room for the image: no data directory had, a
    write ran out of space or quota, or the S3 engine refused its size."""


class StorageWriteDenied(FsstoreError):
    """The store refused the write for lack of permission, or because the
    file system is read-only."""


class Forbidden(FsstoreError):
    """The location is not one this store may touch (outside its data
    directories or bucket, a symlink, not an image file), or the storage
    denied access."""


class InUseByStore(FsstoreError):
    """The image cannot be deleted while the storage uses it: an RBD image
    whose snapshot still has clones (a VM's disk); nothing was changed."""


class Invalid(FsstoreError):
    """The request is malformed: a bad image id, a size mismatch, a bad range,
    data that is not bytes."""


class UnknownHashingAlgo(Invalid):
    """The hashing algorithm is not one fsstore computes a multihash in
    (hashing.hashing_algo_problem: hashlib's, with a fixed digest length).

    :param algo: the name given, quoted in the message
    """

    def __init__(self, algo: str) -> None:
        super().__init__(f"unknown hashing algorithm {algo!r}")
        self.algo = algo


class BadStoreUri(FsstoreError):
    """A location is no URI (no scheme, a NUL byte, not a string), or the
    store that owns its scheme cannot parse it."""


class UnknownScheme(FsstoreError):
    """No configured store handles this URI scheme, or none has the backend
    name, driver name or scheme asked for (StoreRegistry.get_store)."""


class BadStoreConfiguration(FsstoreError):
    """A store's configuration is wrong; names the store and the reason.

    Raised while the stores are loaded and configured (StoreRegistry), or
    when an option cannot be read (Store.option).

    :param store_name: the store, or the option group that is wrong
    :param reason: what is wrong, a phrase the message ends with
    :param group: ``store_name`` is an option group (``glance_store``,
        ``DEFAULT``), not a store, and the message names it so
    """

    def __init__(self, store_name: str, reason: str, group: bool = False) -> None:
        what = f"option group [{store_name}]" if group else f"store {store_name!r}"
        super().__init__(f"{what} is misconfigured: {reason}")
        self.store_name = store_name
        self.reason = reason


class DriverLoadFailure(BadStoreConfiguration):
    """A driver named in the configuration could not be loaded, or is not
    a driver (fsstore.plugins); a BadStoreConfiguration of the driver.

    :param driver_name: the driver's entry-point name
    :param reason: why it did not load, a phrase the message ends with
    """

    def __init__(self, driver_name: str, reason: str) -> None:
        FsstoreError.__init__(
            self, f"driver {driver_name!r} could not be loaded: {reason}"
        )
        self.store_name = driver_name
        self.driver_name = driver_name
        self.reason = reason


class BadDriverConfiguration(FsstoreError):
    """A cache driver cannot work with its configuration; names the reason.

    :param driver_name: the cache driver's name (``sqlite``, ``xattr``, ...)
    :param reason: what is wrong, a phrase the message ends with
    """

    def __init__(self, driver_name: str, reason: str) -> None:
        super().__init__(f"cache driver {driver_name!r} is misconfigured: {reason}")
        self.driver_name = driver_name
        self.reason = reason


class Corrupt(FsstoreError):
    """An image's data differs from the digests kept when it was stored:
    at the end of a verifying read, or in a scrub."""


class StoreCapabilityError(FsstoreError):
    """The store does not offer the operation asked of it; raised before
    anything is done. Each subclass names one operation.

    :param store_name: the store asked
    """

    operation = "this operation"

    def __init__(self, store_name: str) -> None:
        super().__init__(f"store {store_name!r} does not support {self.operation}")
        self.store_name = store_name


class StoreListNotSupported(StoreCapabilityError):
    """The store cannot list its images (Store.images), so it cannot be scrubbed."""

    operation = "listing its images (scrub)"


class StoreKeepDigestsNotSupported(StoreCapabilityError):
    """The store keeps no digests with its images (Store.keep_digests)."""

    operation = "keeping digests with images"


class StoreGetNotSupported(StoreCapabilityError):
    """The store does not offer reads (Store.get, get_size, read_image)."""

    operation = "reading images"


class StoreRandomGetNotSupported(StoreCapabilityError):
    """The store reads only whole images: a get had an offset or chunk_size."""

    operation = "ranged reads (offset or chunk_size)"


class StoreAddDisabled(StoreCapabilityError):
    """The store does not offer adding images (Store.add)."""

    operation = "adding images"


class StoreDeleteNotSupported(StoreCapabilityError):
    """The store does not offer deleting images (Store.delete)."""

    operation = "deleting images"
