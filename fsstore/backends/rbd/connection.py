"""One connection to the Ceph cluster per store, shared by its threads.

librados handles (a cluster handle, an I/O context) are thread safe, so every
thread of a store uses the one :class:`Cluster`. It connects on first use, not
at configure time (an image service starts while Ceph is down and works once
it is back), within ``rados_connect_timeout``. An operation that finds the
connection shut down (the cluster restarted under a live store, the client
blocklisted) drops it, and the next one connects anew.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import Any

from fsstore import exceptions
from fsstore.backends.rbd.config import Bindings, Settings

# Every cluster with a connection: a librados handle still open when the
# interpreter finalizes hangs the process's exit, so they are closed first.
_OPEN: weakref.WeakSet[Cluster] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for cluster in list(_OPEN):
        cluster.close()


class Cluster:
    """The store's connection: :meth:`ioctx` for the pool, connected on demand.

    :param store_name: the store, as messages name it
    :param settings: the store's settings (pool, user, conf, timeout)
    :param bindings: the rados and rbd modules
    :param on_connect: called once with the I/O context, after the store's
        first connection and before any operation uses it (the reaper)
    """

    def __init__(
        self,
        store_name: str,
        settings: Settings,
        bindings: Bindings,
        on_connect: Callable[[Any], None] | None = None,
    ) -> None:
        self.store_name = store_name
        self.settings = settings
        self.bindings = bindings
        self._on_connect = on_connect
        self._lock = threading.Lock()
        self._rados: Any = None
        self._ioctx: Any = None
        self.fsid = ""
        self.instance_id = 0
        self.default_features = 0

    def _where(self) -> str:
        conf = self.settings.ceph_conf or "librados's default ceph.conf"
        return f"pool {self.settings.pool!r} of the Ceph cluster of {conf}"

    def ioctx(self) -> Any:
        """The I/O context of the store's pool, connecting first if needed.

        :raises BackendException: in one line, naming the pool and the
            configuration, when the cluster cannot be reached in time
        """
        ioctx = self._ioctx
        if ioctx is not None:
            return ioctx
        with self._lock:
            if self._ioctx is None:
                first = self._rados is None and not self.fsid
                self._connect()
                if first and self._on_connect is not None:
                    self._on_connect(self._ioctx)
            return self._ioctx

    def _connect(self) -> None:
        rados = self.bindings.rados
        settings = self.settings
        timeout = settings.connect_timeout
        try:
            handle = rados.Rados(
                conffile=settings.ceph_conf or None,
                rados_id=settings.user,
                conf=settings.rados_conf(),
            )
        except rados.Error as exc:
            raise exceptions.BackendException(
                f"store {self.store_name!r}: cannot read the Ceph configuration "
                f"{settings.ceph_conf or '(librados default)'}: {exc}"
            ) from None
        try:
            handle.connect(timeout=max(timeout, 0))
            ioctx = handle.open_ioctx(settings.pool)
            features = int(handle.conf_get("rbd_default_features") or 0)
        except rados.ObjectNotFound:
            handle.shutdown()
            raise exceptions.BackendException(
                f"store {self.store_name!r}: {self._where()} does not exist"
            ) from None
        except rados.Error as exc:
            handle.shutdown()
            within = f" within {timeout} s" if timeout >= 0 else ""
            raise exceptions.BackendException(
                f"store {self.store_name!r}: cannot reach {self._where()}{within}: "
                f"{_one_line(exc)}"
            ) from None
        self.fsid = handle.get_fsid()
        self.instance_id = int(handle.get_instance_id())
        self.default_features = features or int(self.bindings.rbd.RBD_FEATURE_LAYERING)
        self._rados, self._ioctx = handle, ioctx
        _OPEN.add(self)

    def lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the connection is gone; if so it is dropped,
        and the next :meth:`ioctx` connects anew."""
        if not isinstance(exc, self.bindings.rados.ConnectionShutdown) and getattr(
            exc, "errno", None
        ) not in (108,):  # ESHUTDOWN
            return False
        self.close()
        return True

    def close(self) -> None:
        """Drop the connection (if any); the next :meth:`ioctx` connects."""
        with self._lock:
            handle, ioctx = self._rados, self._ioctx
            self._rados = self._ioctx = None
        if ioctx is not None:
            ioctx.close()
        if handle is not None:
            handle.shutdown()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
