"""A real PostgreSQL server on loopback, for the centralized_db cache tests.

The server is pgserver's build of PostgreSQL (a wheel in the test extra, so
`make test` needs nothing from the system and no network but PyPI): initdb
into a fresh directory, then `postgres` in the foreground as a child of the
fixture, trust authentication on 127.0.0.1 only, fsync off (the data is
thrown away). PostgreSQL refuses to run as root, so as root the server runs
as `nobody` from a directory under /tmp that `nobody` owns. Ready is a real
connection; stopped by its process id (SIGINT: PostgreSQL's fast shutdown).

As `nobody`, the server cannot run pgserver's binaries where pip put them
when the checkout is in a directory others cannot enter (a 0700 home, a
`mktemp -d`): as root they run from a copy under /tmp that anyone may read
and run, made when a first server starts and removed when the last stops.
The copy keeps pgserver's layout: its programs find their shared libraries
(`pgserver.libs`, beside the package) and PostgreSQL its `share` and `lib`
relative to themselves.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.processes import stop_process

START_TIMEOUT = 60.0


def _package() -> Path:
    # Found, not imported: pgserver's own Python API is not used.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed (it is in the test extra)")
    return Path(next(iter(spec.submodule_search_locations)))


class _Copies:
    """pgserver's binaries copied where any user may run them, one copy
    per installed package, shared by the servers that run from it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Path, tuple[Path, int]] = {}  # package: (copy, users)

    def acquire(self, package: Path) -> Path:
        """The copy's ``pginstall`` directory, made if no server holds it."""
        with self._lock:
            root, users = self._held.get(package, (None, 0))
            if root is None:
                root = _copy_install(package)
            self._held[package] = (root, users + 1)
            return root / "pgserver" / "pginstall"

    def release(self, package: Path) -> None:
        with self._lock:
            root, users = self._held.pop(package)
            if users > 1:
                self._held[package] = (root, users - 1)
            else:
                shutil.rmtree(root, ignore_errors=True)


_COPIES = _Copies()


def _copy_install(package: Path) -> Path:
    """pgserver's ``pginstall`` (headers aside) and its ``pgserver.libs``
    in a new directory under /tmp, laid out as in site-packages (the
    programs' RPATH is ``$ORIGIN/../../../pgserver.libs``), readable and
    runnable by anyone."""
    root = Path(tempfile.mkdtemp(prefix="fsstore-pginstall-", dir="/tmp"))
    try:
        shutil.copytree(
            package / "pginstall",
            root / "pgserver" / "pginstall",
            symlinks=True,
            ignore=shutil.ignore_patterns("include"),
        )
        libs = package.parent / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, root / "pgserver.libs", symlinks=True)
        _open_to_all(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _open_to_all(root: Path) -> None:
    """Directories enterable and files readable by anyone, and runnable by
    anyone where their owner may run them: a venv made under umask 077
    has neither."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            path.chmod(0o755)
        elif stat.S_ISREG(mode):
            extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                extra |= stat.S_IXGRP | stat.S_IXOTH
            path.chmod(stat.S_IMODE(mode) | extra)


def _free_port() -> int:
    # postgres binds its own port; this one was free a moment ago.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.user: str | None = None
        self._package: Path | None = None  # whose copy this server holds
        self._install: Path | None = None
        if os.geteuid() == 0:
            self.user = "nobody"
            # /tmp, not $TMPDIR: nobody must be able to enter it.
            self.state = Path(tempfile.mkdtemp(prefix="fsstore-pg-", dir="/tmp"))
            entry = pwd.getpwnam(self.user)
            os.chown(self.state, entry.pw_uid, entry.pw_gid)
        else:
            self.state = Path(tempfile.mkdtemp(prefix="fsstore-pg-"))

    def _bin(self, name: str) -> str:
        assert self._install is not None, "start() first"
        return str(self._install / "bin" / name)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            list(args), capture_output=True, text=True, user=self.user, cwd=self.state
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        package = _package()
        if self.user is None:
            self._install = package / "pginstall"
        else:
            self._install = _COPIES.acquire(package)
            self._package = package
        try:
            self._run(
                self._bin("initdb"),
                "-D",
                str(self.state / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            )
        except BaseException:
            self.stop()
            raise
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
                    self._bin("postgres"),
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
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing the connections still open to it."""
        self._admin(f'DROP DATABASE "{name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.state, ignore_errors=True)
        package, self._package = self._package, None
        if package is not None:
            _COPIES.release(package)

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
        self._admin(f"CREATE DATABASE `{name}`")
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{name}"

    def drop_database(self, name: str) -> None:
        self._admin(f"DROP DATABASE `{name}`")

    def _admin(self, statement: str) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, timeout=60)
        shutil.rmtree(self.state, ignore_errors=True)
