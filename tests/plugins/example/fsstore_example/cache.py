"""``example_json``: a cache driver that keeps its records in one JSON file.

The layout, the one-writer protocol, verification, eviction and locking all
come from fsstore.cache.base.CacheDriver; a driver only says where its
records live. Here they live in ``.fsstore-example-records.json`` (the
``.fsstore-`` prefix keeps it from ever counting as an image), read and
written under an exclusive flock of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from fsstore.cache.base import CachedImage, CacheDriver, Problem

RECORDS = ".fsstore-example-records.json"


class JsonRecordsDriver(CacheDriver):
    NAME = "example_json"

    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, dict[str, Any]]]:
        path = self.path(RECORDS)
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
        return super().reserved_names() | {RECORDS, RECORDS + ".lock"}

    def _record_commit(self, image_id: str, size: int, checksum: str, fd: int) -> None:
        now = time.time()
        with self._records() as records:
            records[image_id] = {
                "size": size,
                "hits": 0,
                "checksum": checksum,
                "last_accessed": now,
                "last_modified": now,
            }

    def _record_delete(self, image_id: str) -> None:
        with self._records() as records:
            records.pop(image_id, None)

    def _entries(self) -> list[CachedImage]:
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

    def _total_size(self) -> int:
        with self._records() as records:
            return sum(r["size"] for r in records.values())

    def _count_hit(self, image_id: str, fd: int) -> None:
        with self._records() as records:
            if image_id in records:
                records[image_id]["hits"] += 1
                records[image_id]["last_accessed"] = time.time()

    def get_hit_count(self, image_id: str) -> int:
        with self._records() as records:
            return records.get(image_id, {}).get("hits", 0)

    def _check_records(self, fix: bool) -> list[Problem]:
        files = self.entry_files()
        problems = []
        with self._records() as records:
            for image_id in sorted(records.keys() - files.keys()):
                problems.append(Problem("missing-file", image_id, "recorded, no file"))
                if fix:
                    del records[image_id]
            for image_id in sorted(files.keys() - records.keys()):
                st = files[image_id]
                problems.append(Problem("unrecorded-file", image_id, "no record"))
                if fix:
                    records[image_id] = {
                        "size": st.st_size,
                        "hits": 0,
                        "last_accessed": st.st_atime,
                        "last_modified": st.st_mtime,
                    }
        return problems
