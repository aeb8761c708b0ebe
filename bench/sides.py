"""One measurement, in a process of its own; prints a JSON result.

    python bench/sides.py CASE ARGS...

Run by bench/run.py with fsstore's venv for the fsstore side and the machine's
limits, and with bench/.venv-glance (glance_store 5.7.0, nothing of fsstore)
for the glance_store side. Only the operation itself is timed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import sys
import threading
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def rss_kib() -> int:
    return _status_kib("VmRSS")


def peak_rss_kib() -> int:
    """This program's peak RSS. Not getrusage's ru_maxrss: Linux carries
    that across fork and exec, so a side started by a large bench process
    would report the bench's own peak."""
    return _status_kib("VmHWM")


def write_conf(path: str, sections: dict) -> str:
    with open(path, "w") as f:
        for name, options in sections.items():
            f.write(f"[{name}]\n")
            for key, value in options.items():
                for v in value if isinstance(value, list) else [value]:
                    f.write(f"{key} = {v}\n")
    return path


# -- glance_store --------------------------------------------------------------


def glance_store_backend(datadir: str):
    import glance_store.backend as backend
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    backend.register_opts(conf)
    path = write_conf(
        os.path.join(datadir, "..", "glance.conf"),
        {
            "glance_store": {
                "stores": "file",
                "default_store": "file",
                "filesystem_store_datadir": datadir,
            }
        },
    )
    conf(["--config-file", path], project="glance", default_config_files=[])
    backend.create_stores(conf)
    return conf, backend


def glance_add(src: str, datadir: str, algo: str) -> dict:
    conf, backend = glance_store_backend(datadir)
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        start = time.perf_counter()
        location, *_ = backend.add_to_backend_with_multihash(conf, "img", f, size, algo)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "location": location}


def glance_get(datadir: str, location: str) -> dict:
    conf, backend = glance_store_backend(datadir)
    start = time.perf_counter()
    chunks, _ = backend.get_from_backend(location)
    for _chunk in chunks:
        pass
    return {"seconds": time.perf_counter() - start}


def glance_small(datadir: str, count: str, size: str) -> dict:
    conf, backend = glance_store_backend(datadir)
    data = os.urandom(int(size))
    latencies = []
    for i in range(int(count)):
        start = time.perf_counter()
        backend.add_to_backend_with_multihash(
            conf, f"s{i}", io.BytesIO(data), len(data), "sha512"
        )
        latencies.append(time.perf_counter() - start)
    return {"latencies": latencies}


# -- fsstore ------------------------------------------------------------------------


def fsstore_store(datadirs: list[str], fsync: str):
    from oslo_config import cfg

    from fsstore import register_opts
    from fsstore.backends.filesystem import FilesystemStore

    conf = cfg.ConfigOpts()
    register_opts(conf)
    path = write_conf(
        os.path.join(
            datadirs[0], "..", f"fsstore-{os.path.basename(datadirs[0])}.conf"
        ),
        {
            "glance_store": {
                "filesystem_store_datadir": "",
                "filesystem_store_datadirs": [
                    f"{d}:{i}" for i, d in enumerate(datadirs)
                ],
                "filesystem_store_fsync": fsync,
            }
        },
    )
    conf(["--config-file", path], project="fsstore", default_config_files=[])
    store = FilesystemStore(conf)
    store.configure()
    return store


def fsstore_add(src: str, datadir: str, algo: str, fsync: str = "true") -> dict:
    store = fsstore_store([datadir], fsync)
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        start = time.perf_counter()
        result = store.add("img", f, size, hashing_algo=algo)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "location": result.location}


def fsstore_get(datadir: str, location: str) -> dict:
    store = fsstore_store([datadir], "true")
    start = time.perf_counter()
    chunks, _ = store.get(location)
    for _chunk in chunks:
        pass
    return {"seconds": time.perf_counter() - start}


def fsstore_small(dirs: str, count: str, size: str, fsync: str) -> dict:
    store = fsstore_store(dirs.split(","), fsync)
    data = os.urandom(int(size))
    latencies = []
    for i in range(int(count)):
        start = time.perf_counter()
        store.add(f"s{i}", io.BytesIO(data), len(data))
        latencies.append(time.perf_counter() - start)
    return {"latencies": latencies}


def fsstore_small_dirs(dirs: str, one: str, count: str, size: str) -> dict:
    """Adds to a store of several directories and to one of a single
    directory, alternating, fsync off; latencies of each."""
    stores = {
        "four": fsstore_store(dirs.split(","), "false"),
        "one": fsstore_store([one], "false"),
    }
    data = os.urandom(int(size))
    latencies: dict[str, list[float]] = {k: [] for k in stores}
    for i in range(int(count)):
        for name in stores if i % 2 == 0 else reversed(stores):
            start = time.perf_counter()
            stores[name].add(f"s{i}", io.BytesIO(data), len(data))
            latencies[name].append(time.perf_counter() - start)
    return latencies


def fsstore_rss(src: str, datadir: str) -> dict:
    store = fsstore_store([datadir], "true")
    baseline = rss_kib()
    with open(src, "rb") as f:
        store.add("img", f, os.path.getsize(src))
    peak = peak_rss_kib()
    return {"baseline_kib": baseline, "peak_kib": peak}


def s3_rss(src: str, endpoint: str, bucket: str) -> dict:
    from oslo_config import cfg

    from fsstore import register_opts
    from fsstore.backends.s3 import S3Store

    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    for key, value in {
        "s3_store_host": endpoint,
        "s3_store_access_key": "bench",
        "s3_store_secret_key": "bench",
        "s3_store_bucket": bucket,
        "s3_store_create_bucket_on_put": True,
        "s3_store_bucket_url_format": "path",
    }.items():
        conf.set_override(key, value, group="glance_store")
    store = S3Store(conf)
    store.configure()
    store.add("warm-up", iter([b"x"]), 1)
    baseline = rss_kib()
    with open(src, "rb") as f:
        start = time.perf_counter()
        store.add("img", f, 0)  # unknown size: streamed in parts
        seconds = time.perf_counter() - start
    peak = peak_rss_kib()
    return {"baseline_kib": baseline, "peak_kib": peak, "seconds": seconds}


# -- S3, both sides on the same engine ----------------------------------------------


def s3_options(endpoint: str, access: str, secret: str, bucket: str) -> dict:
    return {
        "s3_store_host": endpoint,
        "s3_store_access_key": access,
        "s3_store_secret_key": secret,
        "s3_store_bucket": bucket,
        "s3_store_create_bucket_on_put": "true",
        "s3_store_bucket_url_format": "path",
    }


def s3_backend(who: str, options: dict, work: str):
    """(add, get): glance_store 5.7.0's S3 driver or fsstore's S3 store."""
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    path = write_conf(
        os.path.join(work, f"{who}-s3.conf"),
        {"glance_store": {"stores": "s3", "default_store": "s3", **options}},
    )
    if who == "glance":
        import glance_store.backend as backend

        backend.register_opts(conf)
        conf(["--config-file", path], project="glance", default_config_files=[])
        backend.create_stores(conf)

        def add(image_id, f, size):
            return backend.add_to_backend_with_multihash(
                conf, image_id, f, size, "sha512"
            )[0]

        def get(location):
            return backend.get_from_backend(location)[0]

        return add, get
    from fsstore.registry import StoreRegistry, register_opts

    register_opts(conf)
    conf(["--config-file", path], project="fsstore", default_config_files=[])
    store = StoreRegistry(conf).get_store()

    def add(image_id, f, size):
        return store.add(image_id, f, size).location

    def get(location):
        return store.get(location)[0]

    return add, get


def timed_add_and_get(add, get, src: str, image_id: str, known: str) -> dict:
    """Add `src` (its size known or not), then read it back, both timed, and
    the peak RSS of the add above the baseline before it; the location and
    the bytes read back too."""
    baseline = rss_kib()
    size = os.path.getsize(src) if known == "1" else 0
    with open(src, "rb") as f:
        start = time.perf_counter()
        location = add(image_id, f, size)
        add_seconds = time.perf_counter() - start
    peak = peak_rss_kib()
    start = time.perf_counter()
    got = 0
    for chunk in get(location):
        got += len(chunk)
    get_seconds = time.perf_counter() - start
    return {
        "add_seconds": add_seconds,
        "get_seconds": get_seconds,
        "baseline_kib": baseline,
        "peak_kib": peak,
        "location": location,
        "read": got,
    }


def s3_side(who, src, work, endpoint, access, secret, bucket, image_id, known):
    """Add `src` (its size known or not), then read it back; both timed."""
    add, get = s3_backend(who, s3_options(endpoint, access, secret, bucket), work)
    add(f"warm-up-{image_id}", io.BytesIO(b"x"), 1)  # bucket and a connection
    return timed_add_and_get(add, get, src, image_id, known)


# -- the machine's limits ---------------------------------------------------------------


def hash_seconds(size: int) -> float:
    """Seconds for MD5 and SHA-512 of ``size`` bytes already in memory,
    each in a thread of its own: no add with both digests can beat it."""
    block = os.urandom(4 << 20)
    rounds = max(1, size // len(block))

    def work(digest) -> None:
        for _ in range(rounds):
            digest.update(block)

    threads = [
        threading.Thread(target=work, args=(d,))
        for d in (hashlib.md5(), hashlib.sha512())
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) * size / (rounds * len(block))


def limit_pass(src: str, out: str) -> dict:
    """The machine's limit for an add: the faster of the best single pass
    read -> write -> MD5 + sha512 (buffered, no fsync; the two digests in
    threads of their own while this thread reads and writes, over 4 MiB
    chunks) and the two digests alone (hash_seconds). A pass through the
    page cache can be slower than an add's own I/O; the digests alone
    cannot."""
    digests = [hashlib.md5(), hashlib.sha512()]
    queues = [queue.SimpleQueue() for _ in digests]
    done = [queue.SimpleQueue() for _ in digests]

    def work(q, d, dq):
        while (chunk := q.get()) is not None:
            d.update(chunk)
            dq.put(None)

    threads = [
        threading.Thread(target=work, args=(q, d, dq))
        for q, d, dq in zip(queues, digests, done, strict=False)
    ]
    for t in threads:
        t.start()
    start = time.perf_counter()
    in_flight = 0
    with open(src, "rb", buffering=0) as f, open(out, "wb", buffering=0) as o:
        while chunk := f.read(4 << 20):
            for q in queues:
                q.put(chunk)
            o.write(chunk)
            in_flight += 1
            if in_flight > 3:  # bounded, as any real store must be
                for dq in done:
                    dq.get()
                in_flight -= 1
    for q in queues:
        q.put(None)
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    hashing = hash_seconds(os.path.getsize(src))
    return {"seconds": min(seconds, hashing), "pass": seconds, "hashing": hashing}


def fsstore_small_vs_plain(*args: str) -> dict:
    """bench/small.py: an fsstore add of 4 KiB beside its references."""
    from small import fsstore_small_vs_plain as side

    return side(*args)


def rbd_side(*args: str) -> dict:
    """bench/rbd_sides.py, imported only by the RBD cases (the bindings)."""
    from rbd_sides import rbd_side as side

    return side(*args)


CASES = {
    "glance-add": glance_add,
    "glance-get": glance_get,
    "glance-small": glance_small,
    "fsstore-add": fsstore_add,
    "fsstore-get": fsstore_get,
    "fsstore-small": fsstore_small,
    "fsstore-small-dirs": fsstore_small_dirs,
    "fsstore-small-vs-plain": fsstore_small_vs_plain,
    "fsstore-rss": fsstore_rss,
    "s3-rss": s3_rss,
    "s3-side": s3_side,
    "rbd-side": rbd_side,
    "limit": limit_pass,
}

if __name__ == "__main__":
    case, *args = sys.argv[1:]
    print(json.dumps(CASES[case](*args)))
