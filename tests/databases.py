"""A real PostgreSQL server on loopback, for the centralized_db cache tests.

The server is pgserver's build of PostgreSQL (a wheel in the test extra, so
`make test` needs nothing from the system and no network but PyPI): initdb
into a fresh directory, then `postgres` in the foreground as a child of the
fixture, trust authentication on 127.0.0.1 only, fsync off (the data is
thrown away). PostgreSQL refuses to run as root, so as root the server runs
as `nobody` from a directory under /tmp that `nobody` owns. Ready is a real
connection; stopped by its process id (SIGINT: PostgreSQL's fast shutdown).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.processes import stop_process

START_TIMEOUT = 60.0


def _bin(name: str) -> str:
    # Found, not imported: pgserver's own Python API is not used.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed (it is in the test extra)")
    package = Path(next(iter(spec.submodule_search_locations)))
    return str(package / "pginstall" / "bin" / name)


def _free_port() -> int:
    # postgres binds its own port; this one was free a moment ago.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.state = Path(tempfile.mkdtemp(prefix="fsstore-pg-"))
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "nobody"
            entry = pwd.getpwnam(self.user)
            os.chown(self.state, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            list(args), capture_output=True, text=True, user=self.user, cwd=self.state
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        data = self.state / "data"
        self._run(
            _bin("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
        )
        self.port = _free_port()
        self._serve()

    def restart(self) -> None:
        """Stop the server (every connection to it is closed) and start it
        again on the same data and port."""
        self._shutdown()
        self._serve()

    def _serve(self) -> None:
        data = self.state / "data"
        log = (self.state / "postgres.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    _bin("postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.state),
                    "-c",
                    "fsync=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                cwd=self.state,
            )
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    def _wait(self) -> None:
        """Connect until it answers; retried because postgres binds its own
        socket when it is ready, and there is no socket to hand it first."""
        import psycopg2

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.state / "postgres.log").read_text(errors="replace")
                raise RuntimeError(f"postgres exited: {log[-2000:]}")
            try:
                psycopg2.connect(self.dsn("postgres"), connect_timeout=5).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.state, ignore_errors=True)

    def _shutdown(self) -> None:
        process, self.process = self.process, None
        stop_process(process, signal.SIGINT)  # PostgreSQL's fast shutdown


class MariaDBServer:
    """A MariaDB server (Debian's mariadb-server) on loopback, for
    `make test-mariadb`: mariadb-install-db into a fresh directory, then
    mariadbd in the foreground as a child of the fixture, grant tables
    skipped (any user, no password) and bound to 127.0.0.1 only. Ready is a
    real connection; stopped by its process id."""

    BINARIES = ("mariadb-install-db", "mariadbd")

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.state = Path(tempfile.mkdtemp(prefix="fsstore-mariadb-"))
        self.user = pwd.getpwuid(os.geteuid()).pw_name

    def start(self) -> None:
        found = {
            name: shutil.which(name) or shutil.which(name, path="/usr/sbin")
            for name in self.BINARIES
        }
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise RuntimeError(
                f"MariaDB is not installed ({', '.join(missing)} missing): run "
                "`make test-mariadb` as root, which installs it"
            )
        data = self.state / "data"
        done = subprocess.run(
            [
                str(found["mariadb-install-db"]),
                "--no-defaults",
                f"--datadir={data}",
                f"--user={self.user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {done.stderr[-2000:]}")
        self.port = _free_port()
        log = (self.state / "mariadbd.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                [
                    str(found["mariadbd"]),
                    "--no-defaults",
                    f"--datadir={data}",
                    f"--socket={self.state / 'mariadbd.sock'}",
                    f"--pid-file={self.state / 'mariadbd.pid'}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--user={self.user}",
                    "--skip-grant-tables",
                    "--innodb-flush-log-at-trx-commit=2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    def _connect(self) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", connect_timeout=5
        )

    def _wait(self) -> None:
        """Connect until it answers; retried because mariadbd binds its own
        socket when it is ready."""
        import pymysql

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.state / "mariadbd.log").read_text(errors="replace")
                raise RuntimeError(f"mariadbd exited: {log[-2000:]}")
            try:
                self._connect().close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create_database(self, name: str) -> str:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}`")
        finally:
            conn.close()
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, timeout=60)
        shutil.rmtree(self.state, ignore_errors=True)
