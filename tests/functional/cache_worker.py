"""A cache client process for the multi-process cache tests.

    python -m tests.functional.cache_worker MODE CACHE_DIR DRIVER MAX_SIZE ARGS...

It prints ``READY`` once set up and waits for a line on stdin, so that all
workers of a test start together; it prints one JSON line when done.

Modes:
  readthrough CONF LOCATION CHECKSUM ID   read an image through the cache
  hits ID COUNT                           read a cached image COUNT times
  commit PREFIX COUNT SIZE                cache COUNT images of SIZE bytes
  reader COUNT ID...                      read cached images, verify each read
  stall ID SIZE                           start caching, print STOPPED, block
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache import CachingStore, ImageCache, central
from fsstore.registry import StoreRegistry
from fsstore.testing.cache_suite import make_cache_conf
from fsstore.testing.suite import payload
from tests.helpers import load_conf


def image_data(image_id: str, size: int) -> bytes:
    return payload(size, seed=int(hashlib.md5(image_id.encode()).hexdigest()[:6], 16))


def conf_for(cache_dir: Path, driver: str, max_size: int) -> cfg.ConfigOpts:
    """The cache's configuration; centralized_db's database and node come
    from FSSTORE_TEST_DATABASE and FSSTORE_TEST_NODE."""
    conf = make_cache_conf(cache_dir, driver, image_cache_max_size=max_size)
    if driver == "centralized_db":
        central.register_opts(conf)
        conf.set_override(
            "connection", os.environ["FSSTORE_TEST_DATABASE"], group="database"
        )
        conf.set_override(
            "worker_self_reference_url",
            os.environ.get("FSSTORE_TEST_NODE", "http://node-a.example:9292"),
        )
    return conf


def main() -> None:
    mode, cache_dir, driver, max_size, *args = sys.argv[1:]
    cache = ImageCache(conf_for(Path(cache_dir), driver, int(max_size)))
    if mode == "readthrough":
        registry = StoreRegistry(load_conf(Path(args[0])))
    print("READY", flush=True)
    sys.stdin.readline()

    if mode == "readthrough":
        location, checksum, image_id = args[1:]
        chunks, _ = CachingStore(registry, cache).get(image_id, location, checksum)
        digest = hashlib.md5()
        for chunk in chunks:
            digest.update(chunk)
        result = {
            "caching": getattr(chunks, "caching", False),
            "md5": digest.hexdigest(),
        }
    elif mode == "hits":
        image_id, count = args[0], int(args[1])
        for _ in range(count):
            with cache.open_for_read(image_id) as f:
                f.read(1)
        result = {"done": count}
    elif mode == "commit":
        prefix, count, size = args[0], int(args[1]), int(args[2])
        published = 0
        for i in range(count):
            data = image_data(f"{prefix}{i}", size)
            published += cache.cache_image_iter(
                f"{prefix}{i}", iter([data]), hashlib.md5(data).hexdigest()
            )
        result = {"published": published}
    elif mode == "reader":
        count, ids = int(args[0]), args[1:]
        rng = random.Random()
        reads = misses = corrupt = 0
        for _ in range(count):
            image_id, size = rng.choice(ids).split(":")
            try:
                with cache.open_for_read(image_id) as f:
                    data = f.read()
            except exceptions.NotFound:
                misses += 1
                continue
            reads += 1
            corrupt += data != image_data(image_id, int(size))
        result = {"reads": reads, "misses": misses, "corrupt": corrupt}
    elif mode == "stall":
        image_id, size = args[0], int(args[1])
        data = image_data(image_id, size)
        with cache.open_for_write(image_id, hashlib.md5(data).hexdigest()) as writer:
            writer.write(data[: size // 2])
            print("STOPPED", flush=True)
            sys.stdin.readline()
            writer.write(data[size // 2 :])
        result = {"published": writer.published}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
