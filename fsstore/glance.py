"""fsstore's stores as glance_store drivers, for an unchanged Glance.

Glance loads its stores from glance_store's ``glance_store.drivers`` entry
points. fsstore registers three there:

* ``fsstore_file``: fsstore's filesystem store (atomic publish, containment,
  one winner per id), configured with glance_store's own filesystem options
  plus ``filesystem_store_fsync``;
* ``fsstore_s3``: fsstore's S3 store (bounded memory, aborted uploads, no
  credentials in locations), configured with glance_store's ``s3_store_*``
  options;
* ``fsstore_rbd``: fsstore's RBD store (nothing partial, one winner, digests
  kept), configured with glance_store's ``rbd_store_*`` options.

Each adapter presents glance_store's driver interface (its ``Store`` base
class, capabilities, ``StoreLocation``, options registered in the backend's
group, the multihash add and the back-compatible 4-tuple add, ranged get,
get_size, delete), delegates the work to the fsstore store, and translates
fsstore's exceptions into glance_store's. It reuses glance_store's option
objects, so a deployment may enable glance_store's own drivers beside these.

Unlike glance_store's drivers, a misconfigured adapter does not quietly
disable writes: ``configure()`` raises ``BadStoreConfiguration`` so that Glance
refuses to start with a clear reason.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

try:
    import glance_store.driver
    import glance_store.location
    from glance_store import capabilities
    from glance_store import exceptions as gs_exceptions
    from glance_store._drivers import filesystem as gs_filesystem
    from glance_store._drivers import rbd as gs_rbd
    from glance_store._drivers import s3 as gs_s3
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "fsstore's Glance adapters need glance_store: pip install 'fsstore[glance]'"
        f" ({exc})"
    ) from exc


from fsstore import exceptions
from fsstore.backends import filesystem, rbd, s3
from fsstore.location import FileLocation, RbdLocation, S3Location
from fsstore.plugins import register_options
from fsstore.store import Store as FsstoreStore
from fsstore.streams import ImageChunks

T = TypeVar("T")


# fsstore errors whose glance_store counterpart takes the message as it is.
_SAME_MESSAGE: tuple[tuple[type[exceptions.FsstoreError], type[Exception]], ...] = (
    (exceptions.NotFound, gs_exceptions.NotFound),
    (exceptions.Duplicate, gs_exceptions.Duplicate),
    (exceptions.StorageFull, gs_exceptions.StorageFull),
    (exceptions.StorageWriteDenied, gs_exceptions.StorageWriteDenied),
    (exceptions.Forbidden, gs_exceptions.Forbidden),
    (exceptions.InUseByStore, gs_exceptions.InUseByStore),
    (exceptions.Invalid, gs_exceptions.Invalid),
    (exceptions.BadStoreUri, gs_exceptions.BadStoreUri),
    (exceptions.UnknownScheme, gs_exceptions.UnknownScheme),
    (exceptions.StoreGetNotSupported, gs_exceptions.StoreGetNotSupported),
    (exceptions.StoreAddDisabled, gs_exceptions.StoreAddDisabled),
    (exceptions.StoreDeleteNotSupported, gs_exceptions.StoreDeleteNotSupported),
)


def to_glance(exc: exceptions.FsstoreError) -> Exception:
    """The glance_store exception for an fsstore one, message kept.

    The four whose glance_store constructors take other arguments come
    first; each is more specific than any class of _SAME_MESSAGE it is a
    subclass of (UnknownHashingAlgo of Invalid).
    """
    message = str(exc)
    error: Exception  # glance_store is untyped: its classes are Any here
    if isinstance(exc, exceptions.StoreTimeout):
        error = gs_exceptions.TimeoutError(timeout=getattr(exc, "timeout", None))
    elif isinstance(exc, exceptions.UnknownHashingAlgo):
        error = gs_exceptions.UnknownHashingAlgo(algo=getattr(exc, "algo", ""))
    elif isinstance(exc, exceptions.BadStoreConfiguration):
        error = gs_exceptions.BadStoreConfiguration(
            store_name=getattr(exc, "store_name", ""),
            reason=getattr(exc, "reason", message),
        )
    elif isinstance(exc, exceptions.StoreRandomGetNotSupported):
        error = gs_exceptions.StoreRandomGetNotSupported(
            message, offset=0, chunk_size=None
        )
    else:
        glance_cls = next(
            (g for cls, g in _SAME_MESSAGE if isinstance(exc, cls)),
            gs_exceptions.BackendException,
        )
        error = glance_cls(message)
    return error


def translated(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except exceptions.FsstoreError as exc:
            raise to_glance(exc) from exc

    return wrapper


# A location the store refuses (outside its data directories or bucket, a
# symlink, a name of the store's own) is fsstore's Forbidden. glance_store's
# Forbidden is what it stays, for any caller; but Glance 33 handles it on
# none of the paths that reach a location by its URL but the image delete,
# and answers 500. Each class below is also the error that path does handle.


class RefusedLocationSize(gs_exceptions.BadStoreUri, gs_exceptions.Forbidden):
    """get_size of a refused location. Glance sizes a location before it
    accepts one (glance/quota, then glance/location.py), handling only
    NotFound, UnknownScheme and BadStoreUri: a BadStoreUri is its 400."""


class RefusedLocationRead(gs_exceptions.StoreGetNotSupported, gs_exceptions.Forbidden):
    """get of a refused location already in Glance's database. Glance's
    download handles NotFound (which it answers with 204, as if the image
    had no data), StoreGetNotSupported (400) and RemoteServiceUnavailable."""


class RefusedLocationDelete(gs_exceptions.HasSnapshot, gs_exceptions.Forbidden):
    """delete of a refused location already in Glance's database. Every
    delete in Glance ends in store_utils.safe_delete_from_backend. The image
    delete handles Forbidden before the rest: 403. delete_from_store (DELETE
    /v2/stores/{store}/{image}) handles only Glance's own Forbidden, and
    HasSnapshot with a 409 that carries the message as it is. NotFound and
    StoreDeleteNotSupported would not do: safe_delete_from_backend takes
    them as done, and Glance would drop the location (or the image) with
    nothing deleted."""


def refused_as(
    glance_cls: type[Exception],
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Raise ``glance_cls`` (message kept) for fsstore's Forbidden; under
    :func:`translated`, which leaves it as it is."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except exceptions.Forbidden as exc:
                raise glance_cls(str(exc)) from exc

        return wrapper

    return decorate


class _StoreLocation(glance_store.location.StoreLocation):
    """A location parsed by fsstore's rules for its scheme."""

    parse: Callable[[str], Any] = staticmethod(FileLocation.from_uri)

    def process_specs(self) -> None:
        self.uri = self.specs.get("uri")

    @translated
    def parse_uri(self, uri: str) -> None:
        self.parsed = self.parse(uri)
        self.uri = self.parsed.uri

    def get_uri(self) -> str:
        return str(self.uri)


class FileStoreLocation(_StoreLocation):
    parse = staticmethod(FileLocation.from_uri)


class S3StoreLocation(_StoreLocation):
    parse = staticmethod(S3Location.from_uri)

    # glance_store's S3 StoreLocation attributes, credentials left out.
    @property
    def bucket(self) -> str:
        return str(self.parsed.bucket)

    @property
    def key(self) -> str:
        return str(self.parsed.key)

    @property
    def s3serviceurl(self) -> str:
        return str(self.parsed.host)


class RbdStoreLocation(_StoreLocation):
    parse = staticmethod(RbdLocation.from_uri)

    # glance_store's RBD StoreLocation attributes: None in a legacy
    # rbd://<image> location, as there.
    fsid = property(lambda self: self.parsed.fsid or None)
    pool = property(lambda self: self.parsed.pool or None)
    image = property(lambda self: self.parsed.image)
    snapshot = property(lambda self: self.parsed.snapshot or None)


class _Adapter(glance_store.driver.Store):
    """A glance_store driver that delegates to an fsstore store."""

    _CAPABILITIES = (
        capabilities.BitMasks.READ_RANDOM
        | capabilities.BitMasks.WRITE_ACCESS
        | capabilities.BitMasks.DRIVER_REUSABLE
    )
    FSSTORE_CLASS: type[FsstoreStore]
    LOCATION_CLASS: type[_StoreLocation]
    ENTRY_NAME: str

    def __init__(self, conf: Any, backend: str | None = None) -> None:
        super().__init__(conf, backend=backend)
        if backend:
            # glance_store registers only a few options of its own in a
            # reserved store's group (os_glance_staging_store mapped to this
            # driver): add the rest, keeping what is there.
            register_options(conf, ((backend, opt) for opt in self.OPTIONS))
        self.store = self.FSSTORE_CLASS(conf, backend_group=backend)

    def get_store_location_class(self) -> type[_StoreLocation]:
        return self.LOCATION_CLASS

    def configure(self, re_raise_bsc: bool = False) -> None:
        # Always re-raise: a store that cannot work must say so, not quietly
        # lose its write capability.
        super().configure(re_raise_bsc=True)

    @translated
    def configure_add(self) -> None:
        self.store.configure()
        self._expose()
        # As glance_store's drivers, only in multi-store mode: Glance tags a
        # location with the backend whose url_prefix it starts with; an
        # untagged one is looked up by scheme, and would reach glance_store's
        # own file driver of the reserved staging store.
        if self.backend_group:
            self._url_prefix = self._glance_url_prefix()

    def _expose(self) -> None:
        """Set the attributes Glance reads from a glance_store driver."""

    def _glance_url_prefix(self) -> str:
        raise NotImplementedError

    def get_schemes(self) -> tuple[str, ...]:
        # glance_store's multi-store API finds a backend's store by looking up
        # its *type* (the entry-point name) as a scheme, so the type must be
        # one of the schemes. No location ever uses it.
        return (*self.store.get_schemes(), self.ENTRY_NAME)

    @staticmethod
    def _uri(location: Any) -> str:
        return str(location.store_location.get_uri())

    @capabilities.check
    @translated
    @refused_as(RefusedLocationRead)
    def get(
        self,
        location: Any,
        offset: int = 0,
        chunk_size: int | None = None,
        context: Any = None,
    ) -> tuple[ImageChunks, int]:
        return self.store.get(self._uri(location), offset, chunk_size)

    @translated
    @refused_as(RefusedLocationSize)
    def get_size(self, location: Any, context: Any = None) -> int:
        return self.store.get_size(self._uri(location))

    @glance_store.driver.back_compat_add
    @capabilities.check
    @translated
    def add(
        self,
        image_id: str,
        image_file: Any,
        image_size: int,
        hashing_algo: str,
        context: Any = None,
        verifier: Any = None,
    ) -> tuple[str, int, str, str, dict[str, Any]]:
        result = self.store.add(
            image_id, image_file, image_size or 0, hashing_algo, verifier
        )
        metadata = dict(result.metadata)
        if self.backend_group:
            metadata["store"] = self.backend_group
        return result.location, result.size, result.checksum, result.multihash, metadata

    @capabilities.check
    @translated
    @refused_as(RefusedLocationDelete)
    def delete(self, location: Any, context: Any = None) -> None:
        self.store.delete(self._uri(location))


def theirs_and_ours(theirs: list[Any], ours: list[Any]) -> list[Any]:
    """glance_store's own option objects for a driver (so an option Glance
    registered first is the same object, never a duplicate), then those of
    fsstore's store that glance_store lacks (timeouts, retries, verify on
    read)."""
    names = {opt.name for opt in theirs}
    return [*theirs, *(opt for opt in ours if opt.name not in names)]


class FileStore(_Adapter):
    """``fsstore_file``: fsstore's filesystem store under glance_store."""

    OPTIONS = [
        *gs_filesystem._FILESYSTEM_CONFIGS,
        *[
            o
            for o in filesystem.OPTIONS
            if o.name in ("filesystem_store_fsync", "filesystem_store_verify_on_read")
        ],
    ]
    FSSTORE_CLASS = filesystem.FilesystemStore
    LOCATION_CLASS = FileStoreLocation
    ENTRY_NAME = "fsstore_file"
    store: filesystem.FilesystemStore

    def _expose(self) -> None:
        # GET /v2/info/stores/detail reads these, under glance_store's names
        # (its chunk_size is the I/O size, our io_size).
        store = self.store
        self.multiple_datadirs = len(store.datadirs) > 1
        self.datadir = store.preferred_datadir().path
        self.chunk_size = self.READ_CHUNKSIZE = self.WRITE_CHUNKSIZE = store.io_size
        self.thin_provisioning = store.thin

    def _glance_url_prefix(self) -> str:
        # glance_store's: the best data directory when configured, no slash.
        return f"file://{self.datadir}"

    # glance_store's driver keeps the parsed filesystem_store_metadata_file
    # here (a list of dicts); callers read it, and tests set it.
    @property
    def FILESYSTEM_STORE_METADATA(self) -> list[dict[str, Any]]:  # noqa: N802
        return self.store.metadata

    @FILESYSTEM_STORE_METADATA.setter
    def FILESYSTEM_STORE_METADATA(self, metadata: list[dict[str, Any]]) -> None:  # noqa: N802
        self.store.metadata = list(metadata or [])


class S3Store(_Adapter):
    """``fsstore_s3``: fsstore's S3 store under glance_store."""

    # glance_store's own option objects, and fsstore's options it lacks
    # (timeouts, retries, the upload lease).
    OPTIONS = theirs_and_ours(gs_s3._S3_OPTS, s3.OPTIONS)
    FSSTORE_CLASS = s3.S3Store
    LOCATION_CLASS = S3StoreLocation
    ENTRY_NAME = "fsstore_s3"
    store: s3.S3Store

    def _expose(self) -> None:
        # GET /v2/info/stores/detail reads these; in bytes, as glance_store.
        self.s3_store_large_object_size = self.store.large_object_size
        self.s3_store_large_object_chunk_size = self.store.part_size
        self.s3_store_thread_pools = self.store.thread_pools

    def _glance_url_prefix(self) -> str:
        return f"{self.store.scheme}://{self.store.host}/{self.store.bucket}"


class RbdStore(_Adapter):
    """``fsstore_rbd``: fsstore's RBD store under glance_store."""

    OPTIONS = theirs_and_ours(gs_rbd._RBD_OPTS, rbd.OPTIONS)
    FSSTORE_CLASS = rbd.RbdStore
    LOCATION_CLASS = RbdStoreLocation
    ENTRY_NAME = "fsstore_rbd"
    store: rbd.RbdStore

    def _expose(self) -> None:
        # glance_store's driver attributes; chunk_size in bytes, as there.
        settings = self.store.settings
        assert settings is not None
        self.pool, self.user = settings.pool, settings.user
        self.conf_file = settings.ceph_conf
        self.chunk_size = self.READ_CHUNKSIZE = self.WRITE_CHUNKSIZE = (
            settings.chunk_size
        )
        self.thin_provisioning = settings.thin

    def _glance_url_prefix(self) -> str:
        # glance_store's: rbd://<fsid>/<pool>/, the fsid read from the
        # cluster. While the cluster cannot be reached (Glance starts while
        # Ceph is down) glance_store's fallback, rbd://, until it can.
        cluster = self.store.cluster
        try:
            assert cluster is not None
            cluster.ioctx()
        except exceptions.FsstoreError:
            return "rbd://"
        quote = functools.partial(urllib.parse.quote, safe="")
        return f"rbd://{quote(cluster.fsid)}/{quote(self.pool)}/"

    @property
    def url_prefix(self) -> str | None:
        if self._url_prefix == "rbd://":
            self._url_prefix = self._glance_url_prefix()
        return self._url_prefix
