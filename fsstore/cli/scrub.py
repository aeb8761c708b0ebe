"""``fsstore scrub``: read every image of a store again and check it against
the digests kept when it was added (see fsstore.scrub)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fsstore.cli.command import Command, Context, arg, positive_number
from fsstore.cli.output import EXIT_FAILED, Result, human_size, progress
from fsstore.scrub import ImageCheck, Verdict, load_expected, scrub

MB = 1000 * 1000


def default_checkpoint(store_name: str) -> Path:
    """Where a scrub of ``store_name`` keeps its progress for ``--resume``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "fsstore" / f"scrub-{store_name}.json"


def _line(check: ImageCheck) -> str:
    detail = f": {check.detail}" if check.detail else ""
    return f"{check.verdict.value} {check.image_id} ({check.location}){detail}"


def cmd_scrub(args: argparse.Namespace, ctx: Context) -> Result:
    registry = ctx.registry
    name = args.backend or registry.default_name
    store = registry.get_store(name)
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(name)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    expected = load_expected(Path(args.expected)) if args.expected else None
    with progress(args.progress, None, f"scrub {name}") as bar:
        report = scrub(
            store,
            rate=args.rate * MB if args.rate else None,
            checkpoint=checkpoint,
            resume=args.resume,
            on_bytes=bar.update,
            expected=expected,
            record=args.record,
            on_total=lambda total: bar.reset(total=total or None),
        )
    lines = [_line(c) for c in report.checks if c.verdict is not Verdict.OK]
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items() if n)
    lines.append(
        f"{len(report.checks)} image{'' if len(report.checks) == 1 else 's'}, "
        f"{human_size(report.bytes_read)} read: "
        f"{counts or 'nothing to check'}"
    )
    record = {"store": name, **report.as_dict()}
    return Result(record, "\n".join(lines), EXIT_FAILED if report.failed else 0)


SCRUB = Command(
    "scrub",
    "check every image of a store against the digests kept with it",
    cmd_scrub,
    (
        arg("--backend", help="backend name or scheme (default: the default)"),
        arg(
            "--rate",
            type=positive_number,
            metavar="MB/s",
            help="read at most this many MB (10^6 bytes) per second",
        ),
        arg(
            "--resume",
            action="store_true",
            help="continue the last scrub of this store where it stopped",
        ),
        arg(
            "--record",
            action="store_true",
            help="keep the digests of images that have none (trust on first "
            "scrub; with --expected, only of those that match)",
        ),
        arg(
            "--expected",
            metavar="FILE",
            help="expected digests, JSON or CSV of id, checksum, multihash "
            "(or Glance's os_hash_algo, os_hash_value); differing is corrupt",
        ),
        arg(
            "--checkpoint",
            metavar="FILE",
            help="where progress is kept for --resume "
            "(default: $XDG_STATE_HOME/fsstore/scrub-NAME.json)",
        ),
    ),
)
