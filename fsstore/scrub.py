"""Integrity over time: read every image of a store again and compare its
digests with the ones kept when it was added.

A store that keeps digests (see :class:`fsstore.store.KeptDigests`) lists
its images with ``images()`` and returns what it kept with
``kept_digests()``. :func:`scrub` reads each image whole, in id order,
recomputes MD5 and the multihash, and gives it one verdict:

========== ============================================================
ok           both digests and the size match
corrupt      a digest differs, or there is more data than was kept
truncated    less data than the kept size
unverifiable nothing was kept for it (added before digests were kept,
             or by another writer) and nothing was expected
recorded     nothing was kept; with ``record`` its digests are kept now
             (trust on first scrub, or on matching the expected ones)
unreadable   reading it failed
========== ============================================================

``expected`` (see :func:`load_expected`) holds the digests an operator
expects, e.g. Glance's database: an image that differs from them is
corrupt, whatever was kept.

``rate`` (bytes per second) bounds how fast it reads, so that a scrub does
not saturate a production disk. With a ``checkpoint`` file the verdicts so
far are written after the first image, then once a second at most, and at
the end (atomically: a temporary file renamed over it), so a scrub that was
interrupted, even by ``kill -9``, resumes after the last image written
there; the images finished since, and the one it was reading, are read
again. A checkpoint per image would cost a flushed file write per image,
which for many small images is more than the reading.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import enum
import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsstore import exceptions
from fsstore.hashing import DEFAULT_HASHING_ALGO, ImageHasher, KeptDigests, differs
from fsstore.store import Store


class Verdict(enum.StrEnum):
    OK = "ok"
    RECORDED = "recorded"
    CORRUPT = "corrupt"
    TRUNCATED = "truncated"
    UNVERIFIABLE = "unverifiable"
    UNREADABLE = "unreadable"


CHECKPOINT_EVERY = 1.0  # seconds

FAILED = frozenset({Verdict.CORRUPT, Verdict.TRUNCATED})


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    image_id: str
    location: str
    verdict: Verdict
    detail: str
    bytes_read: int

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "verdict": self.verdict.value}


@dataclasses.dataclass
class ScrubReport:
    checks: list[ImageCheck] = dataclasses.field(default_factory=list)
    resumed: int = 0  # how many of the checks an earlier scrub made

    @property
    def bytes_read(self) -> int:
        return sum(c.bytes_read for c in self.checks)

    @property
    def failed(self) -> bool:
        """Whether any image is corrupt or truncated."""
        return any(c.verdict in FAILED for c in self.checks)

    def counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for c in self.checks:
            counts[c.verdict.value] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": [c.as_dict() for c in self.checks],
            "counts": self.counts(),
            "bytes_read": self.bytes_read,
            "resumed": self.resumed,
        }


class RateLimit:
    """At most ``rate`` bytes per second on average, from the first byte."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock, self._pause = clock, pause
        self._start = clock()
        self._allowed = 0

    def took(self, n: int) -> None:
        """``n`` more bytes were read: wait until they fit the rate."""
        if not self.rate:
            return
        self._allowed += n
        ahead = self._allowed / self.rate - (self._clock() - self._start)
        if ahead > 0:
            self._pause(ahead)


@dataclasses.dataclass(frozen=True)
class Expected:
    """Digests an operator expects an image to have (what Glance's database
    holds: ``checksum``, ``os_hash_algo``, ``os_hash_value``)."""

    checksum: str | None
    multihash: str | None
    hashing_algo: str = DEFAULT_HASHING_ALGO


def _read(
    store: Store,
    location: str,
    hashing_algo: str,
    limit: RateLimit,
    on_bytes: Callable[[int], object] | None,
) -> tuple[int, str, str]:
    """Read the image whole: its size and digests (FsstoreError, OSError)."""
    hasher = ImageHasher(hashing_algo)
    read = 0
    try:
        chunks, _length = store.get(location)
        with contextlib.closing(chunks):
            for chunk in chunks:
                hasher.update(chunk)
                read += len(chunk)
                limit.took(len(chunk))
                if on_bytes is not None:
                    on_bytes(len(chunk))
    except exceptions.Corrupt:
        pass  # the store verifies on read: judged from what was read
    finally:
        hasher.close()
    return (read, *hasher.hexdigests())


def check_image(
    store: Store,
    image_id: str,
    location: str,
    limit: RateLimit,
    on_bytes: Callable[[int], object] | None = None,
    expected: Expected | None = None,
    record: bool = False,
) -> ImageCheck:
    """Read one image whole and judge it against what was kept for it, and
    against ``expected`` when given. With ``record``, an image that has
    nothing kept (and matches ``expected``, if given) gets its digests kept
    now: trust on first scrub."""
    try:
        kept = store.kept_digests(location)
    except (exceptions.FsstoreError, OSError) as exc:
        return ImageCheck(image_id, location, Verdict.UNREADABLE, str(exc), 0)
    algo = (
        kept.hashing_algo
        if kept is not None
        else expected.hashing_algo
        if expected is not None
        else DEFAULT_HASHING_ALGO
    )
    try:
        read, checksum, multihash = _read(store, location, algo, limit, on_bytes)
    except (exceptions.FsstoreError, OSError) as exc:
        return ImageCheck(image_id, location, Verdict.UNREADABLE, str(exc), 0)
    actual = KeptDigests(checksum, multihash, algo, read)
    verdict, detail = Verdict.OK, ""
    if kept is not None:
        verdict, detail = _judge(kept, actual)
    if verdict is Verdict.OK and expected is not None:
        verdict, detail = _against_expected(expected, actual)
    if kept is None and verdict is Verdict.OK:
        if record:
            verdict, detail = _record(store, location, actual)
        elif expected is None:
            verdict, detail = Verdict.UNVERIFIABLE, "no digests were kept for it"
    return ImageCheck(image_id, location, verdict, detail, read)


def _record(store: Store, location: str, actual: KeptDigests) -> tuple[Verdict, str]:
    try:
        store.keep_digests(location, actual)
    except exceptions.FsstoreError as exc:
        return Verdict.UNVERIFIABLE, f"no digests were kept, nor could be: {exc}"
    return Verdict.RECORDED, "digests kept now"


def _judge(kept: KeptDigests, actual: KeptDigests) -> tuple[Verdict, str]:
    difference = differs(kept, actual)
    if difference is None:
        return Verdict.OK, ""
    if actual.size < kept.size:
        return Verdict.TRUNCATED, difference
    return Verdict.CORRUPT, difference


def _against_expected(expected: Expected, actual: KeptDigests) -> tuple[Verdict, str]:
    if expected.checksum and expected.checksum.lower() != actual.checksum:
        return (
            Verdict.CORRUPT,
            f"md5 {actual.checksum}, {expected.checksum} was expected",
        )
    if expected.multihash and expected.multihash.lower() != actual.multihash:
        return (
            Verdict.CORRUPT,
            f"{actual.hashing_algo} {actual.multihash}, {expected.multihash} "
            "was expected",
        )
    return Verdict.OK, ""


def load_expected(path: Path) -> dict[str, Expected]:
    """Expected digests by image id, from JSON (a list of objects) or CSV
    (with a header row). Fields: ``id``, ``checksum``, ``multihash`` or
    ``os_hash_value``, ``hashing_algo`` or ``os_hash_algo`` (default
    sha512): the columns of Glance's ``images`` table."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise exceptions.Invalid(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".csv":
            rows: list[Any] = list(csv.DictReader(io.StringIO(text)))
        else:
            rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError("not a list of images")
        return {str(row["id"]): _expected(row) for row in rows}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise exceptions.Invalid(
            f"expected digests in {path} are not usable: {exc!r}"
        ) from None


def _expected(row: dict[str, Any]) -> Expected:
    multihash = row.get("multihash") or row.get("os_hash_value") or None
    algo = row.get("hashing_algo") or row.get("os_hash_algo") or DEFAULT_HASHING_ALGO
    return Expected(row.get("checksum") or None, multihash, str(algo))


def _load_checkpoint(path: Path) -> list[ImageCheck]:
    try:
        data = json.loads(path.read_text())
        return [
            ImageCheck(
                c["image_id"],
                c["location"],
                Verdict(c["verdict"]),
                c["detail"],
                int(c["bytes_read"]),
            )
            for c in data["images"]
        ]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as exc:
        raise exceptions.Invalid(
            f"scrub checkpoint {path} is damaged ({exc}); remove it to start over"
        ) from None


def _save_checkpoint(path: Path, report: ScrubReport) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(report.as_dict(), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    """Check every image of ``store`` (see the module docstring).

    ``resume`` continues from ``checkpoint``'s verdicts; without it a
    checkpoint left by an earlier scrub is started over. ``on_total`` is
    told the bytes left to read (as listed) before the first is read. The
    checkpoint is written after the first image, then at most every
    ``checkpoint_every`` seconds, and at the end: a killed scrub checks again
    at most that much.
    """
    report = ScrubReport()
    if checkpoint is not None and resume:
        report.checks = _load_checkpoint(checkpoint)
        report.resumed = len(report.checks)
    done = {c.image_id for c in report.checks}
    pending = [image for image in sorted(store.images()) if image.image_id not in done]
    if on_total is not None:
        on_total(sum(image.size for image in pending))
    limit = RateLimit(rate)
    saved = -math.inf
    for image in pending:
        wanted = expected.get(image.image_id) if expected is not None else None
        check = check_image(
            store, image.image_id, image.location, limit, on_bytes, wanted, record
        )
        report.checks.append(check)
        if checkpoint is not None and time.monotonic() - saved >= checkpoint_every:
            _save_checkpoint(checkpoint, report)
            saved = time.monotonic()
        if on_image is not None:
            on_image(check)
    if checkpoint is not None:
        _save_checkpoint(checkpoint, report)
    return report
