"""The read-only HTTP store against a real web server on the loopback."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

import pytest

from fsstore import exceptions
from fsstore.registry import StoreRegistry
from fsstore.testing.suite import payload
from tests.functional.test_registry import FIXTURES, set_options
from tests.helpers import load_conf, write_conf
from tests.loopback import RawServer, response_head


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/chain/"):
            hops = int(self.path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header(
                "Location", f"/chain/{hops - 1}" if hops > 1 else "/image.raw"
            )
            self.end_headers()
        elif self.path.startswith("/to-ftp"):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/image.raw")
            self.end_headers()
        elif self.path.startswith("/to-file"):
            self.send_response(302)
            self.send_header("Location", "file:///etc/hostname")
            self.end_headers()
        elif self.path.startswith("/loop"):
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
    with pytest.raises(exceptions.BackendException, match="more than 5 redirects$"):
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


def test_redirects_at_most_five_to_http_only(registry, server):
    chunks, _ = registry.get(f"{server}/chain/5")
    assert b"".join(chunks) == payload(300_000, seed=4)
    with pytest.raises(exceptions.BackendException) as raised:
        registry.get(f"{server}/chain/6")
    assert str(raised.value) == f"{server}/chain/6: more than 5 redirects"
    for target, scheme in [("to-ftp", "ftp"), ("to-file", "file")]:
        with pytest.raises(exceptions.Forbidden) as raised:
            registry.get(f"{server}/{target}")
        assert str(raised.value) == (
            f"{server}/{target}: redirected to a {scheme}: URL; only http and "
            "https are followed"
        )


# -- a server that misbehaves on purpose ------------------------------------


@pytest.fixture
def raw_server():
    made: list[RawServer] = []

    def make(script: list[bytes], pause: float = 0.0) -> RawServer:
        made.append(RawServer(script, pause))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_a_short_body_is_an_error(registry, raw_server):
    server = raw_server([response_head("10240") + b"x" * 5000])
    chunks, length = registry.get(f"{server.url}/image")
    assert length == 10240
    with pytest.raises(exceptions.BackendException, match="5240 bytes short"):
        b"".join(chunks)


def test_a_truncated_chunked_body_is_an_error(registry, raw_server):
    server = raw_server([response_head(chunked=True) + b"1000\r\n" + b"x" * 100])
    chunks, _ = registry.get(f"{server.url}/image")
    with pytest.raises(exceptions.BackendException, match="reading the body failed"):
        b"".join(chunks)


@pytest.mark.parametrize("value", ["-5", "abc", "1e3", "１２"])
def test_an_invalid_content_length_is_an_error(registry, raw_server, value):
    server = raw_server([response_head(value) + b"12345"])
    with pytest.raises(exceptions.BackendException, match="invalid Content-Length"):
        registry.get(f"{server.url}/image")
    with pytest.raises(exceptions.BackendException, match="invalid Content-Length"):
        registry.get_size(f"{server.url}/image")


def _http_registry(tmp_path: Path, **options: str) -> StoreRegistry:
    conf = write_conf(
        tmp_path / "deadline.conf",
        {
            "glance_store": {
                "stores": "http",
                "default_store": "http",
                **options,
            }
        },
    )
    return StoreRegistry(load_conf(conf))


def test_a_trickling_server_meets_the_deadline(tmp_path, raw_server):
    # A byte every 0.3 s never trips the per-read timeout; the deadline ends it.
    server = raw_server([response_head("100")] + [b"x"] * 100, pause=0.3)
    registry = _http_registry(
        tmp_path, http_store_timeout="5", http_store_deadline="1.5"
    )
    chunks, _ = registry.get(f"{server.url}/image")
    started = time.monotonic()
    with pytest.raises(exceptions.BackendException, match="http_store_deadline"):
        b"".join(chunks)
    assert time.monotonic() - started < 5


def test_a_stalled_server_meets_the_read_timeout(tmp_path, raw_server):
    server = raw_server([response_head("1000") + b"x", b"never"], pause=30)
    registry = _http_registry(tmp_path, http_store_timeout="0.5")
    chunks, _ = registry.get(f"{server.url}/image")
    with pytest.raises(exceptions.BackendException, match="http_store_timeout"):
        b"".join(chunks)
