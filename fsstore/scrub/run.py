"""A scrub of a whole store: every image it lists, in id order, with a
checkpoint to resume from."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from fsstore import exceptions
from fsstore.hashing import Expected
from fsstore.scrub.checkpoint import (
    ScrubPass,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fsstore.scrub.image import check_image
from fsstore.scrub.report import ImageCheck, RateLimit, ScrubReport, Verdict
from fsstore.store import ListedImage, Store

CHECKPOINT_EVERY = 1.0  # seconds


def scrub(
    store: Store,
    rate: float | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_bytes: Callable[[int], object] | None = None,
    on_image: Callable[[ImageCheck], None] | None = None,
    expected: dict[str, Expected] | None = None,
    record: bool = False,
    on_total: Callable[[int], None] | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY,
) -> ScrubReport:
    """Check every image of ``store`` (see fsstore.scrub) and report.

    :param store: the store to scrub.
    :param rate: bytes a second at most, on average (None: no limit).
    :param checkpoint: the file of the verdicts so far (None: none), written
        before the first image, after it, then every ``checkpoint_every``
        seconds at most, and at the end.
    :param resume: go on from ``checkpoint`` if its scrub (this store, same
        ``expected`` and ``record``) did not finish; else a new pass.
    :param on_bytes: told the size of each chunk read.
    :param on_image: told each verdict.
    :param expected: digests expected, by image id (absent ones: missing).
    :param record: keep digests for images that have none.
    :param on_total: told the bytes to read (as listed) before the first.
    :param checkpoint_every: see ``checkpoint``.
    """
    report = ScrubReport()
    saver = _Checkpoints(checkpoint, ScrubPass.of(store, expected, record))
    if checkpoint is not None:
        _start(report, store, saver, resume)
    listed, pending = _listed(report, store)
    if on_total is not None:
        on_total(sum(image.size for image in pending))
    limit = RateLimit(rate)
    for image in pending:
        wanted = (expected or {}).get(image.image_id)
        check = check_image(
            store, image.image_id, image.location, limit, on_bytes, wanted, record
        )
        report.checks.append(check)
        saver.save(report, every=checkpoint_every)
        if on_image is not None:
            on_image(check)
    _missing(report, listed, expected or {}, on_image)
    saver.save(report, finished=True)
    return report


class _Checkpoints:
    """Where a scrub writes its checkpoints (``path`` None: nowhere)."""

    def __init__(self, path: Path | None, this: ScrubPass) -> None:
        self.path, self.this = path, this
        self._saved = -math.inf

    def save(
        self, report: ScrubReport, finished: bool = False, every: float = 0.0
    ) -> None:
        """Write ``report`` unless one was written less than ``every``
        seconds ago (a flushed write per image would cost more than
        reading many small images)."""
        if self.path is None or time.monotonic() - self._saved < every:
            return
        save_checkpoint(self.path, report, self.this, finished)
        if every:
            self._saved = time.monotonic()


def _start(
    report: ScrubReport, store: Store, saver: _Checkpoints, resume: bool
) -> None:
    """Take the verdicts to resume from, if any, and write the checkpoint
    before the first image: one that cannot be written stops the scrub
    before it reads anything."""
    assert saver.path is not None
    if resume:
        _resume(report, store, saver.path, saver.this)
    else:
        read_checkpoint(saver.path)  # refuses a file that is no checkpoint
    saver.save(report)


def _resume(
    report: ScrubReport, store: Store, checkpoint: Path, this: ScrubPass
) -> None:
    """Take the verdicts of the unfinished scrub ``checkpoint`` holds."""
    if this.store is None:
        raise exceptions.Invalid(
            f"a scrub of store {store.name!r} cannot resume: its driver does "
            "not say where its images are kept"
        )
    loaded = load_checkpoint(checkpoint, this)
    if loaded is None:
        report.notes.append(f"no scrub to resume in {checkpoint}; a new pass")
    elif loaded[1]:
        report.notes.append("the last scrub of this store had finished; a new pass")
    else:
        report.checks = loaded[0]


def _listed(
    report: ScrubReport, store: Store
) -> tuple[list[ListedImage], list[ListedImage]]:
    """The store's images, in id order, and those of them still to check.
    What of the store cannot be reached goes in the report, and resumed
    verdicts of images the store no longer lists leave it."""
    unavailable = store.unavailable()
    listed = sorted(store.images())
    # Also after listing: a directory that went away meanwhile was not listed.
    report.unavailable = sorted(set(unavailable) | set(store.unavailable()))
    # A verdict carried over is only for an image the store still lists:
    # one deleted since is not there to be ok (and, expected, is missing).
    present = {image.image_id for image in listed}
    report.checks = [c for c in report.checks if c.image_id in present]
    report.resumed = len(report.checks)
    done = {c.image_id for c in report.checks}
    return listed, [image for image in listed if image.image_id not in done]


def _missing(
    report: ScrubReport,
    listed: list[ListedImage],
    expected: dict[str, Expected],
    on_image: Callable[[ImageCheck], None] | None,
) -> None:
    """Report the ids of ``expected`` that the store does not list."""
    seen = {image.image_id for image in listed}
    for image_id in sorted(expected.keys() - seen):
        check = ImageCheck(
            image_id, "", Verdict.MISSING, "expected, but not in the store", 0
        )
        report.checks.append(check)
        if on_image is not None:
            on_image(check)
