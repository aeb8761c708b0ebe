"""Ceph (Debian's ceph 16.2 packages), one node, for `make test-ceph`: RADOS
alone for the RBD store (start_rados, create_rbd_pool), or with RGW for the
S3 tests (start).

One monitor, one OSD on memstore (its objects live in the OSD's memory:
killed, it throws them away; stopped, it saves them to its data directory,
so a cluster restarted has its data), pools of size 1, radosgw on
loopback, an S3 user made with radosgw-admin. Cluster auth is off, which
needs `ms mon client mode = crc`; `paxos propose interval` is short so
that creating the user does not wait on the monitor. Every daemon runs in
the foreground (-f) as a child of the fixture and is stopped by its
process id; state, logs and admin sockets live under the state directory.
Needs root and the packages ceph-mon, ceph-osd, ceph-common (and radosgw
for RGW): `make test-ceph` installs them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.engines import S3Engine, first_round_trip

ACCESS_KEY = "FSSTORERGWACCESSKEY0"
SECRET_KEY = "fsstore-rgw-secret-never-shown-0123456789"
START_TIMEOUT = 60.0
RADOS_BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "rbd")
BINARIES = (*RADOS_BINARIES, "radosgw", "radosgw-admin")

CONF = """
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
keyring = /dev/null
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
paxos propose interval = 0.05
run dir = {state}/run
admin socket = {state}/run/$name.asok
log file = {state}/log/$name.log
pid file = {state}/run/$name.pid
mon data = {state}/mon/$id
osd data = {state}/osd/$id
osd objectstore = memstore
# A stopped OSD unmounts its store, so memstore saves its objects and a
# restarted cluster has its data (the restart tests).
osd fast shutdown = false
memstore device bytes = {memstore_bytes}

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw dns name = localhost
"""


def missing_binaries(names: tuple[str, ...] = BINARIES) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def why_no_rbd() -> str | None:
    """Why the RBD tests cannot run here (one line), or None: Ceph's
    binaries, the rados and rbd bindings, and root to start the daemons."""
    from fsstore.backends.rbd.config import BINDINGS_HINT

    missing = missing_binaries(RADOS_BINARIES)
    if missing:
        return (
            f"Ceph is not installed ({', '.join(missing)}): make test-ceph installs it"
        )
    for module in ("rados", "rbd"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"no {module} bindings: {BINDINGS_HINT}"
    if os.geteuid() != 0:
        return "starting Ceph's daemons needs root"
    return None


def why_no_rbd_in(python: Path, hint: str) -> str | None:
    """Why the RBD tests that run another venv's ``python`` (the peer venv:
    Glance, glance_store's mocks) cannot run here (one line), or None;
    ``hint`` says how to make that venv."""
    reason = why_no_rbd()
    if reason is not None:
        return reason
    if not python.exists():
        return f"no venv at {python.parent.parent}: {hint}"
    probe = subprocess.run([python, "-c", "import rados, rbd"], capture_output=True)
    if probe.returncode:
        return f"no rados/rbd bindings in {python.parent.parent}: make ceph-bindings"
    return None


def free_port() -> int:
    # The daemons bind their own ports; this one was free a moment ago.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CephCluster:
    def __init__(self, state: Path, memstore_gib: int = 6) -> None:
        self.state = state
        self.conf = state / "ceph.conf"
        self.memstore_bytes = memstore_gib << 30
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.fsid = ""
        self.osd_id = ""

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [*args, "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(args)} failed: {done.stderr.strip()[-2000:]}"
            )
        return done.stdout

    def _daemon(self, name: str, *args: str) -> None:
        log = (self.state / "log" / f"{name}.out").open("wb")
        with log:
            self.daemons.append(
                subprocess.Popen(
                    [*args, "-f", "-c", str(self.conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def start_rados(self) -> str:
        """Start a monitor and a memstore OSD; the cluster's fsid once a
        command has reached the monitor and the OSD is up."""
        missing = missing_binaries(RADOS_BINARIES)
        if missing:
            raise RuntimeError(
                f"Ceph is not installed ({', '.join(missing)} missing): "
                "run `make test-ceph` as root, which installs it"
            )
        for sub in ("run", "log", "mon", "osd/0"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        fsid, mon_port = str(uuid.uuid4()), free_port()
        self.conf.write_text(
            CONF.format(
                fsid=fsid,
                mon_port=mon_port,
                rgw_port=free_port(),
                state=self.state,
                memstore_bytes=self.memstore_bytes,
            )
        )
        try:
            monmap = str(self.state / "monmap")
            subprocess.run(
                ["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]"]
                + ["--fsid", fsid, monmap],
                check=True,
                capture_output=True,
            )
            self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap)
            self._daemon("mon", "ceph-mon", "-i", "a")
            # The first command that reaches the monitor is its readiness check.
            self.osd_id = self._run("ceph", "osd", "create").strip()
            self._run("ceph-osd", "-i", self.osd_id, "--mkfs")
            self._daemon("osd", "ceph-osd", "-i", self.osd_id)
        except BaseException:
            self.stop()
            raise
        self.fsid = fsid
        return fsid

    def restart_monitor(self) -> None:
        """Kill the monitor (by its process id) and start it again on its
        data and port: the cluster restarting under its clients."""
        mon = self.daemons.pop(0)
        mon.kill()
        mon.wait()
        self._daemon("mon", "ceph-mon", "-i", "a")
        self._run("ceph", "status")  # answered: the monitor is back

    def restart(self) -> None:
        """Stop the monitor and the OSD and start them again on their data
        and the monitor's port: the whole cluster restarting under its
        clients. SIGTERM, so the memstore OSD saves its objects to its data
        directory as it unmounts and loads them again. Returns once a command
        reached the new monitor; clients' operations wait for the OSD."""
        assert len(self.daemons) == 2, "a RADOS cluster (start_rados) restarts"
        daemons, self.daemons = self.daemons, []
        for daemon in reversed(daemons):
            daemon.terminate()
            daemon.wait(START_TIMEOUT)
        self._daemon("mon", "ceph-mon", "-i", "a")
        self._daemon("osd", "ceph-osd", "-i", self.osd_id)
        self._run("ceph", "status")

    def blocklist(self, address: str) -> None:
        """Blocklist a client by its address: its operations fail with
        ESHUTDOWN from then on (what a fenced client sees)."""
        self._run("ceph", "osd", "blocklist", "add", address)

    def create_rbd_pool(self, pool: str) -> None:
        """Create ``pool`` and ``rbd pool init`` it (which waits for the OSD)."""
        try:
            self._run("ceph", "osd", "pool", "create", pool)
            self._run("rbd", "pool", "init", pool)
        except BaseException:
            self.stop()
            raise

    def start(self) -> S3Engine:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(
                f"Ceph is not installed ({', '.join(missing)} missing): "
                "run `make test-ceph` as root, which installs it"
            )
        self.start_rados()
        rgw_port = int(
            self.conf.read_text().split("endpoint=127.0.0.1:", 1)[1].split()[0]
        )
        try:
            self._run(
                "radosgw-admin",
                "user",
                "create",
                "--uid=fsstore",
                "--display-name=fsstore",
                f"--access-key={ACCESS_KEY}",
                f"--secret={SECRET_KEY}",
            )
            self._daemon("rgw", "radosgw", "-n", "client.rgw")
            engine = S3Engine(
                name="rgw",
                endpoint=f"http://127.0.0.1:{rgw_port}",
                access_key=ACCESS_KEY,
                secret_key=SECRET_KEY,
                atomic_conditional_put=True,
            )
            self._wait_for_s3(engine, rgw_port)
        except BaseException:
            self.stop()
            raise
        return engine

    def _wait_for_s3(self, engine: S3Engine, port: int) -> None:
        """Wait until radosgw listens, then make one signed round trip.

        radosgw binds its port itself once its pools exist, so there is no
        socket to hand it in advance: connecting is retried until it is
        accepted, radosgw exits, or the deadline passes.
        """
        rgw = self.daemons[-1]
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if rgw.poll() is not None:
                raise RuntimeError(f"radosgw exited with {rgw.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("radosgw did not listen in time") from None
                time.sleep(0.05)
        first_round_trip(engine)

    def stop(self) -> None:
        # radosgw is slow to honour SIGTERM and the memstore data is thrown
        # away anyway: the daemons are killed, newest first.
        daemons, self.daemons = self.daemons, []
        for daemon in reversed(daemons):
            daemon.kill()
            daemon.wait()
