"""The conformance suite's one-winner races are sharp: a driver that checks
for an image and then writes it fails them, in threads and in processes.

``CheckThenWriteStore`` is glance_store's filesystem driver in miniature:
an exists-check, then the caller's stream, then ``open(path, "wb")`` over
whatever is there. Two adds of one id that both pass the check both
"win", and the later one's bytes replace the earlier's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from fsstore import exceptions
from fsstore.hashing import ImageHasher
from fsstore.location import Location, split_scheme
from fsstore.store import AddResult, Store, range_length
from fsstore.streams import CheckedSource, Verifier
from fsstore.testing import StoreConformanceTests


@dataclasses.dataclass(frozen=True)
class NaiveLocation(Location):
    image_id: str

    @property
    def uri(self) -> str:
        return f"naive://{self.image_id}"


class CheckThenWriteStore(Store):
    SCHEMES = ("naive",)
    DRIVER_NAME = "naive"

    def __init__(self, root: Path) -> None:
        super().__init__(cfg.ConfigOpts())
        self.root = root

    def parse_location(self, uri: str) -> NaiveLocation:
        scheme, rest = split_scheme(uri)
        if scheme != "naive" or not rest or "/" in rest:
            raise exceptions.BadStoreUri(f"location {uri!r} is not naive://<id>")
        return NaiveLocation(scheme="naive", image_id=rest)

    def _path(self, location: Location) -> Path:
        assert isinstance(location, NaiveLocation)
        return self.root / location.image_id

    def _add(
        self,
        image_id: str,
        data: Any,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        path = self.root / image_id
        if path.exists():  # the check...
            raise exceptions.Duplicate(f"image {image_id} already exists")
        hasher = ImageHasher(hashing_algo)
        source = CheckedSource(data, image_id, size, verifier)
        try:
            body = b"".join(hasher.update(c) or c for c in source.chunks())
            source.finish()
            checksum, multihash = hasher.hexdigests()
        finally:
            hasher.close()
        path.write_bytes(body)  # ...then the write, over anything there
        location = NaiveLocation("naive", image_id).uri
        return AddResult(location, len(body), checksum, multihash, {})

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[Iterator[bytes], int]:
        body = self._body(location)
        length = range_length(len(body), offset, limit, location.uri)
        return iter([body[offset : offset + length]]), length

    def _body(self, location: Location) -> bytes:
        try:
            return self._path(location).read_bytes()
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None

    def _get_size(self, location: Location) -> int:
        return len(self._body(location))

    def _delete(self, location: Location) -> None:
        try:
            os.unlink(self._path(location))
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None


@dataclasses.dataclass(frozen=True)
class CheckThenWriteFactory:
    """Builds the store on ``root`` in any process (picklable)."""

    root: str

    def __call__(self) -> CheckThenWriteStore:
        return CheckThenWriteStore(Path(self.root))


class CheckThenWriteSuite(StoreConformanceTests):
    race_rounds = 5

    def store_factory(self, store: Store) -> CheckThenWriteFactory:
        assert isinstance(store, CheckThenWriteStore)
        return CheckThenWriteFactory(str(store.root))


@pytest.mark.parametrize("size_known", [True, False], ids=["sized", "unsized"])
@pytest.mark.parametrize("where", ["threads", "processes"])
def test_the_race_tests_fail_a_check_then_write_driver(tmp_path, where, size_known):
    suite = CheckThenWriteSuite()
    store = CheckThenWriteFactory(str(tmp_path))()
    race = {
        "threads": suite.test_concurrent_adds_of_one_id_have_one_winner,
        "processes": suite.test_concurrent_adds_of_one_id_in_processes_have_one_winner,
    }[where]
    with pytest.raises(AssertionError, match=r"round 0, .*'won'.*'won'"):
        race(store, size_known)
