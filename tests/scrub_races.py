"""The races a scrub's ``--record`` must lose, forced the same way on every
store: an action run at the first bytes the scrub reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fsstore.hashing import KeptDigests
from fsstore.scrub import Verdict, scrub
from fsstore.store import Store
from fsstore.testing.suite import read_all


def once(action: Callable[[], object]) -> Callable[[int], None]:
    """An ``on_bytes`` hook that runs ``action`` at the first bytes read."""
    done: list[bool] = []

    def hook(_n: int) -> None:
        if not done:
            done.append(True)
            action()

    return hook


def readd_while_recording(store: Store, location: str, new: bytes, size: int) -> None:
    """The image at ``location`` (stored without digests) is deleted and
    added again with ``new`` bytes (declared ``size``, 0 for unknown) while
    ``scrub --record`` reads it: the scrub keeps nothing for the old bytes
    and says why, the new image keeps its own digests, the next scrub finds
    it ok, and a read of it (verify on read) passes."""
    added = []

    def readd() -> None:
        store.delete(location)
        added.append(store.add(location.rsplit("/", 1)[1], iter([new]), size))

    [check] = [
        c
        for c in scrub(store, record=True, on_bytes=once(readd)).checks
        if c.location == location
    ]
    assert check.verdict is Verdict.UNVERIFIABLE, check
    assert "changed while it was scrubbed" in check.detail
    assert store.kept_digests(location) == KeptDigests(
        added[0].checksum, added[0].multihash, "sha512", len(new)
    )
    assert {c.verdict for c in scrub(store).checks} == {Verdict.OK}
    assert read_all(store, location) == new


def kept_while_recording(store: Store, location: str, data: bytes) -> None:
    """Another recorder keeps digests (of another algorithm) for the image
    at ``location``, stored without them, while ``scrub --record`` reads
    it: the scrub keeps nothing over them and says the image is
    unverifiable in this pass."""
    theirs = KeptDigests(
        hashlib.md5(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
        "sha256",
        len(data),
    )
    hook = once(lambda: store.keep_digests(location, theirs))
    [check] = [
        c
        for c in scrub(store, record=True, on_bytes=hook).checks
        if c.location == location
    ]
    assert check.verdict is Verdict.UNVERIFIABLE, check
    assert store.kept_digests(location) == theirs
