"""Servers on the loopback that misbehave on purpose, for the tests.

Each starts listening before its constructor returns and stops in
``close()``: its accept loop wakes every 0.2 s to see whether it should.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class LoopbackServer:
    """Accepts connections on 127.0.0.1 and hands each to ``handle``."""

    #: Handle each connection in a thread of its own (else one at a time).
    threaded = False

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            if self.threaded:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            else:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        # OSError: the client went away; its test says what it expects.
        with conn, contextlib.suppress(OSError):
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


class RawServer(LoopbackServer):
    """Answers every request with ``script``: byte strings sent with
    ``pause`` seconds between them."""

    def __init__(self, script: list[bytes], pause: float = 0.0) -> None:
        self.script, self.pause = script, pause
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        conn.recv(65536)
        for i, part in enumerate(self.script):
            if i and self.pause and self.stop.wait(self.pause):
                return
            conn.sendall(part)


def response_head(length: str | None = None, chunked: bool = False) -> bytes:
    """The head of a 200 response, with the Content-Length given (any text)."""
    lines = ["HTTP/1.1 200 OK", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class TruncatingProxy(LoopbackServer):
    """A proxy to ``upstream`` that passes each response's head, and of a
    body larger than ``keep`` bytes only ``keep`` bytes, then closes."""

    threaded = True

    def __init__(self, upstream: str, keep: int) -> None:
        host, port = upstream.rsplit("/", 1)[-1].split(":")
        self.upstream, self.keep = (host, int(port)), keep
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with socket.create_connection(self.upstream) as up:
            request = self._message(conn)
            if request is None:
                return
            up.sendall(request[0] + request[1])
            response = self._message(up)
            if response is None:
                return
            head, body = response
            conn.sendall(head + (body[: self.keep] if len(body) > self.keep else body))

    @staticmethod
    def _message(sock: socket.socket) -> tuple[bytes, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if head.startswith(b"HEAD ") or b" 204 " in head.split(b"\r\n")[0]:
            length = 0
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n", body


class FaultProxy(LoopbackServer):
    """A TCP proxy to ``upstream`` that breaks connections when armed.

    Bytes pass through unchanged in both directions until a fault is armed;
    each armed fault breaks one connection, the first whose count of bytes
    in its direction (since arming) passes ``after``:

    - ``reset``: close both sides at once with a TCP reset;
    - ``stall``: stop passing bytes in that direction, and hold the
      connection open until the proxy closes;
    - ``corrupt``: flip the bits of the one byte after ``after``, and pass
      everything on;
    - ``refuse``: reset a new connection as soon as it is accepted (its
      ``after`` and ``direction`` do not matter).

    ``direction`` is ``down`` (responses) or ``up`` (requests). ``faults``
    counts the faults that fired.
    """

    threaded = True

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit("/", 1)[-1].split(":")
        self.upstream = (host, int(port))
        self.lock = threading.Lock()
        self.armed: list[dict[str, object]] = []
        self.faults = 0
        super().__init__()

    def arm(
        self, action: str, after: int = 0, direction: str = "down", times: int = 1
    ) -> None:
        with self.lock:
            for _ in range(times):
                self.armed.append(
                    {"action": action, "after": after, "direction": direction}
                )

    def _take(self, action: str, direction: str, count: int) -> int | None:
        """Fire the first armed fault that matches: its ``after``, or None."""
        with self.lock:
            for fault in self.armed:
                after = int(fault["after"])  # type: ignore[call-overload]
                if (
                    fault["action"] == action
                    and fault["direction"] == direction
                    and count > after
                ):
                    self.armed.remove(fault)
                    self.faults += 1
                    return after
        return None

    def handle(self, conn: socket.socket) -> None:
        if self._take("refuse", "down", 1) is not None:
            _reset(conn)
            return
        with socket.create_connection(self.upstream) as up:
            done = threading.Event()
            pumps = [
                threading.Thread(target=self._pump, args=(conn, up, "up", done)),
                threading.Thread(target=self._pump, args=(up, conn, "down", done)),
            ]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        direction: str,
        done: threading.Event,
    ) -> None:
        count = 0
        try:
            src.settimeout(0.2)
        except OSError:  # the other direction reset the connection already
            return
        while not done.is_set() and not self.stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            count += len(data)
            after = self._take("reset", direction, count)
            if after is not None:
                # Exactly `after` bytes of this direction got through.
                with contextlib.suppress(OSError):
                    dst.sendall(data[: max(after - (count - len(data)), 0)])
                _reset(src)
                _reset(dst)
                break
            after = self._take("corrupt", direction, count)
            if after is not None:
                at = after - (count - len(data))  # the byte just past `after`
                data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
            after = self._take("stall", direction, count)
            if after is not None:
                with contextlib.suppress(OSError):
                    dst.sendall(data[: max(after - (count - len(data)), 0)])
                self.stop.wait()  # hold the connection until the proxy closes
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        done.set()
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees a reset connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
