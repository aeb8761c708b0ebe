"""A writer process for crash and race tests: adds one image, on command.

    python -m tests.functional.writer CONF IMAGE_ID SIZE SEED STAGING STOP_AT

It prints ``READY`` and waits for a line on stdin before it starts, so that
several writers can be released at once. With ``STOP_AT`` other than
``none``, it prints ``STOPPED`` at that point of the add and blocks, for the
test to ``kill -9`` it there:

* ``start``: inside add, before the first chunk;
* ``mid``: half of the data written;
* ``end``: all data given, before the final flush;
* ``fsync``: the add's first flush, nothing published (where the file
  system has no xattrs, one of its digest record's, before the record is
  in place);
* ``recorded``: the digest record in place (file systems without xattrs),
  the file not yet published;
* ``linked``: published, staging not yet cleaned up.

On completion it prints a JSON line: ``{"ok": checksum}`` or
``{"error": class name}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fsstore import exceptions
from fsstore.backends.filesystem import FilesystemStore
from fsstore.testing.suite import payload
from tests.helpers import load_conf

CHUNK = 64 * 1024


def stop_here() -> None:
    print("STOPPED", flush=True)
    sys.stdin.readline()  # never answered: the test kills us here
    os._exit(3)


def main() -> None:
    conf_path, image_id, size, seed, staging, stop_at = sys.argv[1:]
    size, seed = int(size), int(seed)
    store = FilesystemStore(load_conf(Path(conf_path)))
    store.configure()
    if staging == "named":
        for d in store.datadirs:
            d.tmpfile = False
    data = payload(size, seed=seed)

    def chunks():
        if stop_at == "start":
            stop_here()
        for pos in range(0, size, CHUNK):
            if stop_at == "mid" and pos >= size // 2:
                stop_here()
            yield data[pos : pos + CHUNK]
        if stop_at == "end":
            stop_here()

    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace
    fsynced = []

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if stop_at == "fsync" and not fsynced:
            fsynced.append(fd)
            stop_here()

    def link(*args, **kwargs) -> None:
        real_link(*args, **kwargs)
        if stop_at == "linked":
            stop_here()

    def replace(*args, **kwargs) -> None:
        real_replace(*args, **kwargs)
        if stop_at == "recorded":
            stop_here()

    os.fsync, os.link, os.replace = fsync, link, replace
    print("READY", flush=True)
    sys.stdin.readline()
    try:
        result = store.add(image_id, chunks(), size)
    except exceptions.FsstoreError as exc:
        print(json.dumps({"error": type(exc).__name__}), flush=True)
    else:
        print(json.dumps({"ok": result.checksum}), flush=True)


if __name__ == "__main__":
    main()
