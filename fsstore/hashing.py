"""The MD5 checksum and the multihash of one stream, computed in one pass.

Glance records two digests per image: ``checksum`` (MD5) and ``os_hash_value``
(the multihash, ``sha512`` by default). Each costs about as much CPU as the
copy itself, so once a stream is large enough for it to pay, each digest runs
in a thread of its own: hashlib releases the GIL on buffers above 2 KiB, so the
two digests and the caller's I/O share the cores. Small images are hashed
inline, where starting threads would cost more than it saves.

It also holds what digests are compared with, once for every verification:
:class:`KeptDigests` (what a store keeps with an image), :class:`Expected`
(what a caller or an operator expects: the cache's writer, ``scrub
--expected``), the one comparison of the bytes read with either
(:func:`mismatch`), and the one rule for a multihash algorithm
(:func:`hashing_algo_problem`), which the command applies too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any, NamedTuple, TypeGuard

from fsstore.exceptions import Corrupt, Invalid, UnknownHashingAlgo

DEFAULT_HASHING_ALGO = "sha512"

# Below this many bytes a stream is hashed in the caller's thread.
THREADED_THRESHOLD = 1 << 20
# Bytes handed to a digest thread and not hashed yet (one batch always
# goes, however large): bounds what an add holds for its digests whatever
# its chunk size (four batches of 1 MiB chunks, two of 8 MiB RBD objects).
QUEUE_BYTES = 16 << 20
# The digest threads are fed batches of chunks of at least this many bytes
# in all: per 64 KiB chunk (a file read, an HTTP body), handing a chunk to
# two queues costs more than hashing it.
HASH_BATCH = 1 << 20

_STOP = None


class KeptDigests(NamedTuple):
    """What a store keeps with an image when it is added, to verify it
    later (fsstore.scrub): the digests Glance records, and the size."""

    checksum: str  # MD5, hex
    multihash: str  # hex
    hashing_algo: str
    size: int


_HEX_DIGITS = frozenset("0123456789abcdef")


def shown(value: object) -> str:
    """``value`` as a message quotes it: on one line, and short.

    :param value: anything a message names.
    """
    text = repr(value)
    return text if len(text) <= 70 else text[:60] + "..." + text[-6:]


def hashing_algo_problem(algo: object) -> str | None:
    """Why ``algo`` is not an algorithm fsstore computes a multihash in, in
    words naming it; None when it is one.

    The one rule, for the library and the command alike: a name
    ``hashlib.new`` accepts, as glance_store's multihash accepts it (so
    ``SHA512`` too), whose digest has a fixed length. ``shake_128`` and
    ``shake_256`` are refused: their hex digest needs a length, which
    neither Glance's ``os_hash_algo`` nor a kept record says.

    :param algo: the name to check (anything: it may come from a file).
    """
    if not isinstance(algo, str):
        return f"{shown(algo)} is not the name of a hashing algorithm"
    try:
        digest = hashlib.new(algo)
    except ValueError:  # unknown, or refused by this build (FIPS mode)
        return f"{shown(algo)} is not a hashing algorithm fsstore knows"
    if not digest.digest_size:
        return f"{shown(algo)} has no fixed digest length"
    return None


def digest_problem(value: object, algo: str) -> str | None:
    """Why ``value`` is not a hex digest of ``algo`` (in either case), in
    words quoting it; None when it is one.

    :param value: the digest to check (anything: it may come from a file).
    :param algo: an algorithm :func:`hashing_algo_problem` accepts.
    """
    length = 2 * new_multihash(algo).digest_size
    if (
        not isinstance(value, str)
        or len(value) != length
        or not _HEX_DIGITS.issuperset(value.lower())
    ):
        return f"{shown(value)} is not a hex {algo} digest ({length} digits)"
    return None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class InvalidExpected(Invalid):
    """An :class:`Expected` refused: ``field`` names the field that failed
    (``checksum``, ``multihash``, ``hashing_algo`` or ``size``), so that a
    caller reading the fields from elsewhere can name its own column.

    :param field: the name of the field that failed.
    :param problem: why, in words quoting the value.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"expected digests: {problem}")
        self.field = field
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Expected:
    """The digests an image's bytes are expected to have: what a caller
    gives the cache to verify an image against, what an operator gives a
    scrub (Glance's ``checksum``, ``os_hash_algo``, ``os_hash_value``).
    Compared with the bytes read by :func:`mismatch`.

    :param checksum: the MD5 hex digest, or None (not checked).
    :param multihash: the hex digest in ``hashing_algo``, or None.
    :param hashing_algo: the multihash's algorithm
        (see :func:`hashing_algo_problem`).
    :param size: the size in bytes, or None (not checked).
    :param allow_unverified: with neither digest, whether the bytes may
        be taken without verifying them (the cache's unverified entries);
        keyword-only: it must be asked for by name.

    Hex digests are kept in lower case, and an empty one is none given;
    anything that could never match an image's digest is Invalid here
    (:class:`InvalidExpected`, naming the field), before any image is read.
    """

    checksum: str | None = None
    multihash: str | None = None
    hashing_algo: str = DEFAULT_HASHING_ALGO
    size: int | None = None
    allow_unverified: bool = dataclasses.field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        problem = hashing_algo_problem(self.hashing_algo)
        if problem is not None:
            raise InvalidExpected("hashing_algo", problem)
        for name, value, algo in (
            ("checksum", self.checksum, "md5"),
            ("multihash", self.multihash, self.hashing_algo),
        ):
            if value is None:
                continue
            if value == "":
                object.__setattr__(self, name, None)
            elif (problem := digest_problem(value, algo)) is not None:
                raise InvalidExpected(name, problem)
            else:
                object.__setattr__(self, name, value.lower())
        size = self.size
        if size is not None and not _is_count(size):
            raise InvalidExpected(
                "size", f"size {shown(size)} is not a number of bytes"
            )

    @property
    def digests(self) -> bool:
        """Whether any digest is expected (a scrub's row may only name an
        image, a cache entry may be unverified)."""
        return self.checksum is not None or self.multihash is not None


def mismatch(
    wanted: Expected | KeptDigests, read: KeptDigests, source: str = "expected"
) -> str | None:
    """How the bytes read differ from ``wanted``, in words: their size
    first, then MD5, then the multihash; None when they match everything
    ``wanted`` names (an Expected may leave any of them out).

    :param wanted: what the bytes should be: what a caller expects, or
        what a store kept with the image.
    :param read: the digests of the bytes read, the multihash in
        ``wanted.hashing_algo``.
    :param source: where ``wanted`` came from, as the words say it
        (``"kept"``, ``"expected"``).

    Bytes shorter than ``wanted.size`` are a truncated image, and the
    words say so by giving both sizes as a fraction.
    """
    if wanted.size is not None and read.size < wanted.size:
        return f"{read.size} of {wanted.size} bytes"
    if wanted.size is not None and read.size > wanted.size:
        return f"{read.size} bytes, {wanted.size} were {source}"
    if wanted.checksum is not None and read.checksum != wanted.checksum:
        return f"md5 {read.checksum}, {wanted.checksum} was {source}"
    if wanted.multihash is not None and read.multihash != wanted.multihash:
        algo = wanted.hashing_algo
        return f"{algo} {read.multihash}, {wanted.multihash} was {source}"
    return None


def differs(kept: KeptDigests, actual: KeptDigests) -> str | None:
    """How the image read differs from what was kept with it, in words
    (:func:`mismatch`); None when it does not.

    :param kept: what the store kept with the image.
    :param actual: the digests of the bytes read, in ``kept.hashing_algo``.
    """
    return mismatch(kept, actual, "kept")


# A record is under 300 bytes; anything planted where one belongs that is
# longer than this is not one, and is not read whole.
MAX_RECORD_BYTES = 4096


def encode_record(kept: KeptDigests, **extra: str) -> bytes:
    """``kept`` (and ``extra`` fields) as the JSON a store writes where it
    keeps a record of them."""
    return json.dumps({**extra, **kept_as_record(kept)}, sort_keys=True).encode()


def parse_record(body: bytes) -> object:
    """The JSON value of what a store read where a record belongs (at most
    ``MAX_RECORD_BYTES + 1`` bytes of it); None when it is longer than a
    record can be, or not JSON."""
    if len(body) > MAX_RECORD_BYTES:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def kept_as_record(kept: KeptDigests) -> dict[str, object]:
    """``kept`` as the JSON object stores write where they keep records."""
    return {
        "md5": kept.checksum,
        "multihash": kept.multihash,
        "hashing_algo": kept.hashing_algo,
        "size": kept.size,
    }


def kept_from_record(record: object) -> KeptDigests | None:
    """What ``kept_as_record`` wrote, or None for anything else: a record
    that is not whole is never trusted."""
    if not isinstance(record, dict):
        return None
    fields = [record.get(name) for name in ("md5", "multihash", "hashing_algo")]
    size = record.get("size")
    if not all(isinstance(value, str) for value in fields):
        return None
    if not _is_count(size):
        return None
    return KeptDigests(str(fields[0]), str(fields[1]), str(fields[2]), size)


# Constructors of the algorithms seen so far: hashlib.new() looks a name up
# each time, which costs as much as hashing a small image's first KiB.
_CONSTRUCTORS: dict[str, Callable[[], Any]] = {}


def new_multihash(hashing_algo: str) -> Any:
    """A fresh hash object for ``hashing_algo``, or :class:`UnknownHashingAlgo`
    for a name :func:`hashing_algo_problem` refuses."""
    constructor = _CONSTRUCTORS.get(hashing_algo) if type(hashing_algo) is str else None
    if constructor is not None:
        return constructor()
    if hashing_algo_problem(hashing_algo) is not None:
        raise UnknownHashingAlgo(str(hashing_algo))
    named = getattr(hashlib, hashing_algo, None)
    if hashing_algo in hashlib.algorithms_guaranteed and callable(named):
        _CONSTRUCTORS[hashing_algo] = named
    else:
        _CONSTRUCTORS[hashing_algo] = functools.partial(hashlib.new, hashing_algo)
    return _CONSTRUCTORS[hashing_algo]()


def hexdigests_of(data: bytes, hashing_algo: str) -> tuple[str, str]:
    """``(MD5, multihash)`` hex digests of ``data``, whole: what an
    :class:`ImageHasher` shown ``data`` at once answers, without a stream's
    machinery, for a small image read in one piece."""
    multihash = new_multihash(hashing_algo)
    multihash.update(data)
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), multihash.hexdigest()


class _DigestThread:
    """One digest fed by a thread of its own, at most ``queue_bytes`` ahead."""

    def __init__(self, digest: Any, queue_bytes: int = QUEUE_BYTES) -> None:
        self.digest = digest
        self._queue_bytes = queue_bytes
        self._queue: queue.SimpleQueue[tuple[list[bytes], int] | None] = (
            queue.SimpleQueue()
        )
        self._room = threading.Condition()
        self._queued = 0  # bytes put and not hashed yet
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        update = self.digest.update
        get = self._queue.get
        while (item := get()) is not _STOP:
            batch, size = item
            for chunk in batch:
                update(chunk)
            with self._room:
                self._queued -= size
                self._room.notify()

    def put(self, batch: list[bytes], size: int) -> None:
        with self._room:
            while self._queued and self._queued + size > self._queue_bytes:
                self._room.wait()
            self._queued += size
        self._queue.put((batch, size))

    def join(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()


class ImageHasher:
    """MD5 plus the multihash of everything passed to :meth:`update`, and
    the digests of any further algorithms named in ``also`` (a scrub
    checking an image against digests kept in one algorithm and expected
    in another reads it once).

    Call :meth:`hexdigests` (or :meth:`multihashes`) once at the end, or
    :meth:`close` to abandon the stream; either stops the digest threads.
    ``queue_bytes`` bounds the bytes handed to each digest thread and not
    hashed yet, for a caller that holds the stream's bytes already.
    """

    def __init__(
        self,
        hashing_algo: str = DEFAULT_HASHING_ALGO,
        also: Iterable[str] = (),
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.hashing_algo = hashing_algo
        self._queue_bytes = queue_bytes
        self._multihash = new_multihash(hashing_algo)
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._also = {
            algo: new_multihash(algo) for algo in also if algo != hashing_algo
        }
        self._threads: list[_DigestThread] = []
        self._batch: list[bytes] = []
        self._batched = 0
        self._seen = 0

    def update(self, chunk: bytes) -> None:
        if self._threads:
            self._feed(chunk)
            return
        self._seen += len(chunk)
        if self._seen > THREADED_THRESHOLD and len(chunk) >= 16384:
            self._threads = [
                _DigestThread(digest, self._queue_bytes)
                for digest in (self._md5, self._multihash, *self._also.values())
            ]
            self._feed(chunk)
            return
        self._md5.update(chunk)
        self._multihash.update(chunk)
        for digest in self._also.values():
            digest.update(chunk)

    def _feed(self, chunk: bytes) -> None:
        """Hand ``chunk`` to the digest threads, in batches. A ``bytes``
        goes as it is (it cannot change while queued); anything else is
        copied, so a caller may reuse its buffer."""
        kept = chunk if type(chunk) is bytes else bytes(chunk)
        self._batch.append(kept)
        self._batched += len(kept)
        if self._batched >= HASH_BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, size = self._batch, self._batched
        self._batch, self._batched = [], 0
        if batch:
            for thread in self._threads:
                thread.put(batch, size)

    def digests(self) -> list[Any]:
        """The two hash objects, for a caller that feeds them itself."""
        assert not self._also, "the digests of also are not handed out"
        self.close()
        return [self._md5, self._multihash]

    def close(self) -> None:
        if not self._threads:
            return  # nothing batched either: only threads are fed batches
        self._flush()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()

    def hexdigests(self) -> tuple[str, str]:
        """``(md5 hex digest, multihash hex digest)``; ends the stream."""
        self.close()
        return self._md5.hexdigest(), self._multihash.hexdigest()

    def multihashes(self) -> dict[str, str]:
        """The hex digest of every algorithm but MD5, by name (the
        multihash's and those of ``also``); ends the stream."""
        self.close()
        digests = {self.hashing_algo: self._multihash.hexdigest()}
        for algo, digest in self._also.items():
            digests[algo] = digest.hexdigest()
        return digests


def verified_chunks(
    chunks: Iterable[bytes], kept: KeptDigests, what: str
) -> Generator[bytes, None, None]:
    """``chunks``, hashed on the way; at the end, Corrupt instead of the end
    when they differ from ``kept`` (their size or either digest).

    Closing the generator early closes ``chunks`` and checks nothing: a
    reader that stops before the end has not read the whole image.
    """
    hasher = ImageHasher(kept.hashing_algo)
    size = 0
    try:
        for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        hasher.close()
    actual = KeptDigests(*hasher.hexdigests(), kept.hashing_algo, size)
    difference = differs(kept, actual)
    if difference is not None:
        raise Corrupt(f"{what} differs from the digests kept with it: {difference}")
