"""``fsstore cache ...``: the image cache's management commands, named as
Glance's ``cache-manage`` names them."""

from __future__ import annotations

import argparse
import os
import sys

from fsstore import exceptions
from fsstore.cache import Prefetcher
from fsstore.cache.directory import QUEUE
from fsstore.cli.command import (
    Command,
    Context,
    arg,
    nonnegative,
    positive,
)
from fsstore.cli.images import hashing_algo
from fsstore.cli.output import (
    EXIT_FAILED,
    Failure,
    Result,
    confirm,
    human_size,
    progress,
    table,
    when,
)
from fsstore.hashing import DEFAULT_HASHING_ALGO, Expected
from fsstore.store import validate_image_id


def cmd_list(args: argparse.Namespace, ctx: Context) -> Result:
    rows = ctx.cache.get_cached_images()
    header = ("ID", "SIZE", "HITS", "VERIFIED", "LAST ACCESSED")
    cells = [
        (
            r.image_id,
            human_size(r.size),
            str(r.hits),
            "yes" if r.verified else "no",
            when(r.last_accessed),
        )
        for r in rows
    ]
    text = table([header, *cells], right=frozenset({1, 2}))
    return Result([r.as_dict() for r in rows], text)


def cmd_queued(args: argparse.Namespace, ctx: Context) -> Result:
    queued = ctx.cache.get_queued_images()
    return Result(queued, "\n".join(queued) or None)


def _why_not_queued(ctx: Context, image_id: str) -> str:
    if ctx.cache.is_cached(image_id):
        return "cached"
    if ctx.cache.is_being_cached(image_id):
        return "being cached"
    if ctx.cache.is_queued(image_id):
        return "queued already"
    if os.path.lexists(os.path.join(ctx.cache.base_dir, QUEUE, image_id)):
        return "blocked: something that is no queue entry is at queue/" + image_id
    return "not cacheable"


def cmd_queue(args: argparse.Namespace, ctx: Context) -> Result:
    # `cache prefetch` reads a queued image from the location it was queued
    # with and knows no other (it has no image service to ask), so an entry
    # without one, or with one no configured store accepts, could only fail
    # later: refused now.
    validate_image_id(args.image_id)
    store, location = ctx.registry.store_for(args.location)
    if not store.owns(location):
        raise exceptions.Forbidden(
            f"image {args.image_id} was not queued: location {location.uri} "
            "belongs to none of the configured stores"
        )
    expected = Expected(
        args.checksum,
        args.multihash,
        args.hashing_algo or DEFAULT_HASHING_ALGO,
        allow_unverified=args.allow_unverified,
    )
    queued = ctx.cache.queue_image(args.image_id, args.location, expected)
    if not queued:
        state = _why_not_queued(ctx, args.image_id)
        raise exceptions.Invalid(f"image {args.image_id} was not queued: it is {state}")
    return Result(
        {"image_id": args.image_id, "queued": True}, f"queued {args.image_id}"
    )


def cmd_delete(args: argparse.Namespace, ctx: Context) -> Result:
    if not ctx.cache.delete_cached_image(args.image_id):
        raise exceptions.NotFound(f"image {args.image_id} is not cached")
    return Result(
        {"image_id": args.image_id, "deleted": True},
        f"deleted {args.image_id} from the cache",
    )


def cmd_delete_all(args: argparse.Namespace, ctx: Context) -> Result:
    question = f"delete every cached image in {ctx.cache.base_dir}?"
    if not args.yes and sys.stdin.isatty() and not confirm(question):
        return Result(
            {"deleted": 0}, None, EXIT_FAILED, Failure("nothing deleted", "Declined")
        )
    count = ctx.cache.delete_all_cached_images()
    return Result({"deleted": count}, f"deleted {count} cached images")


def cmd_delete_queued(args: argparse.Namespace, ctx: Context) -> Result:
    if not ctx.cache.delete_queued_image(args.image_id):
        raise exceptions.NotFound(f"image {args.image_id} is not queued")
    return Result(
        {"image_id": args.image_id, "dequeued": True},
        f"removed {args.image_id} from the queue",
    )


def cmd_delete_all_queued(args: argparse.Namespace, ctx: Context) -> Result:
    count = ctx.cache.delete_all_queued_images()
    return Result({"dequeued": count}, f"removed {count} images from the queue")


def cmd_prune(args: argparse.Namespace, ctx: Context) -> Result:
    files, freed = ctx.cache.prune()
    return Result(
        {"files": files, "bytes": freed}, f"pruned {files} images, {human_size(freed)}"
    )


def cmd_clean(args: argparse.Namespace, ctx: Context) -> Result:
    cleaned = ctx.cache.clean(args.stall_time)
    lines = [
        f"removed {cleaned.invalid} invalid and {cleaned.incomplete} incomplete files"
    ]
    lines += [f"left {what}" for what in cleaned.left]
    return Result(
        {
            "invalid": cleaned.invalid,
            "incomplete": cleaned.incomplete,
            "left": list(cleaned.left),
        },
        "\n".join(lines),
        EXIT_FAILED if cleaned.left else 0,
    )


def cmd_size(args: argparse.Namespace, ctx: Context) -> Result:
    size = ctx.cache.get_cache_size()
    limit = ctx.cache.max_size
    return Result(
        {"size": size, "max_size": limit},
        f"{size} bytes ({human_size(size)} of {human_size(limit)})",
    )


def cmd_check(args: argparse.Namespace, ctx: Context) -> Result:
    if args.fix:
        ctx.will_write("cache")
    problems = ctx.cache.check(fix=args.fix)
    record = {
        "problems": [p.as_dict() for p in problems],
        "fixed": bool(args.fix and problems),
    }
    lines = [f"{p.kind}: {p.image_id or '-'}: {p.detail}" for p in problems]
    verdict = "fixed" if args.fix else "found"
    lines.append(f"{len(problems)} problems {verdict}" if problems else "no problems")
    status = EXIT_FAILED if problems and not args.fix else 0
    return Result(record, "\n".join(lines), status)


def cmd_prefetch(args: argparse.Namespace, ctx: Context) -> Result:
    prefetcher = Prefetcher(ctx.cache, ctx.registry, workers=args.workers)
    total = len(ctx.cache.get_queued_images())
    with progress(args.progress, total, "prefetch", unit="image") as bar:

        def done(_image_id: str, _cached: bool) -> None:
            bar.update(1)

        report = prefetcher.run(on_done=done)
    record = {
        "cached": sorted(report.cached),
        "skipped": sorted(report.skipped),
        "failed": report.failed,
    }
    lines = [f"cached {image_id}" for image_id in sorted(report.cached)]
    lines += [f"failed {i}: {reason}" for i, reason in sorted(report.failed.items())]
    return Result(record, "\n".join(lines) or None, EXIT_FAILED if report.failed else 0)


_ID = arg("image_id", metavar="ID", help="the image's id")

CACHE = Command(
    "cache",
    "manage the image cache",
    subcommands=(
        Command("list", "list cached images", cmd_list),
        Command("queued", "list queued images, in queue order", cmd_queued),
        Command(
            "delete-all",
            "delete every cached image (asks first on a terminal)",
            cmd_delete_all,
            (arg("-y", "--yes", action="store_true", help="do not ask"),),
            writes="cache",
        ),
        Command(
            "delete-all-queued",
            "empty the queue",
            cmd_delete_all_queued,
            writes="cache",
        ),
        Command(
            "prune",
            "evict LRU images down to image_cache_max_size",
            cmd_prune,
            writes="cache",
        ),
        Command("size", "print the cache's total size", cmd_size),
        Command(
            "delete", "delete one cached image", cmd_delete, (_ID,), writes="cache"
        ),
        Command(
            "delete-queued",
            "remove one image from the queue",
            cmd_delete_queued,
            (_ID,),
            writes="cache",
        ),
        Command(
            "queue",
            "queue an image for prefetch",
            cmd_queue,
            (
                _ID,
                arg(
                    "--location",
                    required=True,
                    help="the image's store location URI, where prefetch reads it",
                ),
                arg(
                    "--checksum",
                    metavar="MD5",
                    help="the MD5 the image must have, checked as it is cached",
                ),
                arg(
                    "--multihash",
                    metavar="HEX",
                    help="the --hashing-algo digest it must have, checked likewise",
                ),
                arg(
                    "--hashing-algo",
                    type=hashing_algo,
                    metavar="ALGO",
                    help=f"the multihash's algorithm (default: {DEFAULT_HASHING_ALGO})",
                ),
                arg(
                    "--allow-unverified",
                    action="store_true",
                    help="cache it even with no --checksum or --multihash to "
                    "verify it against",
                ),
            ),
            writes="cache",
        ),
        Command(
            "clean",
            "remove invalid and crashed incomplete files",
            cmd_clean,
            (
                arg(
                    "--stall-time",
                    type=nonnegative,
                    default=None,
                    metavar="SECONDS",
                    help="an incomplete file untouched this long is a crashed "
                    "writer's (default: image_cache_stall_time)",
                ),
            ),
            writes="cache",
        ),
        Command(
            "check",
            "reconcile the driver's records with the files",
            cmd_check,
            (arg("--fix", action="store_true", help="repair what differs"),),
        ),
        Command(
            "prefetch",
            "cache every queued image",
            cmd_prefetch,
            (
                arg(
                    "--workers",
                    type=positive,
                    default=4,
                    help="images read at once (default: 4)",
                ),
            ),
            writes="cache",
        ),
    ),
)
