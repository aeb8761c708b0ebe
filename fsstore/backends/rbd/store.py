"""The RBD store: images as Ceph RBD images, where Nova and Cinder clone
them from.

Options keep glance_store's names and defaults (config.py). Each image is an
RBD image named by the image's id in ``rbd_store_pool``, with a protected
snapshot ``snap``, the one Nova and Cinder make copy-on-write clones of;
its location is ``rbd://<fsid>/<pool>/<id>/snap``. What it does that
glance_store's driver does not:

* Nothing partial is ever visible, and one winner: an add writes a temporary
  image, keeps the digests in its metadata, snapshots and protects it,
  claims the id (an exclusive RADOS create: librbd's rename alone lets two
  concurrent renames onto one name both succeed), then renames it to the id
  (temporaries.py draws the protocol, how a crashed writer's temporary is
  reaped and a live one's never, and names each race).
* Per-add state: the growth of an image of unknown size lives in the add
  (image_io.ImageWriter), so one store serves any number of adds, at once.
* Bounded memory: writes of the object size, a few in flight at once.
* Integrity: MD5 and the multihash, computed while writing, are kept in the
  image's metadata (``fsstore.digests``) before it is published; a scrub or a
  verifying read (``rbd_store_verify_on_read``) checks the image against them.
* Reads are of the snapshot, which no one can write.
* Delete: an image whose snapshot has clones is InUseByStore and nothing is
  changed; one that still has snapshots (clone v2 children) goes to the RBD
  trash, as glance_store does.
* One connection per store, shared by its threads, made on first use within
  ``rados_connect_timeout`` and made anew after the cluster dropped it
  (connection.py).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.backends.rbd.config import (
    OPTIONS,
    Bindings,
    Settings,
    import_bindings,
    read_settings,
)
from fsstore.backends.rbd.connection import Cluster
from fsstore.backends.rbd.image_io import ImageWriter, RangeReader
from fsstore.backends.rbd.opening import open_read_only
from fsstore.backends.rbd.temporaries import (
    REAP_INTERVAL,
    SNAPSHOT,
    discard,
    is_temporary,
    reap,
    release_claim,
    take_claim,
    temporary_name,
)
from fsstore.hashing import (
    ImageHasher,
    KeptDigests,
    encode_record,
    kept_from_record,
    parse_record,
)
from fsstore.ids import image_id_problem, validate_image_id
from fsstore.location import Location, RbdLocation
from fsstore.store import AddResult, ListedImage, Store, range_length
from fsstore.streams import CheckedSource, ImageChunks, ImageData, Verifier
from fsstore.tracing import trace

__all__ = ["DIGESTS_KEY", "RbdStore"]

LOG = logging.getLogger(__name__)

#: The image metadata key the digests are kept under.
DIGESTS_KEY = "fsstore.digests"


class RbdStore(Store):
    __doc__ = __doc__
    OPTIONS = OPTIONS
    SCHEMES = ("rbd",)
    DRIVER_NAME = "rbd"

    def __init__(self, conf: cfg.ConfigOpts, backend_group: str | None = None) -> None:
        super().__init__(conf, backend_group)
        self.settings: Settings | None = None
        self.bindings: Bindings | None = None
        self.cluster: Cluster | None = None
        self._reaping = threading.Lock()
        self._reaped_at = 0.0

    # -- configuration ---------------------------------------------------

    def configure(self) -> None:
        """Read the options and import the bindings; the cluster is reached
        on first use. BadStoreConfiguration, in one line, when the bindings
        are missing or an option is wrong."""
        self.settings = read_settings(self.name, self.option, self.path_option)
        self.verify_on_read = self.option("rbd_store_verify_on_read")
        self.bindings = import_bindings(self.name)
        if self.cluster is not None:
            self.cluster.close()
        self.cluster = Cluster(self.name, self.settings, self.bindings, self._reap)

    def _reap(self, ioctx: Any) -> None:
        """Remove crashed adds' temporaries: at the first connection, then
        at an add once REAP_INTERVAL has passed since the last reap."""
        assert self.bindings is not None and self.cluster is not None
        self._reaped_at = time.monotonic()
        reap(self.bindings, ioctx, self.cluster.instance_id)

    def _reap_if_due(self, ioctx: Any) -> None:
        """Reap if REAP_INTERVAL has passed; a failure is logged, never the
        add's (housekeeping), and a lost connection is dropped."""
        with self._reaping:
            if time.monotonic() - self._reaped_at < REAP_INTERVAL:
                return
            self._reaped_at = time.monotonic()
        try:
            self._reap(ioctx)
        except Exception as exc:
            LOG.warning("%s", self._error(exc, f"store {self.name!r}: reaping"))

    def close(self) -> None:
        """Drop the store's connection to the cluster."""
        if self.cluster is not None:
            self.cluster.close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.settings is not None:
            info.update(pool=self.settings.pool, ceph_conf=self.settings.ceph_conf)
        return info

    def _ready(self) -> tuple[Bindings, Settings, Cluster, Any]:
        if self.bindings is None or self.settings is None or self.cluster is None:
            raise exceptions.BadStoreConfiguration(self.name, "not configured")
        return self.bindings, self.settings, self.cluster, self.cluster.ioctx()

    # -- errors ----------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> exceptions.FsstoreError:
        """The fsstore error for a librbd/librados one, in one line."""
        assert self.bindings is not None and self.cluster is not None
        rbd, rados = self.bindings.rbd, self.bindings.rados
        text = " ".join(str(exc).split())
        if isinstance(exc, exceptions.FsstoreError):
            return exc
        if isinstance(exc, rbd.ImageNotFound | rados.ObjectNotFound):
            return exceptions.NotFound(f"{what}: no such image")
        if isinstance(exc, rbd.NoSpace) or getattr(exc, "errno", None) in (
            errno.ENOSPC,
            errno.EDQUOT,
        ):
            return exceptions.StorageFull(f"{what}: the Ceph pool is full: {text}")
        if isinstance(exc, rbd.PermissionError | rados.PermissionError):
            return exceptions.StorageWriteDenied(f"{what}: permission denied: {text}")
        self.cluster.lost(exc)
        return exceptions.BackendException(f"{what}: {text}")

    # -- locations -------------------------------------------------------

    def parse_location(self, uri: str) -> RbdLocation:
        return RbdLocation.from_uri(uri)

    def owns(self, location: Location) -> bool:
        """Whether ``location`` is in this store's pool (a legacy one is)."""
        if not isinstance(location, RbdLocation):
            return False
        return not location.pool or (
            self.settings is not None and location.pool == self.settings.pool
        )

    def _name(self, location: Location) -> tuple[str, str]:
        """``(image name, snapshot)`` of a location of this store; Forbidden
        for another pool or cluster, a temporary, or a name no add writes."""
        if not self.owns(location):
            raise exceptions.Forbidden(
                f"location {location.uri} is outside pool "
                f"{self.settings.pool if self.settings else '?'!r} of store "
                f"{self.name!r}"
            )
        assert isinstance(location, RbdLocation)
        cluster = self.cluster
        if (
            location.fsid
            and cluster is not None
            and cluster.fsid
            and location.fsid != cluster.fsid
        ):
            raise exceptions.Forbidden(
                f"location {location.uri} names another Ceph cluster"
            )
        if image_id_problem(location.image) is not None or is_temporary(location.image):
            raise exceptions.Forbidden(f"location {location.uri} names no image")
        if location.snapshot not in ("", SNAPSHOT):
            raise exceptions.Forbidden(
                f"location {location.uri} names a snapshot this store does not write"
            )
        return location.image, location.snapshot

    def _location_of(self, image_id: str) -> RbdLocation:
        assert self.settings is not None and self.cluster is not None
        return RbdLocation(
            "rbd", self.cluster.fsid, self.settings.pool, image_id, SNAPSHOT
        )

    def _open(self, location: Location, read_only: bool = True) -> Any:
        """The image at ``location`` opened (at its snapshot, if it names one)."""
        bindings, _, _, ioctx = self._ready()
        name, snapshot = self._name(location)
        try:
            if read_only:
                return open_read_only(bindings, ioctx, name, snapshot)
            return bindings.rbd.Image(ioctx, name, snapshot=snapshot or None)
        except Exception as exc:
            raise self._error(exc, f"image {location.uri}") from None

    # -- reads -----------------------------------------------------------

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int]:
        image = self._open(location)
        try:
            size = int(image.size())
            length = range_length(size, offset, limit, f"image {location.uri}")
        except BaseException as exc:
            image.close()
            if isinstance(exc, exceptions.FsstoreError):
                raise
            raise self._error(exc, f"image {location.uri}") from None
        assert self.settings is not None
        return RangeReader(image, offset, length, self.settings.chunk_size), length

    def _get_size(self, location: Location) -> int:
        image = self._open(location)
        try:
            return int(image.size())
        except Exception as exc:
            raise self._error(exc, f"image {location.uri}") from None
        finally:
            image.close()

    # -- delete ----------------------------------------------------------

    def _delete(self, location: Location) -> None:
        bindings, _, cluster, ioctx = self._ready()
        name, snapshot = self._name(location)
        rbd, what = bindings.rbd, f"image {location.uri}"
        try:
            with rbd.Image(ioctx, name) as image:
                # Before anything changes: RBD().remove refuses an image
                # another client has open (its watch), so the snapshot
                # must not be gone by then.
                if any(
                    int(w["id"]) != cluster.instance_id for w in image.watchers_list()
                ):
                    raise exceptions.InUseByStore(
                        f"{what} is open in another client: nothing was changed"
                    )
                if snapshot and image.snap_exists(snapshot):
                    self._remove_snapshot(image, snapshot, what)
            try:
                rbd.RBD().remove(ioctx, name)
            except rbd.ImageHasSnapshots:
                self._trash(ioctx, name, what)
            release_claim(bindings, ioctx, name)
        except rbd.ImageBusy:
            raise exceptions.InUseByStore(
                f"{what} is in use (it is open, or being removed elsewhere)"
            ) from None
        except exceptions.FsstoreError:
            raise
        except Exception as exc:
            raise self._error(exc, what) from None

    def _trash(self, ioctx: Any, name: str, what: str) -> None:
        """Move image ``name``, which still has snapshots, to the RBD trash
        when each is in the trash namespace (kept by clone v2 children, as
        glance_store does: librbd removes it with its last child); any
        other snapshot (a user's, or ``snap`` of a legacy location, which
        names none) is InUseByStore and nothing is changed."""
        rbd = self.bindings.rbd if self.bindings else None
        assert rbd is not None
        with rbd.Image(ioctx, name) as image:
            kept = [
                snap["name"]
                for snap in image.list_snaps()
                if snap.get("namespace") != rbd.RBD_SNAP_NAMESPACE_TYPE_TRASH
            ]
        if kept:
            raise exceptions.InUseByStore(
                f"{what} has snapshots ({', '.join(sorted(kept))}) that this "
                "delete does not remove"
            )
        rbd.RBD().trash_move(ioctx, name)

    def _remove_snapshot(self, image: Any, snapshot: str, what: str) -> None:
        """Unprotect and remove ``snapshot``; InUseByStore, nothing changed,
        while it has clones (clone v1, or v2 of a protected snapshot)."""
        rbd = self.bindings.rbd if self.bindings else None
        assert rbd is not None
        if image.is_protected_snap(snapshot):
            try:
                image.unprotect_snap(snapshot)
            except rbd.ImageBusy:
                raise exceptions.InUseByStore(
                    f"{what} has clones of its snapshot {snapshot!r}: delete "
                    "them (or flatten them) first"
                ) from None
        image.remove_snap(snapshot)

    # -- integrity -------------------------------------------------------

    def images(self) -> Iterator[ListedImage]:
        """The pool's images an add wrote (with the snapshot ``snap``)."""
        bindings, _, _, ioctx = self._ready()
        try:
            names = sorted(bindings.rbd.RBD().list(ioctx))
        except Exception as exc:
            raise self._error(exc, "listing the pool") from None
        for name in names:
            if (listed := self._listed(name)) is not None:
                yield listed

    def find_image(self, image_id: str) -> ListedImage | None:
        """One open of the image ``image_id`` names, never a listing."""
        return self._listed(validate_image_id(image_id))

    def _listed(self, name: str) -> ListedImage | None:
        """Image ``name`` as listed, or None: not there, or none an add wrote."""
        if is_temporary(name) or image_id_problem(name) is not None:
            return None
        bindings, _, _, ioctx = self._ready()
        try:
            with open_read_only(bindings, ioctx, name, SNAPSHOT) as image:
                size = int(image.size())
        except bindings.rbd.ImageNotFound:
            return None
        return ListedImage(name, self._location_of(name).uri, size)

    def identity(self) -> str:
        """``rbd:``, the cluster's fsid and the pool."""
        _, settings, cluster, _ = self._ready()
        return f"rbd:{cluster.fsid}/{settings.pool}"

    def kept_digests(self, location: Location | str) -> KeptDigests | None:
        where = self._location(location)
        bindings = self._ready()[0]
        image = self._open(where)
        try:
            return kept_from_record(parse_record(image.metadata_get(DIGESTS_KEY)))
        except (bindings.rbd.ImageNotFound, KeyError):
            return None
        except Exception as exc:
            raise self._error(exc, f"digests of image {where.uri}") from None
        finally:
            image.close()

    def keep_digests(self, location: Location | str, kept: KeptDigests) -> None:
        """Keep ``kept`` with an image that has none and ``kept.size`` bytes."""
        where = self._location(location)
        bindings, _, _, ioctx = self._ready()  # connected: the fsid is known
        name, _ = self._name(where)
        what = f"image {where.uri}"
        try:
            with bindings.rbd.Image(ioctx, name) as image:
                if DIGESTS_KEY in dict(image.metadata_list()):
                    raise exceptions.Invalid(f"{what} has digests kept already")
                if int(image.size()) != kept.size:
                    raise exceptions.Invalid(
                        f"{what} is not {kept.size} bytes: it changed since read"
                    )
                image.metadata_set(DIGESTS_KEY, encode_record(kept).decode())
        except Exception as exc:
            raise self._error(exc, what) from None

    # -- add -------------------------------------------------------------

    def _add(
        self,
        image_id: str,
        data: ImageData,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        bindings, settings, cluster, ioctx = self._ready()
        self._reap_if_due(ioctx)
        rbd = bindings.rbd
        location = self._location_of(image_id)
        what = f"image {location.uri}"
        try:
            rbd.Image(ioctx, image_id, read_only=True).close()
        except rbd.ImageNotFound:
            pass
        except Exception as exc:
            raise self._error(exc, what) from None
        else:
            raise exceptions.Duplicate(f"{what} already exists")
        temporary = temporary_name()
        try:
            rbd.RBD().create(
                ioctx,
                temporary,
                size,
                order=settings.order,
                old_format=False,
                features=cluster.default_features,
            )
        except Exception as exc:
            raise self._error(exc, f"creating {what}") from None
        try:
            trace("rbd.add.created")
            kept = self._write(
                ioctx, temporary, image_id, data, size, hashing_algo, verifier
            )
        except BaseException as exc:
            discard(bindings, ioctx, temporary)
            if isinstance(exc, exceptions.FsstoreError) or not isinstance(
                exc, Exception
            ):
                raise
            if isinstance(exc, rbd.Error | bindings.rados.Error | OSError):
                raise self._error(exc, f"writing {what}") from None
            raise
        return AddResult(location.uri, kept.size, kept.checksum, kept.multihash, {})

    def _write(
        self,
        ioctx: Any,
        temporary: str,
        image_id: str,
        data: ImageData,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> KeptDigests:
        """Fill the open temporary, keep the digests, snapshot, protect,
        and rename it to ``image_id`` while it is still open (temporaries.py).

        Trace points (a kill -9 test stops the writer at each): after the
        create ``rbd.add.created``, then ``rbd.add.written``,
        ``rbd.add.kept`` (digests in the metadata), ``rbd.add.protected``,
        ``rbd.add.claimed`` and ``rbd.add.renamed`` (still open)."""
        assert self.bindings is not None and self.settings is not None
        rbd = self.bindings.rbd
        hasher = ImageHasher(hashing_algo)
        source = CheckedSource(data, image_id, size, verifier, self.settings.chunk_size)
        with rbd.Image(ioctx, temporary) as image:
            writer = ImageWriter(
                image, self.settings.chunk_size, size, self.settings.thin
            )
            try:
                for chunk in source.chunks():
                    hasher.update(chunk)
                    writer.add(chunk)
                source.finish()
                written = writer.finish()
            except BaseException:
                writer.drain()
                raise
            finally:
                hasher.close()
            kept = KeptDigests(*hasher.hexdigests(), hashing_algo, written)
            trace("rbd.add.written")
            image.metadata_set(DIGESTS_KEY, encode_record(kept).decode())
            trace("rbd.add.kept")
            image.create_snap(SNAPSHOT)
            image.protect_snap(SNAPSHOT)
            trace("rbd.add.protected")
            self._publish(ioctx, temporary, image_id)
            trace("rbd.add.renamed")
        return kept

    def _publish(self, ioctx: Any, temporary: str, image_id: str) -> None:
        """Claim ``image_id`` for ``temporary`` and rename it there; Duplicate
        when another add claimed it, or the image exists."""
        assert self.bindings is not None
        rbd = self.bindings.rbd
        duplicate = exceptions.Duplicate(
            f"image {self._location_of(image_id).uri} already exists"
        )
        if not take_claim(self.bindings, ioctx, image_id, temporary):
            raise duplicate
        trace("rbd.add.claimed")
        try:
            rbd.RBD().rename(ioctx, temporary, image_id)
        except BaseException as exc:
            release_claim(self.bindings, ioctx, image_id)
            if isinstance(exc, rbd.ImageExists):
                raise duplicate from None
            raise
