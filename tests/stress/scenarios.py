"""The stress scenarios. Each returns a Result; every loop is bounded."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fsstore import exceptions
from fsstore.cache import CachingStore, ImageCache, Prefetcher
from fsstore.registry import StoreRegistry
from fsstore.testing.cache_suite import UNVERIFIED, make_cache_conf
from fsstore.testing.streams import SHAPES, NoneRead, Recorder, TextRead, shaped
from tests import bad_configs
from tests.helpers import is_root, load_conf, ramfs, tmpfs, write_conf
from tests.stress.common import (
    IMG,
    PER_IMAGE_PATHS,
    PLANT_KINDS,
    STATE_PATHS,
    SUBDIR_PATHS,
    SUBDIR_PLANT_KINDS,
    KiB,
    MiB,
    Result,
    Victims,
    fork_child,
    fs_store,
    images_in,
    is_sealed,
    plant,
    read_reports,
    sealed,
    staging_files,
)

FSSTORE = str(Path(sys.executable).with_name("fsstore"))

# -- 1. SIGKILL of a writer at random points ---------------------------------------

KILL_POINTS = [
    "bytes",
    "fsync-before",
    "fsync-after",
    "link-before",
    "link-after",
    "unlink-after",
]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _killing_child(
    workdir: Path,
    dirs: list[Path],
    image_id: str,
    data: bytes,
    known_size: bool,
    staging: str,
    point: str,
    at: int,
) -> None:
    store = fs_store(workdir, dirs, staging)
    if point != "bytes":
        name, when = point.split("-")
        real = getattr(os, name)

        def patched(*args, **kwargs):
            if when == "before":
                _die()
            result = real(*args, **kwargs)
            _die()
            return result

        setattr(os, name, patched)

    def chunks():
        for pos in range(0, len(data), 65536):
            if point == "bytes" and pos >= at:
                _die()
            yield data[pos : pos + 65536]
        if point == "bytes" and at >= len(data):
            _die()

    store.add(image_id, chunks(), len(data) if known_size else 0)


def kill_writer(workdir: Path, kills: int = 200, seed: int = 1) -> Result:
    result = Result("SIGKILL of a writer at random points")
    rng = random.Random(seed)
    dirs = [workdir / "d0", workdir / "d1"]
    fs_store(workdir, dirs)
    expected: dict[str, str] = {}
    killed = 0
    for i in range(kills):
        image_id = f"k{i}"
        size = rng.choice([0, 1, 4096, 65536, 65537, rng.randrange(2, 3 * MiB)])
        data = sealed(rng.randrange(1 << 30), size) if size >= 16 else b"s" * size
        expected[image_id] = hashlib.md5(data).hexdigest()
        point = rng.choice(KILL_POINTS)
        at = rng.randrange(0, size + 1)
        staging = rng.choice(["tmpfile", "named"])
        pid = os.fork()
        if pid == 0:  # the writer
            try:
                _killing_child(
                    workdir,
                    dirs,
                    image_id,
                    data,
                    rng.random() < 0.5,
                    staging,
                    point,
                    at,
                )
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed += os.WIFSIGNALED(status)
        result.operations += 1
        for name, path in images_in(dirs).items():
            if hashlib.md5(path.read_bytes()).hexdigest() != expected.get(name):
                result.fail(f"{name}: a partial or foreign image is visible")
    fs_store(workdir, dirs)  # the next configure cleans up
    left = staging_files(dirs)
    if left:
        result.fail(f"staging files survived configure: {left[:3]}")
    result.figures = {
        "writers killed": killed,
        "images complete": len(images_in(dirs)),
        "staging files left": len(left),
    }
    return result


# -- 2. ENOSPC on a small tmpfs --------------------------------------------------------


def enospc(workdir: Path, seed: int = 2, size: str = "16m") -> Result:
    result = Result("ENOSPC on a small tmpfs")
    if not is_root():
        result.skipped = "needs root to mount a tmpfs"
        return result
    rng = random.Random(seed)
    with tmpfs(workdir / "small", size) as mnt:
        store = fs_store(workdir, [mnt], rng.choice(["tmpfile", "named"]))
        stored: dict[str, tuple[str, str]] = {}
        full = 0
        for i in range(400):
            if full >= 10:
                break
            data = sealed(i, rng.randrange(16, 2 * MiB))
            known = rng.random() < 0.5
            result.operations += 1
            try:
                added = store.add(f"i{i}", iter([data]), len(data) if known else 0)
            except exceptions.StorageFull:
                full += 1
                continue
            except Exception as exc:
                result.fail(f"i{i}: {type(exc).__name__}: {exc}")
                continue
            stored[f"i{i}"] = (added.location, added.checksum)
        on_disk = set(images_in([mnt]))
        if on_disk != set(stored):
            result.fail(f"partial images left: {sorted(on_disk - set(stored))[:3]}")
        for image_id, (location, checksum) in stored.items():
            chunks, _ = store.get(location)
            if hashlib.md5(b"".join(chunks)).hexdigest() != checksum:
                result.fail(f"{image_id} damaged")
        left = staging_files([mnt])
        if left:
            result.fail(f"staging files left: {left[:3]}")
        result.figures = {"images stored": len(stored), "StorageFull": full}
        store.close()
    return result


# -- 3. concurrent processes on one store ----------------------------------------------


def _store_worker(
    workdir: Path, dirs: list[Path], seed: int, ops: int, ids: int, out: int
) -> None:
    rng = random.Random(seed)
    store = fs_store(workdir, dirs)
    counts = {"ops": 0, "corrupt": 0, "unexpected": 0, "errors": []}
    for n in range(ops):
        image_id = f"i{rng.randrange(ids)}"
        location = next(
            (f"file://{d}/{image_id}" for d in dirs if (d / image_id).exists()),
            f"file://{dirs[0]}/{image_id}",
        )
        op = rng.choice(["add", "add", "get", "ranged", "size", "delete"])
        counts["ops"] += 1
        try:
            if op == "add":
                data = sealed(seed * 100000 + n, rng.randrange(16, 300 * KiB))
                store.add(image_id, iter([data]), rng.choice([0, len(data)]))
            elif op == "get":
                chunks, length = store.get(location)
                data = b"".join(chunks)
                counts["corrupt"] += not is_sealed(data) or len(data) != length
            elif op == "ranged":
                size = store.get_size(location)
                off = rng.randrange(size) if size else 0
                chunks, length = store.get(location, offset=off, chunk_size=1000)
                counts["corrupt"] += len(b"".join(chunks)) != length
            elif op == "size":
                store.get_size(location)
            else:
                store.delete(location)
        except (exceptions.Duplicate, exceptions.NotFound):
            pass  # the id was taken, or removed, by another process
        except exceptions.Invalid as exc:
            if "past the end" not in str(exc):  # re-added smaller in between
                counts["unexpected"] += 1
                counts["errors"].append(str(exc))
        except Exception as exc:
            counts["unexpected"] += 1
            counts["errors"].append(f"{type(exc).__name__}: {exc}")
    os.write(out, (json.dumps(counts) + "\n").encode())


def concurrency(
    workdir: Path, processes: int = 8, ops: int = 500, ids: int = 200, seed: int = 3
) -> Result:
    result = Result(f"{processes} processes x {ops} store operations")
    dirs = [workdir / f"d{i}" for i in range(3)]
    fs_store(workdir, dirs)
    read, write = os.pipe()
    pids = []
    for p in range(processes):
        pid = fork_child(
            _store_worker,
            workdir,
            dirs,
            seed * 1000 + p,
            ops,
            ids,
            write,
            close_in_child=read,
        )
        pids.append(pid)
    os.close(write)
    reports = read_reports(read)
    for pid in pids:
        os.waitpid(pid, 0)
    if len(reports) != processes:
        result.fail(f"{processes - len(reports)} workers died")
    for r in reports:
        result.operations += r["ops"]
        for _ in range(r["corrupt"]):
            result.fail("a read did not match the checksum sealed in the data")
        for err in r["errors"]:
            result.fail(err)
    for name, path in images_in(dirs).items():
        if not is_sealed(path.read_bytes()):
            result.fail(f"{name}: stored image is damaged")
    result.figures = {
        "corrupt reads": sum(r["corrupt"] for r in reports),
        "unexpected errors": sum(r["unexpected"] for r in reports),
    }
    return result


# -- 4. the cache under load --------------------------------------------------------------


def _entry_total(cache_dir: Path) -> int:
    total = 0
    for name in os.listdir(cache_dir):
        if (
            name.startswith(".")
            or name.startswith("cache.db")
            or name in ("incomplete", "invalid", "queue")
        ):
            continue
        try:
            total += os.lstat(cache_dir / name).st_size
        except FileNotFoundError:
            continue
    return total


def _cache_worker(
    conf_path: Path,
    cache_dir: Path,
    driver: str,
    limit: int,
    images: dict[str, tuple[str, str]],
    seed: int,
    ops: int,
    out: int,
) -> None:
    rng = random.Random(seed)
    registry = StoreRegistry(load_conf(conf_path))
    cache = ImageCache(make_cache_conf(cache_dir, driver, image_cache_max_size=limit))
    caching = CachingStore(registry, cache)
    counts = {"ops": 0, "corrupt": 0, "unexpected": 0, "errors": []}
    ids = sorted(images)
    for _ in range(ops):
        image_id = rng.choice(ids)
        location, checksum = images[image_id]
        op = rng.choice(
            ["read", "read", "read", "queue", "prefetch", "prune", "clean", "delete"]
        )
        counts["ops"] += 1
        try:
            if op == "read":
                chunks, length = caching.get(image_id, location, checksum)
                data = b"".join(chunks)
                counts["corrupt"] += hashlib.md5(data).hexdigest() != checksum
            elif op == "queue":
                cache.queue_image(image_id, location=location, expected=checksum)
            elif op == "prefetch":
                Prefetcher(cache, registry, workers=2).run()
            elif op == "prune":
                cache.prune()
            elif op == "clean":
                cache.clean()
            else:
                cache.delete_cached_image(image_id)
        except Exception as exc:
            counts["unexpected"] += 1
            counts["errors"].append(f"{op}: {type(exc).__name__}: {exc}")
    os.write(out, (json.dumps(counts) + "\n").encode())


def _hits_worker(cache_dir: Path, driver: str, reads: int, prune: bool) -> None:
    cache = ImageCache(make_cache_conf(cache_dir, driver))
    for _ in range(reads):
        with cache.open_for_read("hot") as f:
            f.read(1)
        if prune:
            cache.prune()
            cache.clean()


def cache_load(
    workdir: Path,
    driver: str,
    processes: int = 8,
    ops: int = 500,
    images: int = 40,
    seed: int = 4,
) -> Result:
    result = Result(f"cache ({driver}) under load, {processes} processes x {ops}")
    rng = random.Random(seed)
    conf_path = write_conf(
        workdir / "glance-api.conf",
        {"glance_store": {"filesystem_store_datadir": str(workdir / "images")}},
    )
    registry = StoreRegistry(load_conf(conf_path))
    stored = {}
    for i in range(images):
        data = sealed(i, rng.randrange(10 * KiB, 200 * KiB))
        added = registry.add(f"c{i}", iter([data]), len(data))
        stored[f"c{i}"] = (added.location, added.checksum)
    cache_dir = workdir / f"cache-{driver}"
    limit = 1 * MiB
    ImageCache(make_cache_conf(cache_dir, driver, image_cache_max_size=limit))
    read, write = os.pipe()
    pids = []
    for p in range(processes):
        pid = fork_child(
            _cache_worker,
            conf_path,
            cache_dir,
            driver,
            limit,
            stored,
            seed * 1000 + p,
            ops,
            write,
            close_in_child=read,
        )
        pids.append(pid)
    os.close(write)
    samples = []
    running = set(pids)
    while running:  # sample, without any lock, until every worker is done
        samples.append(_entry_total(cache_dir))
        running = {pid for pid in running if os.waitpid(pid, os.WNOHANG) == (0, 0)}
    reports = read_reports(read)
    for r in reports:
        result.operations += r["ops"]
        for _ in range(r["corrupt"]):
            result.fail("a read through the cache returned damaged bytes")
        for err in r["errors"]:
            result.fail(err)
    if len(reports) != processes:
        result.fail(f"{processes - len(reports)} workers died")
    if samples and max(samples) > limit:
        result.fail(f"cache held {max(samples)} bytes, limit {limit}")
    # Exact hits while others prune and clean.
    cache = ImageCache(make_cache_conf(cache_dir, driver))
    cache.delete_all_cached_images()
    cache.cache_image_iter("hot", iter([b"h" * 1000]), UNVERIFIED)
    reads = 50
    pids = []
    for p in range(processes):
        pids.append(fork_child(_hits_worker, cache_dir, driver, reads, p % 2 == 0))
    for pid in pids:
        os.waitpid(pid, 0)
    hits = cache.get_hit_count("hot")
    if hits != processes * reads:
        result.fail(f"hit count {hits}, expected {processes * reads}")
    check = subprocess.run(
        [
            FSSTORE,
            "--config-file",
            str(
                write_conf(
                    workdir / f"{driver}.conf",
                    {
                        "DEFAULT": {
                            "image_cache_dir": str(cache_dir),
                            "image_cache_driver": driver,
                            "image_cache_max_size": str(limit),
                        }
                    },
                )
            ),
            "cache",
            "check",
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0 or check.stdout.strip() != "no problems":
        result.fail(
            f"fsstore cache check: {check.stdout.strip()} {check.stderr.strip()}"
        )
    result.figures = {
        "size samples": len(samples),
        "max sampled bytes": max(samples, default=0),
        "limit": limit,
        "hits": hits,
    }
    return result


# -- 5. hostile input --------------------------------------------------------------------

HOSTILE_IDS = [
    "",
    ".",
    "..",
    "../x",
    "../../etc/passwd",
    "a/b",
    "/etc/passwd",
    "/",
    "//",
    "x/..",
    "./x",
    "\0",
    "a\0b",
    "x" * 256,
    "é" * 128,
    "\udcff",
    ".fsstore-staging",
    ".fsstore-publish.lock",
    ".fsstore-x",
    "..\0",
    "%2e%2e/x",
    "a/../b",
    "x/",
    "..//",
    ".fsstore-cache.lock",
    "y" * 1000,
    "\U0001f642" * 64,
    "/",
]


def hostile_locations(data: Path, outside: Path) -> list[str]:
    return [
        "file:///etc/passwd",
        "file:///etc/shadow",
        "file:///",
        "file://",
        f"file://{outside}",
        f"file://{data}/../outside/secret",
        f"file://{data}/./../outside/secret",
        f"file://{data}//../outside/secret",
        f"file://{data}/link-out",
        f"file://{data}/link-in",
        f"file://{data}/sub/x",
        f"file://{data}",
        f"file://{data}/",
        f"file://{data}/.fsstore-publish.lock",
        f"file://{data}/fifo",
        f"file://localhost{outside}",
        f"file:{outside}",
        "file:///proc/self/environ",
        f"file://{data}/%2e%2e/outside/secret",
        "swift://container/object",
        "rbd://pool/image",
        "ftp://example/x",
        "no-scheme",
        "://x",
        "1abc://x",
        f"file://{data}/a\0b",
        "file:///etc/../etc/passwd",
        f"file://{data}/../../..{outside}",
        "FILE:///etc/passwd",
        "file:///dev/zero",
        "s3://bucket/key",
    ]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    snap = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            snap[p] = (st.st_size, st.st_mtime_ns)
    return snap


def hostile(workdir: Path, with_cli: bool = True) -> Result:
    result = Result("hostile ids and locations")
    data = workdir / "data"
    store = fs_store(workdir, [data])
    outside = workdir / "outside" / "secret"
    outside.parent.mkdir()
    outside.write_bytes(b"secret")
    (data / "link-out").symlink_to(outside)
    store.add("real", iter([b"real"]), 4)
    (data / "link-in").symlink_to(data / "real")
    (data / "sub").mkdir()
    (data / "sub" / "x").write_bytes(b"x")
    os.mkfifo(data / "fifo")
    cache = ImageCache(make_cache_conf(workdir / "cache", "sqlite"))
    registry_conf = write_conf(
        workdir / "hostile.conf",
        {"glance_store": {"filesystem_store_datadir": str(data)}},
    )
    passwd = hashlib.md5(Path("/etc/passwd").read_bytes()).hexdigest()
    before = _snapshot(workdir)
    locations = hostile_locations(data, outside)
    refused = (
        exceptions.Invalid,
        exceptions.Forbidden,
        exceptions.BadStoreUri,
        exceptions.UnknownScheme,
        exceptions.NotFound,
    )
    for image_id in HOSTILE_IDS:
        for name, call in [
            ("store add", lambda i=image_id: store.add(i, iter([b"x"]), 1)),
            ("cache queue", lambda i=image_id: cache.queue_image(i)),
            (
                "cache write",
                lambda i=image_id: cache.cache_image_iter(i, iter([b"x"]), UNVERIFIED),
            ),
            ("cache delete", lambda i=image_id: cache.delete_cached_image(i)),
        ]:
            result.operations += 1
            try:
                call()
                result.fail(f"{name} accepted id {image_id!r}")
            except exceptions.Invalid:
                pass
    registry = StoreRegistry(load_conf(registry_conf))
    for uri in locations:
        for name, call in [
            ("get", registry.get),
            ("size", registry.get_size),
            ("delete", registry.delete),
        ]:
            result.operations += 1
            try:
                call(uri)
                result.fail(f"{name} accepted {uri!r}")
            except refused as exc:
                if isinstance(exc, exceptions.NotFound) and "%2e" not in uri:
                    result.fail(f"{name} {uri!r}: NotFound, expected a refusal")
    if with_cli:
        for uri in locations[:12]:
            for cmd in (["get", uri], ["size", uri], ["delete", uri]):
                result.operations += 1
                proc = subprocess.run(
                    [FSSTORE, "--config-file", str(registry_conf), *cmd],
                    capture_output=True,
                    text=True,
                )
                if (
                    proc.returncode == 0
                    or "Traceback" in proc.stderr
                    or len(proc.stderr.splitlines()) != 1
                ):
                    result.fail(f"fsstore {' '.join(cmd)}: {proc.stderr!r}")
        for image_id in HOSTILE_IDS[:12]:
            if "\0" in image_id or "\udcff" in image_id:
                continue  # not expressible as a command-line argument
            result.operations += 1
            proc = subprocess.run(
                [
                    FSSTORE,
                    "--config-file",
                    str(registry_conf),
                    "add",
                    "--id",
                    image_id,
                    "-",
                ],
                input=b"x",
                capture_output=True,
            )
            if proc.returncode != 1 or b"Traceback" in proc.stderr:
                result.fail(f"fsstore add --id {image_id!r}: {proc.stderr!r}")
    after = _snapshot(workdir)
    changed = {
        p
        for p in set(before) | set(after)
        if before.get(p) != after.get(p)
        and not p.startswith(str(workdir / "cache"))
        and not p.startswith(str(data / ".fsstore-"))
    }
    if changed:
        result.fail(f"files changed: {sorted(changed)[:5]}")
    if hashlib.md5(Path("/etc/passwd").read_bytes()).hexdigest() != passwd:
        result.fail("/etc/passwd changed")
    result.figures = {
        "hostile ids": len(HOSTILE_IDS),
        "hostile locations": len(locations),
        "files changed outside": len(changed),
    }
    return result


# -- 6. bad configuration --------------------------------------------------------------


def bad_configuration(workdir: Path, with_cli: bool = True) -> Result:
    """Every case of tests/bad_configs.py, loaded in this process and given
    to the command: refused with a message that names the problem."""
    result = Result("bad configuration")
    cases = bad_configs.cases("store", "registry", "cache")
    for case in cases:
        casedir = workdir / f"case-{result.operations}"
        casedir.mkdir()
        result.operations += 1
        problem = bad_configs.refused(case, casedir)
        if problem is not None:
            result.fail(f"{case.name}: {problem}")
        if with_cli:
            result.operations += 1
            problem = bad_configs.command_refuses(FSSTORE, case, casedir)
            if problem is not None:
                result.fail(f"{case.name}: {problem}")
    result.figures = {"configurations": len(cases)}
    return result


# -- 8. hostile stream shapes ---------------------------------------------------------

_BAD_STREAMS = {
    "read-None": lambda data: NoneRead(data[:1000]),
    "read-str": lambda data: TextRead("text"),
    "None-chunk": lambda data: iter([data[:100], None]),
    "int-chunk": lambda data: iter([data[:100], 7]),
    "str-chunk": lambda data: iter([data[:100], "text"]),
}
_STREAM_SIZES = [0, 1, 4095, 65537, 1024 * 1024 + 3, 3 * MiB + 5, 4 * MiB + 1, 6 * MiB]


def hostile_streams(workdir: Path, adds: int = 300, seed: int = 8) -> Result:
    """Random stream shapes, sizes and declared sizes into both staging modes
    and a cache: every add stores exactly the caller's bytes with their
    digests, or is Invalid and leaves nothing."""
    result = Result("hostile streams (shapes, sizes, buffer reuse)")
    rng = random.Random(seed)
    dirs = [workdir / "a", workdir / "b"]
    stores = {m: fs_store(workdir, dirs, staging=m) for m in ("tmpfile", "named")}
    cache = ImageCache(make_cache_conf(workdir / "cache", "sqlite"))
    counts = {"stored intact": 0, "cached intact": 0, "refused as Invalid": 0}
    for i in range(adds):
        size = rng.choice(_STREAM_SIZES)
        data = rng.randbytes(size)
        declared = rng.choice(["unknown", "exact", "wrong"])
        declared_size = {"unknown": 0, "exact": size}.get(declared, size + 1)
        bad = rng.random() < 0.15
        shape = rng.choice(list(_BAD_STREAMS) if bad else SHAPES)
        stream = (
            _BAD_STREAMS[shape](data)
            if bad
            else shaped(data, shape, rng.randint(1, 200_000))
        )
        should_fail = bad or declared == "wrong"
        image_id = f"img-{i}"
        store = stores[rng.choice(["tmpfile", "named"])]
        verifier = Recorder()
        result.operations += 1
        try:
            added = store.add(image_id, stream, declared_size, verifier=verifier)
        except exceptions.Invalid:
            if not should_fail:
                result.fail(f"{image_id}: {shape}/{declared} refused")
            elif image_id in images_in(dirs) or staging_files(dirs):
                result.fail(f"{image_id}: refused, but left files")
            else:
                counts["refused as Invalid"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other error is a finding
            result.fail(f"{image_id}: {shape}: {type(exc).__name__}: {exc}")
            continue
        if should_fail:
            result.fail(f"{image_id}: {shape}/{declared} was accepted")
            continue
        chunks, _ = store.get(added.location)
        if (
            b"".join(chunks) != data
            or added.size != size
            or added.checksum != hashlib.md5(data).hexdigest()
            or added.multihash != hashlib.sha512(data).hexdigest()
            or verifier.md5() != added.checksum
        ):
            result.fail(
                f"{image_id}: {shape}/{declared}/{size}: bytes or digests differ"
            )
        else:
            counts["stored intact"] += 1
        store.delete(added.location)
        if size and size < MiB * 8 and rng.random() < 0.3:
            result.operations += 1
            stream = shaped(data, shape, rng.randint(1, 200_000))
            cached = cache.cache_image_iter(image_id, stream, added.checksum)
            with cache.open_for_read(image_id) as f:
                if not cached or f.read() != data:
                    result.fail(f"{image_id}: {shape}: cache holds other bytes")
                else:
                    counts["cached intact"] += 1
            cache.delete_cached_image(image_id)
    for store in stores.values():
        store.close()
    result.figures = {**counts, "shapes": len(SHAPES) + len(_BAD_STREAMS)}
    return result


# -- 9. hostile cache options ----------------------------------------------------------

# Never an entry for either driver.
_RESERVED_STRAYS = ["image_cache_db_init", ".fsstore-cache.lock"]
# Never an entry of the xattr driver (no user.hits). For the sqlite driver its
# records say what the entries are: an unrecorded file with an image id's name
# is reported by check, and adopted by check --fix or a rebuild of lost records.
_XATTR_STRAYS = ["README", "x.lock", ".hidden"]


def hostile_cache_options(workdir: Path) -> Result:
    """Every spelling of image_cache_sqlite_db, stray files and damaged or
    deleted records under both drivers: the database and the strays are never
    taken for images, the limit holds, check --fix leaves nothing to fix."""
    result = Result("hostile cache options and records")
    result.figures = {"records rebuilt": 0, "stray and database files kept": 0}
    cases = 0
    limit = 10_000
    for driver in ("sqlite", "xattr"):
        for spelling in ("default", "dot-slash", "absolute", "dot-dot", "outside"):
            for fault in ("none", "db-deleted", "db-damaged"):
                cases += 1
                cache_dir = workdir / f"{driver}-{spelling}-{fault}"
                db = {
                    "default": "cache.db",
                    "dot-slash": "./cache.db",
                    "absolute": str(cache_dir / "cache.db"),
                    "dot-dot": f"../{cache_dir.name}/cache.db",
                    "outside": str(workdir / f"{cache_dir.name}.db"),
                }[spelling]
                _cache_options_case(result, cache_dir, driver, db, fault, limit)
    for sub in ("incomplete", "invalid", "queue"):
        cases += 1
        result.operations += 1
        try:
            ImageCache(
                make_cache_conf(
                    workdir / f"refused-{sub}",
                    "sqlite",
                    image_cache_sqlite_db=f"{sub}/c.db",
                )
            )
        except exceptions.BadDriverConfiguration:
            continue
        result.fail(f"image_cache_sqlite_db inside {sub}/ was accepted")
    result.figures = {"configurations": cases, **result.figures}
    return result


def _cache_options_case(
    result: Result, cache_dir: Path, driver: str, db: str, fault: str, limit: int
) -> None:
    def make() -> ImageCache:
        return ImageCache(
            make_cache_conf(
                cache_dir, driver, image_cache_sqlite_db=db, image_cache_max_size=limit
            )
        )

    name = cache_dir.name
    # The sqlite records exist whatever the driver: a directory may have been
    # run with the other one before.
    sqlite_run = ImageCache(
        make_cache_conf(cache_dir, "sqlite", image_cache_sqlite_db=db)
    )
    del sqlite_run
    cache = make()
    strays = _RESERVED_STRAYS + (_XATTR_STRAYS if driver == "xattr" else [])
    for stray in strays:
        (cache_dir / stray).write_bytes(b"s" * 3000)
    protected = {
        n for n in os.listdir(cache_dir) if n not in ("incomplete", "invalid", "queue")
    }
    for i in range(8):
        data = bytes([i]) * 3000
        result.operations += 1
        if fault == "db-deleted" and i == 4 and driver == "sqlite":
            db_file = cache_dir / "cache.db" if not os.path.isabs(db) else Path(db)
            db_file = (
                db_file if db_file.exists() else Path(os.path.normpath(cache_dir / db))
            )
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{db_file}{suffix}")
            cache = make()
        if not cache.cache_image_iter(
            f"img{i}", iter([data]), hashlib.md5(data).hexdigest()
        ):
            result.fail(f"{name}: img{i} not cached")
        entries = [n for n in os.listdir(cache_dir) if n.startswith("img")]
        if sum((cache_dir / n).stat().st_size for n in entries) > limit:
            result.fail(f"{name}: {len(entries)} entries exceed the limit")
    if fault == "db-damaged" and driver == "sqlite":
        db_file = Path(os.path.normpath(cache_dir / db))
        db_file.write_bytes(b"damaged" * 1000)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db_file}{suffix}")
        cache = make()
        result.operations += 1
        try:
            cache.get_cached_images()
            result.fail(f"{name}: a damaged database was read")
        except exceptions.BackendException as exc:
            if "\n" in str(exc):
                result.fail(f"{name}: a multi-line error")
    try:
        result.operations += 4
        cache.check(fix=True)
        listed = {e.image_id for e in cache.get_cached_images()}
        if listed - {f"img{i}" for i in range(8)}:
            result.fail(f"{name}: listed {sorted(listed)}")
        if cache.get_cache_size() > limit:
            result.fail(f"{name}: {cache.get_cache_size()} bytes over {limit}")
        if cache.check():
            result.fail(f"{name}: check after check --fix: {cache.check()}")
        cache.prune()
        cache.clean()
        cache.delete_all_cached_images()
    except Exception as exc:  # noqa: BLE001 - any error is a finding
        result.fail(f"{name}: {type(exc).__name__}: {exc}")
        return
    left = set(os.listdir(cache_dir))
    for kept in protected:
        if kept not in left and not kept.startswith("cache.db-"):
            result.fail(f"{name}: {kept} was deleted")
        else:
            result.figures["stray and database files kept"] += 1
    if fault != "none" and driver == "sqlite":
        result.figures["records rebuilt"] += 1


# -- 10. rot found by scrub, through kill -9 and --resume -------------------------------

_ROT = ("flip", "truncate", "grow", "strip")
_ROT_VERDICT = {
    "flip": "corrupt",
    "truncate": "truncated",
    "grow": "corrupt",
    "strip": "unverifiable",
}


def _rot(path: Path, how: str, rng: random.Random) -> None:
    size = path.stat().st_size
    if how == "flip":
        with open(path, "r+b") as f:
            at = rng.randrange(size)
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
    elif how == "truncate":
        os.truncate(path, rng.randrange(size))
    elif how == "grow":
        with open(path, "ab") as f:
            f.write(os.urandom(rng.randint(1, 4096)))
    else:
        for name in os.listxattr(path):
            os.removexattr(path, name)


def _scrub_killed(args: list[str], checkpoint: Path, after: int) -> bool:
    """Start a scrub and ``kill -9`` it once its checkpoint holds ``after``
    images; False if it finished first."""
    proc = subprocess.Popen([FSSTORE, *args], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if len(json.loads(checkpoint.read_text())["images"]) >= after:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
        time.sleep(0.005)  # polling the checkpoint, not waiting out a race
    proc.kill()
    proc.wait()
    return False


def scrub_rot(
    workdir: Path, images: int = 100, kills: int = 3, seed: int = 10
) -> Result:
    """Images rot in each way behind the store's back; a scrub killed with
    ``kill -9`` several times and resumed names exactly the rotten ones,
    each once, with the right verdict."""
    result = Result("scrub: rot found through kill -9 and --resume")
    rng = random.Random(seed)
    conf = write_conf(
        workdir / "scrub.conf",
        {"glance_store": {"filesystem_store_datadir": str(workdir / "images")}},
    )
    registry = StoreRegistry(load_conf(conf))
    truth: dict[str, str] = {}
    for i in range(images):
        image_id = f"img-{i:04d}"
        size = rng.choice([1, 100, 4096, 65537, rng.randint(2, 2 * MiB)])
        registry.add(image_id, iter([os.urandom(size)]), size)
        truth[image_id] = "ok"
    for image_id in rng.sample(sorted(truth), images // 3):
        how = rng.choice(_ROT)
        _rot(workdir / "images" / image_id, how, rng)
        truth[image_id] = _ROT_VERDICT[how]
    checkpoint = workdir / "scrub.json"
    base = ["--config-file", str(conf), "--format", "json", "scrub"]
    # Slow enough that checkpoints (at most one a second) fall mid-pass.
    base += ["--checkpoint", str(checkpoint), "--rate", "5"]
    done, killed = 0, False
    result.figures["scrubs killed"] = 0
    for k in range(kills):
        after = done + rng.randint(1, max(1, (images - done) // (kills - k + 1)))
        args = base + (["--resume"] if k else [])
        killed = _scrub_killed(args, checkpoint, after)
        done = len(json.loads(checkpoint.read_text())["images"])
        if not killed:
            break  # it finished first: a resume now starts a new pass
        result.figures["scrubs killed"] += 1
    proc = subprocess.run(
        [FSSTORE, *base[:-2], "--resume"], capture_output=True, text=True
    )
    result.operations += images
    record = json.loads(proc.stdout)
    # Resuming a killed scrub carries its verdicts; resuming a finished one
    # starts over.
    if record["resumed"] != (done if killed else 0):
        result.fail(f"resumed {record['resumed']} images; the checkpoint held {done}")
    seen = [i["image_id"] for i in record["images"]]
    if sorted(seen) != sorted(truth) or len(set(seen)) != len(seen):
        result.fail(f"images reported {len(seen)} times for {len(truth)} images")
    for image in record["images"]:
        if image["verdict"] != truth[image["image_id"]]:
            result.fail(
                f"{image['image_id']}: {image['verdict']}, "
                f"expected {truth[image['image_id']]} ({image['detail']})"
            )
    failed = any(v in ("corrupt", "truncated") for v in truth.values())
    if proc.returncode != (1 if failed else 0):
        result.fail(f"exit status {proc.returncode}: {proc.stderr.strip()}")
    result.figures["rotten"] = sum(v != "ok" for v in truth.values())
    result.figures["resumed images"] = record["resumed"]
    return result


# -- 11. names planted in the cache directory -------------------------------------------

PLANT_TIMEOUT = 30.0  # seconds for one case's operations; each takes milliseconds


def _planted_ops(
    cache_dir: Path, driver: str, conf_path: Path, data: bytes, location: str
) -> list[tuple[str, Callable[[], object]]]:
    """What one process does to a cache with a planted name: every operation
    that opens, creates, truncates, renames over or removes a cache file."""
    checksum = hashlib.md5(data).hexdigest()
    registry = StoreRegistry(load_conf(conf_path))
    missing = location + ".missing"
    state: dict[str, ImageCache] = {}

    def cache() -> ImageCache:
        return state["cache"]

    def configure() -> None:
        state["cache"] = ImageCache(make_cache_conf(cache_dir, driver))

    # A regular file at an entry's name is an entry to the sqlite driver
    # (a cache directory is adopted as Glance left it): a hard link planted
    # there is served. Nothing else planted ever is.
    planted_entry = (cache_dir / IMG).is_file() and not (cache_dir / IMG).is_symlink()

    def served(what: bytes, how: str) -> None:
        if what != data and not (planted_entry and driver == "sqlite"):
            raise AssertionError(f"{how} returned bytes that are not the image's")

    def read_through() -> None:
        chunks, _ = CachingStore(registry, cache()).get(IMG, location, checksum)
        served(b"".join(chunks), "a read through the cache")

    def read_cached() -> None:
        try:
            with cache().open_for_read(IMG) as f:
                served(f.read(), "the cache")
        except exceptions.NotFound:
            pass

    def fail_verification() -> None:
        cache().cache_image_iter(IMG, iter([data]), "0" * 32)

    def fail_prefetch() -> None:
        cache().queue_image(IMG, location=missing, expected=UNVERIFIED)
        Prefetcher(cache(), registry).run()

    return [
        ("configure", configure),
        ("queue", lambda: cache().queue_image(IMG, location, checksum)),
        ("queued info", lambda: cache().get_queued_images()),
        ("prefetch", lambda: Prefetcher(cache(), registry).run()),
        ("read through", read_through),
        ("read cached", read_cached),
        ("delete", lambda: cache().delete_cached_image(IMG)),
        # A failed prefetch first: it creates invalid/<id> where nothing of
        # the cache's is yet; a failed verification then moves its file there.
        ("fail prefetch", fail_prefetch),
        ("fail verification", fail_verification),
        ("list", lambda: (cache().get_cached_images(), cache().get_cache_size())),
        ("prune", lambda: cache().prune()),
        ("check", lambda: cache().check()),
        ("check --fix", lambda: cache().check(fix=True)),
        ("clean", lambda: cache().clean()),
        ("delete all", lambda: cache().delete_all_cached_images()),
        ("dequeue all", lambda: cache().delete_all_queued_images()),
    ]


def _planted_child(
    cache_dir: Path, driver: str, conf_path: Path, data: bytes, location: str, out: int
) -> None:
    """Run _planted_ops, one JSON line per operation on ``out``: "ok", a
    refusal (an fsstore error or an OSError naming what is in the way), or
    anything else, which is a finding."""
    logging.disable(logging.CRITICAL)  # refusals are logged; the report says them
    for name, op in _planted_ops(cache_dir, driver, conf_path, data, location):
        try:
            value = op()
            outcome, detail = "ok", ""
            if name == "clean":
                detail = json.dumps(list(getattr(value, "left", ())))
        except (exceptions.FsstoreError, OSError) as exc:
            outcome, detail = "refused", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - anything else is a finding
            outcome, detail = "unexpected", f"{type(exc).__name__}: {exc}"
        os.write(out, (json.dumps([name, outcome, detail]) + "\n").encode())
        if name == "configure" and outcome != "ok":
            return  # refused at configure: nothing else can run


def _run_bounded(
    work: Callable[..., None], *args: object
) -> tuple[list[list[str]], bool]:
    """Fork a child running ``work(*args, out)``: its report lines, and
    whether it finished within PLANT_TIMEOUT (killed if not)."""
    read, write = os.pipe()
    pid = fork_child(work, *args, write, close_in_child=read)
    os.close(write)
    deadline = time.monotonic() + PLANT_TIMEOUT
    chunks, finished = [], False
    with os.fdopen(read, "rb") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
                break  # the deadline passed with the child still running
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
    if not finished:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    lines = b"".join(chunks).decode().splitlines()
    return [json.loads(line) for line in lines], finished


def _plant_cases() -> list[tuple[str, str]]:
    cases = [(p, k) for p in (*PER_IMAGE_PATHS, *STATE_PATHS) for k in PLANT_KINDS]
    return cases + [(p, k) for p in SUBDIR_PATHS for k in SUBDIR_PLANT_KINDS]


def hostile_cache_files(
    workdir: Path, drivers: tuple[str, ...] = ("sqlite", "xattr"), with_cli: bool = True
) -> Result:
    """A symbolic link (to a victim file, or dangling), a FIFO, a directory or
    a hard link planted at every name the cache opens, creates, truncates or
    renames over (its subdirectories, the lock, sqlite's files, and for one
    image its incomplete/, invalid/, queue/ and entry names), then every cache
    operation in a fresh process under a deadline: no victim outside the
    cache changes, nothing hangs, nothing but a refusal is raised, and the
    bytes served are always the image's."""
    result = Result("hostile cache directories and state files")
    conf_path = write_conf(
        workdir / "store.conf",
        {"glance_store": {"filesystem_store_datadir": str(workdir / "images")}},
    )
    data = os.urandom(70_000)
    registry = StoreRegistry(load_conf(conf_path))
    location = registry.add(IMG, iter([data]), len(data)).location
    registry.close()
    figures = dict.fromkeys(
        ["names planted", "refusals", "left by clean", "victims changed", "hangs"], 0
    )
    cases = _plant_cases()
    for driver in drivers:
        for n, (path, kind) in enumerate(cases):
            case = f"{driver} {path} {kind}"
            casedir = workdir / f"{driver}-{n}"
            cache_dir = casedir / "cache"
            setup = ImageCache(make_cache_conf(cache_dir, driver))
            del setup  # the layout and sqlite's files exist, as in use
            at = cache_dir / path
            if at.is_dir() and not at.is_symlink():
                at.rmdir()
            elif os.path.lexists(at):
                at.unlink()
            victims = Victims(casedir / "victims")
            plant(kind, at, victims, path)
            victims.seal()
            figures["names planted"] += 1
            reports, finished = _run_bounded(
                _planted_child, cache_dir, driver, conf_path, data, location
            )
            result.operations += len(reports)
            if not finished:
                figures["hangs"] += 1
                done = reports[-1][0] if reports else "nothing"
                result.fail(f"{case}: hung after {done}")
            for name, outcome, detail in reports:
                if outcome == "unexpected":
                    result.fail(f"{case}: {name}: {detail}")
                figures["refusals"] += outcome == "refused"
                if name == "clean" and outcome == "ok":
                    figures["left by clean"] += len(json.loads(detail))
            if with_cli and finished and kind in ("symlink", "fifo"):
                for args in (["prefetch"], ["clean"]):
                    result.operations += 1
                    problem = _cli_bounded(conf_path, cache_dir, driver, args)
                    if problem:
                        figures["hangs"] += problem == "hung"
                        result.fail(f"{case}: fsstore cache {args[0]}: {problem}")
            changed = victims.changed()
            figures["victims changed"] += len(changed)
            if changed:
                result.fail(f"{case}: victims changed: {changed}")
    result.figures = {
        "cache paths": len({p for p, _ in cases}),
        "plant kinds": len({k for _, k in cases}),
        **figures,
    }
    return result


# -- 12. names planted where the stores and the scrub keep their state -------------

#: Files and directories a filesystem store keeps in a data directory, and
#: the scrub's checkpoint (beside the data, in the case's directory).
STORE_STATE_FILES = (".fsstore-publish.lock",)
STORE_STATE_DIRS = (".fsstore-staging", ".fsstore-digests")
CHECKPOINT = "scrub.json"


def hostile_state_files(workdir: Path, every: int = 1) -> Result:
    """Each kind of name planted at each state file a filesystem store or a
    scrub writes (the publish lock, the staging and digest-record
    directories, the scrub checkpoint), then the command's add, get, scrub
    (with --record and --resume) and delete under a deadline: no victim
    outside changes, nothing hangs, no traceback, and an image added reads
    back whole. As root the data directory is a ramfs, which has no user
    xattrs, so digests go to the record files. ``every``: only every n-th
    case (a quick run)."""
    result = Result("hostile data-directory and scrub state files")
    cases = [
        (name, kind, False)
        for name in (*STORE_STATE_FILES, CHECKPOINT)
        for kind in PLANT_KINDS
    ] + [(name, kind, True) for name in STORE_STATE_DIRS for kind in SUBDIR_PLANT_KINDS]
    cases = cases[::every]
    figures = dict.fromkeys(
        ["names planted", "refusals", "images read back", "victims changed", "hangs"],
        0,
    )
    root = workdir / "ramfs"
    mounted = ramfs(root) if is_root() else contextlib.nullcontext(workdir)
    with mounted as base:
        for n, (name, kind, subdir) in enumerate(cases):
            case = f"{name} {kind}"
            casedir = base / f"case-{n}"
            images = casedir / "images"
            images.mkdir(parents=True)
            conf = write_conf(
                casedir / "store.conf",
                {"glance_store": {"filesystem_store_datadir": str(images)}},
            )
            data = os.urandom(rng_size(n))
            (casedir / "src").write_bytes(data)
            at = casedir / name if name == CHECKPOINT else images / name
            # Beside the case, on its file system: a hard link needs that.
            victims = Victims(base / f"victims-{n}")
            plant(kind, at, victims, name, subdir=subdir)
            victims.seal()
            figures["names planted"] += 1
            checkpoint = ["--checkpoint", str(casedir / CHECKPOINT)]
            location = f"file://{images}/img"
            steps = [
                ["add", "--id", "img", str(casedir / "src")],
                ["get", location, "-o", str(casedir / "out")],
                ["scrub", "--record", *checkpoint],
                ["scrub", "--resume", *checkpoint],
                ["delete", location],
            ]
            added = False
            for args in steps:
                result.operations += 1
                try:
                    proc = subprocess.run(
                        [FSSTORE, "--config-file", str(conf), *args],
                        capture_output=True,
                        text=True,
                        timeout=PLANT_TIMEOUT,
                    )
                except subprocess.TimeoutExpired:
                    figures["hangs"] += 1
                    result.fail(f"{case}: fsstore {args[0]} hung")
                    break
                if "Traceback" in proc.stderr:
                    result.fail(f"{case}: fsstore {args[0]}: a traceback")
                figures["refusals"] += proc.returncode != 0
                added = added or (args[0] == "add" and proc.returncode == 0)
                if args[0] == "get" and added:
                    if proc.returncode or (casedir / "out").read_bytes() != data:
                        result.fail(f"{case}: the image added did not read back")
                    else:
                        figures["images read back"] += 1
            changed = victims.changed()
            figures["victims changed"] += len(changed)
            if changed:
                result.fail(f"{case}: victims changed: {changed}")
    result.figures = {
        "state names": len({name for name, _, _ in cases}),
        "without xattrs": is_root(),
        **figures,
    }
    return result


def rng_size(n: int) -> int:
    """An image size per case, across the inline and pipelined add paths."""
    return (1, 70_000, 5 * 1024 * 1024)[n % 3]


def _cli_bounded(
    store_conf: Path, cache_dir: Path, driver: str, args: list[str]
) -> str | None:
    """Run ``fsstore cache ARGS`` on the cache under the deadline: what went
    wrong ("hung", a traceback), or None."""
    conf = write_conf(
        cache_dir.parent / "cli.conf",
        {
            "DEFAULT": {
                "image_cache_dir": str(cache_dir),
                "image_cache_driver": driver,
            },
            "glance_store": {
                "filesystem_store_datadir": str(store_conf.parent / "images")
            },
        },
    )
    try:
        proc = subprocess.run(
            [FSSTORE, "--config-file", str(conf), "cache", *args],
            capture_output=True,
            text=True,
            timeout=PLANT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return "hung"
    return "traceback" if "Traceback" in proc.stderr else None


def run_all(workdir: Path, quick: bool = False) -> list[Result]:
    scale = 0.1 if quick else 1.0
    n = lambda x: max(2, int(x * scale))  # noqa: E731
    steps = [
        ("kill", lambda d: kill_writer(d, kills=n(200))),
        ("enospc", lambda d: enospc(d)),
        ("concurrency", lambda d: concurrency(d, processes=8, ops=n(500))),
        ("cache-sqlite", lambda d: cache_load(d, "sqlite", processes=8, ops=n(500))),
        ("cache-xattr", lambda d: cache_load(d, "xattr", processes=8, ops=n(500))),
        ("hostile", lambda d: hostile(d, with_cli=True)),
        ("config", lambda d: bad_configuration(d, with_cli=True)),
        ("streams", lambda d: hostile_streams(d, adds=n(300))),
        ("cache-options", lambda d: hostile_cache_options(d)),
        ("scrub", lambda d: scrub_rot(d, images=n(200))),
        ("planted", lambda d: hostile_cache_files(d, with_cli=not quick)),
        ("state", lambda d: hostile_state_files(d, every=1 if not quick else 3)),
    ]
    results = []
    for name, step in steps:
        d = workdir / name
        d.mkdir()
        started = time.monotonic()
        r = step(d)
        r.figures["seconds"] = round(time.monotonic() - started, 1)
        results.append(r)
    return results
