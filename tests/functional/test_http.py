"""The read-only HTTP store against a real web server on the loopback."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.registry import StoreRegistry
from fsstore.testing.suite import payload
from tests.functional.test_registry import FIXTURES, set_options
from tests.helpers import load_conf, write_conf


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path.startswith("/moved"):
            self.send_response(301)
            self.send_header("Location", "/image.raw")
            self.end_headers()
        elif self.path.startswith("/secret"):
            self.send_error(403)
        else:
            super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "image.raw").write_bytes(payload(300_000, seed=4))
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def registry(tmp_path: Path) -> StoreRegistry:
    # glance_store's default stores list: file and http.
    return StoreRegistry(
        load_conf(
            write_conf(
                tmp_path / "glance-api.conf",
                {
                    "glance_store": {
                        "filesystem_store_datadir": str(tmp_path / "images")
                    }
                },
            )
        )
    )


def test_default_stores_are_file_and_http(registry):
    assert list(registry.stores) == ["file", "http"]
    assert registry.get_store("https").DRIVER_NAME == "http"


def test_get_and_size(registry, server):
    chunks, length = registry.get(f"{server}/image.raw")
    assert (length, b"".join(chunks)) == (300_000, payload(300_000, seed=4))
    assert registry.get_size(f"{server}/image.raw") == 300_000
    chunks, _ = registry.get(f"{server}/moved")
    assert b"".join(chunks) == payload(300_000, seed=4)


def test_errors(registry, server):
    with pytest.raises(exceptions.NotFound):
        registry.get(f"{server}/missing")
    with pytest.raises(exceptions.NotFound):
        registry.get_size(f"{server}/missing")
    with pytest.raises(exceptions.Forbidden):
        registry.get(f"{server}/secret")
    with pytest.raises(exceptions.BackendException, match="cannot be fetched|HTTP"):
        registry.get(f"{server}/loop")
    with pytest.raises(exceptions.BadStoreUri, match="credentials"):
        registry.get("http://user:secret@127.0.0.1/x")
    with pytest.raises(exceptions.BackendException, match="cannot be fetched"):
        registry.get("http://127.0.0.1:1/x")


def test_read_only(registry, server):
    store = registry.get_store("http")
    with pytest.raises(exceptions.StoreAddDisabled):
        store.add("img", iter([b"x"]), 1)
    with pytest.raises(exceptions.StoreDeleteNotSupported):
        registry.delete(f"{server}/image.raw")
    with pytest.raises(exceptions.StoreRandomGetNotSupported):
        registry.get(f"{server}/image.raw", offset=1)


def test_glance_conf_with_file_and_http(tmp_path, server):
    text = set_options(
        (FIXTURES / "glance-api.conf.sample").read_text(),
        "glance_store",
        stores="file,http",
        default_store="file",
        filesystem_store_datadir=str(tmp_path / "images"),
    )
    (tmp_path / "glance-api.conf").write_text(text)
    registry = StoreRegistry(load_conf(tmp_path / "glance-api.conf"))
    assert registry.add("a", iter([b"x"]), 1).location.startswith("file://")
    assert registry.get_size(f"{server}/image.raw") == 300_000
