"""The Store base class, its capabilities, and the result of an add.

A driver subclasses :class:`Store` and implements the protected hooks
(``_add``, ``_get``, ``_get_size``, ``_delete``, and ``parse_location``). The
public methods check capabilities and validate arguments before a call reaches
the driver, so every driver refuses the same bad input in the same way.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

from oslo_config import cfg

from fsstore import exceptions
from fsstore.confvalues import file_of, option_error, path_value
from fsstore.hashing import (
    DEFAULT_HASHING_ALGO,
    KeptDigests,
    new_multihash,
    verified_chunks,
)

# Re-exported: drivers and the rest of fsstore import them from here.
from fsstore.ids import MAX_IMAGE_ID_BYTES as MAX_IMAGE_ID_BYTES
from fsstore.ids import RESERVED_PREFIX as RESERVED_PREFIX
from fsstore.ids import image_id_problem as image_id_problem
from fsstore.ids import validate_image_id as validate_image_id
from fsstore.ids import validate_size as validate_size
from fsstore.location import Location

# Re-exported: drivers written against earlier releases import them from here.
from fsstore.streams import (  # noqa: F401
    FileChunkIterator,
    ImageChunks,
    ImageData,
    SizeCheck,
    Verifier,
    read_chunks,
)

# glance_store's group of defaults for every backend's options.
SHARED_GROUP = "backend_defaults"
# The group of every store's options in single-store mode.
STORE_GROUP = "glance_store"


class Capability(enum.Flag):
    """What a store offers; the public methods check it before a driver is called."""

    NONE = 0
    READ = enum.auto()  # get, get_size, read_image
    READ_RANDOM = enum.auto()  # get with an offset or a chunk_size
    WRITE = enum.auto()  # add
    DELETE = enum.auto()  # delete
    ALL = READ | READ_RANDOM | WRITE | DELETE


class AddResult(NamedTuple):
    """What an add stored: glance_store's add_with_multihash tuple, by name."""

    location: str  # the URI that get, get_size and delete take
    size: int  # bytes stored
    checksum: str  # the MD5, in hex
    multihash: str  # the hex digest of the add's hashing_algo
    metadata: dict[str, Any]  # the driver's, for the location's metadata in Glance


class ListedImage(NamedTuple):
    """One image as a store lists it (Store.images)."""

    image_id: str
    location: str
    size: int  # when listed; it may differ by the time the image is read


class ImageRead:
    """One whole read of an image for a scrub (Store.read_image): its
    chunks, what was kept for it when it was opened, and how to keep
    digests for exactly the image read.

    Race: while a scrub reads it, the image at a location may be deleted and
    added again (same id and size, other bytes) or get digests from another
    recorder. A driver binds ``keep`` to the object it opened (filesystem:
    the open file; S3: the ETag read), so digests are never kept for other
    bytes than those read, nor over digests kept since. Close it when done.

    :param chunks: the image's chunks from its first byte, never checked
    :param kept: what was kept with it when it was opened; None: nothing
    """

    def __init__(self, chunks: ImageChunks, kept: KeptDigests | None) -> None:
        self.chunks = chunks
        self.kept = kept

    def kept_now(self) -> KeptDigests | None:
        """What is kept for the image at the location now: not ``kept`` when
        the image there was replaced (or got digests) while it was read."""
        return self.kept

    def keep(self, kept: KeptDigests) -> None:
        """Keep ``kept``, the digests of the bytes read, with the image read.

        :raises Invalid: saying which, when the image at its location was
            replaced or changed, or got digests since it opened; nothing is kept
        """
        raise NotImplementedError

    def close(self) -> None:
        """Close the chunks, and what the driver opened for them, read or not."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ImageRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ReadByLocation(ImageRead):
    """Store.read_image of a driver that does not bind ``keep`` to what it
    read: it keeps digests for whatever is at the location then."""

    def __init__(
        self,
        store: Store,
        where: Location,
        chunks: ImageChunks,
        kept: KeptDigests | None,
    ) -> None:
        super().__init__(chunks, kept)
        self._store, self._where = store, where

    def kept_now(self) -> KeptDigests | None:
        return self._store.kept_digests(self._where)

    def keep(self, kept: KeptDigests) -> None:
        self._store.keep_digests(self._where, kept)


def range_length(size: int, offset: int, limit: int | None, what: str) -> int:
    """The length of the range a ranged get reads, for drivers' ``_get``.

    :param size: the image's size in bytes
    :param offset: the range's first byte
    :param limit: at most this many bytes (None: to the end)
    :param what: the image, as the message names it
    :raises Invalid: when ``offset`` is not 0 and at or past the end
    """
    if offset and offset >= size:
        raise exceptions.Invalid(
            f"offset {offset} is past the end of {what} ({size} bytes)"
        )
    length = size - offset
    return length if limit is None else min(length, limit)


class Store:
    """Base class of every store driver; :meth:`configure` reads its options.

    :param conf: the service's oslo.config ``ConfigOpts``
    :param backend_group: multi-store mode: the backend's name, the group its
        options are read from; None: single-store mode, ``[glance_store]``
    """

    #: oslo.config options this driver reads, registered in its group.
    OPTIONS: ClassVar[list[cfg.Opt]] = []
    #: URI schemes whose locations this driver owns.
    SCHEMES: ClassVar[tuple[str, ...]] = ()
    CAPABILITIES: ClassVar[Capability] = Capability.ALL
    #: Used in messages when no backend name is given.
    DRIVER_NAME: ClassVar[str] = "store"
    #: Whether a get of a whole image checks it against the digests kept
    #: with it and raises Corrupt at the end when they differ (a driver's
    #: configure sets it from its *_verify_on_read option).
    verify_on_read = False
    #: Set before ``configure`` by a caller that only reads (the registry's
    #: ``read_only``, e.g. the ``fsstore`` command's read commands): the
    #: driver makes nothing that is not there (a data directory, a bucket)
    #: and changes nothing while configuring.
    read_only = False

    def __init__(self, conf: cfg.ConfigOpts, backend_group: str | None = None) -> None:
        self.conf = conf
        self.backend_group = backend_group
        self.name = backend_group or self.DRIVER_NAME
        self.capabilities = self.CAPABILITIES

    @classmethod
    def declared_options(
        cls, backend_group: str | None = None
    ) -> list[tuple[str, cfg.Opt]]:
        """Where each of this driver's ``OPTIONS`` is registered: in
        ``[glance_store]`` (single-store mode), or in the backend's group and
        in ``[backend_defaults]``, which ``option()`` falls back to (multi-store).

        :param backend_group: the backend's name, None in single-store mode
        :returns: ``(group, option)`` pairs for fsstore.plugins.register_options
        """
        groups = (backend_group, SHARED_GROUP) if backend_group else (STORE_GROUP,)
        return [(group, opt) for group in groups for opt in cls.OPTIONS]

    @property
    def group(self) -> str:
        """The group this store's options are read from."""
        return self.backend_group or STORE_GROUP

    def option(self, name: str) -> Any:
        """The value of one of this store's options, or BadStoreConfiguration.

        In multi-store mode, as in glance_store, an option of the backend's
        group that is None (glance_store resets those defaults to None), or
        that the group does not set while ``[backend_defaults]`` does, is
        taken from ``[backend_defaults]``.

        :param name: an option the driver declares in ``OPTIONS``
        :raises BadStoreConfiguration: when it cannot be read, never quoting a secret
        """
        return self._option(name)[0]

    def option_file(self, name: str) -> str | None:
        """The configuration file the value ``option(name)`` returns came
        from, or None (a default); relative paths are taken from its
        directory (fsstore.confvalues.beside)."""
        return file_of(self.conf, name, self._option(name)[1])

    def path_option(self, name: str) -> str:
        """A path option's value, relative to the directory of the file
        that set it ("" when unset; see fsstore.confvalues.beside)."""
        value, group = self._option(name)
        return path_value(self.conf, name, group, value)

    def _option(self, name: str) -> tuple[Any, str]:
        """``option(name)``, and the group it was read from."""
        group = self.group
        try:
            value = getattr(self.conf[group], name)
            if self.backend_group is not None and (
                value is None
                or (not self._is_set(group, name) and self._is_set(SHARED_GROUP, name))
            ):
                with contextlib.suppress(cfg.NoSuchOptError, cfg.NoSuchGroupError):
                    value = getattr(self.conf[SHARED_GROUP], name)
                    group = SHARED_GROUP
            return value, group
        except (cfg.Error, ValueError, RecursionError) as exc:
            if self._is_secret(name):
                # oslo.config's error quotes the value, or reads "$word" in
                # it as a substitution and names "word": part of a secret.
                raise exceptions.BadStoreConfiguration(
                    self.name,
                    f"option {group}.{name} cannot be read (not shown: it is "
                    "secret); a '$' in it starts an oslo.config substitution "
                    "and must be written '$$'",
                ) from None
            raise exceptions.BadStoreConfiguration(
                self.name, f"option {group}.{name}: {option_error(exc)}"
            ) from None

    def _is_secret(self, name: str) -> bool:
        """Whether the driver declares option ``name`` ``secret=True``: its
        value, or any part of it, is never shown."""
        return any(opt.dest == name and opt.secret for opt in self.OPTIONS)

    def _is_set(self, group: str, name: str) -> bool:
        """Whether a configuration file or an override sets ``group.name``."""
        try:
            where = self.conf.get_location(name, group)
        except cfg.Error:  # not registered there
            return False
        return where is not None and where.location != cfg.Locations.opt_default

    # -- configuration ---------------------------------------------------

    def configure(self) -> None:
        """Read and check the configuration; raise BadStoreConfiguration."""

    def get_schemes(self) -> tuple[str, ...]:
        """The URI schemes of this store's locations (``SCHEMES``)."""
        return self.SCHEMES

    def describe(self) -> dict[str, Any]:
        """What ``fsstore stores`` shows about this store."""
        return {
            "name": self.name,
            "driver": self.DRIVER_NAME,
            "schemes": list(self.get_schemes()),
            "capabilities": [
                c.name.lower() for c in Capability if c in self.capabilities and c.name
            ],
        }

    # -- locations -------------------------------------------------------

    def parse_location(self, uri: str) -> Location:
        """The location ``uri`` names; BadStoreUri if it is none of ours."""
        raise NotImplementedError

    def owns(self, location: Location) -> bool:
        """Whether ``location`` (of one of our schemes) is this store's.

        Several stores can share a scheme (two filesystem backends); the
        registry asks each in turn.
        """
        return True

    def preference(self, location: Location) -> int:
        """Of several stores that own ``location``, the registry picks the
        one that prefers it most (e.g. the S3 store whose host it names)."""
        return 0

    def _location(self, location: Location | str) -> Location:
        if isinstance(location, Location):
            return location
        return self.parse_location(location)

    def _require(
        self, capability: Capability, error: type[exceptions.StoreCapabilityError]
    ) -> None:
        if capability not in self.capabilities:
            raise error(self.name)

    def _writable(self, operation: str) -> None:
        if self.read_only:
            raise exceptions.StorageWriteDenied(
                f"cannot {operation} in store {self.name!r}: it was opened read-only"
            )

    # -- operations ------------------------------------------------------

    def add(
        self,
        image_id: str,
        data: ImageData,
        size: int = 0,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        verifier: Verifier | None = None,
    ) -> AddResult:
        """Store ``data`` as ``image_id``, after the checks every driver shares.

        :param image_id: the image's id, its name in the store
        :param data: a file-like object or an iterable of bytes-like chunks
        :param size: the size the caller declares, checked; 0 if unknown
        :param hashing_algo: the hashlib algorithm of the multihash
        :param verifier: shown every byte once, in order (``update``)
        :raises StoreAddDisabled: when the store does not offer adding
        :raises Invalid: a bad id, size or hashing_algo, or data not ``size`` bytes
        :raises Duplicate: when the store holds ``image_id`` already
        :raises StorageWriteDenied: when the store was opened ``read_only``
        """
        self._require(Capability.WRITE, exceptions.StoreAddDisabled)
        self._writable("add")
        validate_image_id(image_id)
        validate_size(size)
        new_multihash(hashing_algo)
        return self._add(image_id, data, size, hashing_algo, verifier)

    def get(
        self,
        location: Location | str,
        offset: int = 0,
        chunk_size: int | None = None,
    ) -> tuple[ImageChunks, int]:
        """``(iterator of bytes, length)`` of the image, or of a range of it.

        :param location: a Location, or its URI
        :param offset: the range's first byte
        :param chunk_size: glance_store's name for the range's length (at most
            that many bytes; None: to the end), never an I/O size: ``_get``'s limit
        :raises StoreCapabilityError: when the store offers no reads (or ranges)
        :raises Invalid: for a bad ``offset`` or ``chunk_size``
        :raises Corrupt: with ``verify_on_read``, at the end of a whole image
            whose bytes differ from the digests kept with it
        """
        self._require(Capability.READ, exceptions.StoreGetNotSupported)
        if offset or chunk_size is not None:
            self._require(Capability.READ_RANDOM, exceptions.StoreRandomGetNotSupported)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise exceptions.Invalid(f"offset must be an integer >= 0, not {offset!r}")
        if chunk_size is not None and (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, int)
            or chunk_size <= 0
        ):
            raise exceptions.Invalid(
                f"chunk_size must be a positive integer, not {chunk_size!r}"
            )
        where = self._location(location)
        chunks, length = self._get(where, offset, chunk_size)
        if self.verify_on_read and not offset and chunk_size is None:
            kept = self.kept_digests(where)
            if kept is not None:
                chunks = verified_chunks(chunks, kept, f"image {where.uri}")
        return chunks, length

    def get_size(self, location: Location | str) -> int:
        """The size in bytes of the image at ``location`` (a Location or its URI)."""
        self._require(Capability.READ, exceptions.StoreGetNotSupported)
        return self._get_size(self._location(location))

    def delete(self, location: Location | str) -> None:
        """Delete the image at ``location`` (a Location or its URI)."""
        self._require(Capability.DELETE, exceptions.StoreDeleteNotSupported)
        self._writable("delete")
        self._delete(self._location(location))

    # -- integrity ---------------------------------------------------------

    def images(self) -> Iterator[ListedImage]:
        """Every image in the store, for a scrub; a store that cannot list
        its images does not offer it."""
        raise exceptions.StoreListNotSupported(self.name)

    def find_image(self, image_id: str) -> ListedImage | None:
        """The image ``image_id`` names in this store, or None. This one
        looks through ``images()``; a driver that can name an image's place
        from its id alone overrides it.

        :raises StoreListNotSupported: when the store cannot list its images
        """
        validate_image_id(image_id)
        return next((i for i in self.images() if i.image_id == image_id), None)

    def read_image(self, location: Location | str) -> ImageRead:
        """The whole image at ``location`` opened for a scrub, with what
        was kept for it (see ImageRead); never checked on the way, as the
        scrub judges it itself. Drivers that keep digests override it to
        bind ``keep`` to the object they opened; this one reads through
        ``_get`` and keeps through ``keep_digests``, by location."""
        self._require(Capability.READ, exceptions.StoreGetNotSupported)
        where = self._location(location)
        kept = self.kept_digests(where)
        chunks, _ = self._get(where, 0, None)
        return _ReadByLocation(self, where, chunks, kept)

    def identity(self) -> str | None:
        """Where this store keeps its images: a string every configuration
        reaching them gives alike and no other (filesystem: the data
        directories; S3: endpoint and bucket). A scrub's checkpoint belongs
        to it, not to a store name (two configurations may each have a
        ``file``). None: the driver does not say; its scrub cannot resume."""
        return None

    def unavailable(self) -> list[str]:
        """What of this store cannot be reached now, a phrase each (a data
        directory that is missing, e.g. unmounted). ``images()`` cannot
        list what is there, so a scrub names each one and fails."""
        return []

    def kept_digests(self, location: Location | str) -> KeptDigests | None:
        """What was kept with the image at ``location`` when it was added;
        None when nothing was (or the store keeps nothing)."""
        return None

    def keep_digests(self, location: Location | str, kept: KeptDigests) -> None:
        """Keep ``kept`` with the image at ``location``, stored without them
        (``scrub --record``).

        :raises StoreKeepDigestsNotSupported: when the store keeps none
        """
        raise exceptions.StoreKeepDigestsNotSupported(self.name)

    # -- driver hooks ------------------------------------------------------

    def _add(
        self,
        image_id: str,
        data: ImageData,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        """Store the image: :meth:`add`'s arguments, checked. Read ``data``
        through streams.CheckedSource (size check, verifier), raise Duplicate
        if the id is taken, and leave nothing behind on any failure."""
        raise NotImplementedError

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int]:
        """``(chunks, length)`` of at most ``limit`` bytes (None: to the end)
        from ``offset``, both checked by :meth:`get`; see range_length."""
        raise NotImplementedError

    def _get_size(self, location: Location) -> int:
        """The image's size in bytes; NotFound if there is none."""
        raise NotImplementedError

    def _delete(self, location: Location) -> None:
        """Delete the image; NotFound if there is none."""
        raise NotImplementedError
