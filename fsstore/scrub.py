"""Integrity over time: read every image of a store again and compare its
digests with the ones kept when it was added.

A store that keeps digests (see :class:`fsstore.store.KeptDigests`) lists
its images with ``images()`` and returns what it kept with
``kept_digests()``. :func:`scrub` reads each image whole, in id order,
recomputes MD5 and the multihash, and gives it one verdict:

============ ==========================================================
ok           both digests and the size match
corrupt      a digest differs, or there is more data than was kept
truncated    less data than the kept size
conflict     the image matches the digests kept with it and not the
             expected ones, or the other way round
unverifiable nothing was kept for it (added before digests were kept,
             or by another writer) and nothing was expected
recorded     nothing was kept; with ``record`` its digests are kept now
             (trust on first scrub, or on matching the expected ones)
unreadable   reading it failed
missing      an id of ``expected`` that the store does not list
============ ==========================================================

``expected`` (see :func:`load_expected`) holds the digests an operator
expects, e.g. Glance's database. An image is never called corrupt when its
bytes match either what was kept or what was expected: where the two
disagree, that is a ``conflict``, which fails the scrub all the same. When
the expected algorithm is not the kept one, both are computed in the one
pass over the image.

``rate`` (bytes per second) bounds how fast it reads, so that a scrub does
not saturate a production disk. With a ``checkpoint`` file the verdicts so
far are written before the first image, after it, then once a second at
most, and at the end (whole or not at all, never through a link: see
fsstore.safefiles), so a scrub that was interrupted, even by ``kill -9``,
resumes after the last image written there; the images finished since, and
the one it was reading, are read again. A checkpoint per image would cost a
flushed file write per image, which for many small images is more than the
reading. A checkpoint names the store it is of (Store.identity) and the
options of its scrub, and whether that scrub finished: resuming never
reports another store's verdicts, nor an earlier finished pass's.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from fsstore import exceptions
from fsstore.hashing import (
    DEFAULT_HASHING_ALGO,
    ImageHasher,
    KeptDigests,
    differs,
    new_multihash,
)
from fsstore.safefiles import NotRegularFile, open_regular, replace_contents
from fsstore.store import ImageRead, Store, image_id_problem


class Verdict(enum.StrEnum):
    OK = "ok"
    RECORDED = "recorded"
    CORRUPT = "corrupt"
    TRUNCATED = "truncated"
    CONFLICT = "conflict"
    MISSING = "missing"
    UNVERIFIABLE = "unverifiable"
    UNREADABLE = "unreadable"


CHECKPOINT_EVERY = 1.0  # seconds

FAILED = frozenset(
    {Verdict.CORRUPT, Verdict.TRUNCATED, Verdict.CONFLICT, Verdict.MISSING}
)


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
    # What of the store could not be reached (Store.unavailable).
    unavailable: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return sum(c.bytes_read for c in self.checks)

    @property
    def failed(self) -> bool:
        """Whether any image is corrupt, truncated, in conflict or missing,
        or part of the store could not be reached."""
        return bool(self.unavailable) or any(c.verdict in FAILED for c in self.checks)

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
            "unavailable": self.unavailable,
            "notes": self.notes,
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


_HEX_DIGITS = frozenset("0123456789abcdef")


def _shown(value: object) -> str:
    """``value`` as a message quotes it: on one line, and short."""
    text = repr(value)
    return text if len(text) <= 70 else text[:60] + "..." + text[-6:]


def _algo_problem(algo: object) -> str | None:
    if not isinstance(algo, str):
        return f"{_shown(algo)} is not the name of a hashing algorithm"
    try:
        new_multihash(algo)
    except exceptions.UnknownHashingAlgo:
        return f"{_shown(algo)} is not a hashing algorithm fsstore knows"
    return None


def _digest_problem(value: object, algo: str) -> str | None:
    """Why ``value`` is not a hex digest of ``algo`` (in either case)."""
    length = 2 * new_multihash(algo).digest_size
    if (
        not isinstance(value, str)
        or len(value) != length
        or not _HEX_DIGITS.issuperset(value.lower())
    ):
        return f"{_shown(value)} is not a hex {algo} digest ({length} digits)"
    return None


@dataclasses.dataclass(frozen=True)
class Expected:
    """Digests an operator expects an image to have (what Glance's database
    holds: ``checksum``, ``os_hash_algo``, ``os_hash_value``). Hex digests
    are kept in lower case; anything that could never match an image's
    digest is Invalid here, before any image is read."""

    checksum: str | None
    multihash: str | None
    hashing_algo: str = DEFAULT_HASHING_ALGO

    def __post_init__(self) -> None:
        problem = _algo_problem(self.hashing_algo)
        for name, value, algo in (
            ("checksum", self.checksum, "md5"),
            ("multihash", self.multihash, self.hashing_algo),
        ):
            if problem is None and value is not None:
                problem = _digest_problem(value, algo)
                if problem is None:
                    object.__setattr__(self, name, value.lower())
        if problem is not None:
            raise exceptions.Invalid(f"expected digests: {problem}")

    @property
    def digests(self) -> bool:
        """Whether any digest is expected (a row may only name an image)."""
        return self.checksum is not None or self.multihash is not None


def _read(
    chunks: Iterable[bytes],
    algos: list[str],
    limit: RateLimit,
    on_bytes: Callable[[int], object] | None,
) -> tuple[int, str, dict[str, str]]:
    """Read the image whole: its size, MD5 and the digest of every algorithm
    of ``algos`` (FsstoreError, OSError)."""
    hasher = ImageHasher(algos[0], also=algos[1:])
    read = 0
    try:
        for chunk in chunks:
            hasher.update(chunk)
            read += len(chunk)
            limit.took(len(chunk))
            if on_bytes is not None:
                on_bytes(len(chunk))
    except exceptions.Corrupt:
        pass  # a driver's read that verifies: judged from what was read
    finally:
        hasher.close()
    checksum, _ = hasher.hexdigests()
    return read, checksum, hasher.multihashes()


# How often an image replaced while it was read is read again.
REREADS = 1


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
    now: trust on first scrub, and only for the very image read
    (Store.read_image)."""
    if expected is not None and not expected.digests:
        expected = None  # only that it exists was expected
    total, rereads = 0, REREADS
    while True:
        try:
            image = store.read_image(location)
        except (exceptions.FsstoreError, OSError) as exc:
            return ImageCheck(image_id, location, Verdict.UNREADABLE, str(exc), total)
        with image:
            kept = image.kept
            algos = _algorithms(kept, expected)
            try:
                read, checksum, multihashes = _read(
                    image.chunks, algos, limit, on_bytes
                )
            except (exceptions.FsstoreError, OSError) as exc:
                return ImageCheck(
                    image_id, location, Verdict.UNREADABLE, str(exc), total
                )
            total += read
            verdict, detail = _verdict(kept, expected, read, checksum, multihashes)
            if verdict in FAILED and kept is not None:
                # Race: kept digests and the image are read one after the
                # other (S3: two objects); an image replaced in between is
                # judged by the other's digests. Never call bytes corrupt
                # for that: read it again.
                try:
                    replaced = image.kept_now() != kept
                except (exceptions.FsstoreError, OSError):
                    replaced = False
                if replaced:
                    if rereads:
                        rereads -= 1
                        continue
                    return ImageCheck(
                        image_id,
                        location,
                        Verdict.UNREADABLE,
                        "it was replaced each time it was read",
                        total,
                    )
            if kept is None and verdict is Verdict.OK:
                actual = KeptDigests(checksum, multihashes[algos[0]], algos[0], read)
                if record:
                    verdict, detail = _record(image, actual)
                elif expected is None:
                    verdict, detail = (
                        Verdict.UNVERIFIABLE,
                        "no digests were kept for it",
                    )
            return ImageCheck(image_id, location, verdict, detail, total)


def _algorithms(kept: KeptDigests | None, expected: Expected | None) -> list[str]:
    """The multihash algorithms to compute while reading: the kept one
    first (or, with nothing kept, the one digests would be recorded in),
    then the expected one if it differs."""
    algos = [] if kept is None else [kept.hashing_algo]
    if expected is not None and expected.hashing_algo not in algos:
        algos.append(expected.hashing_algo)
    return algos or [DEFAULT_HASHING_ALGO]


def _verdict(
    kept: KeptDigests | None,
    expected: Expected | None,
    read: int,
    checksum: str,
    multihashes: dict[str, str],
) -> tuple[Verdict, str]:
    """The verdict on bytes read whose digests are these. Bytes that match
    either what was kept or what was expected are never corrupt."""
    kept_differs = None
    if kept is not None:
        actual = KeptDigests(checksum, multihashes[kept.hashing_algo], "", read)
        kept_differs = differs(kept, actual._replace(hashing_algo=kept.hashing_algo))
    expected_differs = None
    if expected is not None:
        expected_differs = _expected_differs(expected, checksum, multihashes)
    if kept is not None and expected is not None:
        if kept_differs is None and expected_differs is not None:
            return (
                Verdict.CONFLICT,
                f"it matches the digests kept with it, not the expected ones: "
                f"{expected_differs}",
            )
        if kept_differs is not None and expected_differs is None:
            return (
                Verdict.CONFLICT,
                f"it matches the expected digests, not the ones kept with it: "
                f"{kept_differs}",
            )
    if kept is not None and kept_differs is not None:
        if read < kept.size:
            return Verdict.TRUNCATED, kept_differs
        return Verdict.CORRUPT, kept_differs
    if expected_differs is not None:
        return Verdict.CORRUPT, expected_differs
    return Verdict.OK, ""


def _record(image: ImageRead, actual: KeptDigests) -> tuple[Verdict, str]:
    try:
        image.keep(actual)
    except (exceptions.FsstoreError, OSError) as exc:
        return Verdict.UNVERIFIABLE, f"no digests were kept, nor could be: {exc}"
    return Verdict.RECORDED, "digests kept now"


def _expected_differs(
    expected: Expected, checksum: str, multihashes: dict[str, str]
) -> str | None:
    """How the digests read differ from ``expected``, in words; None when
    they do not."""
    if expected.checksum is not None and expected.checksum != checksum:
        return f"md5 {checksum}, {expected.checksum} was expected"
    actual = multihashes[expected.hashing_algo]
    if expected.multihash is not None and expected.multihash != actual:
        return f"{expected.hashing_algo} {actual}, {expected.multihash} was expected"
    return None


class _BadRow(Exception):
    """Why one row of an expected-digests file is not usable."""


def load_expected(path: Path) -> dict[str, Expected]:
    """Expected digests by image id, from JSON (a list of objects) or CSV
    (with a header row). Fields: ``id``, ``checksum``, ``multihash`` or
    ``os_hash_value``, ``hashing_algo`` or ``os_hash_algo`` (default
    sha512): the columns of Glance's ``images`` table.

    The whole file is checked before it is returned, so that a scrub never
    stops at the image of a bad row after reading the ones before it:
    anything unusable is Invalid, in one line naming the file and the row.
    """
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise exceptions.Invalid(f"cannot read {path}: {exc.strerror}") from None

    def unusable(why: str) -> exceptions.Invalid:
        return exceptions.Invalid(f"expected digests in {path} are not usable: {why}")

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise unusable(f"byte {exc.start} is not UTF-8 text") from None
    if path.suffix.lower() == ".csv":
        rows: Iterable[object] = _csv_rows(text)
    else:
        try:
            rows = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except _BadRow as exc:
            raise unusable(str(exc)) from None
        except RecursionError:
            raise unusable("JSON nested too deeply") from None
        except ValueError as exc:
            raise unusable(f"not JSON ({exc})") from None
        if not isinstance(rows, list):
            raise unusable("not a list of images")
    found: dict[str, Expected] = {}
    numbered = enumerate(rows, 1)
    n = 1
    try:
        for n, row in numbered:
            image_id, wanted = _expected(row)
            if found.setdefault(image_id, wanted) != wanted:
                raise _BadRow(
                    f"image {_shown(image_id)} is listed before with other digests"
                )
            n += 1  # a CSV row that does not parse is the next one
    except (_BadRow, csv.Error) as exc:
        raise unusable(f"row {n}: {exc}") from None
    return found


def _csv_rows(text: str) -> Iterator[dict[str | None, object]]:
    # The header is not a row: rows count from the first below it.
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = reader.fieldnames or []
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # DictReader keeps the last of two columns of one name.
        raise _BadRow(f"the header has column {_shown(repeated[0])} twice")
    yield from reader


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refusing a key given twice (json keeps the last)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _BadRow(f"field {_shown(repeated[0])} is given twice in one object")
    return dict(pairs)


def _field(row: dict[Any, object], *names: str) -> tuple[str, object]:
    """The first of ``names`` that ``row`` gives a value (an empty CSV cell
    gives none), with that value; two that differ are a bad row."""
    given = [(name, row[name]) for name in names if row.get(name) not in (None, "")]
    if len({json.dumps(value, sort_keys=True) for _, value in given}) > 1:
        (first, _), (second, _) = given[:2]
        raise _BadRow(f"{first} and {second} differ")
    return given[0] if given else (names[0], None)


#: The fields a row of expected digests may have: a misspelt one would
#: otherwise drop its digest silently, and the image be called ok unchecked.
EXPECTED_FIELDS = frozenset(
    {"id", "checksum", "multihash", "os_hash_value", "hashing_algo", "os_hash_algo"}
)
#: The other columns of Glance's ``images`` table, so that a whole row of it
#: (``SELECT * FROM images``) loads; they are not read.
GLANCE_IMAGE_COLUMNS = frozenset(
    {
        "name", "size", "status", "created_at", "updated_at", "deleted_at",
        "deleted", "disk_format", "container_format", "owner", "min_disk",
        "min_ram", "protected", "virtual_size", "visibility", "os_hidden",
    }
)  # fmt: skip


def _expected(row: object) -> tuple[str, Expected]:
    if not isinstance(row, dict):
        raise _BadRow(f"{_shown(row)} is not an object with an id")
    if None in row:  # csv.DictReader's key for cells beyond the header
        raise _BadRow("it has more cells than the header has columns")
    if any(value is None for value in row.values()):
        # DictReader's value for columns a short row lacks (an empty cell
        # is ""): its digests would be dropped and the image called ok.
        raise _BadRow("it has fewer cells than the header has columns")
    unknown = sorted(
        str(k)
        for k in row
        if k not in EXPECTED_FIELDS and k not in GLANCE_IMAGE_COLUMNS
    )
    if unknown:
        raise _BadRow(
            f"unknown field {_shown(unknown[0])} (known: "
            f"{', '.join(sorted(EXPECTED_FIELDS))})"
        )
    image_id = row.get("id")
    if image_id is None or image_id == "":
        raise _BadRow("it has no id")
    problem = image_id_problem(image_id)
    if problem is not None:
        raise _BadRow(f"id {_shown(image_id)}: {problem}")
    assert isinstance(image_id, str)
    named = f"image {_shown(image_id)}: "
    algo_name, algo = _field(row, "hashing_algo", "os_hash_algo")
    if algo is None:
        algo = DEFAULT_HASHING_ALGO
    problem = _algo_problem(algo)
    if problem is not None:
        raise _BadRow(f"{named}{algo_name} {problem}")
    assert isinstance(algo, str)
    checksum_name, checksum = _field(row, "checksum")
    multihash_name, multihash = _field(row, "multihash", "os_hash_value")
    for name, value, of in (
        (checksum_name, checksum, "md5"),
        (multihash_name, multihash, algo),
    ):
        if value is not None and (problem := _digest_problem(value, of)) is not None:
            raise _BadRow(f"{named}{name} {problem}")
    assert checksum is None or isinstance(checksum, str)
    assert multihash is None or isinstance(multihash, str)
    return image_id, Expected(checksum, multihash, algo)


@dataclasses.dataclass(frozen=True)
class _Pass:
    """What a checkpoint belongs to: one store (Store.identity), scrubbed
    with one set of expected digests and one choice of recording. Verdicts
    reached under any other are not this scrub's to report."""

    store: str | None
    options: str

    @classmethod
    def of(
        cls, store: Store, expected: dict[str, Expected] | None, record: bool
    ) -> _Pass:
        wanted = None
        if expected is not None:
            wanted = sorted(
                (image_id, dataclasses.astuple(e)) for image_id, e in expected.items()
            )
        options = json.dumps({"expected": wanted, "record": record})
        return cls(store.identity(), hashlib.sha256(options.encode()).hexdigest())


def _refused(path: Path, exc: OSError) -> exceptions.Invalid:
    if isinstance(exc, NotRegularFile):
        return exceptions.Invalid(
            f"scrub checkpoint {path} is refused: {exc.strerror}; remove it "
            "or give another checkpoint"
        )
    return exceptions.Invalid(f"cannot use scrub checkpoint {path}: {exc.strerror}")


def _load_checkpoint(path: Path, this: _Pass) -> tuple[list[ImageCheck], bool] | None:
    """The verdicts ``path`` holds and whether its scrub finished; None when
    there is none. A checkpoint of another store, or of a scrub with other
    options, is Invalid. The file is read without following a link: a link
    planted there must not feed this scrub another file's verdicts."""
    data = _read_checkpoint(path)
    if data is None:
        return None
    try:
        store, options = data["store"], data["options"]
        finished = data["finished"]
        checks = [
            ImageCheck(
                c["image_id"],
                c["location"],
                Verdict(c["verdict"]),
                c["detail"],
                int(c["bytes_read"]),
            )
            for c in data["images"]
        ]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise exceptions.Invalid(
            f"scrub checkpoint {path} is damaged or of an older fsstore "
            f"({type(exc).__name__}); remove it to start over"
        ) from None
    if this.store is None or store != this.store:
        raise exceptions.Invalid(
            f"scrub checkpoint {path} was written for another store "
            f"({store}); give this store's, or start over without resuming"
        )
    if options != this.options:
        raise exceptions.Invalid(
            f"scrub checkpoint {path} is of a scrub with other expected digests "
            "or recording; give the same, or start over without resuming"
        )
    return checks, bool(finished)


CHECKPOINT_KEYS = frozenset({"images", "store", "options", "finished"})
# About a million images' verdicts.
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    """What the checkpoint at ``path`` holds, None if there is none; Invalid
    if ``path`` holds a file that is not a scrub checkpoint: ``--checkpoint``
    naming a file of the user's by mistake must not replace it (a
    checkpoint, of any store, is the scrub's to start over)."""
    try:
        fd = open_regular(str(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refused(path, exc) from None
    try:
        with os.fdopen(fd, "rb") as f:
            # Bounded: a --checkpoint naming a disk image by mistake must not
            # be read whole to find that it is none.
            body = f.read(MAX_CHECKPOINT_BYTES + 1)
    except OSError as exc:
        raise _refused(path, exc) from None
    try:
        data = json.loads(body) if len(body) <= MAX_CHECKPOINT_BYTES else None
    except (ValueError, RecursionError):
        data = None
    # The keys only a checkpoint has: a scrub's JSON report, or Glance's
    # image list, also has "images".
    if not isinstance(data, dict) or not set(data) >= CHECKPOINT_KEYS:
        raise exceptions.Invalid(
            f"{path} is there and is not a scrub checkpoint: it is left as it "
            "is; give another --checkpoint"
        )
    return data


def _save_checkpoint(
    path: Path, report: ScrubReport, this: _Pass, finished: bool = False
) -> None:
    """Write the checkpoint whole or not at all, the way every state file
    of fsstore is written (safefiles.replace_contents: a new private file
    beside it, flushed, renamed over it; a link at its name refused)."""
    state = {
        **report.as_dict(),
        "store": this.store,
        "options": this.options,
        "finished": finished,
    }
    try:
        replace_contents(str(path), json.dumps(state).encode(), mode=0o600)
    except OSError as exc:
        raise _refused(path, exc) from None


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

    ``resume`` continues from ``checkpoint``'s verdicts, if that scrub of
    this store (with the same ``expected`` and ``record``) did not finish;
    after one that finished it starts a new pass, and says so in the
    report's notes. Without ``resume`` a checkpoint left by an earlier scrub
    is started over. ``on_total`` is told the bytes left to read (as
    listed) before the first is read. The checkpoint is written before the
    first image (so that one that cannot be written stops the scrub before
    it reads anything), after it, then at most every ``checkpoint_every``
    seconds, and at the end: a killed scrub checks again at most that much.

    Ids in ``expected`` that the store does not list are reported
    ``missing``; parts of the store it cannot reach (Store.unavailable) are
    named in the report's ``unavailable``. Either fails the scrub.
    """
    report = ScrubReport()
    this = _Pass.of(store, expected, record)
    if checkpoint is not None and resume:
        if this.store is None:
            raise exceptions.Invalid(
                f"a scrub of store {store.name!r} cannot resume: its driver does "
                "not say where its images are kept"
            )
        loaded = _load_checkpoint(checkpoint, this)
        if loaded is None:
            report.notes.append(f"no scrub to resume in {checkpoint}; a new pass")
        elif loaded[1]:
            report.notes.append("the last scrub of this store had finished; a new pass")
        else:
            report.checks = loaded[0]
            report.resumed = len(report.checks)
    if checkpoint is not None:
        if not resume:  # resuming read it already
            _read_checkpoint(checkpoint)
        _save_checkpoint(checkpoint, report, this)
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
    pending = [image for image in listed if image.image_id not in done]
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
            _save_checkpoint(checkpoint, report, this)
            saved = time.monotonic()
        if on_image is not None:
            on_image(check)
    if expected is not None:
        seen = {image.image_id for image in listed} | done
        for image_id in sorted(expected.keys() - seen):
            check = ImageCheck(
                image_id, "", Verdict.MISSING, "expected, but not in the store", 0
            )
            report.checks.append(check)
            if on_image is not None:
                on_image(check)
    if checkpoint is not None:
        _save_checkpoint(checkpoint, report, this, finished=True)
    return report
