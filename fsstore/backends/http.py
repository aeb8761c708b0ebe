"""The HTTP store: read-only access to images that web servers serve.

glance_store's ``http`` store, kept so that ``stores = file,http`` (its
default) configures fsstore unchanged: ``get`` and ``get_size`` of
``http://`` and ``https://`` locations, following at most five redirects.
Adding and deleting are not offered, and neither are ranged reads (the
capability checks say so before any request is made). Certificates are
verified unless ``https_insecure`` is set; ``https_ca_certificates_file``
names a CA bundle of one's own.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.location import HttpLocation, Location
from fsstore.store import Capability, Store

MAX_REDIRECTS = 5
READ_CHUNK = 64 * 1024
TIMEOUT = 60

OPTIONS = [
    cfg.StrOpt(
        "https_ca_certificates_file",
        help="CA bundle to verify https servers' certificates with.",
    ),
    cfg.BoolOpt(
        "https_insecure",
        default=False,
        help="Do not verify https servers' certificates (ignored when "
        "https_ca_certificates_file is set).",
    ),
    cfg.DictOpt(
        "http_proxy_information",
        default={},
        help="Proxies by scheme, e.g. http:10.0.0.1:3128,https:10.0.0.1:1080.",
    ),
]


class _LimitedRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS


class ResponseIterator:
    """Chunks of an HTTP response body; closes the response when done."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> ResponseIterator:
        return self

    def __next__(self) -> bytes:
        if self._response is None:
            raise StopIteration
        chunk = self._response.read(READ_CHUNK)
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


class HttpStore(Store):
    __doc__ = __doc__
    OPTIONS = OPTIONS
    SCHEMES = ("http", "https")
    CAPABILITIES = Capability.READ
    DRIVER_NAME = "http"

    def configure(self) -> None:
        cafile = self.option("https_ca_certificates_file")
        insecure = self.option("https_insecure")
        proxies = self.option("http_proxy_information") or {}
        if cafile:
            try:
                context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise exceptions.BadStoreConfiguration(
                    self.name, f"https_ca_certificates_file {cafile}: {exc}"
                ) from None
        elif insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(dict(proxies)),
            urllib.request.HTTPSHandler(context=context),
            _LimitedRedirects(),
        )

    def parse_location(self, uri: str) -> HttpLocation:
        return HttpLocation.from_uri(uri)

    def _open(self, location: Location, method: str) -> Any:
        assert isinstance(location, HttpLocation)
        request = urllib.request.Request(location.url, method=method)
        try:
            return self.opener.open(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise exceptions.NotFound(f"image {location.uri} not found") from None
            if exc.code in (401, 403):
                raise exceptions.Forbidden(
                    f"{location.uri}: access denied (HTTP {exc.code})"
                ) from None
            raise exceptions.BackendException(
                f"{location.uri}: HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise exceptions.BackendException(
                f"{location.uri}: cannot be fetched ({reason})"
            ) from None

    @staticmethod
    def _length(response: Any) -> int:
        try:
            return int(response.headers.get("Content-Length", 0))
        except ValueError:
            return 0

    def _get(
        self, location: Location, offset: int, chunk_size: int | None
    ) -> tuple[Iterator[bytes], int]:
        response = self._open(location, "GET")
        return ResponseIterator(response), self._length(response)

    def _get_size(self, location: Location) -> int:
        with self._open(location, "HEAD") as response:
            return self._length(response)
