"""``example_json``: a cache driver that keeps its records in one JSON file.

The layout, the one-writer protocol, verification, eviction and locking all
belong to the cache directory; a driver only keeps the records
(fsstore.cache.records.RecordsDriver). Here they live in ``.fsstore-example-records.json`` (the
``.fsstore-`` prefix keeps it from ever counting as an image), read and
written under an exclusive flock of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from fsstore.cache.records import CachedImage, RecordsDriver

RECORDS = ".fsstore-example-records.json"


class JsonRecordsDriver(RecordsDriver):
    NAME = "example_json"

    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, dict[str, Any]]]:
        path = self.directory.path(RECORDS)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                with open(path) as f:
                    records = json.load(f)
            except FileNotFoundError:
                records = {}
            before = json.dumps(records, sort_keys=True)
            yield records
            if json.dumps(records, sort_keys=True) != before:
                tmp = f"{path}.{os.getpid()}"
                with open(tmp, "w") as f:
                    json.dump(records, f)
                os.replace(tmp, path)
        finally:
            os.close(fd)

    def reserved_names(self) -> set[str]:
        return {RECORDS, RECORDS + ".lock"}

    def commit(self, image_id: str, size: int, checksum: str | None, fd: int) -> None:
        now = time.time()
        with self._records() as records:
            records[image_id] = {
                "size": size,
                "hits": 0,
                "checksum": checksum,
                "last_accessed": now,
                "last_modified": now,
            }

    def delete(self, image_ids: Sequence[str]) -> None:
        with self._records() as records:
            for image_id in image_ids:
                records.pop(image_id, None)

    def entries(self) -> list[CachedImage]:
        with self._records() as records:
            return [
                CachedImage(
                    i,
                    r["size"],
                    r["hits"],
                    r["last_accessed"],
                    r["last_modified"],
                    r.get("checksum"),
                )
                for i, r in records.items()
            ]

    def total_size(self) -> int:
        with self._records() as records:
            return sum(r["size"] for r in records.values())

    def hit(self, image_id: str, fd: int) -> None:
        with self._records() as records:
            if image_id in records:
                records[image_id]["hits"] += 1
                records[image_id]["last_accessed"] = time.time()

    def hits(self, image_id: str) -> int:
        with self._records() as records:
            return records.get(image_id, {}).get("hits", 0)

    # check() is the base class's: it reconciles these records with the
    # entry files through adopt() and resize().

    def adopt(self, files: dict[str, os.stat_result]) -> None:
        with self._records() as records:
            for image_id, st in files.items():
                records[image_id] = {
                    "size": st.st_size,
                    "hits": 0,
                    "checksum": None,
                    "last_accessed": st.st_atime,
                    "last_modified": st.st_mtime,
                }

    def resize(self, image_id: str, size: int) -> None:
        with self._records() as records:
            if image_id in records:
                records[image_id]["size"] = size
