"""Behavioural tests shared by every store driver (see :mod:`fsstore.testing`)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fsstore import exceptions
from fsstore.hashing import KeptDigests
from fsstore.store import Capability, Store
from fsstore.streams import READ_CHUNK, ImageData
from fsstore.testing.data import HOSTILE_IDS, FailingStream, new_id, payload, read_all
from fsstore.testing.races import (
    RaceConformanceTests,
    StoreFactory,
    StoreFromConfig,
    race_body,
)
from fsstore.testing.streams import SHAPES, NoneRead, Recorder, TextRead, shaped

__all__ = [
    "HOSTILE_IDS",
    "FailingStream",
    "StoreConformanceTests",
    "StoreFactory",
    "StoreFromConfig",
    "new_id",
    "payload",
    "race_body",
    "read_all",
]


class StoreConformanceTests(RaceConformanceTests):
    """Subclass this and provide a ``store`` fixture.

    Set :attr:`io_size` and :attr:`keeps_digests` to what the store does;
    override :meth:`leftovers`, :meth:`store_factory` or
    :meth:`one_winner_gap` as :class:`RaceConformanceTests` says.
    """

    #: The store's I/O size (filesystem_store_chunk_size for the filesystem
    #: store), for the round trips at its boundaries.
    io_size = READ_CHUNK

    #: Whether the store keeps each image's digests (Store.kept_digests) and
    #: lists its images (Store.images), for a scrub.
    keeps_digests = False

    @pytest.fixture
    def store(self) -> Store:  # pragma: no cover - provided by subclasses
        """A configured, empty store, new for each test."""
        raise NotImplementedError("provide a 'store' fixture")

    # -- helpers -------------------------------------------------------

    def assert_nothing_left(self, store: Store, image_id: str, before: Any) -> None:
        """Assert that a failed add left nothing: no leftovers, and the id
        can be added (then deleted again).

        :param store: the store the add failed in
        :param image_id: the id of the failed add
        :param before: :meth:`leftovers` before the add; None: not compared
        """
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
        assert store.find_image(image_id) == (image_id, result.location, size)
        store.delete(result.location)
        assert image_id not in {listed.image_id for listed in store.images()}
        assert store.find_image(image_id) is None
        assert store.find_image(new_id()) is None

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
        """``(store, location, data)`` of an image of a few I/O sizes, for the
        ranged reads; skipped for a store that refuses them, as it declares."""
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
