"""Test-side librados/librbd in memory, for glance_store's RBD unit tests
(copied into the derived package by glance_store_suite.py; never imported by
fsstore).

glance_store's tests put its ``MockRados`` and ``MockRBD`` (classes standing
for the ``rados`` and ``rbd`` modules, in test_rbd_store_base.py) in its
driver's module. Every call of theirs succeeds and does nothing: any image
opens, none holds a byte, and they lack most of what fsstore's RBD store
calls (``Rados.get_fsid``, image metadata, ``RBD.rename``, RADOS write
operations for the claim object, asynchronous I/O, watchers, the error
classes' hierarchy). :func:`grow` gives the two mocks, in place, what
fsstore's store calls, kept in memory as librbd keeps it on a cluster; the
names stay the mocks' own, so what a test patches (``MockRBD.RBD.remove``,
``MockRBD.Image.resize``...) is what fsstore's store calls, and what it
raises (``MockRBD.ImageBusy()``) is the class fsstore's store catches.
:func:`install`, in each test's setUp, starts a fresh cluster and puts the
two mocks where fsstore's store finds its bindings (it imports ``rados``
and ``rbd`` at configure), as the tests put them in glance_store's driver.

What librbd does and the fake does too (rbd_fake_check.py makes the same
calls on both, a real one-node cluster and the fake, and compares their
outcomes): images are bytes at a size; a write that starts past the end
fails (-EINVAL) and one that runs past it is cut there; an image opened
read-only or at a snapshot refuses writes (ReadOnlyImage); ``create`` and
``rename`` never replace an image (ImageExists); a snapshot is a copy; a
protected snapshot cannot be removed or protected again (ImageBusy);
``remove`` refuses an image with snapshots (ImageHasSnapshots), then one
with a watcher (ImageBusy); an image opened for writing is watched by its
client (``watchers_list``), one opened read-only is not; an open image
keeps working after a rename; metadata_get of a missing key is KeyError; a
RADOS write operation applies whole or not at all (an exclusive create of
an object that exists is ObjectExists, an asserted version that is not the
object's fails with ERANGE or EOVERFLOW, and versions only grow);
asynchronous I/O completes on another thread. The error classes have the
real modules' names, errnos and hierarchy (``rbd.Error`` > ``rbd.OSError``
> ``ImageNotFound``...). Left out: clones (no snapshot has children),
snapshots in the trash namespace, exclusive locks, a full pool (NoSpace
only where a test raises it). fsstore's RBD store itself is tested on a
real cluster: tests/functional/test_rbd.py.

The pool, ``images`` (glance_store's default), starts with one image,
``fake_image``: the one the tests' location names, which MockRBD, opening
any name, takes to exist.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import errno
import itertools
import sys
import threading
import uuid
from typing import Any
from unittest import mock

LIBRADOS_CREATE_EXCLUSIVE = 1
RBD_SNAP_NAMESPACE_TYPE_USER = 0
RBD_SNAP_NAMESPACE_TYPE_TRASH = 2
SEEDED = {"images": {"fake_image": b"glance_store's fake_image\n" * 40}}

_EXECUTOR = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fake-rbd")
_LOCK = threading.RLock()


# -- state -----------------------------------------------------------------


class _Snap:
    def __init__(self, snap_id: int, data: bytes) -> None:
        self.id = snap_id
        self.data = data
        self.protected = False


class _Image:
    def __init__(self, size: int, order: int) -> None:
        self.data = bytearray(size)
        self.order = order
        self.snaps: dict[str, _Snap] = {}
        self.metadata: dict[str, str] = {}
        self.watchers: dict[int, int] = {}  # cookie -> client instance id
        self.created = datetime.datetime.now()


class _Pool:
    def __init__(self) -> None:
        self.images: dict[str, _Image] = {}
        self.trash: dict[str, _Image] = {}
        self.objects: dict[str, tuple[bytes, int]] = {}  # oid -> data, version
        self.versions = itertools.count(1)


class _Cluster:
    def __init__(self) -> None:
        self.fsid = str(uuid.uuid4())
        self.pools: dict[str, _Pool] = {}
        self.conf = {"rbd_default_features": "61"}
        self.counter = itertools.count(4100)
        for name, images in SEEDED.items():
            pool = self.pools[name] = _Pool()
            for image_name, data in images.items():
                pool.images[image_name] = image = _Image(len(data), 22)
                image.data[:] = data


CLUSTER = _Cluster()


# -- errors: the real modules' names and hierarchy ---------------------------


def _errors(module: str, mock_module: Any, tree: dict[str, int | None]) -> None:
    """Set on ``mock_module`` ``Error``, ``OSError`` and the classes of
    ``tree`` (name: errno), each also a subclass of the mock's class of that
    name, if it had one."""

    class Error(Exception):
        def __init__(self, message: str = "", errno: int | None = None) -> None:
            super().__init__(message)
            self.message, self.errno = message, errno

        def __str__(self) -> str:
            return (
                f"[errno {self.errno}] {self.message}" if self.errno else self.message
            )

    class OSError(Error):  # noqa: A001 - librbd's name
        pass

    made: dict[str, type] = {"Error": Error, "OSError": OSError}
    for name, code in tree.items():
        old = getattr(mock_module, name, None)
        bases = (OSError,) + ((old,) if isinstance(old, type) else ())
        made[name] = type(name, bases, {"default_errno": code})
    for name, cls in made.items():
        cls.__module__, cls.__qualname__ = module, name
        setattr(mock_module, name, cls)


RBD_ERRORS = {
    "PermissionError": errno.EPERM,
    "ImageNotFound": errno.ENOENT,
    "ImageExists": errno.EEXIST,
    "ImageBusy": errno.EBUSY,
    "ImageHasSnapshots": errno.ENOTEMPTY,
    "InvalidArgument": errno.EINVAL,
    "NoSpace": errno.ENOSPC,
    "ReadOnlyImage": errno.EROFS,
    "IncompleteWriteError": None,
    "IOError": errno.EIO,
    "ConnectionShutdown": errno.ESHUTDOWN,
}
RADOS_ERRORS = {
    "PermissionError": errno.EPERM,
    "ObjectNotFound": errno.ENOENT,
    "ObjectExists": errno.EEXIST,
    "NoSpace": errno.ENOSPC,
    "ConnectionShutdown": errno.ESHUTDOWN,
    "TimedOut": errno.ETIMEDOUT,
}


def _raise(module: Any, name: str, message: str) -> None:
    cls = getattr(module, name)
    raise cls(message, errno=cls.default_errno)


# -- rados -------------------------------------------------------------------


def _grow_rados(MockRados: Any) -> None:  # noqa: N803 - the mock's name
    _errors("rados", MockRados, RADOS_ERRORS)
    MockRados.LIBRADOS_CREATE_EXCLUSIVE = LIBRADOS_CREATE_EXCLUSIVE

    class Rados(MockRados.Rados):  # type: ignore[name-defined, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.connected = False
            self.instance_id = 0

        def connect(self, timeout: int = 0) -> None:
            self.connected = True
            self.instance_id = next(CLUSTER.counter)

        def _check(self) -> None:
            if not self.connected:
                _raise(MockRados, "ConnectionShutdown", "not connected")

        def open_ioctx(self, pool: str) -> Any:
            self._check()
            if pool not in CLUSTER.pools:
                _raise(MockRados, "ObjectNotFound", f"error opening pool '{pool}'")
            return MockRados.Ioctx(self, pool)

        def conf_get(self, option: str) -> str | None:
            return CLUSTER.conf.get(option)

        def get_fsid(self) -> str:
            self._check()
            return CLUSTER.fsid

        def get_instance_id(self) -> int:
            self._check()
            return self.instance_id

        def shutdown(self) -> None:
            self.connected = False

    class Ioctx(MockRados.ioctx):  # type: ignore[name-defined, misc]
        def __init__(self, rados: Any, pool: str) -> None:
            self.rados, self.pool_name = rados, pool
            self.last_version = 0

        @property
        def pool(self) -> _Pool:
            self.rados._check()
            return CLUSTER.pools[self.pool_name]

        def create_write_op(self) -> Any:
            return WriteOp()

        def release_write_op(self, op: Any) -> None:
            op.released = True

        def operate_write_op(self, op: Any, oid: str, *args: Any) -> None:
            with _LOCK:
                objects = self.pool.objects
                data, version = objects.get(oid, (None, 0))
                for step, arg in op.steps:  # on copies: all or nothing
                    data, version = _step(MockRados, oid, data, version, step, arg)
                # As a placement group's: versions only grow, even across a
                # remove and a new create (no ABA for assert_version).
                version = next(self.pool.versions)
                if data is None:
                    objects.pop(oid, None)
                else:
                    objects[oid] = (data, version)
                self.last_version = version

        def read(self, oid: str, length: int = 8192, offset: int = 0) -> bytes:
            with _LOCK:
                if oid not in self.pool.objects:
                    _raise(MockRados, "ObjectNotFound", f"Failed to read object {oid}")
                data, self.last_version = self.pool.objects[oid]
            return data[offset : offset + length]

        def get_last_version(self) -> int:
            return self.last_version

        def remove_object(self, oid: str) -> bool:
            with _LOCK:
                if self.pool.objects.pop(oid, None) is None:
                    _raise(MockRados, "ObjectNotFound", f"Failed to remove '{oid}'")
            return True

    class WriteOp:
        def __init__(self) -> None:
            self.steps: list[tuple[str, Any]] = []
            self.released = False

        def new(self, exclusive: int) -> None:
            self.steps.append(("new", exclusive))

        def write_full(self, data: bytes) -> None:
            self.steps.append(("write_full", bytes(data)))

        def assert_version(self, version: int) -> None:
            self.steps.append(("assert_version", version))

        def remove(self) -> None:
            self.steps.append(("remove", None))

    MockRados.Rados, MockRados.Ioctx, MockRados.ioctx = Rados, Ioctx, Ioctx
    MockRados.WriteOp = WriteOp


def _step(
    rados: Any, oid: str, data: bytes | None, version: int, step: str, arg: Any
) -> tuple[bytes | None, int]:
    """One step of a write operation on object ``oid`` (None: absent)."""
    if step == "new":
        if data is not None and arg == LIBRADOS_CREATE_EXCLUSIVE:
            _raise(rados, "ObjectExists", f"Failed to operate write op for oid {oid}")
        return data if data is not None else b"", version
    if step == "write_full":
        return arg, version
    if step == "assert_version":  # an absent object's version is 0
        if arg != version:
            code = errno.EOVERFLOW if arg > version else errno.ERANGE
            raise rados.OSError(f"version of {oid} is not {arg}", errno=code)
        return data, version
    if data is None:
        _raise(rados, "ObjectNotFound", f"Failed to operate write op for oid {oid}")
    return None, version  # remove


# -- rbd ---------------------------------------------------------------------


class Completion:
    """An asynchronous operation's completion, as librbd's."""

    def __init__(self) -> None:
        self.value = 0
        self.done = threading.Event()

    def get_return_value(self) -> int:
        return self.value

    def is_complete(self) -> bool:
        return self.done.is_set()

    def wait_for_complete(self) -> None:
        self.done.wait()

    def wait_for_complete_and_cb(self) -> None:
        self.done.wait()


def _grow_rbd(MockRBD: Any) -> None:  # noqa: N803 - the mock's name
    _errors("rbd", MockRBD, RBD_ERRORS)
    MockRBD.RBD_FEATURE_LAYERING = 1
    MockRBD.RBD_SNAP_NAMESPACE_TYPE_USER = RBD_SNAP_NAMESPACE_TYPE_USER
    MockRBD.RBD_SNAP_NAMESPACE_TYPE_TRASH = RBD_SNAP_NAMESPACE_TYPE_TRASH
    MockRBD.Completion = Completion

    def fail(name: str, message: str) -> None:
        _raise(MockRBD, name, message)

    def found(ioctx: Any, name: str) -> _Image:
        image = ioctx.pool.images.get(name)
        if image is None:
            fail("ImageNotFound", f"error opening image {name}")
        return image

    class RBD(MockRBD.RBD):  # type: ignore[name-defined, misc]
        def create(
            self, ioctx: Any, name: str, size: int, order: int | None = None, **_: Any
        ) -> None:
            with _LOCK:
                if name in ioctx.pool.images:
                    fail("ImageExists", f"error creating image {name}")
                ioctx.pool.images[name] = _Image(int(size), order or 22)

        def list(self, ioctx: Any) -> list[str]:
            with _LOCK:
                return sorted(ioctx.pool.images)

        def remove(self, ioctx: Any, name: str, *args: Any, **kwargs: Any) -> None:
            with _LOCK:
                image = found(ioctx, name)
                if image.snaps:
                    fail("ImageHasSnapshots", f"error removing image {name}")
                if image.watchers:
                    fail("ImageBusy", f"error removing image {name}: watchers")
                del ioctx.pool.images[name]

        def rename(self, ioctx: Any, src: str, dest: str) -> None:
            with _LOCK:
                image = found(ioctx, src)
                if dest in ioctx.pool.images:
                    fail("ImageExists", f"error renaming image {src} to {dest}")
                del ioctx.pool.images[src]
                ioctx.pool.images[dest] = image

        def trash_move(self, ioctx: Any, name: str, delay: int = 0) -> None:
            with _LOCK:
                found(ioctx, name)  # librbd moves an open image too
                ioctx.pool.trash[name] = ioctx.pool.images.pop(name)

    MockRBD.RBD = RBD
    MockRBD.Image = _image_class(MockRBD, fail, found)


def _image_class(MockRBD: Any, fail: Any, found: Any) -> type:  # noqa: N803
    class Image(MockRBD.Image):  # type: ignore[name-defined, misc]
        """An open image: of its head, or read-only at a snapshot."""

        def __init__(
            self,
            ioctx: Any,
            name: str,
            snapshot: str | None = None,
            read_only: bool = False,
            **_: Any,
        ) -> None:
            with _LOCK:
                self._image = found(ioctx, name)
                if snapshot is not None and snapshot not in self._image.snaps:
                    fail("ImageNotFound", f"error opening snapshot {name}@{snapshot}")
                self.name, self._snapshot = name, snapshot
                self._read_only = read_only or snapshot is not None
                self._cookie = 0
                if not read_only:  # librbd watches the header of a writable open
                    self._cookie = next(CLUSTER.counter)
                    self._image.watchers[self._cookie] = ioctx.rados.instance_id

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> bool:
            self.close()
            return False

        def close(self) -> None:
            with _LOCK:
                self._image.watchers.pop(self._cookie, None)

        def set_snap(self, name: str) -> None:
            """Move the open image to snapshot ``name``: read-only from then."""
            with _LOCK:
                if name not in self._image.snaps:
                    fail("ImageNotFound", f"no snapshot {name} of image {self.name}")
                self._snapshot, self._read_only = name, True

        def _data(self) -> bytes | bytearray:
            if self._snapshot is None:
                return self._image.data
            return self._image.snaps[self._snapshot].data

        def _writable(self) -> None:
            if self._read_only:
                fail("ReadOnlyImage", f"image {self.name} is read-only")

        def size(self) -> int:
            return len(self._data())

        def resize(self, size: int, *args: Any) -> None:
            self._writable()
            with _LOCK:
                data = self._image.data
                del data[size:]
                data.extend(bytes(size - len(data)))

        def _write(self, data: bytes, offset: int) -> int:
            """Bytes written, or -errno. As librbd's clip_io: a write that
            starts at or past the end is -EINVAL, one that runs past it is
            cut at the end."""
            if self._read_only:
                return -errno.EROFS
            with _LOCK:
                image = self._image.data
                if not data:
                    return 0
                if offset >= len(image):
                    return -errno.EINVAL
                data = data[: len(image) - offset]
                image[offset : offset + len(data)] = data
            return len(data)

        def write(self, data: bytes, offset: int, fadvise_flags: int = 0) -> int:
            written = self._write(data, offset)
            if written < 0:
                name = "ReadOnlyImage" if written == -errno.EROFS else "InvalidArgument"
                fail(name, f"error writing to {self.name}")
            if written < len(data):
                raise MockRBD.IncompleteWriteError(
                    f"Write operation incomplete: expected {len(data)} bytes to "
                    f"be written, but only {written} were written"
                )
            return written

        def read(self, offset: int, length: int, fadvise_flags: int = 0) -> bytes:
            with _LOCK:
                return bytes(self._data()[offset : offset + length])

        def aio_write(
            self, data: bytes, offset: int, oncomplete: Any, *args: Any
        ) -> Completion:
            def run() -> None:
                written = self._write(data, offset)
                completion.value = min(written, 0)  # librbd: 0 for a write
                oncomplete(completion)
                completion.done.set()

            completion = Completion()
            _EXECUTOR.submit(run)
            return completion

        def aio_read(
            self, offset: int, length: int, oncomplete: Any, *args: Any
        ) -> Completion:
            def run() -> None:
                data = self.read(offset, length)
                completion.value = len(data)
                oncomplete(completion, data)
                completion.done.set()

            completion = Completion()
            _EXECUTOR.submit(run)
            return completion

        def flush(self) -> None:
            pass

        def discard(self, offset: int, length: int) -> None:
            self.write(bytes(length), offset)

        def metadata_get(self, key: str) -> str:
            with _LOCK:
                if key not in self._image.metadata:
                    raise KeyError(f"no metadata {key} for image {self.name}")
                return self._image.metadata[key]

        def metadata_set(self, key: str, value: str) -> None:
            self._writable()
            with _LOCK:
                self._image.metadata[key] = value

        def metadata_list(self) -> list[tuple[str, str]]:
            with _LOCK:
                return sorted(self._image.metadata.items())

        def _snap(self, name: str) -> _Snap:
            snap = self._image.snaps.get(name)
            if snap is None:
                fail("ImageNotFound", f"no snapshot {name} of image {self.name}")
            return snap

        def create_snap(self, name: str) -> None:
            self._writable()
            with _LOCK:
                if name in self._image.snaps:
                    fail("ImageExists", f"snapshot {name} of {self.name} exists")
                snap = _Snap(next(CLUSTER.counter), bytes(self._image.data))
                self._image.snaps[name] = snap

        def remove_snap(self, name: str) -> None:
            with _LOCK:
                if self._snap(name).protected:
                    fail("ImageBusy", f"snapshot {name} of {self.name} is protected")
                del self._image.snaps[name]

        def protect_snap(self, name: str) -> None:
            with _LOCK:
                snap = self._snap(name)
                if snap.protected:
                    fail("ImageBusy", f"snapshot {name} is already protected")
                snap.protected = True

        def unprotect_snap(self, name: str) -> None:
            with _LOCK:
                snap = self._snap(name)
                if not snap.protected:
                    fail("InvalidArgument", f"snapshot {name} is not protected")
                snap.protected = False  # the fake makes no clones

        def is_protected_snap(self, name: str) -> bool:
            with _LOCK:
                return self._snap(name).protected

        def snap_exists(self, name: str) -> bool:
            return name in self._image.snaps

        def list_snaps(self) -> list[dict[str, Any]]:
            with _LOCK:
                return [
                    {
                        "id": snap.id,
                        "size": len(snap.data),
                        "name": name,
                        "namespace": RBD_SNAP_NAMESPACE_TYPE_USER,
                    }
                    for name, snap in self._image.snaps.items()
                ]

        def list_children(self) -> list[tuple[str, str]]:
            return []  # the fake makes no clones

        def parent_info(self) -> tuple[str, str, str]:
            fail("ImageNotFound", f"image {self.name} has no parent")
            raise AssertionError  # unreachable

        def watchers_list(self) -> list[dict[str, Any]]:
            with _LOCK:
                return [
                    {"addr": "127.0.0.1:0/0", "id": client, "cookie": cookie}
                    for cookie, client in self._image.watchers.items()
                ]

        def create_timestamp(self) -> datetime.datetime:
            return self._image.created

    return Image


# -- installing ---------------------------------------------------------------


def grow(MockRados: Any, MockRBD: Any) -> None:  # noqa: N803 - the mocks' names
    """Give glance_store's two mocks what fsstore's store calls (once)."""
    if not getattr(MockRBD, "fsstore_grown", False):
        _grow_rados(MockRados)
        _grow_rbd(MockRBD)
        MockRBD.fsstore_grown = True


def install(test: Any, MockRados: Any, MockRBD: Any) -> None:  # noqa: N803
    """For one test: a fresh cluster, and the grown mocks as the ``rados`` and
    ``rbd`` modules fsstore's store imports, until the test ends."""
    global CLUSTER
    grow(MockRados, MockRBD)
    CLUSTER = _Cluster()
    patcher = mock.patch.dict(sys.modules, {"rados": MockRados, "rbd": MockRBD})
    patcher.start()
    test.addCleanup(patcher.stop)
