"""Names planted in a cache directory, through the ``fsstore cache`` command.

Whoever can write to the cache directory can plant a name where the cache
opens, creates, truncates or renames a file: a symbolic link to a file worth
destroying, a FIFO that blocks whoever opens it, a directory where a file
belongs, a hard link to a victim. The cache refuses each: it never follows a
link, never blocks, never replaces or truncates what it did not create; it
reports what ``clean`` cannot remove and keeps working for every other
image. Every command runs with a timeout: a hang is a failure, not a stuck
test run.

The library-level matrix (both drivers, every path and plant kind, in one
process per case) is the ``make stress`` row "hostile cache directories and
state files" (tests/stress/scenarios.py), whose quick run is in
test_stress_quick.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from fsstore.cache import ImageCache
from fsstore.hashing import Expected
from fsstore.registry import StoreRegistry
from tests.functional.test_cli import FSSTORE
from tests.helpers import load_conf, write_conf
from tests.stress.common import (
    PLANT_KINDS,
    STATE_PATHS,
    SUBDIR_PATHS,
    Victims,
    plant,
    remove_planted,
)

TIMEOUT = 30  # seconds; any command here takes well under one


class Cli:
    """The command on one cache, each run bounded by TIMEOUT."""

    def __init__(self, tmp_path: Path, driver: str) -> None:
        self.cache_dir = tmp_path / "cache"
        self.images = tmp_path / "images"
        self.conf = write_conf(
            tmp_path / "glance-api.conf",
            {
                "DEFAULT": {
                    "image_cache_dir": str(self.cache_dir),
                    "image_cache_driver": driver,
                },
                "glance_store": {"filesystem_store_datadir": str(self.images)},
            },
        )
        self.problems: list[str] = []

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [FSSTORE, "--config-file", str(self.conf), *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.problems.append(f"fsstore {' '.join(args)}: hung")
            return subprocess.CompletedProcess(argv, -1, "", "")
        if "Traceback" in proc.stderr:
            self.problems.append(f"fsstore {' '.join(args)}: {proc.stderr!r}")
        return proc

    def store(self, image_id: str, data: bytes) -> tuple[str, str]:
        """Add to the store: (location, md5)."""
        registry = StoreRegistry(load_conf(self.conf))
        try:
            added = registry.add(image_id, iter([data]), len(data))
        finally:
            registry.close()
        return added.location, added.checksum

    def queue(
        self,
        image_id: str,
        location: str,
        expected: Expected | str | None = None,
    ) -> None:
        """Queue through the library, unless queued already: quicker than
        the command, where the command's own queueing is not under test."""
        cache = ImageCache(load_conf(self.conf))
        if not cache.is_queued(image_id):
            assert cache.queue_image(image_id, location, expected)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- one planted name per image: invalid/, incomplete/, queue/, the entry ------

# Each image meets a planted name where one operation of the cache writes:
#   bad-sum   its prefetch fails verification: the writer's file moves to
#             invalid/<id>, where something is planted;
#   gone      its location is missing: prefetch marks it in invalid/<id>;
#   writing   incomplete/<id> is planted: the writer's lock file;
#   queued    queue/<id> is planted: queueing and prefetch read it;
#   entry     <id> is planted: publishing links there.
PLANTS = {
    "bad-sum": "invalid",
    "gone": "invalid",
    "writing": "incomplete",
    "queued": "queue",
    "entry": "",
}


PER_IMAGE_CASES = [
    *[("sqlite", kind) for kind in PLANT_KINDS],
    *[("xattr", kind) for kind in ("symlink", "fifo", "directory")],
]


@pytest.mark.parametrize(("driver", "kind"), PER_IMAGE_CASES)
def test_planted_names_per_image(tmp_path: Path, driver: str, kind: str) -> None:
    cli = Cli(tmp_path, driver)
    victims = Victims(tmp_path / "victims")
    data = {name: os.urandom(5000 + i) for i, name in enumerate([*PLANTS, "other"])}
    where = {name: cli.store(name, body) for name, body in data.items()}
    cli.queue("bad-sum", where["bad-sum"][0], "0" * 32)
    cli.queue("gone", f"file://{cli.images}/missing", Expected(allow_unverified=True))
    for image_id in ("writing", "entry", "other"):
        cli.queue(image_id, *where[image_id])
    for image_id, sub in PLANTS.items():
        plant(kind, cli.cache_dir / sub / image_id, victims, f"{sub}/{image_id}")
    victims.seal()

    location, checksum = where["queued"]
    cli.run("cache", "queue", "queued", "--location", location, "--checksum", checksum)
    prefetch = cli.run("cache", "prefetch", "--format", "json")
    listed = cli.run("cache", "list", "--format", "json")
    cli.run("cache", "check")
    clean = cli.run("cache", "clean", "--format", "json")
    cli.run("cache", "delete-all")

    assert cli.problems == []
    assert victims.changed() == []
    # The cache went on working for the image nothing was planted for, and
    # listed nothing it did not write (a regular file at an entry's name is
    # an entry to the sqlite driver: a hard link is one).
    assert "other" in json.loads(prefetch.stdout)["cached"]
    rows = {r["image_id"]: r for r in json.loads(listed.stdout)}
    assert rows["other"]["size"] == len(data["other"])
    strays = {"entry"} if (driver, kind) == ("sqlite", "hardlink") else set()
    assert rows.keys() - {"other"} <= strays
    cleaned = json.loads(clean.stdout)
    if kind == "directory":
        # A directory in invalid/ or incomplete/ is reported, one line each,
        # and left; the rest is cleaned, and the exit status says so.
        assert clean.returncode == 1
        assert sorted(cleaned["left"]) == [
            "incomplete/writing: a directory",
            "invalid/bad-sum: a directory",
            "invalid/gone: a directory",
        ]
    else:
        assert clean.returncode == 0, clean.stdout
        assert cleaned["left"] == []
    for image_id, sub in PLANTS.items():
        at = cli.cache_dir / sub / image_id
        if kind == "directory":
            assert (at / "inside").read_bytes() == b"planted"
        remove_planted(at)
    # Nothing planted now: every image caches.
    for image_id in ("writing", "queued", "entry"):
        cli.queue(image_id, *where[image_id])
    again = cli.run("cache", "prefetch", "--format", "json")
    assert cli.problems == []
    assert sorted(json.loads(again.stdout)["cached"]) == ["entry", "queued", "writing"]


# -- one planted name the whole cache depends on -------------------------------


def _global_cases() -> list[tuple[str, str]]:
    kinds = ("symlink", "fifo", "directory", "hardlink")
    cases = [(path, kind) for path in STATE_PATHS for kind in kinds]
    cases.append(("cache.db", "dangling"))  # sqlite would create its target
    cases += [(path, kind) for path in SUBDIR_PATHS for kind in ("symlink", "fifo")]
    cases += [(path, "file") for path in SUBDIR_PATHS]
    return cases


@pytest.mark.parametrize(("path", "kind"), _global_cases())
def test_planted_state_files_and_directories(
    tmp_path: Path, path: str, kind: str
) -> None:
    cli = Cli(tmp_path, "sqlite")
    victims = Victims(tmp_path / "victims")
    location, checksum = cli.store("img", os.urandom(7000))
    if path != "queue":  # queued first, except where the queue is planted
        cli.queue("img", location, checksum)
    cli.run("cache", "list")  # makes the layout
    at = cli.cache_dir / path
    if at.is_dir():
        os.rmdir(at)
    elif os.path.lexists(at):
        os.unlink(at)  # cache.db and its side files, made by the queueing
    plant(kind, at, victims, path)
    victims.seal()

    outputs = [
        cli.run("cache", "prefetch"),
        cli.run("cache", "clean"),
        cli.run("cache", "check", "--fix"),
    ]
    assert cli.problems == []
    assert victims.changed() == []
    if (path, kind) != (".fsstore-cache.lock", "hardlink"):
        # Refused, by name: the command says which file is in the way. (A
        # hard link is a regular file: as the lock it is only flock'ed.)
        said = "".join(p.stdout + p.stderr for p in outputs)
        assert any(p.returncode != 0 for p in outputs)
        assert str(at) in said, said
