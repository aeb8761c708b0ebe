"""A shortened run of every ``make stress`` scenario, as part of ``make test``."""

from __future__ import annotations

import pytest

from tests.helpers import is_root
from tests.stress import scenarios


def check(result: scenarios.Result) -> None:
    assert result.operations > 0
    assert result.ok, "\n".join(result.problems)


def test_kill_writer(tmp_path):
    result = scenarios.kill_writer(tmp_path, kills=20, seed=11)
    check(result)
    assert result.figures["writers killed"] > 0
    assert result.figures["staging files left"] == 0


@pytest.mark.skipif(not is_root(), reason="mounting a tmpfs needs root")
def test_enospc(tmp_path):
    result = scenarios.enospc(tmp_path, seed=12, size="4m")
    check(result)
    assert result.figures["StorageFull"] > 0


def test_concurrency(tmp_path):
    check(scenarios.concurrency(tmp_path, processes=8, ops=40, ids=20, seed=13))


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_cache_load(tmp_path, driver):
    result = scenarios.cache_load(tmp_path, driver, processes=8, ops=40, images=20)
    check(result)
    assert result.figures["max sampled bytes"] <= result.figures["limit"]


def test_hostile(tmp_path):
    result = scenarios.hostile(tmp_path, with_cli=False)
    check(result)
    assert result.figures["hostile ids"] + result.figures["hostile locations"] >= 50


def test_bad_configuration(tmp_path):
    check(scenarios.bad_configuration(tmp_path, with_cli=True))


def test_hostile_streams(tmp_path):
    result = scenarios.hostile_streams(tmp_path, adds=40, seed=14)
    check(result)
    assert result.figures["stored intact"] > 0
    assert result.figures["refused as Invalid"] > 0


def test_hostile_cache_options(tmp_path):
    result = scenarios.hostile_cache_options(tmp_path)
    check(result)
    assert result.figures["configurations"] == 33


def test_scrub_rot(tmp_path):
    result = scenarios.scrub_rot(tmp_path, images=24, kills=2, seed=21)
    check(result)
    assert result.figures["rotten"] > 0
    assert result.figures["scrubs killed"] > 0


@pytest.mark.parametrize("driver", ["sqlite", "xattr"])
def test_hostile_cache_files(tmp_path, driver):
    result = scenarios.hostile_cache_files(tmp_path, drivers=(driver,), with_cli=False)
    check(result)
    assert result.figures["names planted"] == 52
    assert result.figures["victims changed"] == 0
    assert result.figures["hangs"] == 0
    assert result.figures["left by clean"] == 2  # invalid/img, incomplete/img


def test_hostile_state_files(tmp_path):
    result = scenarios.hostile_state_files(tmp_path, every=3)
    check(result)
    assert result.figures["names planted"] == 6
    assert result.figures["victims changed"] == result.figures["hangs"] == 0
