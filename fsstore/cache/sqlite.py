"""The sqlite cache driver: records in Glance's ``cached_images`` table.

The database (``image_cache_sqlite_db``, default ``cache.db`` in the cache
directory) keeps Glance's schema, so a cache Glance wrote is adopted as is. It
runs in WAL mode with ``synchronous=NORMAL``: a hit costs one short write
transaction instead of a rollback journal's fsyncs. The cache size is
``SUM(size)`` over the table: no directory walk.

Lost and damaged records. The limit is only as good as the records, so:

* Whoever creates the database file (there was none, or it was deleted)
  rebuilds its records from the entry files, under the cache lock, before
  anything else uses it.
* Race: a process whose database file is deleted (or replaced) goes on
  writing to the unlinked file, and counts only its own entries while the
  others count theirs. Every use compares the file at the path with the one
  the connection has open and reconnects on a difference.
* A damaged database is a one-line ``BackendException`` naming it; ``check
  --fix`` moves it aside (as ``.fsstore-damaged-<name>-<time>-<random>``,
  never an entry, never replacing anything) and rebuilds the records from
  the files.

Planted files. sqlite opens the database and its ``-wal``, ``-shm`` and
``-journal`` files itself, following links and creating what is missing.
So before every connection the driver checks that each of them is a regular
file with no other name, or absent (a symbolic link, FIFO, directory or hard
link there is a one-line ``BackendException`` naming it, and sqlite is never
let near it), and it creates a missing database itself, with ``O_EXCL``.
Race: a name swapped between that check and sqlite's open is followed; the
check closes the window to that moment, in a directory only the cache's
owners should write to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from fsstore import exceptions, safefiles
from fsstore.cache.records import CachedImage, Directory, Problem, RecordsDriver
from fsstore.store import RESERVED_PREFIX

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
_SIDE_FILES = ("-wal", "-shm", "-journal")
HIT = "UPDATE cached_images SET hits = hits + 1, last_accessed = ? WHERE image_id = ?"

LOG = logging.getLogger(__name__)


class SqliteDriver(RecordsDriver):
    NAME = "sqlite"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        self._local = threading.local()

    def configure(self, directory: Directory) -> None:
        super().configure(directory)
        self.db_path = directory.db_path
        try:
            self._execute(SCHEMA)  # an empty file, or one Glance never used
        except exceptions.BackendException as exc:
            if not self._damaged(exc):
                raise exceptions.BadDriverConfiguration(self.NAME, str(exc)) from None
            # A damaged database does not stop the driver: every operation
            # on the records says what is wrong, and check --fix repairs it.
            LOG.info("%s", exc)

    @staticmethod
    def _damaged(exc: BaseException) -> bool:
        return isinstance(exc.__context__, sqlite3.DatabaseError) and not isinstance(
            exc.__context__, sqlite3.OperationalError
        )

    def _error(self, exc: sqlite3.Error) -> exceptions.BackendException:
        """sqlite's error as one line naming the database."""
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.OperationalError
        ):
            return exceptions.BackendException(
                f"cache database {self.db_path} is unusable: {exc}; 'fsstore cache "
                "check --fix' rebuilds it from the files"
            )
        return exceptions.BackendException(
            f"cache database {self.db_path} is unusable: {exc}"
        )

    def _db(self, check: bool = True) -> sqlite3.Connection:
        # One connection per thread, and a new one after fork(): a sqlite
        # connection must not cross either. And, unless ``check`` is off, a
        # new one when the file at the path is not the one it has open (see
        # the module doc). Hits skip that check: a hit recorded in a deleted
        # database is lost with it either way, and the stat would cost a
        # tenth of the hit.
        local = self._local
        if getattr(local, "process", None) == os.getpid():
            if not check:
                return local.conn  # type: ignore[no-any-return]
            try:
                if safefiles.same_inode(os.stat(self.db_path), local.opened):
                    return local.conn  # type: ignore[no-any-return]
            except FileNotFoundError:
                pass
            local.conn.close()
            local.process = None
        try:
            conn, opened = self._connect()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        local.conn, local.opened, local.process = conn, opened, os.getpid()
        return conn

    def _check_files(self) -> bool:
        """Whether the database file exists. BackendException if it, or one
        of its side files, is anything sqlite must not open (see the module
        doc).

        By lstat, never by opening: closing any descriptor of a database
        file drops every POSIX lock this process holds on it, the other
        threads' sqlite connections' included (sqlite's "how to corrupt"
        list, 2.2).
        """
        exists = False
        for suffix in ("", *_SIDE_FILES):
            path = self.db_path + suffix
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a file"
                raise exceptions.BackendException(
                    f"cache database file {path} is {what}; sqlite would follow "
                    "it or block on it: remove it"
                )
            if st.st_nlink != 1:
                raise exceptions.BackendException(
                    f"cache database file {path} has other hard links; sqlite "
                    "would write to a file shared with another name: remove it"
                )
            exists = exists or not suffix
        return exists

    def _connect(self) -> tuple[sqlite3.Connection, os.stat_result]:
        """A new connection, and the database file it opened (its stat)."""
        if self._check_files():
            conn = self._open()
            return conn, os.stat(self.db_path)
        # Race: several processes may find the file missing at once; under
        # the lock, only the first creates it and rebuilds its records.
        with self.directory.lock():
            created = not self._check_files()
            if created:
                # Left by a deleted database: a new one must not replay them.
                for suffix in _SIDE_FILES:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.db_path + suffix)
                # Made here, new: sqlite would create it through a link.
                with contextlib.suppress(FileExistsError):
                    os.close(safefiles.create_new(self.db_path, mode=0o644))
            conn = self._open()
            if created:
                conn.execute(SCHEMA)
                self._rebuild(conn)
            return conn, os.stat(self.db_path)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _rebuild(self, conn: sqlite3.Connection) -> int:
        """Record every entry file that has no record; the number recorded.
        Caller holds the lock."""
        recorded = {r[0] for r in conn.execute("SELECT image_id FROM cached_images")}
        added = 0
        for image_id, st in self.directory.scan_entry_files():
            if image_id in recorded:
                continue
            conn.execute(
                "INSERT INTO cached_images (image_id, last_accessed, "
                "last_modified, size, hits) VALUES (?, ?, ?, ?, 0)",
                (image_id, st.st_atime, st.st_mtime, st.st_size),
            )
            added += 1
        return added

    def _execute(
        self, sql: str, params: tuple[object, ...] = (), check: bool = True
    ) -> list[Any]:
        """The rows of ``sql``, all fetched (a damaged page may show only
        while fetching); sqlite's errors as BackendException."""
        try:
            return self._db(check).execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def commit(self, image_id: str, size: int, checksum: str | None, fd: int) -> None:
        now = time.time()
        self._execute(
            "INSERT OR REPLACE INTO cached_images "
            "(image_id, last_accessed, last_modified, size, hits, checksum) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            (image_id, now, now, size, checksum),
        )

    def delete(self, image_ids: Sequence[str]) -> None:
        db = self._db()
        try:
            # One transaction: a prune of thousands is one commit.
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "DELETE FROM cached_images WHERE image_id = ?",
                    [(image_id,) for image_id in image_ids],
                )
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def entries(self) -> list[CachedImage]:
        # Rows come out in CachedImage's field order with NULLs already
        # replaced, so each becomes one without a Python-level constructor.
        rows = self._execute(f"SELECT {LISTED} FROM cached_images")
        new = tuple.__new__
        return [new(CachedImage, r) for r in rows]

    def total_size(self) -> int:
        [(total,)] = self._execute("SELECT COALESCE(SUM(size), 0) FROM cached_images")
        return int(total)

    def hit(self, image_id: str, fd: int) -> None:
        # The reader waits for this: no fetch, no check of the file's
        # identity (see _db), the statement from the connection's cache, and
        # _db's first test inlined.
        local = self._local
        try:
            if getattr(local, "process", None) == os.getpid():
                local.conn.execute(HIT, (time.time(), image_id))
            else:
                self._db(check=False).execute(HIT, (time.time(), image_id))
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def hits(self, image_id: str) -> int:
        rows = self._execute(
            "SELECT hits FROM cached_images WHERE image_id = ?", (image_id,)
        )
        return int(rows[0][0]) if rows else 0

    def check(self, fix: bool) -> list[Problem]:
        try:
            entries = self.entries()
        except exceptions.BackendException as exc:
            if not fix:
                return [Problem("damaged-records", None, str(exc))]
            return [Problem("damaged-records", None, self._replace_damaged(str(exc)))]
        return self.reconcile(entries, fix)

    def adopt(self, files: dict[str, os.stat_result]) -> None:
        try:
            self._rebuild(self._db())
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def resize(self, image_id: str, size: int) -> None:
        self._execute(
            "UPDATE cached_images SET size = ? WHERE image_id = ?", (size, image_id)
        )

    def _replace_damaged(self, reason: str) -> str:
        """Move the damaged database aside and rebuild; what was done.
        Caller holds the lock."""
        local = self._local
        if getattr(local, "process", None) == os.getpid():
            local.conn.close()
            local.process = None
        aside = os.path.join(
            self.directory.base_dir,
            f"{RESERVED_PREFIX}damaged-{os.path.basename(self.db_path)}-"
            f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}",
        )
        # Moved by link and unlink, not rename: a name that is taken is
        # never replaced.
        os.link(self.db_path, aside, follow_symlinks=False)
        os.unlink(self.db_path)
        for suffix in _SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.db_path + suffix)
        self._db()  # creates and rebuilds it, under the lock we hold
        return f"{reason}; moved it to {aside} and rebuilt the records from the files"
