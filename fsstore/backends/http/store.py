"""The HTTP store: read-only access to images that web servers serve.

glance_store's ``http`` store, kept so that ``stores = file,http`` (its
default) configures fsstore unchanged: ``get`` and ``get_size`` of
``http://`` and ``https://`` locations. Adding and deleting are not offered,
and neither are ranged reads (the capability checks say so before any request
is made). Certificates are verified unless ``https_insecure`` is set;
``https_ca_certificates_file`` names a CA bundle of one's own.

What a server can and cannot make it do:

* Redirects are followed to ``http`` and ``https`` URLs only, at most five.
* A body is exactly ``Content-Length`` bytes: a connection that closes early
  (or a chunked body cut short) is an error, never a short image. A
  ``Content-Length`` that is not a non-negative integer is an error.
* Each network read waits at most ``http_store_timeout`` seconds, and a whole
  request, from connecting to the last byte, at most ``http_store_deadline``
  seconds: a server that trickles a byte a minute cannot hold a reader.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.backends.http.connection import (
    SCHEMES,
    Deadline,
    ResponseIterator,
    build_opener,
    content_length,
    first_line,
)
from fsstore.location import HttpLocation, Location, redact
from fsstore.store import Capability, Store
from fsstore.streams import ImageChunks

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
    cfg.FloatOpt(
        "http_store_timeout",
        default=60.0,
        min=0.001,
        help="Seconds to wait for the server to connect or to send more data.",
    ),
    cfg.FloatOpt(
        "http_store_deadline",
        default=3600.0,
        min=0,
        help="Seconds a whole request may take, from connecting to the last "
        "byte of the body (0: no limit beyond http_store_timeout per read).",
    ),
]


class HttpStore(Store):
    __doc__ = __doc__
    OPTIONS = OPTIONS
    SCHEMES = SCHEMES
    CAPABILITIES = Capability.READ
    DRIVER_NAME = "http"

    def configure(self) -> None:
        """Read the options and build the opener every request goes through.

        :raises BadStoreConfiguration: when https_ca_certificates_file cannot
            be loaded (or an option cannot be read)
        """
        cafile = self.option("https_ca_certificates_file")
        insecure = self.option("https_insecure")
        proxies = self.option("http_proxy_information") or {}
        self.timeout = float(self.option("http_store_timeout"))
        self.deadline = float(self.option("http_store_deadline"))
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
        self.opener = build_opener(context, dict(proxies))

    def parse_location(self, uri: str) -> HttpLocation:
        """An ``http://`` or ``https://`` location (HttpLocation.from_uri)."""
        return HttpLocation.from_uri(uri)

    def _open(self, location: Location, method: str) -> tuple[Any, Deadline]:
        assert isinstance(location, HttpLocation)
        what = redact(location.uri)
        deadline = Deadline(self.timeout, self.deadline, what)
        request = urllib.request.Request(location.url, method=method)
        try:
            return self.opener.open(request, timeout=deadline.next_wait()), deadline
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise exceptions.NotFound(f"image {what} not found") from None
            if exc.code in (401, 403):
                raise exceptions.Forbidden(
                    f"{what}: access denied (HTTP {exc.code})"
                ) from None
            raise exceptions.BackendException(
                f"{what}: HTTP {exc.code} {first_line(Exception(exc.reason))}"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise exceptions.BackendException(
                f"{what}: cannot be fetched ({first_line(Exception(reason))})"
            ) from None

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int]:
        """A GET of the whole image (ranges are not offered); the length is
        its Content-Length, 0 when the server sends none."""
        response, deadline = self._open(location, "GET")
        try:
            length = content_length(response, deadline.what)
        except BaseException:
            response.close()
            raise
        return ResponseIterator(response, length, deadline), length or 0

    def _get_size(self, location: Location) -> int:
        """A HEAD's Content-Length, 0 when the server sends none."""
        response, deadline = self._open(location, "HEAD")
        with response:
            return content_length(response, deadline.what) or 0
