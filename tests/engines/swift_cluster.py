"""OpenStack Swift 2.38 with s3api and tempauth, one node, one replica.

Swift runs from its own venv (tests/engines/.venv-swift, `make
tests/engines/.venv-swift/.installed`, pinned by
tests/engines/swift-constraints.txt) as one process: tests/engines/swift_main.py
serves the account, container and object servers and the proxy. The proxy's
listening socket is bound here and passed on, so the first S3 request
waits in the backlog until Swift serves it: the readiness check is that
round trip. If Swift dies first, the socket closes and the request fails
at once.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.engines import S3Engine, first_round_trip
from tests.processes import stop_process

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-swift"
INSTALL_HINT = "make tests/engines/.venv-swift/.installed"
START_TIMEOUT = 60.0
# tempauth's account, user and key: S3 access key "account:user".
ACCOUNT, USER, KEY = "fsstore", "tester", "fsstore-swift-secret-never-shown"


class SwiftServer:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.log = state / "swift.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.engine: S3Engine | None = None

    def start(self) -> S3Engine:
        python = VENV / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"{python} is missing: run `{INSTALL_HINT}`")
        self.state.mkdir(parents=True, exist_ok=True)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        with listener, self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(python),
                    str(HERE / "swift_main.py"),
                    str(self.state),
                    str(listener.fileno()),
                    ACCOUNT,
                    USER,
                    KEY,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
        self.engine = S3Engine(
            name="swift",
            endpoint=f"http://127.0.0.1:{port}",
            access_key=f"{ACCOUNT}:{USER}",
            secret_key=KEY,
            atomic_conditional_put=False,
        )
        try:
            first_round_trip(self.engine)
        except Exception as e:
            self.stop()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Swift did not answer ({e}):\n{tail}") from e
        return self.engine

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)
