"""One image read whole and judged: against the digests kept with it, and
against the digests expected of it, by the one comparison
(fsstore.hashing.mismatch)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from fsstore import exceptions
from fsstore.hashing import (
    DEFAULT_HASHING_ALGO,
    Expected,
    ImageHasher,
    KeptDigests,
    mismatch,
)
from fsstore.scrub.report import FAILED, ImageCheck, RateLimit, Verdict
from fsstore.store import ImageRead, Store

# How often an image replaced while it was read is read again.
REREADS = 1


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


class _Judged(NamedTuple):
    """One read of an image, judged."""

    verdict: Verdict
    detail: str
    bytes_read: int
    replaced: bool  # the image was replaced while it was read


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
    (Store.read_image).

    :param store: the store the image is in.
    :param image_id: the image's id, as the verdict names it.
    :param location: where the store keeps it.
    :param limit: the rate the scrub reads at.
    :param on_bytes: told the size of each chunk read.
    :param expected: the digests the image is expected to have, if any.
    :param record: whether to keep digests for an image that has none.
    """
    if expected is not None and not expected.digests:
        expected = None  # only that it exists was expected
    total, rereads = 0, REREADS
    while True:
        try:
            image = store.read_image(location)
        except (exceptions.FsstoreError, OSError) as exc:
            return ImageCheck(image_id, location, Verdict.UNREADABLE, str(exc), total)
        with image:
            judged = _judge(image, expected, limit, on_bytes, record)
        total += judged.bytes_read
        if not judged.replaced:
            return ImageCheck(image_id, location, judged.verdict, judged.detail, total)
        if not rereads:
            return ImageCheck(
                image_id,
                location,
                Verdict.UNREADABLE,
                "it was replaced each time it was read",
                total,
            )
        rereads -= 1


def _judge(
    image: ImageRead,
    expected: Expected | None,
    limit: RateLimit,
    on_bytes: Callable[[int], object] | None,
    record: bool,
) -> _Judged:
    kept = image.kept
    algos = _algorithms(kept, expected)
    try:
        read, checksum, multihashes = _read(image.chunks, algos, limit, on_bytes)
    except (exceptions.FsstoreError, OSError) as exc:
        return _Judged(Verdict.UNREADABLE, str(exc), 0, False)
    verdict, detail = verdict_of(kept, expected, read, checksum, multihashes)
    if verdict in FAILED and kept is not None and _replaced(image, kept):
        return _Judged(verdict, detail, read, True)
    if kept is None and verdict is Verdict.OK:
        actual = KeptDigests(checksum, multihashes[algos[0]], algos[0], read)
        if record:
            verdict, detail = _record(image, actual)
        elif expected is None:
            verdict, detail = Verdict.UNVERIFIABLE, "no digests were kept for it"
    return _Judged(verdict, detail, read, False)


def _replaced(image: ImageRead, kept: KeptDigests) -> bool:
    """Whether the image was replaced while it was read.

    Race: kept digests and the image are read one after the other (S3: two
    objects); an image replaced in between is judged by the other's
    digests. Bytes are never called corrupt for that: the caller reads the
    image again."""
    try:
        return image.kept_now() != kept
    except (exceptions.FsstoreError, OSError):
        return False


def _algorithms(kept: KeptDigests | None, expected: Expected | None) -> list[str]:
    """The multihash algorithms to compute while reading: the kept one
    first (or, with nothing kept, the one digests would be recorded in),
    then the expected one if it differs."""
    algos = [] if kept is None else [kept.hashing_algo]
    if expected is not None and expected.hashing_algo not in algos:
        algos.append(expected.hashing_algo)
    return algos or [DEFAULT_HASHING_ALGO]


def verdict_of(
    kept: KeptDigests | None,
    expected: Expected | None,
    read: int,
    checksum: str,
    multihashes: dict[str, str],
) -> tuple[Verdict, str]:
    """The verdict on ``read`` bytes whose MD5 is ``checksum`` and whose
    multihashes are ``multihashes`` (by algorithm), with its detail. Bytes
    that match either what was kept or what was expected are never
    corrupt: where the two disagree, that is a conflict."""
    if (
        expected is None
        and kept is not None
        and read == kept.size
        and checksum == kept.checksum
        and multihashes[kept.hashing_algo] == kept.multihash
    ):
        return Verdict.OK, ""  # the usual verdict, without the words of a miss

    def differs(wanted: KeptDigests | Expected | None, source: str) -> str | None:
        if wanted is None:
            return None
        algo = wanted.hashing_algo
        actual = KeptDigests(checksum, multihashes[algo], algo, read)
        return mismatch(wanted, actual, source)

    kept_differs, expected_differs = (
        differs(kept, "kept"),
        differs(expected, "expected"),
    )
    if kept is not None and expected is not None:
        if kept_differs is None and expected_differs is not None:
            return Verdict.CONFLICT, (
                "it matches the digests kept with it, not the expected ones: "
                f"{expected_differs}"
            )
        if kept_differs is not None and expected_differs is None:
            return Verdict.CONFLICT, (
                "it matches the expected digests, not the ones kept with it: "
                f"{kept_differs}"
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
        # An OSError's own text may end in a descriptor number, not a path.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return Verdict.UNVERIFIABLE, f"no digests were kept, nor could be: {why}"
    return Verdict.RECORDED, "digests kept now"
