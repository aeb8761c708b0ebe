"""The in-memory librbd that glance_store's own RBD tests run fsstore_rbd on
(tests/peer/rbd_fake.py, ``make test-glance``) answers as librbd does:
tests/peer/rbd_fake_check.py makes the same calls on a real one-node
cluster and on the fake, and fails on any outcome that differs. It runs in
the peer venv, where glance_store's mocks are. Skipped as test_rbd.py is,
and where the peer venv or its bindings are missing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.engines.ceph import why_no_rbd_in

ROOT = Path(__file__).resolve().parents[2]
PEER_PYTHON = ROOT / "tests" / "peer" / ".venv" / "bin" / "python"


_REASON = why_no_rbd_in(PEER_PYTHON, "make tests/peer/.venv/.installed")
if _REASON is not None:
    pytest.skip(_REASON, allow_module_level=True)


def test_the_fake_librbd_answers_as_librbd_does() -> None:
    check = subprocess.run(
        [PEER_PYTHON, "tests/peer/rbd_fake_check.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    assert re.search(r"^[1-9][0-9]* steps, 0 differ$", check.stdout, re.M)
