"""The scrub's parts on their own: the rate limit, the verdicts, the
checkpoint file."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsstore import exceptions
from fsstore.hashing import KeptDigests
from fsstore.scrub import (
    Expected,
    ImageCheck,
    RateLimit,
    ScrubReport,
    Verdict,
    load_expected,
)
from fsstore.scrub.checkpoint import ScrubPass, load_checkpoint, save_checkpoint
from fsstore.scrub.image import verdict_of
from fsstore.store import image_id_problem as image_problem

HEX = re.compile("[0-9a-f]+")
HEX32 = re.compile("[0-9a-f]{32}")


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
    assert verdict_of(KEPT, None, read, checksum, {"sha512": multihash})[0] is verdict


def test_checkpoint_round_trip_and_damage(tmp_path):
    path = tmp_path / "scrub.json"
    report = ScrubReport(
        [ImageCheck("a", "file:///x/a", Verdict.CORRUPT, "md5 differs", 10)]
    )
    this = ScrubPass("file:/x", "options")
    save_checkpoint(path, report, this)
    assert load_checkpoint(path, this) == (report.checks, False)
    save_checkpoint(path, report, this, finished=True)
    assert load_checkpoint(path, this) == (report.checks, True)
    assert load_checkpoint(tmp_path / "none.json", this) is None
    with pytest.raises(exceptions.Invalid, match="another store"):
        load_checkpoint(path, ScrubPass("file:/y", "options"))
    with pytest.raises(exceptions.Invalid, match="other expected digests"):
        load_checkpoint(path, ScrubPass("file:/x", "others"))
    path.write_text('{"images": [{"image_id": "a"}]}')
    with pytest.raises(exceptions.Invalid, match="is not a scrub checkpoint"):
        load_checkpoint(path, this)  # no checkpoint's keys: someone else's file
    path.write_text(
        '{"images": [{"image_id": "a"}], "store": "file:/x", "options": '
        '"options", "finished": false}'
    )
    with pytest.raises(exceptions.Invalid, match="damaged"):
        load_checkpoint(path, this)


def test_expected_digests_from_json_and_csv(tmp_path):
    md5, sha256, sha512 = "AB" * 16, "cd" * 32, "ef" * 64
    listed = tmp_path / "images.json"
    listed.write_text(
        f'[{{"id": "a", "checksum": "{md5}", "os_hash_algo": "sha256", '
        f'"os_hash_value": "{sha256}"}}, {{"id": "b", "multihash": "{sha512}"}}]'
    )
    table = tmp_path / "images.csv"
    table.write_text(
        "id,checksum,os_hash_algo,os_hash_value\n"
        f"a,{md5},sha256,{sha256}\nb,,,{sha512}\n"
    )
    for path in (listed, table):
        assert load_expected(path) == {
            "a": Expected(md5.lower(), sha256, "sha256"),
            "b": Expected(None, sha512, "sha512"),
        }
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1}')
    with pytest.raises(exceptions.Invalid, match="broken.json"):
        load_expected(broken)
    with pytest.raises(exceptions.Invalid, match="cannot read"):
        load_expected(tmp_path / "none.json")


def test_expected_compares_case_blind_and_names_the_digest():
    md5, sha256 = "ab" * 16, "cd" * 32
    digests = {"sha256": sha256}
    wanted = Expected(md5.upper(), sha256.upper(), "sha256")
    assert verdict_of(None, wanted, 1, md5, digests)[0] is Verdict.OK
    verdict, detail = verdict_of(
        None, Expected(None, "0" * 64, "sha256"), 1, md5, digests
    )
    assert verdict is Verdict.CORRUPT and detail.startswith(f"sha256 {sha256}")


def test_bytes_matching_either_kept_or_expected_are_never_corrupt():
    kept = KeptDigests("a" * 32, "b" * 128, "sha512", 10)
    digests = {"sha512": "b" * 128, "sha256": "c" * 64}
    glance = Expected("a" * 32, "d" * 64, "sha256")
    verdict, detail = verdict_of(kept, glance, 10, "a" * 32, digests)
    assert verdict is Verdict.CONFLICT and "not the expected" in detail
    verdict, detail = verdict_of(
        kept, glance, 10, "a" * 32, {**digests, "sha256": "d" * 64, "sha512": "e" * 128}
    )
    assert verdict is Verdict.CONFLICT and "not the ones kept" in detail
    # Neither: corrupt, by what was kept; shorter than kept: truncated.
    assert verdict_of(kept, glance, 10, "f" * 32, digests)[0] is Verdict.CORRUPT
    assert verdict_of(kept, glance, 9, "f" * 32, digests)[0] is Verdict.TRUNCATED


# -- expected digests: validated whole before the first read ------------------------

MD5_A = "a" * 32
SHA256_B = "b" * 64

FIELDS = [
    "id",
    "checksum",
    "multihash",
    "os_hash_value",
    "hashing_algo",
    "os_hash_algo",
    "x",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from([MD5_A, SHA256_B, "sha256", "sha512", "md5", "img", ""]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner)
    ),
    max_leaves=16,
)


def _check_usable(loaded: dict[str, Expected]) -> None:
    """What loaded can be compared with an image's digests as it is."""
    for image_id, wanted in loaded.items():
        assert type(image_id) is str and image_problem(image_id) is None
        assert wanted.checksum is None or HEX32.fullmatch(wanted.checksum)
        digest_size = hashlib.new(wanted.hashing_algo).digest_size
        assert wanted.multihash is None or (
            len(wanted.multihash) == 2 * digest_size and HEX.fullmatch(wanted.multihash)
        )


def _loads_or_one_line(path) -> None:
    try:
        loaded = load_expected(path)
    except exceptions.Invalid as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    _check_usable(loaded)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_any_json_loads_usable_or_is_one_line_error(tmp_path, value):
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(value))
    _loads_or_one_line(path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.dictionaries(st.sampled_from(FIELDS), json_values), max_size=4))
def test_any_rows_load_usable_or_are_one_line_error(tmp_path, rows):
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(rows))
    _loads_or_one_line(path)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_load_usable_or_are_one_line_error(tmp_path, body):
    for name in ("expected.csv", "expected.json"):
        path = tmp_path / name
        path.write_bytes(b"id,checksum,os_hash_algo,os_hash_value\n" + body)
        _loads_or_one_line(path)
        path.write_bytes(body)
        _loads_or_one_line(path)


def test_a_deep_json_document_is_one_line_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(exceptions.Invalid, match="deep.json"):
        load_expected(path)


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({"id": "b", "checksum": 12345}, "checksum"),
        ({"id": "b", "checksum": "xyz"}, "checksum"),
        ({"id": "b", "checksum": "a" * 31}, "checksum"),
        ({"id": "b", "os_hash_value": ["a"]}, "os_hash_value"),
        ({"id": "b", "os_hash_value": SHA256_B}, "os_hash_value"),  # not sha512's
        ({"id": "b", "os_hash_algo": "crc99", "os_hash_value": "ab"}, "crc99"),
        ({"id": "b", "os_hash_algo": 5}, "os_hash_algo"),
        ({"id": 7, "checksum": MD5_A}, "id"),
        ({"id": "../b", "checksum": MD5_A}, "id"),
        ({"checksum": MD5_A}, "id"),
        ("b", "not an object"),
    ],
)
def test_a_bad_row_is_named_in_one_line(tmp_path, row, named):
    path = tmp_path / "expected.json"
    path.write_text(json.dumps([{"id": "a", "checksum": MD5_A}, row]))
    with pytest.raises(exceptions.Invalid) as caught:
        load_expected(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "row 2" in message and named in message and str(path) in message


def test_a_bad_csv_row_is_named_by_its_row(tmp_path):
    path = tmp_path / "expected.csv"
    path.write_text(f"id,checksum\na,{MD5_A}\nb,{MD5_A}\nc,nothex\n")
    with pytest.raises(exceptions.Invalid, match="row 3.*checksum"):
        load_expected(path)


def test_two_rows_for_one_id_that_disagree_are_refused(tmp_path):
    path = tmp_path / "expected.csv"
    path.write_text(f"id,checksum\na,{MD5_A}\na,{'c' * 32}\n")
    with pytest.raises(exceptions.Invalid, match="row 2.*'a'"):
        load_expected(path)


@pytest.mark.parametrize(
    ("name", "body", "why"),
    [
        (
            "md5.json",
            '[{"id": "i1", "md5": "' + "0" * 32 + '"}]',
            "unknown field 'md5'",
        ),
        (
            "typo.json",
            '[{"id": "i1", "os_hash_values": "' + "0" * 128 + '"}]',
            "unknown field 'os_hash_values'",
        ),
        (
            "twice.json",
            '[{"id": "i1", "checksum": "'
            + "0" * 32
            + '", "checksum": "'
            + "1" * 32
            + '"}]',
            "field 'checksum' is given twice",
        ),
        (
            "space.csv",
            "id, checksum\ni1," + "0" * 32 + "\n",
            "unknown field ' checksum'",
        ),
        ("upper.csv", "ID,checksum\ni1," + "0" * 32 + "\n", "unknown field 'ID'"),
        (
            "columns.csv",
            "id,checksum,checksum\ni1," + "0" * 32 + "," + "1" * 32 + "\n",
            "column 'checksum' twice",
        ),
        ("cells.csv", "id,checksum\ni1," + "0" * 32 + ",extra\n", "more cells"),
        ("short.csv", "id,checksum,os_hash_value\ni1\n", "fewer cells"),
    ],
)
def test_a_field_that_would_be_dropped_is_refused(tmp_path, name, body, why):
    """A digest under a name the loader does not know would be dropped and
    its image called ok unchecked: refused in one line naming it."""
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(exceptions.Invalid) as caught:
        load_expected(path)
    message = str(caught.value)
    assert why in message and len(message.splitlines()) == 1, message


def test_a_csv_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeffid,checksum\ni1," + "a" * 32 + "\n").encode())
    assert load_expected(path)["i1"].checksum == "a" * 32


def test_a_whole_row_of_glances_images_table_loads(tmp_path):
    path = tmp_path / "images.csv"
    path.write_text(
        "id,name,size,status,checksum,os_hash_algo,os_hash_value,visibility\n"
        f"i1,cirros,12,active,{'a' * 32},sha256,{'b' * 64},public\n"
    )
    assert load_expected(path) == {"i1": Expected("a" * 32, "b" * 64, "sha256")}
