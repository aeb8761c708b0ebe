"""Requests to web servers as the HTTP store makes them: each bounded in
time (a timeout per read, a deadline per request), redirects only to
http and https, a body of exactly its Content-Length (see store.py)."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fsstore import exceptions
from fsstore.location import redact
from fsstore.streams import READ_CHUNK

MAX_REDIRECTS = 5
SCHEMES = ("http", "https")


class Deadline:
    """When a request must be done by; each socket wait gets what is left."""

    def __init__(self, timeout: float, total: float, what: str) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + total if total else None
        self.what = what

    def next_wait(self) -> float:
        """The timeout for the next socket operation; raises once past the end."""
        if self.end is None:
            return self.timeout
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired()
        return min(self.timeout, left)

    def expired(self) -> exceptions.BackendException:
        return exceptions.BackendException(
            f"{self.what}: not done within http_store_deadline"
        )


class _RememberSocket:
    sock: Any

    def getresponse(self) -> http.client.HTTPResponse:
        # The connection lets go of its socket once the response is made (and
        # urllib closes the connection), but the response goes on reading from
        # it: keep it, to give each read of the body its timeout.
        sock = self.sock
        response: http.client.HTTPResponse = super().getresponse()  # type: ignore[misc]
        response.fsstore_socket = sock  # type: ignore[attr-defined]
        return response


class _HTTPConnection(_RememberSocket, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_RememberSocket, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._fsstore_context = context

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPSConnection, req, context=self._fsstore_context)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, to http and https only."""

    # urllib's own limits, past ours: its messages span lines and call any
    # long chain a loop.
    max_repeats = max_redirections = MAX_REDIRECTS + 1

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        target = headers.get("location") or headers.get("uri")
        if target:
            scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target))
            if scheme.scheme.lower() not in SCHEMES:
                fp.close()
                raise exceptions.Forbidden(
                    f"{_origin(req)}: redirected to a {scheme.scheme}: URL; only "
                    "http and https are followed"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        hops = getattr(req, "fsstore_hops", 0) + 1
        if hops > MAX_REDIRECTS:
            raise exceptions.BackendException(
                f"{_origin(req)}: more than {MAX_REDIRECTS} redirects"
            )
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.fsstore_hops = hops  # type: ignore[attr-defined]
            new.fsstore_origin = _origin(req)  # type: ignore[attr-defined]
        return new


def _origin(req: urllib.request.Request) -> str:
    """The location a chain of redirects started from, fit for messages."""
    return getattr(req, "fsstore_origin", None) or redact(req.full_url)


def build_opener(
    context: ssl.SSLContext, proxies: dict[str, str]
) -> urllib.request.OpenerDirector:
    """An opener for http and https only: no ftp, file or data handlers,
    which urllib.request.build_opener would add.

    :param context: the TLS context https requests verify servers with
    :param proxies: proxy URLs by scheme, as urllib's ProxyHandler takes them
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(dict(proxies)),
        urllib.request.UnknownHandler(),
        _HTTPHandler(),
        _HTTPSHandler(context),
        urllib.request.HTTPDefaultErrorHandler(),
        _Redirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def content_length(response: Any, what: str) -> int | None:
    """The response's Content-Length, None if it has none.

    :param response: an HTTP response (its ``headers``)
    :param what: the location, as the message names it
    :raises BackendException: when it is not a non-negative integer
    """
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise exceptions.BackendException(
            f"{what}: the server sent an invalid Content-Length {value[:40]!r}"
        )
    return int(value)


class ResponseIterator:
    """Chunks of an HTTP response body; exactly ``length`` bytes when known.

    Closes the response when done or closed. Errors while reading (a reset
    connection, a malformed chunked body, a body that ends early, the
    deadline) are BackendException naming the location.

    :param response: the open response, which this object now owns
    :param length: its Content-Length; None: read to the end of the body
    :param deadline: the request's deadline, which names the location
    """

    def __init__(self, response: Any, length: int | None, deadline: Deadline) -> None:
        self._response = response
        self._left = length
        self._deadline = deadline
        self._socket: socket.socket | None = getattr(response, "fsstore_socket", None)

    def __iter__(self) -> ResponseIterator:
        return self

    def __next__(self) -> bytes:
        if self._response is None:
            raise StopIteration
        try:
            chunk = self._read()
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def _read(self) -> bytes:
        what = self._deadline.what
        want = READ_CHUNK if self._left is None else min(READ_CHUNK, self._left)
        if want == 0:
            return b""
        wait = self._deadline.next_wait()
        if self._socket is not None:
            self._socket.settimeout(wait)
        try:
            # read1: one network read at most, so that the deadline is
            # checked between reads however slowly the bytes come.
            chunk: bytes = self._response.read1(want)
        except TimeoutError:
            if (
                self._deadline.end is not None
                and time.monotonic() >= self._deadline.end
            ):
                raise self._deadline.expired() from None
            raise exceptions.BackendException(
                f"{what}: no data for {self._deadline.timeout:g} s (http_store_timeout)"
            ) from None
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise exceptions.BackendException(
                f"{what}: reading the body failed ({type(exc).__name__}: "
                f"{first_line(exc)})"
            ) from None
        if self._left is not None:
            if not chunk:
                raise exceptions.BackendException(
                    f"{what}: the body ended {self._left} bytes short of its "
                    "Content-Length"
                )
            self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        """Close the response, whether the body was read to the end or not."""
        if self._response is not None:
            self._response.close()
            self._response = None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
