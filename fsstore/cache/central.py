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

Ids. ``image_id`` is VARCHAR(36) (a UUID): a longer id is never an entry of
this driver (such an image is served, not cached).

Concurrency. Commits, evictions and deletes of a node run under the cache
directory's lock, as for every driver; a hit is one ``UPDATE ... SET hits =
hits + 1``, atomic in the database, so hits from any number of processes and
nodes are exact.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache.records import CachedImage, Directory, RecordsDriver

LOG = logging.getLogger(__name__)

MAX_ID_LENGTH = 36  # cached_images.image_id is VARCHAR(36)
DELETE_BATCH = 500  # ids per DELETE ... IN (...)

OPTIONS = [
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
    """Register the two options unless Glance (or oslo.db) already did."""
    for group, opt in OPTIONS:
        with contextlib.suppress(cfg.DuplicateOptError):
            conf.register_opt(opt, group=group)


def _tables() -> tuple[Any, Any, Any]:
    """(metadata, node_reference, cached_images), as Glance's models define them."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql

    ident = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    # Glance's DateTime is DATETIME(0) on MySQL and MariaDB: whole seconds,
    # so entries used within one second tie for least recently used. Tables
    # fsstore creates keep microseconds there; Glance's keep their seconds.
    moment = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    metadata = sa.MetaData()
    node_reference = sa.Table(
        "node_reference",
        metadata,
        sa.Column("node_reference_id", ident, primary_key=True, autoincrement=True),
        sa.Column("node_reference_url", sa.String(255), nullable=False),
        sa.UniqueConstraint(
            "node_reference_url", name="uq_node_reference_node_reference_url"
        ),
    )
    cached_images = sa.Table(
        "cached_images",
        metadata,
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.String(MAX_ID_LENGTH), nullable=False),
        sa.Column("last_accessed", moment, nullable=False),
        sa.Column("last_modified", moment, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("checksum", sa.String(32)),
        sa.Column(
            "node_reference_id",
            ident,
            sa.ForeignKey("node_reference.node_reference_id"),
            nullable=False,
        ),
        sa.UniqueConstraint(
            "image_id",
            "node_reference_id",
            name="ix_cached_images_image_id_node_reference_id",
        ),
    )
    return metadata, node_reference, cached_images


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _epoch(moment: datetime.datetime | None) -> float:
    if moment is None:
        return 0.0
    return moment.replace(tzinfo=datetime.UTC).timestamp()


class CentralDbDriver(RecordsDriver):
    NAME = "centralized_db"
    max_id_length = MAX_ID_LENGTH

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
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
        url = self.conf.database.connection
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
        try:
            self.url = sa.engine.make_url(url)
        except Exception:
            raise exceptions.BadDriverConfiguration(
                self.NAME, "[database] connection is not an SQLAlchemy URL"
            ) from None
        self.shown_url = self.url.render_as_string(hide_password=True)
        self._metadata, self._nodes, self._records = _tables()
        try:
            self._engine = sa.create_engine(self.url)
            # Single statements run in autocommit: one round trip each,
            # without BEGIN and COMMIT around it. Atomic all the same.
            self._single = self._engine.execution_options(isolation_level="AUTOCOMMIT")
            self._pid = os.getpid()
            self._hit = HitStatement(self._engine, self._records)
            self._ensure_tables()
            self._node_id = self._ensure_node()
        except exceptions.FsstoreError:
            raise
        except Exception as exc:
            raise exceptions.BadDriverConfiguration(
                self.NAME, f"database {self.shown_url}: {_one_line(exc)}"
            ) from None

    def _ensure_tables(self) -> None:
        import sqlalchemy as sa

        present = set(sa.inspect(self._engine).get_table_names())
        if {"cached_images", "node_reference"} <= present:
            return
        if present:
            raise exceptions.BadDriverConfiguration(
                self.NAME,
                f"database {self.shown_url} has no cached_images and "
                "node_reference tables (Glance's 2024.1 schema): run "
                "'glance-manage db sync'; fsstore creates them only in an "
                "empty database",
            )
        # An empty database: fsstore's own (a standalone cache, the tests).
        self._metadata.create_all(self._engine)
        LOG.info("created the cache tables in %s", self.shown_url)

    def _ensure_node(self) -> int:
        import sqlalchemy as sa

        nodes = self._nodes
        select = sa.select(nodes.c.node_reference_id).where(
            nodes.c.node_reference_url == self.node_url
        )
        with self._engine.begin() as db:
            found = db.execute(select).scalar()
            if found is not None:
                return int(found)
        try:
            with self._engine.begin() as db:
                db.execute(sa.insert(nodes).values(node_reference_url=self.node_url))
        except sa.exc.IntegrityError:
            pass  # Race: another process of this node registered it first.
        with self._engine.begin() as db:
            return int(db.execute(select).scalar_one())

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
                    f"cache database {self.shown_url}: {_one_line(exc)}"
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

        now = _utcnow()
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
                _epoch(accessed),
                _epoch(modified),
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
                f"cache database {self.shown_url}: {_one_line(exc)}"
            ) from None

    def hits(self, image_id: str) -> int:
        import sqlalchemy as sa

        rows = self._run(sa.select(self._records.c.hits).where(self._mine(image_id)))
        return int(rows[0][0]) if rows else 0

    def adopt(self, files: dict[str, os.stat_result]) -> None:
        import sqlalchemy as sa

        rows = [
            {
                "image_id": image_id,
                "last_accessed": _from_epoch(st.st_atime),
                "last_modified": _from_epoch(st.st_mtime),
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


class HitStatement:
    """A hit's ``UPDATE ... SET hits = hits + 1``, one round trip.

    A hit is recorded when the reader closes the image (fsstore.cache.hits),
    and costs the reader the time it takes. Through SQLAlchemy's Connection
    a single UPDATE costs about 200 us of Python on top of the round trip,
    so the statement is compiled once for the database's dialect and run on
    a connection of the database's own driver, in autocommit, held per
    thread. Race: a connection the server closed (a restart) fails the
    statement; it is tried once more on a new connection.
    """

    def __init__(self, engine: Any, records: Any) -> None:
        import sqlalchemy as sa

        statement = (
            sa.update(records)
            .where(
                (records.c.node_reference_id == sa.bindparam("node"))
                & (records.c.image_id == sa.bindparam("image"))
            )
            .values(
                # A literal, not a bound 1: the only parameters are ours.
                hits=records.c.hits + sa.literal_column("1"),
                last_accessed=sa.bindparam("now"),
            )
        )
        self._engine = engine
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        moment = records.c.last_accessed.type.dialect_impl(engine.dialect)
        self._now = moment.bind_processor(engine.dialect)
        self._local = threading.local()

    def _cursor(self) -> Any:
        # The connection is the driver's own, outside the engine's pool: a
        # server with many reader threads must not hold the pool's
        # connections, which the other operations need. It closes with its
        # thread.
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            dialect = self._engine.dialect
            args, kwargs = dialect.create_connect_args(self._engine.url)
            conn = dialect.connect(*args, **kwargs)
            dialect.set_isolation_level(conn, "AUTOCOMMIT")
            local.conn, local.cursor, local.pid = conn, conn.cursor(), os.getpid()
        return local.cursor

    def _forget(self) -> None:
        local = self._local
        conn, local.pid = getattr(local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def run(self, node_id: int | None, image_id: str) -> None:
        now: Any = _utcnow()
        if self._now is not None:
            now = self._now(now)
        params: Any = {"node": node_id, "image": image_id, "now": now}
        if self._order is not None:
            params = tuple(params[name] for name in self._order)
        for attempt in (1, 2):
            try:
                self._cursor().execute(self._sql, params)
                return
            except Exception:
                self._forget()
                if attempt == 2:
                    raise


def _from_epoch(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None)


def _one_line(exc: BaseException) -> str:
    """A database error's first line, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
