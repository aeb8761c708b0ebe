"""A scrub's checkpoint file: the verdicts so far, whose scrub they are
(the store and the options), and whether it finished."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fsstore import exceptions
from fsstore.hashing import Expected
from fsstore.safefiles import NotRegularFile, open_regular, replace_contents
from fsstore.scrub.report import ImageCheck, ScrubReport, Verdict
from fsstore.store import Store


@dataclasses.dataclass(frozen=True)
class ScrubPass:
    """What a checkpoint belongs to: one store (Store.identity), scrubbed
    with one set of expected digests and one choice of recording. Verdicts
    reached under any other are not this scrub's to report."""

    store: str | None
    options: str

    @classmethod
    def of(
        cls, store: Store, expected: dict[str, Expected] | None, record: bool
    ) -> ScrubPass:
        wanted = None
        if expected is not None:
            # The fields a scrub compares, as checkpoints have always
            # named them: a checkpoint stays this scrub's across releases.
            wanted = sorted(
                (image_id, (e.checksum, e.multihash, e.hashing_algo))
                for image_id, e in expected.items()
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


def load_checkpoint(
    path: Path, this: ScrubPass
) -> tuple[list[ImageCheck], bool] | None:
    """The verdicts ``path`` holds and whether its scrub finished; None when
    there is none. A checkpoint of another store, or of a scrub with other
    options, is Invalid. The file is read without following a link: a link
    planted there must not feed this scrub another file's verdicts."""
    data = read_checkpoint(path)
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


def read_checkpoint(path: Path) -> dict[str, Any] | None:
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


def save_checkpoint(
    path: Path, report: ScrubReport, this: ScrubPass, finished: bool = False
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
