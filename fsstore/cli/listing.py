"""``fsstore ls|info``: what a store holds, and what is known of one image."""

from __future__ import annotations

import argparse
from typing import Any

from fsstore.cli.command import BACKEND, Command, Context, arg
from fsstore.cli.output import EXIT_FAILED, Failure, Result, human_size, table
from fsstore.hashing import KeptDigests


def _digests(kept: KeptDigests | None) -> dict[str, Any] | None:
    if kept is None:
        return None
    return {
        "checksum": kept.checksum,
        "multihash": kept.multihash,
        "hashing_algo": kept.hashing_algo,
        "size": kept.size,
    }


def cmd_ls(args: argparse.Namespace, ctx: Context) -> Result:
    store = ctx.registry.get_store(args.backend)
    missing = store.unavailable()
    images = sorted(store.images())
    records: list[dict[str, Any]] = []
    for image in images:
        record: dict[str, Any] = {
            "id": image.image_id,
            "size": image.size,
            "location": image.location,
        }
        if args.long:
            record["digests"] = _digests(store.kept_digests(image.location))
        records.append(record)
    # What could not be listed fails the command, after what could: a
    # script must not take an unmounted directory's images for gone.
    failure = (
        Failure(f"not listed: {'; '.join(missing)}", "Unavailable") if missing else None
    )
    status = EXIT_FAILED if missing else 0
    if not args.long:
        text = "\n".join(r["id"] for r in records) or None
        return Result(records, text, status, failure)
    rows = [("ID", "SIZE", "DIGESTS", "LOCATION")] + [
        (
            r["id"],
            str(r["size"]),
            "kept" if r["digests"] else "none",
            r["location"],
        )
        for r in records
    ]
    text = table(rows, right=frozenset({1})) if records else None
    return Result(records, text, status, failure)


def cmd_info(args: argparse.Namespace, ctx: Context) -> Result:
    uri = ctx.location(args.image, args.backend)
    store, location = ctx.registry.store_for(uri)
    size = store.get_size(location)
    kept = store.kept_digests(location)
    record = {
        "location": uri,
        "store": store.name,
        "size": size,
        "digests": _digests(kept),
    }
    lines = [
        f"location:  {uri}",
        f"store:     {store.name}",
        f"size:      {size} ({human_size(size)})",
    ]
    if kept is None:
        lines.append("digests:   none kept")
    else:
        lines += [
            f"checksum:  {kept.checksum} (md5)",
            f"multihash: {kept.multihash} ({kept.hashing_algo})",
            f"kept size: {kept.size}",
        ]
    return Result(record, "\n".join(lines))


LISTING = (
    Command(
        "ls",
        "list the images of a store",
        cmd_ls,
        (
            BACKEND,
            arg(
                "-l",
                "--long",
                action="store_true",
                help="also each image's size, location and whether digests are kept",
            ),
        ),
    ),
    Command(
        "info",
        "show an image's size, location, store and kept digests",
        cmd_info,
        (
            arg("image", metavar="ID|URI", help="an image id, or its location"),
            BACKEND,
        ),
    ),
)
