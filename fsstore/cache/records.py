"""The records protocol: what a cache driver keeps about the entries.

The cache directory (fsstore.cache.directory) owns the files: the layout, the
locks, one writer per image, verification, publishing, eviction. A driver
keeps only the records of the entries (size, hits, access times, the checksum
an entry was verified against) and answers for them. ``sqlite`` keeps them in
a database file in the directory, ``xattr`` in the entry files themselves,
``centralized_db`` in Glance's database; a third-party driver subclasses
``RecordsDriver`` and registers it in the ``fsstore.cache_drivers`` entry
points.

Calls. ``commit``, ``delete``, ``adopt`` and ``resize`` run under the cache
directory's lock (``directory.lock()``), so they never race with each other,
in any process. ``hit`` runs without it, on the reader's thread, when the
reader closes the image, possibly after the entry was evicted (then it
does nothing). Every method may be called from any thread, and after
``fork()``. An exception from ``commit`` leaves the image uncached, one from
``hit`` is logged: neither reaches a reader.

Order. The directory unlinks files before it deletes their records and
records an entry before it links its file into place, so the records may
overstate the files for a moment (or after a crash) and never understate
them: the size limit holds by the records. ``check`` reconciles the rest.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, NamedTuple, Protocol

from oslo_config import cfg


class CachedImage(NamedTuple):
    """One cached image, as get_cached_images() lists it."""

    image_id: str
    size: int
    hits: int
    last_accessed: float
    last_modified: float
    checksum: str | None = None

    @property
    def verified(self) -> bool:
        """Whether the entry was checked against a known digest before it was
        published (its checksum is recorded); adopted entries and those cached
        with ``allow_unverified`` were not."""
        return self.checksum is not None

    def as_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "verified": self.verified}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One disagreement between a driver's records and the files."""

    # missing-file | unrecorded-file | wrong-size | bad-hits | over-limit |
    # damaged-records
    kind: str
    image_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The cache directory's subdirectory of files being written
#: (``<image_cache_dir>/incomplete/``). A driver may create a scratch file
#: of its own there, under a name starting with ``.fsstore-`` (never an
#: image id): ``clean()`` reaps whatever no live process holds a lock on.
INCOMPLETE = "incomplete"


class Directory(Protocol):
    """What a driver may use of the cache directory it keeps records for.

    ``path(name, INCOMPLETE)`` names a file in ``incomplete/`` (see
    ``INCOMPLETE``); everything else a driver may touch is an entry file or
    its own records.
    """

    base_dir: str
    db_path: str  # image_cache_sqlite_db, resolved against base_dir

    def path(self, image_id: str, sub: str = "") -> str: ...

    def lock(self) -> AbstractContextManager[None]: ...

    def is_entry_name(self, name: str) -> bool: ...

    def scan_entry_files(self) -> Iterator[tuple[str, os.stat_result]]: ...

    def entry_files(self) -> dict[str, os.stat_result]: ...


class RecordsDriver:
    """Base class of cache drivers: the records of one cache directory.

    Implement ``commit``, ``delete``, ``hit``, ``hits``, ``entries`` and
    ``total_size``. The default ``check`` reconciles records kept apart from
    the files (a database, a JSON file) through ``adopt`` and ``resize``; a
    driver whose records live in the files overrides ``check`` and
    ``is_entry`` instead.
    """

    NAME: ClassVar[str] = "base"
    #: oslo.config options this driver reads, each with its group (None:
    #: ``[DEFAULT]``); registered when the cache loads the driver, listed by
    #: list_opts through the entry points (fsstore.plugins).
    OPTIONS: ClassVar[list[tuple[str | None, cfg.Opt]]] = []
    #: Ids longer than this are never entries of the driver (its records
    #: cannot hold them); such images are served, not cached.
    max_id_length: ClassVar[int | None] = None
    #: True if ``entries`` lists only names ``scan_entry_files`` gave, which
    #: the directory then need not check again.
    lists_entry_files: ClassVar[bool] = False

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        """Read the driver's own options (BadDriverConfiguration if wrong)."""
        self.conf = conf

    def configure(self, directory: Directory) -> None:
        """Bind to ``directory`` once it exists; open or create the records."""
        self.directory = directory

    def reserved_names(self) -> set[str]:
        """Names of the driver's own files in the cache directory, never
        entries (names starting with ``.fsstore-`` never are anyway)."""
        return set()

    def is_entry(self, target: int | str) -> bool:
        """Whether an entry file (an open descriptor or a path) is an entry:
        a driver whose records live in the files says so by them."""
        return True

    # -- the records ---------------------------------------------------------

    def commit(self, image_id: str, size: int, checksum: str | None, fd: int) -> None:
        """Record a new entry (replacing any record of ``image_id``); ``fd``
        is its file, not yet linked into place. ``checksum`` is None for an
        entry that was not verified. Under the lock."""
        raise NotImplementedError

    def delete(self, image_ids: Sequence[str]) -> None:
        """Forget these entries (their files are gone); ids without a
        record are ignored. Under the lock."""
        raise NotImplementedError

    def hit(self, image_id: str, fd: int) -> None:
        """Count one read of the entry open as ``fd``, and make it the most
        recently used: exactly once per call, under any concurrency."""
        raise NotImplementedError

    def hits(self, image_id: str) -> int:
        """The entry's hit count (0 for an unknown id)."""
        raise NotImplementedError

    def entries(self) -> list[CachedImage]:
        """Every recorded entry, in any order."""
        raise NotImplementedError

    def total_size(self) -> int:
        """The sum of the recorded entries' sizes."""
        raise NotImplementedError

    # -- repair ----------------------------------------------------------------

    def check(self, fix: bool) -> list[Problem]:
        """The records against the entry files, for records kept apart from
        the files: recorded without a file, a file without a record, sizes
        that differ. With ``fix``, the records are made to match the files.
        Under the lock."""
        return self.reconcile(self.entries(), fix)

    def reconcile(self, entries: list[CachedImage], fix: bool) -> list[Problem]:
        """``check`` of records already read (``entries()``)."""
        records = {e.image_id: e for e in entries}
        files = self.directory.entry_files()
        problems = []
        gone = sorted(records.keys() - files.keys())
        for image_id in gone:
            problems.append(Problem("missing-file", image_id, "recorded, no file"))
        if fix and gone:
            self.delete(gone)
        unrecorded = sorted(files.keys() - records.keys())
        for image_id in unrecorded:
            size = files[image_id].st_size
            problems.append(
                Problem("unrecorded-file", image_id, f"{size} bytes, no record")
            )
        if fix and unrecorded:
            self.adopt({image_id: files[image_id] for image_id in unrecorded})
        for image_id in sorted(records.keys() & files.keys()):
            recorded, actual = records[image_id].size, files[image_id].st_size
            if recorded != actual:
                problems.append(
                    Problem(
                        "wrong-size",
                        image_id,
                        f"recorded {recorded} bytes, file has {actual}",
                    )
                )
                if fix:
                    self.resize(image_id, actual)
        return problems

    def adopt(self, files: dict[str, os.stat_result]) -> None:
        """Record entry files that have no record, unverified, no hits, their
        times from the files (for the default ``check``)."""
        raise NotImplementedError

    def resize(self, image_id: str, size: int) -> None:
        """Correct a record's size to its file's (for the default ``check``)."""
        raise NotImplementedError
