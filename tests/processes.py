"""Stopping the servers the tests start, by their process ids."""

from __future__ import annotations

import signal
import subprocess


def stop_process(
    process: subprocess.Popen[bytes] | None,
    sig: int = signal.SIGTERM,
    timeout: float = 30.0,
) -> None:
    """Send ``sig`` to a child and reap it; SIGKILL if it outlives ``timeout``."""
    if process is None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
