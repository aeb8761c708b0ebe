"""The scrub's parts on their own: the rate limit, the verdicts, the
checkpoint file."""

from __future__ import annotations

import pytest

from fsstore import exceptions
from fsstore.hashing import KeptDigests
from fsstore.scrub import (
    Expected,
    ImageCheck,
    RateLimit,
    ScrubReport,
    Verdict,
    _against_expected,
    _judge,
    _load_checkpoint,
    _save_checkpoint,
    load_expected,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.paused: list[float] = []

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)
        self.now += seconds


def test_rate_limit_waits_for_what_ran_ahead():
    clock = FakeClock()
    limit = RateLimit(1000, clock=clock, pause=clock.pause)
    limit.took(500)  # 0.5 s worth at once
    assert clock.paused == [pytest.approx(0.5)]
    clock.now += 2.0  # slow reading: no pause owed
    limit.took(1000)
    assert clock.paused == [pytest.approx(0.5)]
    limit.took(3000)  # 4.5 s allowed by now, 2.5 s elapsed
    assert clock.paused[-1] == pytest.approx(2.0)


def test_no_rate_never_pauses():
    clock = FakeClock()
    limit = RateLimit(None, clock=clock, pause=clock.pause)
    limit.took(10**12)
    assert clock.paused == []


KEPT = KeptDigests("a" * 32, "b" * 128, "sha512", 10)


@pytest.mark.parametrize(
    ("read", "checksum", "multihash", "verdict"),
    [
        (10, "a" * 32, "b" * 128, Verdict.OK),
        (9, "a" * 32, "b" * 128, Verdict.TRUNCATED),
        (11, "a" * 32, "b" * 128, Verdict.CORRUPT),
        (10, "c" * 32, "b" * 128, Verdict.CORRUPT),
        (10, "a" * 32, "c" * 128, Verdict.CORRUPT),
    ],
)
def test_verdicts(read, checksum, multihash, verdict):
    actual = KeptDigests(checksum, multihash, "sha512", read)
    assert _judge(KEPT, actual)[0] is verdict


def test_checkpoint_round_trip_and_damage(tmp_path):
    path = tmp_path / "scrub.json"
    report = ScrubReport(
        [ImageCheck("a", "file:///x/a", Verdict.CORRUPT, "md5 differs", 10)]
    )
    _save_checkpoint(path, report)
    assert _load_checkpoint(path) == report.checks
    assert _load_checkpoint(tmp_path / "none.json") == []
    path.write_text('{"images": [{"image_id": "a"}]}')
    with pytest.raises(exceptions.Invalid, match="damaged"):
        _load_checkpoint(path)


def test_expected_digests_from_json_and_csv(tmp_path):
    listed = tmp_path / "images.json"
    listed.write_text(
        '[{"id": "a", "checksum": "AB", "os_hash_algo": "sha256", '
        '"os_hash_value": "cd"}, {"id": "b", "multihash": "ef"}]'
    )
    table = tmp_path / "images.csv"
    table.write_text("id,checksum,os_hash_algo,os_hash_value\na,AB,sha256,cd\nb,,,ef\n")
    for path in (listed, table):
        assert load_expected(path) == {
            "a": Expected("AB", "cd", "sha256"),
            "b": Expected(None, "ef", "sha512"),
        }
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1}')
    with pytest.raises(exceptions.Invalid, match="broken.json"):
        load_expected(broken)
    with pytest.raises(exceptions.Invalid, match="cannot read"):
        load_expected(tmp_path / "none.json")


def test_against_expected_compares_case_blind_and_names_the_digest():
    actual = KeptDigests("ab", "cd", "sha256", 1)
    assert _against_expected(Expected("AB", "CD", "sha256"), actual)[0] is Verdict.OK
    verdict, detail = _against_expected(Expected(None, "00", "sha256"), actual)
    assert verdict is Verdict.CORRUPT and detail.startswith("sha256 cd")
