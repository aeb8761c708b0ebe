"""A scrub's verdicts on images, its report, and the rate it reads at."""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Any


class Verdict(enum.StrEnum):
    OK = "ok"
    RECORDED = "recorded"
    CORRUPT = "corrupt"
    TRUNCATED = "truncated"
    CONFLICT = "conflict"
    MISSING = "missing"
    UNVERIFIABLE = "unverifiable"
    UNREADABLE = "unreadable"


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
