"""An unchanged glance_store (5.7.0, from the package index) on fsstore's stores.

Every scenario runs glance_store's own public API in a process of its own
(tests/functional/glance_scenarios.py), configured by a file in Glance's
format naming the adapters ``fsstore_file`` and ``fsstore_s3``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import write_conf

ROOT = Path(__file__).resolve().parents[2]
GS = "glance_store.exceptions."


# A refused location is glance_store's Forbidden to any caller, and also the
# error each of Glance's paths handles with a 4xx: BadStoreUri where Glance
# sizes a location to accept it, StoreGetNotSupported where it downloads one,
# HasSnapshot where it deletes one from a store (DELETE /v2/stores; the image
# delete answers Forbidden first). tests/functional/test_glance_api.py runs
# those paths in a real Glance.
REFUSED = {
    "get": ["Forbidden", "StoreGetNotSupported"],
    "size": ["BadStoreUri", "Forbidden"],
    "delete": ["Forbidden", "HasSnapshot"],
}


def scenario(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.functional.glance_scenarios", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def multi_conf(tmp_path: Path, **backend_options: str) -> Path:
    return write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file, legacy:file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {
                "filesystem_store_datadir": str(tmp_path / "fast"),
                **backend_options,
            },
            "legacy": {"filesystem_store_datadir": str(tmp_path / "legacy")},
        },
    )


def files(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def test_multi_store_through_glance_store(tmp_path):
    out = scenario("multi", str(multi_conf(tmp_path)), "fast")
    assert out["add"] == {
        "location": f"file://{tmp_path}/fast/img-1",
        "size": 110000,
        "metadata": {"store": "fast"},
        "checksum_ok": True,
        "multihash_ok": True,
    }
    assert out["add_4_tuple_len"] == 4
    assert out["get_ok"] and out["ranged_ok"]
    assert out["size"] == 110000
    assert out["duplicate"] == GS + "Duplicate"
    assert out["hostile_id"] == GS + "Invalid"
    assert out["size_mismatch"] == GS + "Invalid"
    assert out["unknown_algo"] == GS + "UnknownHashingAlgo"
    assert out["after_delete"] == GS + "NotFound"
    assert out["delete_missing"] == GS + "NotFound"
    # Only whole images, and no staging leftovers, in the data directory.
    assert files(tmp_path / "fast") == ["img-2"]


def test_hostile_locations_are_refused(tmp_path):
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(b"keep")
    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "link").symlink_to(secret)
    uris = [
        "file:///etc/passwd",
        f"file://{tmp_path}/fast/../outside/secret",
        f"file://{tmp_path}/fast/link",
    ]
    out = scenario("hostile_locations", str(multi_conf(tmp_path)), "fast", *uris)
    for uri in uris:
        assert out[uri] == REFUSED, uri
    assert secret.read_bytes() == b"keep"
    assert (tmp_path / "fast" / "link").is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_storage_full_arrives_as_glance_store_exception(tmp_path, mount_tmpfs):
    small = mount_tmpfs("small", "1m")
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "fast:fsstore_file"},
            "glance_store": {"default_backend": "fast"},
            "fast": {"filesystem_store_datadir": str(small)},
        },
    )
    out = scenario("full", str(conf), "fast", str(3 * 1024 * 1024))
    assert out["error"] == GS + "StorageFull"
    assert files(small) == []


def test_failed_add_leaves_nothing(tmp_path):
    out = scenario("failing_stream", str(multi_conf(tmp_path)), "fast")
    assert out["error"] == "__main__.Boom"  # the caller's own exception, unchanged
    assert files(tmp_path / "fast") == []


def test_killed_add_leaves_no_partial_image(tmp_path):
    conf = multi_conf(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.functional.glance_scenarios",
            "stall",
            str(conf),
            "fast",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "STOPPED"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert files(tmp_path / "fast") == []


def test_misconfiguration_is_not_silently_read_only(tmp_path):
    conf = multi_conf(
        tmp_path,
        filesystem_store_datadir="",
        filesystem_store_datadirs=f"{tmp_path}/x:high",
    )
    out = scenario("configure_only", str(conf))
    assert out["error"] == GS + "BadStoreConfiguration"


def test_single_store_through_glance_store(tmp_path):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "glance_store": {
                "stores": "fsstore_file",
                "default_store": "file",
                "filesystem_store_datadir": str(tmp_path / "images"),
            }
        },
    )
    out = scenario("single", str(conf))
    assert out["location"] == f"file://{tmp_path}/images/one"
    assert out["hashes_ok"] and out["get_ok"]
    assert out["add_4_tuple_len"] == 4
    assert out["size"] == 12000
    assert out["duplicate"] == GS + "Duplicate"
    assert out["passwd"] == REFUSED
    assert out["after_delete"] == GS + "NotFound"


def test_s3_adapter_through_glance_store(tmp_path, s3_endpoint):
    conf = write_conf(
        tmp_path / "glance-api.conf",
        {
            "DEFAULT": {"enabled_backends": "cloud:fsstore_s3"},
            "glance_store": {"default_backend": "cloud"},
            "cloud": {
                "s3_store_host": s3_endpoint,
                "s3_store_access_key": "AKIAGLANCETEST",
                "s3_store_secret_key": "glance-secret-never-shown",
                "s3_store_bucket": f"glance-{uuid.uuid4().hex[:8]}",
                "s3_store_create_bucket_on_put": "true",
                "s3_store_bucket_url_format": "path",
            },
        },
    )
    out = scenario("multi", str(conf), "cloud")
    assert out["add"]["location"].startswith("s3://127.0.0.1:")
    assert "glance-secret-never-shown" not in json.dumps(out)
    assert out["add"]["checksum_ok"] and out["add"]["multihash_ok"]
    assert out["get_ok"] and out["ranged_ok"]
    assert out["duplicate"] == GS + "Duplicate"
    assert out["hostile_id"] == GS + "Invalid"
    assert out["after_delete"] == GS + "NotFound"


def test_import_fsstore_does_not_need_glance_store():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['glance_store'] = None\n"
            "import fsstore, fsstore.cli, fsstore.cache\n"
            "try:\n    import fsstore.glance\nexcept ImportError as e:\n    print(e)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pip install 'fsstore[glance]'" in proc.stdout
