"""The sqlite cache driver: records in Glance's ``cached_images`` table.

The database (``image_cache_sqlite_db``, default ``cache.db`` in the cache
directory) keeps Glance's schema, so a cache Glance wrote is adopted as is. It
runs in WAL mode with ``synchronous=NORMAL``: a hit costs one short write
transaction instead of a rollback journal's fsyncs. The cache size is
``SUM(size)`` over the table: no directory walk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache.base import CachedImage, CacheDriver, Problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS cached_images (
  image_id TEXT PRIMARY KEY,
  last_accessed REAL DEFAULT 0.0,
  last_modified REAL DEFAULT 0.0,
  size INTEGER DEFAULT 0,
  hits INTEGER DEFAULT 0,
  checksum TEXT
)
"""
# CachedImage's fields, in order.
LISTED = (
    "image_id, COALESCE(size, 0), COALESCE(hits, 0), "
    "COALESCE(last_accessed, 0.0), COALESCE(last_modified, 0.0), checksum"
)


class SqliteDriver(CacheDriver):
    NAME = "sqlite"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        self.db_path = ""
        self._local = threading.local()

    def configure(self) -> None:
        super().configure()
        assert self.base_dir is not None
        self.db_path = os.path.join(self.base_dir, self.db_name)
        try:
            self._db().execute(SCHEMA)
        except sqlite3.Error as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME, f"database {self.db_path} is unusable: {exc}"
            ) from None

    def _db(self) -> sqlite3.Connection:
        # One connection per thread, and a new one after fork(): a sqlite
        # connection must not cross either.
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    def _record_commit(self, image_id: str, size: int, checksum: str, fd: int) -> None:
        now = time.time()
        self._db().execute(
            "INSERT OR REPLACE INTO cached_images "
            "(image_id, last_accessed, last_modified, size, hits, checksum) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            (image_id, now, now, size, checksum),
        )

    def _record_delete(self, image_id: str) -> None:
        self._db().execute("DELETE FROM cached_images WHERE image_id = ?", (image_id,))

    def _entries(self) -> list[CachedImage]:
        # Rows come out in CachedImage's field order with NULLs already
        # replaced, so each becomes one without a Python-level constructor.
        rows = self._db().execute(f"SELECT {LISTED} FROM cached_images").fetchall()
        is_entry_name, new = self.is_entry_name, tuple.__new__
        return [new(CachedImage, r) for r in rows if is_entry_name(r[0])]

    def _total_size(self) -> int:
        row = self._db().execute("SELECT COALESCE(SUM(size), 0) FROM cached_images")
        return int(row.fetchone()[0])

    def _count_hit(self, image_id: str, fd: int) -> None:
        self._db().execute(
            "UPDATE cached_images SET hits = hits + 1, last_accessed = ? "
            "WHERE image_id = ?",
            (time.time(), image_id),
        )

    def get_hit_count(self, image_id: str) -> int:
        row = (
            self._db()
            .execute("SELECT hits FROM cached_images WHERE image_id = ?", (image_id,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def _check_records(self, fix: bool) -> list[Problem]:
        records = {e.image_id: e for e in self._entries()}
        files = self.entry_files()
        problems = []
        db = self._db()
        for image_id in sorted(records.keys() - files.keys()):
            problems.append(Problem("missing-file", image_id, "recorded, no file"))
            if fix:
                self._record_delete(image_id)
        for image_id in sorted(files.keys() - records.keys()):
            st = files[image_id]
            problems.append(
                Problem("unrecorded-file", image_id, f"{st.st_size} bytes, no record")
            )
            if fix:
                db.execute(
                    "INSERT INTO cached_images (image_id, last_accessed, "
                    "last_modified, size, hits) VALUES (?, ?, ?, ?, 0)",
                    (image_id, st.st_atime, st.st_mtime, st.st_size),
                )
        for image_id in sorted(records.keys() & files.keys()):
            recorded, actual = records[image_id].size, files[image_id].st_size
            if recorded != actual:
                problems.append(
                    Problem(
                        "wrong-size",
                        image_id,
                        f"recorded {recorded} bytes, file has {actual}",
                    )
                )
                if fix:
                    db.execute(
                        "UPDATE cached_images SET size = ? WHERE image_id = ?",
                        (actual, image_id),
                    )
        return problems
