"""Scenarios driven only through glance_store's public API, one per process.

    python -m tests.functional.glance_scenarios SCENARIO CONF_FILE [ARGS...]

glance_store keeps its configuration in oslo.config's global CONF and its
stores in module-level maps, so each scenario runs in a fresh process, as a
Glance API worker would, and prints one JSON object of what it observed.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from typing import Any

from oslo_config import cfg

CONF = cfg.CONF


def error_name(fn, *args, **kwargs) -> str | None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # the class is what the scenario reports
        return f"{type(exc).__module__}.{type(exc).__name__}"
    return None


def kinds(fn, *args, **kwargs) -> list[str] | None:
    """The glance_store exception classes the error of a call is an
    instance of (what a caller's except clauses see), sorted."""
    import glance_store.exceptions as gse

    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return sorted(
            name
            for name, cls in vars(gse).items()
            if isinstance(cls, type)
            and issubclass(cls, gse.GlanceStoreException)
            and cls is not gse.GlanceStoreException
            and isinstance(exc, cls)
        )
    return None


def setup_multi(conf_file: str) -> None:
    import glance_store.multi_backend as mb

    # Glance registers enabled_backends itself (glance.common.config).
    CONF.register_opt(cfg.DictOpt("enabled_backends"))
    CONF(["--config-file", conf_file], project="glance", default_config_files=[])
    mb.register_store_opts(CONF)
    mb.create_multi_stores(CONF)


def multi(conf_file: str, backend: str) -> dict[str, Any]:
    import glance_store.multi_backend as mb

    setup_multi(conf_file)
    data = b"glance through fsstore" * 5000
    out: dict[str, Any] = {}
    location, size, checksum, multihash, metadata = mb.add_with_multihash(
        CONF, "img-1", io.BytesIO(data), len(data), backend, "sha512"
    )
    out["add"] = {
        "location": location,
        "size": size,
        "metadata": metadata,
        "checksum_ok": checksum == hashlib.md5(data).hexdigest(),
        "multihash_ok": multihash == hashlib.sha512(data).hexdigest(),
    }
    four = mb.add(CONF, "img-2", io.BytesIO(b"four"), 4, backend)
    out["add_4_tuple_len"] = len(four)
    chunks, length = mb.get(location, backend)
    out["get_ok"] = b"".join(chunks) == data and length == len(data)
    chunks, length = mb.get(location, backend, offset=3, chunk_size=10)
    out["ranged_ok"] = b"".join(chunks) == data[3:13] and length == 10
    out["size"] = mb.get_size_from_uri_and_backend(location, backend)
    out["duplicate"] = error_name(
        mb.add_with_multihash, CONF, "img-1", io.BytesIO(b"x"), 1, backend, "sha512"
    )
    out["hostile_id"] = error_name(
        mb.add_with_multihash, CONF, "../escape", io.BytesIO(b"x"), 1, backend, "sha512"
    )
    out["size_mismatch"] = error_name(
        mb.add_with_multihash, CONF, "img-3", io.BytesIO(b"abc"), 10, backend, "sha512"
    )
    out["unknown_algo"] = error_name(
        mb.add_with_multihash, CONF, "img-4", io.BytesIO(b"abc"), 3, backend, "md6"
    )
    mb.delete(location, backend)
    out["after_delete"] = error_name(
        mb.get_size_from_uri_and_backend, location, backend
    )
    out["delete_missing"] = error_name(mb.delete, location, backend)
    return out


def hostile_locations(conf_file: str, backend: str, *uris: str) -> dict[str, Any]:
    import glance_store.multi_backend as mb

    setup_multi(conf_file)
    out = {}
    for uri in uris:
        out[uri] = {
            "get": kinds(mb.get, uri, backend),
            "size": kinds(mb.get_size_from_uri_and_backend, uri, backend),
            "delete": kinds(mb.delete, uri, backend),
        }
    return out


def full(conf_file: str, backend: str, size: str) -> dict[str, Any]:
    import glance_store.multi_backend as mb

    setup_multi(conf_file)
    n = int(size)
    return {
        "error": error_name(
            mb.add_with_multihash,
            CONF,
            "big",
            io.BytesIO(b"x" * n),
            n,
            backend,
            "sha512",
        )
    }


class Boom(Exception):
    pass


def failing_stream(conf_file: str, backend: str) -> dict[str, Any]:
    import glance_store.multi_backend as mb

    setup_multi(conf_file)

    class Reader:
        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent > 300_000:
                raise Boom("client went away")
            self.sent += 65536
            return b"y" * 65536

    return {
        "error": error_name(
            mb.add_with_multihash, CONF, "broken", Reader(), 0, backend, "sha512"
        )
    }


def stall(conf_file: str, backend: str) -> dict[str, Any]:
    import glance_store.multi_backend as mb

    setup_multi(conf_file)

    class Reader:
        sent = 0

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 1_000_000:
                print("STOPPED", flush=True)
                sys.stdin.readline()  # killed here
            self.sent += 65536
            return b"z" * 65536

    mb.add_with_multihash(CONF, "killed", Reader(), 0, backend, "sha512")
    return {"finished": True}


def configure_only(conf_file: str) -> dict[str, Any]:
    return {"error": error_name(setup_multi, conf_file)}


def single(conf_file: str) -> dict[str, Any]:
    import glance_store.backend as backend

    backend.register_opts(CONF)
    CONF(["--config-file", conf_file], project="glance", default_config_files=[])
    backend.create_stores(CONF)
    data = b"single store" * 1000
    out: dict[str, Any] = {}
    location, size, checksum, multihash, metadata = (
        backend.add_to_backend_with_multihash(
            CONF, "one", io.BytesIO(data), len(data), "sha256"
        )
    )
    out["location"] = location
    out["hashes_ok"] = (
        checksum == hashlib.md5(data).hexdigest()
        and multihash == hashlib.sha256(data).hexdigest()
    )
    out["add_4_tuple_len"] = len(
        backend.add_to_backend(CONF, "two", io.BytesIO(b"2"), 1)
    )
    chunks, length = backend.get_from_backend(location)
    out["get_ok"] = b"".join(chunks) == data and length == len(data)
    out["size"] = backend.get_size_from_backend(location)
    out["duplicate"] = error_name(
        backend.add_to_backend, CONF, "one", io.BytesIO(b"x"), 1
    )
    out["passwd"] = {
        "get": kinds(backend.get_from_backend, "file:///etc/passwd"),
        "size": kinds(backend.get_size_from_backend, "file:///etc/passwd"),
        "delete": kinds(backend.delete_from_backend, "file:///etc/passwd"),
    }
    backend.delete_from_backend(location)
    out["after_delete"] = error_name(backend.get_size_from_backend, location)
    return out


def store_attributes(conf_file: str, *backends: str) -> dict[str, Any]:
    """What Glance reads from each backend's driver: url_prefix, and what
    GET /v2/info/stores/detail reads; and which backend Glance would tag a
    legacy, untagged location with (glance.common.store_utils' rule)."""
    import glance_store.multi_backend as mb

    setup_multi(conf_file)
    names = [
        "url_prefix",
        "datadir",
        "chunk_size",
        "thin_provisioning",
        "s3_store_large_object_size",
        "s3_store_large_object_chunk_size",
        "s3_store_thread_pools",
    ]
    out: dict[str, Any] = {}
    for backend in backends:
        store = mb.get_store_from_store_identifier(backend)
        out[backend] = {n: getattr(store, n) for n in names if hasattr(store, n)}
    return out


def legacy_location(conf_file: str, backend: str, uri: str) -> dict[str, Any]:
    """Read a location as written by glance_store's own driver."""
    import glance_store.multi_backend as mb

    setup_multi(conf_file)
    chunks, length = mb.get(uri, backend)
    return {"data": b"".join(chunks).decode(), "length": length}


def reserved(conf_file: str) -> dict[str, Any]:
    """Reserved stores mapped to fsstore_file, as an image service may map
    them (Glance 33 maps them to glance_store's file driver)."""
    import glance_store.multi_backend as mb

    CONF.register_opt(cfg.DictOpt("enabled_backends"))
    CONF(["--config-file", conf_file], project="glance", default_config_files=[])
    reserved = {
        "os_glance_staging_store": "fsstore_file",
        "os_glance_tasks_store": "fsstore_file",
    }
    mb.register_store_opts(CONF, reserved_stores=reserved)
    mb.create_multi_stores(CONF, reserved_stores=reserved)
    out: dict[str, Any] = {}
    for backend in reserved:
        location, size, _, _, metadata = mb.add_with_multihash(
            CONF, "staged", io.BytesIO(b"staged data"), 11, backend, "sha256"
        )
        chunks, length = mb.get(location, backend)
        out[backend] = {
            "location": location,
            "data": b"".join(chunks).decode(),
            "store": metadata.get("store"),
        }
        mb.delete(location, backend)
    return out


SCENARIOS = {
    "reserved": reserved,
    "store_attributes": store_attributes,
    "legacy_location": legacy_location,
    "multi": multi,
    "hostile_locations": hostile_locations,
    "full": full,
    "failing_stream": failing_stream,
    "stall": stall,
    "configure_only": configure_only,
    "single": single,
}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    print(json.dumps(SCENARIOS[name](*args)), flush=True)
