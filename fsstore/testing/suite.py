"""Behavioural tests shared by every store driver (see :mod:`fsstore.testing`)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import multiprocessing
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, MutableSequence
from types import TracebackType
from typing import Any, Protocol

import pytest
from oslo_config import cfg

from fsstore import exceptions
from fsstore.hashing import KeptDigests
from fsstore.registry import StoreRegistry, register_opts
from fsstore.store import Capability, Store
from fsstore.streams import ImageData
from fsstore.testing.streams import SHAPES, NoneRead, Recorder, TextRead, shaped

HOSTILE_IDS = [
    "",
    ".",
    "..",
    "../escape",
    "a/b",
    "/etc/passwd",
    "nul\0byte",
    "x" * 256,
    "é" * 128,  # 256 bytes of UTF-8
    ".fsstore-staging",
    "\udcff",  # a lone surrogate: not encodable
]


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic, non-UTF-8 bytes."""
    block = hashlib.sha512(f"fsstore-{seed}".encode()).digest() + bytes(range(128, 256))
    return (block * (size // len(block) + 1))[:size]


def read_all(store: Store, location: str, **kwargs: Any) -> bytes:
    chunks, length = store.get(location, **kwargs)
    try:
        data = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    assert len(data) == length, f"get() said {length} bytes but gave {len(data)}"
    return data


def new_id() -> str:
    return str(uuid.uuid4())


class FailingStream:
    """A file-like object that raises after ``fail_after`` bytes."""

    class Boom(Exception):
        pass

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data = data
        self.pos = 0
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.fail_after:
            raise self.Boom("the caller's stream failed")
        n = len(self.data) if n < 0 else n
        chunk = self.data[self.pos : min(self.pos + n, self.fail_after)]
        self.pos += len(chunk)
        return chunk


#: Builds a store, in whatever process calls it. The suite pickles one into
#: child processes, so it must be picklable: a module-level class or
#: function, with picklable arguments (paths, names), never the store itself.
StoreFactory = Callable[[], Store]


@dataclasses.dataclass(frozen=True)
class StoreFromConfig:
    """A :data:`StoreFactory`: the store named ``name`` (a backend name in
    multi-store mode, else a scheme) of the configuration in
    ``config_files``, as a :class:`~fsstore.registry.StoreRegistry` builds it."""

    config_files: tuple[str, ...]
    name: str

    @classmethod
    def of(cls, store: Store) -> StoreFromConfig | None:
        """The factory of a store configured from files; None for one whose
        configuration is not all in files (overrides, arguments)."""
        files = tuple(getattr(store.conf, "config_file", None) or ())
        if not files:
            return None
        return cls(files, store.backend_group or store.get_schemes()[0])

    def __call__(self) -> Store:
        conf = cfg.ConfigOpts()
        register_opts(conf)
        args = [arg for path in self.config_files for arg in ("--config-file", path)]
        conf(args, project="fsstore", default_config_files=[], use_env=False)
        return StoreRegistry(conf).get_store(self.name)


# -- races between two adds of one id -------------------------------------------

#: Seconds an add waits, mid-stream, for the other add of its round to get
#: as far (or to end). Only a driver that makes the second add wait for the
#: first one's end makes it wait this long; the race then runs unforced.
MEET_TIMEOUT = 10.0
#: Seconds for anything else in a race: starting together, a child's answer.
RACE_TIMEOUT = 300.0


class _Barrier(Protocol):
    def wait(self, timeout: float | None = None) -> int: ...


class _Condition(Protocol):
    def __enter__(self) -> bool: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

    def notify_all(self) -> None: ...

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float | None = None
    ) -> bool: ...


@dataclasses.dataclass
class _Meeting:
    """Where the two adds of each round wait for each other, mid-stream.

    Each add has read half its data when it arrives, so both are past
    anything a driver checks before it reads (an exists-check, a claim)
    before either can publish: a driver whose check and publish are two
    steps lets both win, every round. An add that ends without reading
    that far (refused up front as Duplicate) arrives as it ends. Built on
    threading's primitives or on multiprocessing's.
    """

    condition: _Condition
    arrived: MutableSequence[int]  # per round: adds arrived or ended

    def arrive(self, round_: int) -> None:
        with self.condition:
            self.arrived[round_] += 1
            self.condition.notify_all()

    def wait(self, round_: int) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.arrived[round_] >= 2, MEET_TIMEOUT)


def race_body(tag: str, image_id: str) -> bytes:
    """What writer ``tag`` adds under ``image_id``: the writers' differ, so
    the stored bytes name the winner."""
    return f"{tag}:{image_id}:".encode() * 1024


def _race_one(
    store: Store,
    image_id: str,
    tag: str,
    round_: int,
    size_known: bool,
    start: _Barrier,
    meeting: _Meeting,
) -> tuple[str, str | None]:
    """One writer's add in one round: ("won", location), ("duplicate",
    None), or an error's description and None."""
    data = race_body(tag, image_id)
    half = len(data) // 2
    arrived = False

    def stream() -> Iterator[bytes]:
        nonlocal arrived
        yield data[:half]
        arrived = True
        meeting.arrive(round_)
        meeting.wait(round_)
        yield data[half:]

    start.wait(RACE_TIMEOUT)
    try:
        result = store.add(image_id, stream(), len(data) if size_known else 0)
        return "won", result.location
    except exceptions.Duplicate:
        return "duplicate", None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}", None
    finally:
        if not arrived:
            meeting.arrive(round_)


def _race_in_process(
    factory: StoreFactory,
    tag: str,
    ids: list[str],
    size_known: bool,
    start: _Barrier,
    meeting: _Meeting,
    results: Any,
) -> None:
    """A child process's side of the races: builds its own store, adds each
    id in turn, and reports (round, tag, outcome, location) for each."""
    try:
        store = factory()
        try:
            for round_, image_id in enumerate(ids):
                outcome = _race_one(
                    store, image_id, tag, round_, size_known, start, meeting
                )
                results.put((round_, tag, *outcome))
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
    except BaseException:
        results.put((-1, tag, traceback.format_exc(), None))
        raise


class StoreConformanceTests:
    """Subclass this and provide a ``store`` fixture."""

    #: The store's I/O size (filesystem_store_chunk_size for the filesystem
    #: store), for the round trips at its boundaries.
    io_size = 64 * 1024

    #: Whether the store keeps each image's digests (Store.kept_digests) and
    #: lists its images (Store.images), for a scrub.
    keeps_digests = False

    @pytest.fixture
    def store(self) -> Store:  # pragma: no cover - provided by subclasses
        raise NotImplementedError("provide a 'store' fixture")

    #: Rounds of each race of two adds of one id.
    race_rounds = 20

    def leftovers(self, store: Store) -> Any:
        """What the store holds besides published images (None: not checked)."""
        return None

    def store_factory(self, store: Store) -> StoreFactory | None:
        """How another process builds a store that holds what ``store``
        holds, for the races between processes: by default the store of
        the same configuration files (:class:`StoreFromConfig`). Override
        it for a store set up otherwise; return None for one whose images
        live in its process (a memory store): those races are skipped."""
        return StoreFromConfig.of(store)

    def one_winner_gap(self, store: Store) -> str | None:
        """Why ``store`` does not promise that exactly one of concurrent
        adds of an id wins (the race tests are then skipped), or None: it
        does, as every store should."""
        return None

    # -- helpers -------------------------------------------------------

    def assert_nothing_left(self, store: Store, image_id: str, before: Any) -> None:
        if before is not None:
            assert self.leftovers(store) == before
        # Nothing was published under the id: adding it now works.
        result = store.add(image_id, iter([b"ok"]), 2)
        assert read_all(store, result.location) == b"ok"
        store.delete(result.location)

    # -- round trips -----------------------------------------------------

    @pytest.mark.parametrize("source", ["iterable", "file"])
    @pytest.mark.parametrize(
        "size_name", ["empty", "one", "chunk-1", "chunk", "chunk+1", "several-mib"]
    )
    def test_round_trip(self, store: Store, size_name: str, source: str) -> None:
        size = {
            "empty": 0,
            "one": 1,
            "chunk-1": self.io_size - 1,
            "chunk": self.io_size,
            "chunk+1": self.io_size + 1,
            "several-mib": 5 * 1024 * 1024 + 7,
        }[size_name]
        data = payload(size, seed=size)
        image_id = new_id()
        stream = iter([data]) if source == "iterable" else io.BytesIO(data)
        result = store.add(image_id, stream, size)
        assert result.size == size
        assert result.checksum == hashlib.md5(data).hexdigest()
        assert result.multihash == hashlib.sha512(data).hexdigest()
        assert isinstance(result.metadata, dict)
        assert store.get_size(result.location) == size
        assert read_all(store, result.location) == data
        store.delete(result.location)
        with pytest.raises(exceptions.NotFound):
            store.get_size(result.location)

    @pytest.mark.parametrize("size", [0, 5 * 1024 * 1024 + 7], ids=["empty", "large"])
    def test_digests_are_kept_and_listed(self, store: Store, size: int) -> None:
        if not self.keeps_digests:
            pytest.skip("the store keeps no digests")
        data = payload(size, seed=11)
        image_id = new_id()
        result = store.add(image_id, iter([data]), 0, hashing_algo="sha256")
        assert store.kept_digests(result.location) == KeptDigests(
            hashlib.md5(data).hexdigest(),
            hashlib.sha256(data).hexdigest(),
            "sha256",
            size,
        )
        assert (image_id, result.location, size) in list(store.images())
        store.delete(result.location)
        assert image_id not in {listed.image_id for listed in store.images()}

    def test_file_like_data_and_unknown_size(self, store: Store) -> None:
        data = payload(3 * self.io_size + 5, seed=3)
        result = store.add(new_id(), io.BytesIO(data), 0)
        assert result.size == len(data)
        assert result.checksum == hashlib.md5(data).hexdigest()
        assert read_all(store, result.location) == data

    @pytest.mark.parametrize("algo", ["sha256", "sha384", "md5", "sha3_256"])
    def test_multihash_algorithms(self, store: Store, algo: str) -> None:
        data = payload(100_000, seed=4)
        result = store.add(new_id(), iter([data]), len(data), hashing_algo=algo)
        assert result.multihash == hashlib.new(algo, data).hexdigest()
        assert result.checksum == hashlib.md5(data).hexdigest()

    def test_unknown_hashing_algo(self, store: Store) -> None:
        image_id = new_id()
        with pytest.raises(exceptions.UnknownHashingAlgo, match="nosuchhash"):
            store.add(image_id, iter([b"x"]), 1, hashing_algo="nosuchhash")
        self.assert_nothing_left(store, image_id, None)

    @pytest.mark.parametrize("size_name", ["one-chunk", "several-chunks"])
    def test_verifier_sees_every_chunk(self, store: Store, size_name: str) -> None:
        size = 100 if size_name == "one-chunk" else 2 * self.io_size + 3
        data = payload(size, seed=5)

        class Verifier:
            def __init__(self) -> None:
                self.digest = hashlib.sha256()

            def update(self, chunk: bytes) -> None:
                self.digest.update(chunk)

        verifier = Verifier()
        store.add(new_id(), iter([data]), len(data), verifier=verifier)
        assert verifier.digest.digest() == hashlib.sha256(data).digest()
        verifier = Verifier()
        store.add(new_id(), io.BytesIO(data), len(data), verifier=verifier)
        assert verifier.digest.digest() == hashlib.sha256(data).digest()

    # -- failures leave nothing behind -------------------------------------

    @pytest.mark.parametrize("source", ["iterable", "file"])
    @pytest.mark.parametrize("declared", [11, 999, 1001, 70_000])
    def test_size_mismatch_is_invalid(
        self, store: Store, declared: int, source: str
    ) -> None:
        data = payload(1000)
        image_id = new_id()
        before = self.leftovers(store)
        stream = iter([data[:500], data[500:]]) if source == "iterable" else None
        with pytest.raises(exceptions.Invalid, match="declared"):
            store.add(image_id, stream or io.BytesIO(data), declared)
        self.assert_nothing_left(store, image_id, before)

    def test_stream_exception_is_reraised(self, store: Store) -> None:
        data = payload(4 * self.io_size)
        image_id = new_id()
        before = self.leftovers(store)
        with pytest.raises(FailingStream.Boom):
            store.add(image_id, FailingStream(data, 2 * self.io_size + 1), 0)
        self.assert_nothing_left(store, image_id, before)

    # -- hostile stream shapes -----------------------------------------------

    #: Sizes for the stream-shape tests: past the point where digests move to
    #: threads, and past the point where large-image machinery starts.
    shape_sizes = (3 * 1024 * 1024 + 3, 6 * 1024 * 1024 + 5)

    @pytest.mark.parametrize("declared", ["unknown", "exact"])
    @pytest.mark.parametrize("big", [False, True], ids=["mid", "large"])
    @pytest.mark.parametrize("shape", SHAPES)
    def test_stream_shapes_store_the_callers_bytes(
        self, store: Store, shape: str, big: bool, declared: str
    ) -> None:
        # A source that reuses its buffer, hands over views of other item
        # sizes, or reads short: what is stored, returned and verified are
        # exactly the caller's bytes.
        size = self.shape_sizes[big]
        data = payload(size, seed=size + 17)
        verifier = Recorder()
        result = store.add(
            new_id(),
            shaped(data, shape, 100_003),
            size if declared == "exact" else 0,
            verifier=verifier,
        )
        assert result.size == size
        assert result.checksum == hashlib.md5(data).hexdigest()
        assert result.multihash == hashlib.sha512(data).hexdigest()
        assert verifier.md5() == result.checksum
        assert read_all(store, result.location) == data
        store.delete(result.location)

    @pytest.mark.parametrize(
        "kind", ["read-none", "read-str", "read-empty-str", "str", "int", "none"]
    )
    def test_non_bytes_data_is_invalid(self, store: Store, kind: str) -> None:
        makers: dict[str, Callable[[], ImageData]] = {
            "read-none": lambda: NoneRead(b"x" * 1000),
            "read-str": lambda: TextRead("text"),
            "read-empty-str": lambda: TextRead(""),  # '' is no end of bytes
            "str": lambda: iter([b"ok", "text"]),
            "int": lambda: iter([b"ok", 7]),
            "none": lambda: iter([b"ok", None]),
        }
        stream = makers[kind]()
        image_id = new_id()
        before = self.leftovers(store)
        with pytest.raises(exceptions.Invalid, match="image " + image_id):
            store.add(image_id, stream, 0)
        self.assert_nothing_left(store, image_id, before)

    def test_duplicate(self, store: Store) -> None:
        image_id = new_id()
        first = store.add(image_id, iter([b"first"]), 5)
        with pytest.raises(exceptions.Duplicate):
            store.add(image_id, iter([b"second!"]), 7)
        assert read_all(store, first.location) == b"first"

    # -- missing images ------------------------------------------------------

    def _missing_location(self, store: Store) -> str:
        result = store.add(new_id(), iter([b"gone"]), 4)
        store.delete(result.location)
        return result.location

    def test_missing_image(self, store: Store) -> None:
        location = self._missing_location(store)
        with pytest.raises(exceptions.NotFound):
            store.get(location)
        with pytest.raises(exceptions.NotFound):
            store.get_size(location)
        with pytest.raises(exceptions.NotFound):
            store.delete(location)

    # -- ranged reads --------------------------------------------------------

    @pytest.fixture
    def ranged(self, store: Store) -> Iterator[tuple[Store, str, bytes]]:
        data = payload(3 * self.io_size + 11, seed=7)
        result = store.add(new_id(), iter([data]), len(data))
        if Capability.READ_RANDOM not in store.capabilities:
            with pytest.raises(exceptions.StoreRandomGetNotSupported):
                store.get(result.location, offset=1, chunk_size=1)
            pytest.skip("the store refuses ranged reads, as it declares")
        yield store, result.location, data

    def test_range_from_start(self, ranged: tuple[Store, str, bytes]) -> None:
        store, location, data = ranged
        assert read_all(store, location, offset=0, chunk_size=100) == data[:100]

    def test_range_middle(self, ranged: tuple[Store, str, bytes]) -> None:
        store, location, data = ranged
        off = self.io_size - 10
        got = read_all(store, location, offset=off, chunk_size=self.io_size + 20)
        assert got == data[off : off + self.io_size + 20]

    def test_range_offset_only(self, ranged: tuple[Store, str, bytes]) -> None:
        store, location, data = ranged
        chunks, length = store.get(location, offset=1000)
        assert length == len(data) - 1000
        assert b"".join(chunks) == data[1000:]

    def test_range_last_byte(self, ranged: tuple[Store, str, bytes]) -> None:
        store, location, data = ranged
        got = read_all(store, location, offset=len(data) - 1, chunk_size=1)
        assert got == data[-1:]

    def test_range_longer_than_rest(self, ranged: tuple[Store, str, bytes]) -> None:
        store, location, data = ranged
        got = read_all(store, location, offset=len(data) - 5, chunk_size=1000)
        assert got == data[-5:]

    @pytest.mark.parametrize("past", [0, 1, 10_000])
    def test_range_past_end(self, ranged: tuple[Store, str, bytes], past: int) -> None:
        store, location, data = ranged
        with pytest.raises(exceptions.Invalid, match="past the end"):
            store.get(location, offset=len(data) + past, chunk_size=1)

    @pytest.mark.parametrize("bad", [{"offset": -1}, {"chunk_size": 0}])
    def test_range_bad_arguments(
        self, ranged: tuple[Store, str, bytes], bad: dict[str, int]
    ) -> None:
        store, location, _ = ranged
        with pytest.raises(exceptions.Invalid):
            store.get(location, **bad)

    # -- isolation -----------------------------------------------------------

    def test_delete_does_not_touch_shared_prefix(self, store: Store) -> None:
        base = new_id()
        a = store.add(base, iter([b"a"]), 1)
        ab = store.add(base + "b", iter([b"ab"]), 2)
        store.delete(a.location)
        assert read_all(store, ab.location) == b"ab"
        with pytest.raises(exceptions.NotFound):
            store.get_size(a.location)

    @pytest.mark.parametrize("image_id", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
    def test_hostile_ids_refused(self, store: Store, image_id: str) -> None:
        before = self.leftovers(store)
        with pytest.raises(exceptions.Invalid):
            store.add(image_id, iter([b"evil"]), 4)
        if before is not None:
            assert self.leftovers(store) == before

    # -- concurrency ---------------------------------------------------------

    def test_concurrent_adds_of_different_ids(self, store: Store) -> None:
        items = {new_id(): payload(200_000 + i, seed=i) for i in range(8)}

        def add(image_id: str) -> tuple[str, str]:
            data = items[image_id]
            return image_id, store.add(image_id, iter([data]), len(data)).location

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            locations = dict(pool.map(add, items))
        for image_id, location in locations.items():
            assert read_all(store, location) == items[image_id]

    def _leftovers_at_rest(self, store: Store) -> Any:
        """:meth:`leftovers` once an image was added and deleted: a store
        may make files of its own for good on its first add (a lock file)."""
        location = store.add(new_id(), iter([b"at rest"]), 7).location
        store.delete(location)
        return self.leftovers(store)

    def _check_races(
        self,
        store: Store,
        ids: list[str],
        outcomes: dict[int, dict[str, tuple[str, str | None]]],
        before: Any,
    ) -> None:
        """Each round: one add won, the other was Duplicate, the stored bytes
        are the winner's; and once the winners are deleted, the store holds
        what it held before (the losers left nothing)."""
        for round_, image_id in enumerate(ids):
            got = outcomes[round_]
            assert sorted(o for o, _ in got.values()) == ["duplicate", "won"], (
                f"round {round_}, image {image_id}: {got}"
            )
            tag, (_, location) = next(
                (tag, o) for tag, o in got.items() if o[0] == "won"
            )
            assert location is not None
            assert read_all(store, location) == race_body(tag, image_id)
            store.delete(location)
        if before is not None:
            assert self.leftovers(store) == before

    @pytest.mark.parametrize("size_known", [True, False], ids=["sized", "unsized"])
    def test_concurrent_adds_of_one_id_have_one_winner(
        self, store: Store, size_known: bool
    ) -> None:
        # Two threads add each id at once, meeting mid-stream (_Meeting).
        gap = self.one_winner_gap(store)
        if gap is not None:
            pytest.skip(gap)
        ids = [new_id() for _ in range(self.race_rounds)]
        before = self._leftovers_at_rest(store)
        start = threading.Barrier(2)
        meeting = _Meeting(threading.Condition(), [0] * len(ids))

        def writer(tag: str) -> list[tuple[str, str | None]]:
            return [
                _race_one(store, image_id, tag, round_, size_known, start, meeting)
                for round_, image_id in enumerate(ids)
            ]

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            a, b = pool.map(writer, "ab")
        outcomes = {r: {"a": a[r], "b": b[r]} for r in range(len(ids))}
        self._check_races(store, ids, outcomes, before)

    @pytest.mark.parametrize("size_known", [True, False], ids=["sized", "unsized"])
    def test_concurrent_adds_of_one_id_in_processes_have_one_winner(
        self, store: Store, size_known: bool
    ) -> None:
        # Two processes, each with a store of its own built by
        # store_factory, add each id at once, meeting mid-stream.
        gap = self.one_winner_gap(store)
        if gap is not None:
            pytest.skip(gap)
        factory = self.store_factory(store)
        if factory is None:
            pytest.skip("the store's images live in its process (store_factory)")
        ids = [new_id() for _ in range(self.race_rounds)]
        before = self._leftovers_at_rest(store)
        spawn = multiprocessing.get_context("spawn")
        start = spawn.Barrier(2)
        meeting = _Meeting(spawn.Condition(), spawn.Array("i", len(ids), lock=False))
        results = spawn.Queue()
        writers = [
            spawn.Process(
                target=_race_in_process,
                args=(factory, tag, ids, size_known, start, meeting, results),
                daemon=True,
            )
            for tag in "ab"
        ]
        for writer in writers:
            writer.start()
        outcomes: dict[int, dict[str, tuple[str, str | None]]] = {}
        try:
            for _ in range(2 * len(ids)):
                round_, tag, outcome, location = results.get(timeout=RACE_TIMEOUT)
                assert round_ >= 0, f"writer {tag} failed:\n{outcome}"
                outcomes.setdefault(round_, {})[tag] = (outcome, location)
        finally:
            for writer in writers:
                writer.join(timeout=RACE_TIMEOUT)
                if writer.is_alive():
                    writer.kill()
        assert [w.exitcode for w in writers] == [0, 0]
        self._check_races(store, ids, outcomes, before)

    def test_concurrent_readers(self, store: Store) -> None:
        data = payload(1_000_000, seed=9)
        location = store.add(new_id(), iter([data]), len(data)).location
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: read_all(store, location), range(16)))
        assert all(r == data for r in results)

    # -- capabilities --------------------------------------------------------

    def test_capability_checks(self, store: Store) -> None:
        location = store.add(new_id(), iter([b"abc"]), 3).location
        full = store.capabilities
        try:
            store.capabilities = full & ~Capability.READ_RANDOM
            assert read_all(store, location) == b"abc"
            with pytest.raises(exceptions.StoreRandomGetNotSupported):
                store.get(location, offset=1)
            with pytest.raises(exceptions.StoreRandomGetNotSupported):
                store.get(location, chunk_size=1)
            store.capabilities = full & ~Capability.WRITE
            with pytest.raises(exceptions.StoreAddDisabled):
                store.add(new_id(), iter([b"x"]), 1)
            store.capabilities = full & ~Capability.DELETE
            with pytest.raises(exceptions.StoreDeleteNotSupported):
                store.delete(location)
            store.capabilities = Capability.NONE
            with pytest.raises(exceptions.StoreGetNotSupported):
                store.get(location)
        finally:
            store.capabilities = full
        assert store.get_size(location) == 3
