"""``fsstore scrub``: read every image of a store again and check it against
the digests kept when it was added (see fsstore.scrub)."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from pathlib import Path

from fsstore.cli.command import BACKEND, Command, Context, arg, positive_number
from fsstore.cli.output import EXIT_FAILED, Result, human_size, progress
from fsstore.scrub import ImageCheck, ScrubReport, Verdict, load_expected, scrub

MB = 1000 * 1000


def default_checkpoint(store_name: str, identity: str | None = None) -> Path:
    """Where a scrub of ``store_name`` keeps its progress for ``--resume``:
    one file per store, told apart by where its images are (Store.identity),
    not only by a name that two configurations may both use."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", store_name)
    if identity is not None:
        name += "-" + hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(state) / "fsstore" / f"scrub-{name}.json"


def _line(check: ImageCheck) -> str:
    where = f" ({check.location})" if check.location else ""
    detail = f": {check.detail}" if check.detail else ""
    return f"{check.verdict.value} {check.image_id}{where}{detail}"


def _summary(report: ScrubReport) -> str:
    n = len(report.checks)
    counts = ", ".join(f"{k} {v}" for v, k in report.counts().items() if k)
    if report.unavailable:
        counts = f"{counts or 'nothing checked'}, {len(report.unavailable)} unavailable"
    return (
        f"{n} image{'' if n == 1 else 's'}, {human_size(report.bytes_read)} read: "
        f"{counts or 'nothing to check'}"
    )


def cmd_scrub(args: argparse.Namespace, ctx: Context) -> Result:
    if args.record:
        ctx.will_write("stores")  # digests kept with the images
    registry = ctx.registry
    name = args.backend or registry.default_name
    store = registry.get_store(name)
    # Before anything is read: a bad file stops the scrub at once.
    expected = load_expected(Path(args.expected)) if args.expected else None
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        checkpoint = default_checkpoint(name, store.identity())
    checkpoint.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    lines = list(report.notes)
    lines += [f"not checked: {what}" for what in report.unavailable]
    lines += [_line(c) for c in report.checks if c.verdict is not Verdict.OK]
    lines.append(_summary(report))
    record = {"store": name, **report.as_dict()}
    return Result(record, "\n".join(lines), EXIT_FAILED if report.failed else 0)


SCRUB = Command(
    "scrub",
    "check every image of a store against the digests kept with it",
    cmd_scrub,
    (
        BACKEND,
        arg(
            "--rate",
            type=positive_number,
            metavar="MB/s",
            help="read at most this many MB (10^6 bytes) per second",
        ),
        arg(
            "--resume",
            action="store_true",
            help="continue the last scrub of this store where it stopped "
            "(after one that finished: a new pass)",
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
            "(or Glance's os_hash_algo, os_hash_value); differing is corrupt, "
            "an id the store lacks is missing",
        ),
        arg(
            "--checkpoint",
            metavar="FILE",
            help="where progress is kept for --resume "
            "(default: $XDG_STATE_HOME/fsstore/scrub-NAME-ID.json, ID naming "
            "where the store's images are)",
        ),
    ),
)
