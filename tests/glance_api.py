"""A real Glance 33.0.0 API on loopback, for end-to-end tests.

Glance runs from the peer venv (tests/peer/.venv, made by `make
tests/peer/.venv/.installed`, pinned by tests/peer/constraints.txt) under
gunicorn, one worker process with threads, as Glance 33 is deployed under
any WSGI server. Its configuration is Glance's own sample glance-api.conf
with the test's sections appended, its database a fresh sqlite file made by
`glance-manage db_sync`, no Keystone: a paste pipeline with Glance's own
`context` middleware takes the identity from trusted X-* headers, so every
request carries a project and roles and Glance's default policies apply.

The listening socket is bound here and handed to gunicorn as `fd://N` before
it starts, so the first request simply waits in the socket's backlog until
the worker has loaded Glance: that first round trip is the readiness check.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "tests" / "peer" / ".venv"
SAMPLE_CONF = ROOT / "tests" / "fixtures" / "glance-api.conf.sample"
INSTALL_HINT = "make tests/peer/.venv/.installed"

# Glance's shipped pipeline with `context` instead of `unauthenticated-context`
# and no authtoken: the identity headers are trusted as keystonemiddleware
# would have set them.
# Flavors: `trusted`, and `trusted+caching` with Glance's image cache.
PIPELINE_HEAD = "cors http_proxy_to_wsgi versionnegotiation osprofiler context"
FLAVORS = {
    "trusted": f"{PIPELINE_HEAD} rootapp",
    "trusted+caching": f"{PIPELINE_HEAD} cache rootapp",
}
COMPOSITE = """
[composite:glance-api-{flavor}]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck
"""
IDENTITY = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "fsstore-tests",
    "X-User-Id": "fsstore-tester",
    "X-Roles": "admin,member,reader",
}
START_TIMEOUT = 120.0
Sections = Mapping[str, Mapping[str, str]]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def peer_bin(name: str) -> Path:
    path = PEER_VENV / "bin" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `{INSTALL_HINT}`")
    return path


def paste_ini() -> str:
    shipped = PEER_VENV / "etc" / "glance" / "glance-api-paste.ini"
    text = shipped.read_text()
    default = next(line for line in text.splitlines() if line.startswith("default = "))
    pipelines = "".join(f"\n{name} = {line}" for name, line in FLAVORS.items())
    composites = "".join(COMPOSITE.format(flavor=name) for name in FLAVORS)
    return text.replace(default, default + pipelines) + composites


def conf_text(sections: Sections) -> str:
    """Glance's sample configuration with the given sections appended.

    oslo.config merges sections that appear twice, so this is what an
    operator's file looks like: the sample with some options set.
    """
    lines = [SAMPLE_CONF.read_text(), ""]
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{name} = {value}" for name, value in options.items()]
        lines.append("")
    return "\n".join(lines)


def glance_db_sync(workdir: Path, url: str) -> None:
    """Glance's own schema in the database at ``url`` (glance-manage db_sync)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "glance-manage.conf"
    conf.write_text(f"[database]\nconnection = {url}\n")
    done = subprocess.run(
        [str(peer_bin("glance-manage")), "--config-file", str(conf), "db_sync"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"glance-manage db_sync failed:\n{done.stderr[-3000:]}")


class GlanceAPI:
    """A Glance API process; `url` is set once it has answered."""

    def __init__(
        self, workdir: Path, sections: Sections, flavor: str = "trusted"
    ) -> None:
        self.workdir = workdir
        self.etc = workdir / "etc"
        self.log = workdir / "glance-api.log"
        self.database = workdir / "glance.sqlite"
        self.sections = sections
        self.flavor = flavor
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        own = {
            "DEFAULT": {"worker_self_reference_url": self.url},
            "database": {"connection": f"sqlite:///{self.database}"},
            "paste_deploy": {
                "flavor": self.flavor,
                "config_file": str(self.etc / "glance-api-paste.ini"),
            },
            "oslo_concurrency": {"lock_path": str(self.workdir / "locks")},
            # The reserved stores Glance 33 always makes (glance_store's own
            # file driver): the staging store is where imports stage data.
            "os_glance_staging_store": {
                "filesystem_store_datadir": str(self.workdir / "data" / "staging")
            },
            "os_glance_tasks_store": {
                "filesystem_store_datadir": str(self.workdir / "data" / "tasks")
            },
        }
        (self.etc / "glance-api-paste.ini").write_text(paste_ini())
        merged = {
            name: {**own.get(name, {}), **self.sections.get(name, {})}
            for name in {**own, **self.sections}
        }
        (self.etc / "glance-api.conf").write_text(conf_text(merged))
        self._db_sync()
        with listener, self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(peer_bin("gunicorn")),
                    "--bind",
                    f"fd://{listener.fileno()}",
                    "--worker-class",
                    "gthread",
                    "--workers",
                    "1",
                    "--threads",
                    "4",
                    "--timeout",
                    str(int(START_TIMEOUT)),
                    "--no-control-socket",
                    "glance.wsgi.api:application",
                ],
                env={**os.environ, "OS_GLANCE_CONFIG_DIR": str(self.etc)},
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
        try:
            response = self.request("GET", "/healthcheck", timeout=START_TIMEOUT)
        except OSError as e:
            self.stop()
            raise RuntimeError(
                f"Glance API did not answer ({e}):\n{self.log_tail()}"
            ) from e
        if response.status != 200:
            self.stop()
            raise RuntimeError(
                f"Glance API answered {response.status}:\n{self.log_tail()}"
            )

    def _db_sync(self) -> None:
        glance_db_sync(self.workdir, f"sqlite:///{self.database}")

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | Mapping[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        """One HTTP request; an iterable body goes out chunked, a dict as JSON."""
        sent = {**IDENTITY, **(headers or {})}
        data: Any = body
        if isinstance(body, (Mapping, list)):
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        elif body is not None:
            sent.setdefault("Content-Type", "application/octet-stream")
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers=sent
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers), e.read())

    def create_image(self) -> str:
        """A new queued raw image; its id."""
        created = self.request(
            "POST",
            "/v2/images",
            {"name": "fsstore", "disk_format": "raw", "container_format": "bare"},
        )
        assert created.status == 201, created.body
        image_id: str = created.json()["id"]
        return image_id

    def upload(
        self, image_id: str, body: bytes | Iterable[bytes], store: str | None = None
    ) -> None:
        """PUT the image's data (to ``store``, else the default backend)."""
        headers = {"X-Image-Meta-Store": store} if store else {}
        put = self.request("PUT", f"/v2/images/{image_id}/file", body, headers)
        assert put.status == 204, put.body

    def image(self, image_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/v2/images/{image_id}")
        assert response.status == 200, response.body
        image: dict[str, Any] = response.json()
        return image

    def locations(self, image_id: str) -> list[tuple[str, str]]:
        """The image's active locations in Glance's database, in the order
        they were added: each its value and its meta_data (JSON text)."""
        with sqlite3.connect(self.database) as db:
            rows = db.execute(
                "SELECT value, meta_data FROM image_locations "
                "WHERE image_id = ? AND status = 'active' ORDER BY id",
                (image_id,),
            ).fetchall()
        return [(value, meta) for value, meta in rows]

    def assert_serves(self, image_id: str, data: bytes) -> dict[str, Any]:
        """The image is active and serves ``data``: size, MD5 checksum and
        SHA-512 os_hash_value in its record, the bytes and Content-MD5 of its
        download; the record."""
        image = self.image(image_id)
        assert image["status"] == "active"
        assert image["size"] == len(data)
        assert image["checksum"] == hashlib.md5(data).hexdigest()
        assert image["os_hash_algo"] == "sha512"
        assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
        download = self.request("GET", f"/v2/images/{image_id}/file")
        assert download.status == 200, download.body[:500]
        assert download.headers["Content-MD5"] == image["checksum"]
        assert download.body == data
        return image

    def import_image(
        self, image_id: str, method: str, stores: list[str]
    ) -> dict[str, Any]:
        """Import the image by ``method`` (``glance-direct``,
        ``copy-image``) into ``stores`` and wait until it is active there
        and the import task has let go of it; the image record then."""
        started = self.request(
            "POST",
            f"/v2/images/{image_id}/import",
            {"method": {"name": method}, "stores": stores},
        )
        assert started.status == 202, started.body
        return self.wait_image(
            image_id,
            lambda i: (
                i["status"] == "active"
                and set(stores) <= set(i["stores"].split(","))
                and import_done(i)
            ),
        )

    def wait_image(
        self,
        image_id: str,
        until: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Poll an image until `until` holds, as API clients follow imports.

        Imports run as Glance tasks in the API's thread pool and report
        nothing but the image record, so polling it is the only way to
        follow one from outside. A failed import ends the wait at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            image = self.image(image_id)
            if until(image):
                return image
            failed = image.get("os_glance_failed_import")
            if failed or image["status"] == "killed":
                raise AssertionError(f"import failed: {image}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting: {image}\n{self.log_tail()}")
            time.sleep(0.1)


def import_done(image: dict[str, Any]) -> bool:
    """Whether Glance's import task has let go of the image: it holds the
    image's import lock (os_glance_import_task) until its last update, and a
    request that writes the image before then races it in Glance's
    database."""
    return "os_glance_import_task" not in image and not image.get(
        "os_glance_importing_to_stores"
    )
