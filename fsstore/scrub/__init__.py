"""Integrity over time: read every image of a store again and compare its
digests with the ones kept when it was added.

A store that keeps digests (see :class:`fsstore.hashing.KeptDigests`) lists
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
expects (:class:`fsstore.hashing.Expected`, judged by the comparison every
verification uses, fsstore.hashing.mismatch), e.g. Glance's database. An image is never called corrupt when its
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

The parts: ``report`` (verdicts, the report, the rate limit), ``image`` (one
image judged), ``expected`` (the expected-digests file), ``checkpoint`` and
``run`` (the whole store).
"""

from fsstore.hashing import Expected
from fsstore.scrub.checkpoint import CHECKPOINT_KEYS, MAX_CHECKPOINT_BYTES
from fsstore.scrub.expected import EXPECTED_FIELDS, GLANCE_IMAGE_COLUMNS, load_expected
from fsstore.scrub.image import REREADS, check_image
from fsstore.scrub.report import FAILED, ImageCheck, RateLimit, ScrubReport, Verdict
from fsstore.scrub.run import CHECKPOINT_EVERY, scrub

__all__ = [
    "CHECKPOINT_EVERY",
    "CHECKPOINT_KEYS",
    "EXPECTED_FIELDS",
    "FAILED",
    "GLANCE_IMAGE_COLUMNS",
    "MAX_CHECKPOINT_BYTES",
    "REREADS",
    "Expected",
    "ImageCheck",
    "RateLimit",
    "ScrubReport",
    "Verdict",
    "check_image",
    "load_expected",
    "scrub",
]
