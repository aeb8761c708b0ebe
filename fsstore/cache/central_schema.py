"""The centralized_db driver's tables (Glance's), its times, and the
statement every hit runs.

Times are naive UTC, as Glance writes them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import threading
from typing import Any

MAX_ID_LENGTH = 36  # cached_images.image_id is VARCHAR(36)


def tables() -> tuple[Any, Any, Any]:
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


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def epoch(moment: datetime.datetime | None) -> float:
    if moment is None:
        return 0.0
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def from_epoch(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None)


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
        now: Any = utcnow()
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
