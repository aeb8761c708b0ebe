"""The centralized_db cache driver: records in Glance's own database.

Glance 33's default cache driver. The entry files stay in ``image_cache_dir``
with the usual layout (see fsstore.cache.directory); the records live in the
database ``[database] connection`` names (an SQLAlchemy URL: sqlite,
postgresql, mysql+pymysql), shared by every API node::

    node_reference(node_reference_id PK, node_reference_url UNIQUE)
    cached_images(id PK, image_id VARCHAR(36), last_accessed DATETIME,
                  last_modified DATETIME, size BIGINT, hits INT,
                  checksum VARCHAR(32), node_reference_id FK,
                  UNIQUE(image_id, node_reference_id))

A node is ``[DEFAULT] worker_self_reference_url``; every record belongs to
one node, and a node sees, counts, prunes and checks only its own. Times are
naive UTC, as Glance writes them. The tables and their meaning are Glance's,
so Glance and fsstore share one cache directory and one database.

Tables. In a database that already has tables (Glance's), fsstore never
creates or migrates any: without ``cached_images`` and ``node_reference``
(a Glance older than 2024.1's schema) the driver refuses to configure and
says to run ``glance-manage db sync``. In an empty database it creates the
two, Glance's way: a database of fsstore's own.

Lost records. The limit is only as good as the records, so, as for every
driver, whoever creates the records rebuilds them from the entry files, under
the cache lock, before anything else counts them: configure records the
entry files when it finds this node without a record, be it because it
created the tables (a new, empty database), created the node's row (a new
``worker_self_reference_url``), or found the row without records (Glance's
driver registers a node and never looks at the files).

Credentials. No message shows any part of the connection URL from ``://``
to its last ``@``, nor its query (which may hold a password), and a
database driver's message has any text equal to the password hidden. A URL
with an ``@`` other than the one SQLAlchemy ends the password at is refused
(BadDriverConfiguration): SQLAlchemy would read the rest of the password as
the host (or the database), which the driver then names in its errors.

Ids. ``image_id`` is VARCHAR(36) (a UUID): a longer id is never an entry of
this driver (such an image is served, not cached).

Concurrency. Commits, evictions and deletes of a node run under the cache
directory's lock, as for every driver; a hit is one ``UPDATE ... SET hits =
hits + 1``, atomic in the database, so hits from any number of processes and
nodes are exact.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from fsstore import exceptions, plugins
from fsstore.cache.central_schema import (
    MAX_ID_LENGTH,
    HitStatement,
    epoch,
    from_epoch,
    tables,
    utcnow,
)
from fsstore.cache.central_url import (
    MISPLACED_AT,
    hide_secrets,
    misplaced_at,
    one_line,
    secrets_of,
    shown_url,
)
from fsstore.cache.records import CachedImage, Directory, RecordsDriver

LOG = logging.getLogger(__name__)

DELETE_BATCH = 500  # ids per DELETE ... IN (...)

OPTIONS: list[tuple[str | None, cfg.Opt]] = [
    (
        "database",
        cfg.StrOpt(
            "connection",
            secret=True,
            help="The SQLAlchemy URL of Glance's database, which holds the "
            "centralized_db cache driver's records.",
        ),
    ),
    (
        None,
        cfg.StrOpt(
            "worker_self_reference_url",
            help="This node's URL, as Glance knows it: the centralized_db "
            "driver's records belong to it.",
        ),
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the two options unless Glance (or oslo.db) already did, as
    the image cache does when it loads this driver: for a configuration
    read before any cache is made (tests, tools).

    :param conf: the configuration to register in
    """
    plugins.register_options(conf, OPTIONS)


class CentralDbDriver(RecordsDriver):
    NAME = "centralized_db"
    OPTIONS = OPTIONS
    max_id_length = MAX_ID_LENGTH

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        self._engine: Any = None
        self._pid = 0
        self._node_id: int | None = None
        self._lock = threading.Lock()

    # -- configuration ---------------------------------------------------

    def configure(self, directory: Directory) -> None:
        super().configure(directory)
        try:
            import sqlalchemy as sa
        except ImportError:
            raise exceptions.BadDriverConfiguration(
                self.NAME,
                "SQLAlchemy is not installed (pip install 'fsstore[central]')",
            ) from None
        url = self._read_options()
        try:
            self.url = sa.engine.make_url(url)
        except Exception:
            raise exceptions.BadDriverConfiguration(
                self.NAME, "[database] connection is not an SQLAlchemy URL"
            ) from None
        self._metadata, self._nodes, self._records = tables()
        try:
            self._connect()
        except exceptions.BadDriverConfiguration:
            raise
        except exceptions.FsstoreError as exc:
            raise exceptions.BadDriverConfiguration(self.NAME, str(exc)) from None
        except Exception as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME, f"database {self.shown_url}: {self._line(exc)}"
            ) from None

    def _read_options(self) -> str:
        """``[database] connection``, checked; sets what messages show of it
        and this node's URL."""
        try:
            url = self.conf.database.connection
        except (cfg.Error, ValueError, RecursionError):
            # oslo.config reads "$word" as a substitution of the option
            # "word", and its error names "word": the rest of a password.
            raise exceptions.BadDriverConfiguration(
                self.NAME,
                "[database] connection cannot be read (not shown: it may hold a "
                "password); a '$' in it starts an oslo.config substitution and "
                "must be written '$$'",
            ) from None
        node = self.conf.worker_self_reference_url
        if not url:
            raise exceptions.BadDriverConfiguration(
                self.NAME, "[database] connection is not set"
            )
        if not node:
            raise exceptions.BadDriverConfiguration(
                self.NAME, "[DEFAULT] worker_self_reference_url is not set"
            )
        self.node_url = node
        self.shown_url = shown_url(url)
        self._secrets = secrets_of(url)
        if misplaced_at(url):
            raise exceptions.BadDriverConfiguration(self.NAME, MISPLACED_AT)
        return str(url)

    def _connect(self) -> None:
        import sqlalchemy as sa

        self._engine = sa.create_engine(self.url)
        # Single statements run in autocommit: one round trip each,
        # without BEGIN and COMMIT around it. Atomic all the same.
        self._single = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        self._pid = os.getpid()
        self._hit = HitStatement(self._engine, self._records)
        self._open_records()

    def _open_records(self) -> None:
        """Find (or create) the tables and this node's row; record the entry
        files when the node has no record.

        Race: the records must be whole before anything counts them, so the
        check, the creation and the rebuild run under the cache lock, which
        every commit holds. Only a node that has records skips the lock: it
        needs nothing rebuilt, and a restart of a busy node does not wait
        for its commits.
        """
        if {"cached_images", "node_reference"} <= self._tables_present():
            node_id = self._find_node()
            if node_id is not None and self._has_records(node_id):
                self._node_id = node_id
                return
        with self.directory.lock():
            self._ensure_tables()
            self._node_id = self._ensure_node()
            if self._has_records(self._node_id):
                return
            files = self.directory.entry_files()
            if files:
                self.adopt(files)
                LOG.info(
                    "recorded the %d files in %s for %s in %s, which had no "
                    "records of them",
                    len(files),
                    self.directory.base_dir,
                    self.node_url,
                    self.shown_url,
                )

    def _tables_present(self) -> set[str]:
        import sqlalchemy as sa

        return set(sa.inspect(self._engine).get_table_names())

    def _ensure_tables(self) -> None:
        ours = {"cached_images", "node_reference"}
        present = self._tables_present()
        if ours <= present:
            return
        if present - ours:
            raise exceptions.BadDriverConfiguration(
                self.NAME,
                f"database {self.shown_url} has no cached_images and "
                "node_reference tables (Glance's 2024.1 schema): run "
                "'glance-manage db sync'; fsstore creates them only in an "
                "empty database",
            )
        # An empty database (or one with only some of ours, another node
        # creating them now): fsstore's own, a standalone cache or the tests.
        try:
            self._metadata.create_all(self._engine)
        except Exception:
            # Race: another node created them between our look and ours.
            if not ours <= self._tables_present():
                raise
            return
        LOG.info("created the cache tables in %s", self.shown_url)

    def _find_node(self) -> int | None:
        import sqlalchemy as sa

        nodes = self._nodes
        select = sa.select(nodes.c.node_reference_id).where(
            nodes.c.node_reference_url == self.node_url
        )
        with self._engine.connect() as db:
            found = db.execute(select).scalar()
        return None if found is None else int(found)

    def _ensure_node(self) -> int:
        import sqlalchemy as sa

        found = self._find_node()
        if found is not None:
            return found
        try:
            with self._engine.begin() as db:
                db.execute(
                    sa.insert(self._nodes).values(node_reference_url=self.node_url)
                )
        except sa.exc.IntegrityError:
            # Race: a process that does not hold our cache lock (Glance's,
            # or fsstore's for another cache directory) registered it first.
            pass
        found = self._find_node()
        if found is None:
            raise exceptions.BadDriverConfiguration(
                self.NAME, f"database {self.shown_url} lost the row of {self.node_url}"
            )
        return found

    def _has_records(self, node_id: int) -> bool:
        import sqlalchemy as sa

        records = self._records
        select = (
            sa.select(records.c.id)
            .where(records.c.node_reference_id == node_id)
            .limit(1)
        )
        with self._engine.connect() as db:
            return db.execute(select).first() is not None

    def _line(self, exc: BaseException) -> str:
        """A database error as one line, without any password in it."""
        return hide_secrets(one_line(exc), self._secrets)

    # -- access ----------------------------------------------------------

    def _db(self) -> Any:
        # Race: a forked child must not share its parent's connections; it
        # drops the pool's (without closing them for the parent) and opens
        # its own.
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._engine.dispose(close=False)
                    self._single = self._engine.execution_options(
                        isolation_level="AUTOCOMMIT"
                    )
                    self._pid = os.getpid()
        return self._engine

    def _run(self, statement: Any, params: Any = None) -> Any:
        """Execute one statement (atomic by itself); errors as one line.

        Race: the server may have closed a pooled connection (a restart, an
        idle timeout) since its last use. SQLAlchemy then invalidates it, and
        the statement is tried once more on a fresh one, instead of pinging
        the server before every use.
        """
        self._db()

        def run() -> Any:
            with self._single.connect() as db:
                result = db.execute(statement, params)
                return result.fetchall() if result.returns_rows else result.rowcount

        return self._retrying(run)

    def _retrying(self, work: Callable[[], Any]) -> Any:
        """``work()``, once more if its connection turned out to be closed by
        the server; any other error as one line naming the database."""
        for attempt in (1, 2):
            try:
                return work()
            except Exception as exc:
                if attempt == 1 and getattr(exc, "connection_invalidated", False):
                    continue
                raise exceptions.BackendException(
                    f"cache database {self.shown_url}: {self._line(exc)}"
                ) from None

    def _mine(self, image_id: str | None = None) -> Any:
        """The where-clause of this node's records (of one image)."""
        records = self._records
        clause = records.c.node_reference_id == self._node_id
        if image_id is not None:
            clause = clause & (records.c.image_id == image_id)
        return clause

    # -- records ---------------------------------------------------------

    def commit(self, image_id: str, size: int, checksum: str | None, fd: int) -> None:
        import sqlalchemy as sa

        now = utcnow()
        records = self._records

        def replace() -> None:  # one transaction: the old row goes, ours comes
            with self._db().begin() as db:
                db.execute(sa.delete(records).where(self._mine(image_id)))
                db.execute(
                    sa.insert(records).values(
                        image_id=image_id,
                        last_accessed=now,
                        last_modified=now,
                        size=size,
                        hits=0,
                        checksum=checksum,
                        node_reference_id=self._node_id,
                    )
                )

        self._retrying(replace)

    def delete(self, image_ids: Sequence[str]) -> None:
        import sqlalchemy as sa

        records = self._records
        # A prune of thousands is a few statements, each atomic by itself.
        for start in range(0, len(image_ids), DELETE_BATCH):
            batch = list(image_ids[start : start + DELETE_BATCH])
            self._run(
                sa.delete(records).where(self._mine() & records.c.image_id.in_(batch))
            )

    def entries(self) -> list[CachedImage]:
        import sqlalchemy as sa

        r = self._records
        rows = self._run(
            sa.select(
                r.c.image_id,
                r.c.size,
                r.c.hits,
                r.c.last_accessed,
                r.c.last_modified,
                r.c.checksum,
            ).where(self._mine())
        )
        return [
            CachedImage(
                image_id,
                int(size),
                int(hits),
                epoch(accessed),
                epoch(modified),
                checksum,
            )
            for image_id, size, hits, accessed, modified, checksum in rows
        ]

    def total_size(self) -> int:
        import sqlalchemy as sa

        rows = self._run(
            sa.select(sa.func.coalesce(sa.func.sum(self._records.c.size), 0)).where(
                self._mine()
            )
        )
        return int(rows[0][0])

    def hit(self, image_id: str, fd: int) -> None:
        try:
            self._hit.run(self._node_id, image_id)
        except Exception as exc:
            raise exceptions.BackendException(
                f"cache database {self.shown_url}: {self._line(exc)}"
            ) from None

    def hits(self, image_id: str) -> int:
        import sqlalchemy as sa

        rows = self._run(sa.select(self._records.c.hits).where(self._mine(image_id)))
        return int(rows[0][0]) if rows else 0

    def adopt(self, files: dict[str, os.stat_result]) -> None:
        import sqlalchemy as sa

        if not files:
            return
        rows = [
            {
                "image_id": image_id,
                "last_accessed": from_epoch(st.st_atime),
                "last_modified": from_epoch(st.st_mtime),
                "size": st.st_size,
                "hits": 0,
                "node_reference_id": self._node_id,
            }
            for image_id, st in files.items()
        ]
        # Sent as multi-row INSERTs, not one round trip per file.
        self._run(sa.insert(self._records), rows)

    def resize(self, image_id: str, size: int) -> None:
        import sqlalchemy as sa

        self._run(
            sa.update(self._records).where(self._mine(image_id)).values(size=size)
        )
