"""The races between two adds of one id, in threads and in processes.

Each round, two writers add one id at once and meet mid-stream (see
:class:`_Meeting`), so both are past anything a driver checks before it
reads before either can publish. :class:`RaceConformanceTests` holds the
tests; :class:`~fsstore.testing.StoreConformanceTests` includes them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterator, MutableSequence
from types import TracebackType
from typing import Any, Protocol

import pytest
from oslo_config import cfg

from fsstore import exceptions
from fsstore.registry import StoreRegistry, register_opts
from fsstore.store import Store
from fsstore.testing.data import new_id, read_all

#: Builds a store, in whatever process calls it. The suite pickles one into
#: another process: a picklable callable (a class instance or a module-level
#: function, with picklable arguments: paths, names), never the store itself.
StoreFactory = Callable[[], Store]


@dataclasses.dataclass(frozen=True)
class StoreFromConfig:
    """A :data:`StoreFactory`: the store named ``name`` (a backend name in
    multi-store mode, else a scheme) of the configuration in
    ``config_files``, as a :class:`~fsstore.registry.StoreRegistry` builds it.

    :param config_files: the configuration files, in the order given
    :param name: the store's backend name (multi-store mode), else a scheme
    """

    config_files: tuple[str, ...]
    name: str

    @classmethod
    def of(cls, store: Store) -> StoreFromConfig | None:
        """The factory of a store configured from files; None for one whose
        configuration is not all in files (overrides, arguments).

        :param store: a configured store; files come from its ``conf``
        """
        files = tuple(getattr(store.conf, "config_file", None) or ())
        if not files:
            return None
        return cls(files, store.backend_group or store.get_schemes()[0])

    def __call__(self) -> Store:
        """Parse the files and build the store, in the calling process."""
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
    the stored bytes name the winner.

    :param tag: the writer, ``a`` or ``b``
    :param image_id: the id both writers add
    """
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


class RaceConformanceTests:
    """Two adds of one id have exactly one winner, in threads and in
    processes; the loser leaves nothing behind."""

    #: Rounds of each race of two adds of one id.
    race_rounds = 20

    def leftovers(self, store: Store) -> Any:
        """What the store holds besides published images (None: not checked).

        Override it to list a store's staging files or in-progress uploads,
        so that the failure tests prove an add that fails leaves none.

        :param store: the store of the ``store`` fixture
        :returns: anything comparable with ``==``, taken before and after
        """
        return None

    def store_factory(self, store: Store) -> StoreFactory | None:
        """How another process builds a store that holds what ``store``
        holds, for the races between processes: by default the store of
        the same configuration files (:class:`StoreFromConfig`). Override
        it for a store set up otherwise; return None for one whose images
        live in its process (a memory store): those races are skipped.

        :param store: the store of the ``store`` fixture
        """
        return StoreFromConfig.of(store)

    def one_winner_gap(self, store: Store) -> str | None:
        """Why ``store`` does not promise that exactly one of concurrent
        adds of an id wins (the race tests are then skipped), or None: it
        does, as every store should.

        :param store: the store of the ``store`` fixture
        """
        return None

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
