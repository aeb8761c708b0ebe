"""Loading stores through entry points, and the module-level API.

:class:`StoreRegistry` holds the stores one configuration describes. Two modes,
as in glance_store:

* single-store: ``[glance_store] stores`` names drivers, ``default_store``
  picks where new images go, and every store reads ``[glance_store]``;
* multi-store: ``[DEFAULT] enabled_backends = name:type,...`` names backends,
  ``[glance_store] default_backend`` picks one, and each backend reads the
  group named after it.

Drivers come only from the ``fsstore.backends`` entry-point namespace. A driver
that does not load, or is not a :class:`~fsstore.store.Store`, is an error
that names it; nothing is skipped with a warning.

The module-level functions keep glance_store's names, arguments and return
shapes, and work on the registry that :func:`create_stores` made last.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from oslo_config import cfg

from fsstore import exceptions, opts, plugins
from fsstore.confvalues import option_error
from fsstore.hashing import DEFAULT_HASHING_ALGO
from fsstore.location import Location, redact, split_scheme

# load_driver is re-exported (it is in __all__): code written before
# fsstore.plugins imports it from here; it takes the namespace and base now.
from fsstore.plugins import BACKENDS_NAMESPACE, load_driver
from fsstore.store import AddResult, Store
from fsstore.streams import ImageChunks, ImageData, Verifier

LOG = logging.getLogger(__name__)

__all__ = [
    "BACKENDS_NAMESPACE",
    "StoreRegistry",
    "add_to_backend",
    "add_to_backend_with_multihash",
    "create_stores",
    "delete_from_backend",
    "get_from_backend",
    "get_size_from_backend",
    "load_driver",
    "register_opts",
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every option fsstore reads, the image cache's included,
    as glance_store's ``register_opts`` does: fsstore's own and those every
    installed store driver declares, found through the entry points.

    A cache records driver's options (centralized_db's ``[database]
    connection``) are registered when that driver is loaded, not here: a
    service that registers its own (Glance, through oslo.db) after this
    call would otherwise find them taken. A store driver that cannot be
    loaded is left out (logged at INFO): a service is not stopped by a
    plugin its configuration does not use, and one it does use fails to
    load with DriverLoadFailure naming it.

    :param conf: the configuration to register in; again is harmless
    """
    register_own_opts(conf)
    plugins.register_options(
        conf,
        plugins.driver_options(
            plugins.BACKENDS_NAMESPACE, opts.STORE_GROUP, skipped=_not_registered
        ),
    )


def register_own_opts(conf: cfg.ConfigOpts) -> None:
    """Register fsstore's own options (not its drivers'): each driver's are
    registered when it is loaded, where it reads them.

    :param conf: the configuration to register in; again is harmless
    """
    for group, opt in opts.own_options():
        conf.register_opt(opt, group=group)


def _not_registered(failure: exceptions.DriverLoadFailure) -> None:
    LOG.info("%s; its options are not registered", failure)


class StoreRegistry:
    """The configured stores of one ``ConfigOpts``, and operations on them."""

    def __init__(self, conf: cfg.ConfigOpts, read_only: bool = False) -> None:
        """Load every configured driver, then configure each store.

        :param conf: the parsed configuration; fsstore's own options and
            each configured store's are registered in it, once
        :param read_only: the caller only reads: each store makes and
            changes nothing (Store.read_only): its ``add`` and ``delete``
            raise StorageWriteDenied
        :raises DriverLoadFailure: naming a driver the configuration names
            that cannot be loaded
        :raises BadStoreConfiguration: naming the store (or group) whose
            options are missing, contradictory or wrong
        """
        self.conf = conf
        self.read_only = read_only
        register_own_opts(conf)
        self.stores: dict[str, Store] = {}
        self.multi_store = bool(self._opt(None, "enabled_backends"))
        if self.multi_store:
            self._load_backends()
        else:
            self._load_single_store()
        # Every driver loads before any store configures, so that a missing
        # driver is reported as such whatever else is wrong.
        for store in self.stores.values():
            store.read_only = read_only
            store.configure()

    def _opt(self, group: str | None, name: str) -> Any:
        try:
            return getattr(self.conf[group] if group else self.conf, name)
        except (cfg.Error, ValueError) as exc:
            where = f"{group}.{name}" if group else name
            raise exceptions.BadStoreConfiguration(
                group or "DEFAULT", f"option {where}: {option_error(exc)}", group=True
            ) from None

    def _load_single_store(self) -> None:
        names = [n.strip() for n in self._opt(opts.STORE_GROUP, "stores") if n.strip()]
        if not names:
            raise exceptions.BadStoreConfiguration(
                opts.STORE_GROUP, "option stores names no store", group=True
            )
        loaded: set[type[Store]] = set()
        for name in names:
            driver_cls = load_driver(name, BACKENDS_NAMESPACE, Store)
            if driver_cls in loaded:
                continue  # an alias of a driver already loaded
            loaded.add(driver_cls)
            self.stores[name] = self._new_store(driver_cls, None)
        default = self._opt(opts.STORE_GROUP, "default_store")
        found = self._find_name(default)
        if found is None:
            raise exceptions.BadStoreConfiguration(
                opts.STORE_GROUP,
                f"default_store {default!r} is not one of the configured stores "
                f"({', '.join(names)})",
                group=True,
            )
        self.default_name = found

    def _load_backends(self) -> None:
        backends: dict[str, str] = self._opt(None, "enabled_backends")
        for name, type_name in backends.items():
            name, type_name = name.strip(), (type_name or "").strip()
            if not type_name:
                raise exceptions.BadStoreConfiguration(
                    name, "enabled_backends must give it a type, as name:type"
                )
            if name == opts.STORE_GROUP or name.upper() == "DEFAULT":
                raise exceptions.BadStoreConfiguration(
                    name, "this name is reserved and cannot name a backend"
                )
            driver_cls = load_driver(type_name, BACKENDS_NAMESPACE, Store)
            self.stores[name] = self._new_store(driver_cls, name)
        default = self._opt(opts.STORE_GROUP, "default_backend")
        if not default:
            raise exceptions.BadStoreConfiguration(
                opts.STORE_GROUP,
                "default_backend must be set when enabled_backends is",
                group=True,
            )
        if default not in self.stores:
            raise exceptions.BadStoreConfiguration(
                opts.STORE_GROUP,
                f"default_backend {default!r} is not one of enabled_backends "
                f"({', '.join(self.stores)})",
                group=True,
            )
        self.default_name = default

    def _new_store(self, driver_cls: type[Store], backend_group: str | None) -> Store:
        """A store of ``driver_cls``, its options registered where it reads
        them: the one place a store's options are registered, once per
        store."""
        plugins.register_options(self.conf, driver_cls.declared_options(backend_group))
        if backend_group is not None:
            self.conf.register_opts(opts.BACKEND_OPTS, group=backend_group)
        return driver_cls(self.conf, backend_group=backend_group)

    def _find_name(self, name_or_scheme: str) -> str | None:
        if name_or_scheme in self.stores:
            return name_or_scheme
        for name, store in self.stores.items():
            if name_or_scheme in store.get_schemes():
                return name
        return None

    # -- lookups ---------------------------------------------------------

    def get_store(self, name: str | None = None) -> Store:
        """A store by backend name (multi-store), driver name or scheme.

        :param name: None for the default store (``default_store`` or
            ``default_backend``)
        :raises UnknownScheme: when no configured store has that name or
            scheme
        """
        if name is None:
            return self.stores[self.default_name]
        found = self._find_name(name)
        if found is None:
            if self.multi_store:
                raise exceptions.UnknownScheme(
                    f"no backend or scheme named {name!r} is configured "
                    f"(backends: {', '.join(self.stores)})"
                )
            raise exceptions.UnknownScheme(f"no store handles scheme {name!r}")
        return self.stores[found]

    def store_for(self, uri: str) -> tuple[Store, Location]:
        """The store that owns ``uri``, and the location parsed by it.

        Of several stores of its scheme, the ones that own the location
        (Store.owns) are asked which prefers it most (Store.preference).

        :param uri: a location, as an add returned it
        :raises BadStoreUri: when ``uri`` is no URI its store can parse
        :raises UnknownScheme: when no configured store has its scheme
        :raises Forbidden: when stores have its scheme but none owns it
        """
        scheme, _ = split_scheme(uri)
        candidates = [s for s in self.stores.values() if scheme in s.get_schemes()]
        if not candidates:
            raise exceptions.UnknownScheme(
                f"no configured store handles scheme {scheme!r} of {redact(uri)!r}"
            )
        location = candidates[0].parse_location(uri)
        if len(candidates) == 1:
            return candidates[0], location
        owners = [s for s in candidates if s.owns(location)]
        if owners:
            return max(owners, key=lambda s: s.preference(location)), location
        raise exceptions.Forbidden(
            f"location {location.uri} belongs to none of the configured stores"
        )

    # -- operations ------------------------------------------------------

    def add(
        self,
        image_id: str,
        data: ImageData,
        size: int = 0,
        backend: str | None = None,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        verifier: Verifier | None = None,
    ) -> AddResult:
        """Add an image to one store (Store.add).

        :param image_id: the image's id, its name in the store
        :param data: a file-like object or an iterable of bytes-like chunks
        :param size: the size the caller declares, checked; 0 if unknown
        :param backend: the store (see get_store); None for the default
        :param hashing_algo: the hashlib algorithm of the multihash
        :param verifier: shown every byte once, in order (``update``)
        :returns: the AddResult; in multi-store mode its metadata names the
            backend as ``store``, as Glance expects
        """
        store = self.get_store(backend)
        result = store.add(image_id, data, size, hashing_algo, verifier)
        if self.multi_store:
            result.metadata["store"] = store.name
        return result

    def get(
        self, uri: str, offset: int = 0, chunk_size: int | None = None
    ) -> tuple[ImageChunks, int]:
        """The image at ``uri``, or a range of it (Store.get).

        :param uri: the location (see store_for)
        :param offset: the first byte to read
        :param chunk_size: at most this many bytes from ``offset`` (None: to
            the end); glance_store's name for a range's length, not an I/O size
        :returns: ``(chunks, length)``; close the chunks if not read to the end
        """
        store, location = self.store_for(uri)
        return store.get(location, offset, chunk_size)

    def get_size(self, uri: str) -> int:
        """The size in bytes of the image at ``uri`` (see store_for)."""
        store, location = self.store_for(uri)
        return store.get_size(location)

    def delete(self, uri: str) -> None:
        """Delete the image at ``uri`` (see store_for); NotFound if it is gone."""
        store, location = self.store_for(uri)
        store.delete(location)

    def close(self) -> None:
        """Close every store that holds anything open (threads, descriptors)."""
        for store in self.stores.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()


# -- module-level, glance_store-compatible API -------------------------------

_default_registry: StoreRegistry | None = None
_default_lock = threading.Lock()


def create_stores(conf: cfg.ConfigOpts) -> StoreRegistry:
    """Load and configure the stores of ``conf``; the new default registry.

    The module-level functions below work on the registry made last.

    :param conf: the parsed configuration (see StoreRegistry)
    :returns: the registry, for callers that keep one of their own
    """
    global _default_registry
    registry = StoreRegistry(conf)
    with _default_lock:
        _default_registry = registry
    return registry


def _registry(conf: cfg.ConfigOpts | None = None) -> StoreRegistry:
    registry = _default_registry
    if registry is not None and (conf is None or registry.conf is conf):
        return registry
    if conf is None:
        raise exceptions.BackendException(
            "no stores are configured: call fsstore.create_stores(conf) first"
        )
    return create_stores(conf)


def add_to_backend(
    conf: cfg.ConfigOpts,
    image_id: str,
    data: ImageData,
    size: int,
    scheme: str | None = None,
    context: Any = None,
    verifier: Verifier | None = None,
) -> tuple[str, int, str, dict[str, Any]]:
    """glance_store's add: its name, arguments and return shape.

    :param conf: the configuration; a registry is made from it
        (create_stores) unless the default registry is of it already
    :param image_id: the image's id, its name in the store
    :param data: a file-like object or an iterable of bytes-like chunks
    :param size: the size the caller declares, checked; 0 if unknown
    :param scheme: the store, by backend name, driver name or scheme; None
        for the default one
    :param context: glance_store's request context, which its stores take
        credentials from; accepted and unused, as fsstore's stores use their
        configured ones
    :param verifier: shown every byte once, in order (``update``)
    :returns: ``(location, size, checksum, metadata)``, checksum the MD5
    """
    result = _registry(conf).add(image_id, data, size, scheme, verifier=verifier)
    return result.location, result.size, result.checksum, result.metadata


def add_to_backend_with_multihash(
    conf: cfg.ConfigOpts,
    image_id: str,
    data: ImageData,
    size: int,
    hashing_algo: str,
    scheme: str | None = None,
    context: Any = None,
    verifier: Verifier | None = None,
) -> AddResult:
    """glance_store's add with a multihash: its name, arguments and return shape.

    The AddResult is the tuple ``(location, size, checksum, multihash,
    metadata)``; the other parameters are add_to_backend's.

    :param hashing_algo: the hashlib algorithm of the multihash (Glance's
        ``hashing_algorithm``)
    :param context: accepted and unused (see add_to_backend)
    """
    return _registry(conf).add(image_id, data, size, scheme, hashing_algo, verifier)


def get_from_backend(
    uri: str, offset: int = 0, chunk_size: int | None = None, context: Any = None
) -> tuple[ImageChunks, int]:
    """glance_store's get, on the default registry (create_stores).

    :param uri: the image's location
    :param offset: the first byte to read
    :param chunk_size: at most this many bytes from ``offset`` (None: to the
        end), glance_store's name for a range's length
    :param context: accepted and unused (see add_to_backend)
    :returns: ``(chunks, length)``, as glance_store returns them
    :raises BackendException: when no stores were created
    """
    return _registry().get(uri, offset, chunk_size)


def get_size_from_backend(uri: str, context: Any = None) -> int:
    """glance_store's get_size, on the default registry: the size in bytes.

    :param uri: the image's location
    :param context: accepted and unused (see add_to_backend)
    :raises BackendException: when no stores were created
    """
    return _registry().get_size(uri)


def delete_from_backend(uri: str, context: Any = None) -> None:
    """glance_store's delete, on the default registry.

    :param context: accepted and unused (see add_to_backend)
    :raises NotFound: when no image is at ``uri``
    :raises BackendException: when no stores were created
    """
    _registry().delete(uri)
