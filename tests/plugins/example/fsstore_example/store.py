"""``example_memory``: images kept in the process's memory.

Small enough to read in one sitting, and complete: options registered in the
store's group, its own location scheme, size checks, checksums, duplicates,
ranged reads and a capacity that raises StorageFull.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.hashing import ImageHasher
from fsstore.location import Location, split_scheme
from fsstore.store import AddResult, Store, range_length
from fsstore.streams import CheckedSource, Verifier

OPTIONS = [
    cfg.IntOpt(
        "example_memory_capacity",
        default=256 * 1024 * 1024,
        min=0,
        help="Bytes the memory store may hold in all.",
    ),
]


@dataclasses.dataclass(frozen=True)
class MemoryLocation(Location):
    image_id: str

    @property
    def uri(self) -> str:
        return f"memory://{self.image_id}"


class MemoryStore(Store):
    OPTIONS = OPTIONS
    SCHEMES = ("memory",)
    DRIVER_NAME = "example_memory"

    def __init__(self, conf: cfg.ConfigOpts, backend_group: str | None = None) -> None:
        super().__init__(conf, backend_group)
        self._images: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.capacity = 0

    def configure(self) -> None:
        # self.option() turns a bad value into BadStoreConfiguration naming us.
        self.capacity = self.option("example_memory_capacity")

    def parse_location(self, uri: str) -> MemoryLocation:
        scheme, rest = split_scheme(uri)
        if scheme != "memory" or not rest or "/" in rest:
            raise exceptions.BadStoreUri(f"location {uri!r} is not memory://<image id>")
        return MemoryLocation(scheme="memory", image_id=rest)

    def _add(
        self,
        image_id: str,
        data: Any,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        if image_id in self._images:
            raise exceptions.Duplicate(f"image {image_id} already exists")
        hasher = ImageHasher(hashing_algo)
        source = CheckedSource(data, image_id, size, verifier)
        parts = []
        try:
            for chunk in source.chunks():  # safe to keep: copies where needed
                hasher.update(chunk)
                parts.append(chunk)
            source.finish()
            checksum, multihash = hasher.hexdigests()
        finally:
            hasher.close()
        body = b"".join(parts)
        with self._lock:  # the check and the insert are one step
            if image_id in self._images:
                raise exceptions.Duplicate(f"image {image_id} already exists")
            used = sum(map(len, self._images.values()))
            if used + len(body) > self.capacity:
                raise exceptions.StorageFull(
                    f"store {self.name!r} has no room for image {image_id}"
                )
            self._images[image_id] = body
        return AddResult(
            MemoryLocation("memory", image_id).uri, len(body), checksum, multihash, {}
        )

    def _body(self, location: Location) -> bytes:
        assert isinstance(location, MemoryLocation)
        try:
            return self._images[location.image_id]
        except KeyError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[Iterator[bytes], int]:
        body = self._body(location)
        length = range_length(len(body), offset, limit, location.uri)
        view = body[offset : offset + length]
        chunks = [view[i : i + 65536] for i in range(0, len(view), 65536)]
        return iter(chunks), length

    def _get_size(self, location: Location) -> int:
        return len(self._body(location))

    def _delete(self, location: Location) -> None:
        assert isinstance(location, MemoryLocation)
        with self._lock:
            if self._images.pop(location.image_id, None) is None:
                raise exceptions.NotFound(f"image {location.uri} not found")
