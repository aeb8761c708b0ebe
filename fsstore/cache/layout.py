"""The cache directory's names: its layout, which names are entries, paths.

The layout itself is drawn in fsstore.cache.directory. This module makes it
(``make``), reserves the names that are never images, and finds the
entry files: only a regular file directly in the directory whose name is a
valid image id and not reserved is an entry; nothing else is ever listed,
counted, pruned or deleted as an image.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator

from fsstore import exceptions, safefiles
from fsstore.cache.records import INCOMPLETE, RecordsDriver
from fsstore.store import RESERVED_PREFIX, image_id_problem, validate_image_id

INVALID = "invalid"
QUEUE = "queue"
CACHE_LOCK = ".fsstore-cache.lock"
GLANCE_DB_LOCK = "image_cache_db_init"
SUBDIRS = (INCOMPLETE, INVALID, QUEUE)

__all__ = [
    "CACHE_LOCK",
    "GLANCE_DB_LOCK",
    "INCOMPLETE",
    "INVALID",
    "QUEUE",
    "SUBDIRS",
    "CacheLayout",
    "regular_files",
]


def regular_files(
    dir_fd: int, accept: Callable[[str], bool]
) -> Iterator[tuple[str, os.stat_result]]:
    """``(name, lstat result)`` of each regular file in the directory open
    as ``dir_fd`` whose name ``accept`` takes: links, FIFOs and directories
    planted among entries are never one.

    :param dir_fd: the directory, open.
    :param accept: whether a name is worth a ``stat``.
    """
    with os.scandir(dir_fd) as found:
        for entry in found:
            if not accept(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # Race: removed since the listing; not an entry
            if stat.S_ISREG(st.st_mode):
                yield entry.name, st


class CacheLayout:
    """The names and paths of one cache directory.

    :param name: the records driver's name, for configuration errors.
    :param base_dir: ``image_cache_dir``.
    :param db_name: ``image_cache_sqlite_db``, resolved against ``base_dir``.
    :param records: the records driver, whose names are reserved too.
    """

    def __init__(
        self, name: str, base_dir: str, db_name: str, records: RecordsDriver
    ) -> None:
        self.name = name
        self.records = records
        self.base_dir = os.path.abspath(base_dir)
        self.db_name = db_name
        self.db_path = os.path.join(self.base_dir, db_name)
        self._reserved: frozenset[str] = frozenset()
        self._max_id_length = records.max_id_length

    # -- making it -------------------------------------------------------

    def make(self) -> None:
        """Create the layout where missing, and reserve its names. A
        subdirectory that is a link or not a directory is refused: the cache
        would write, and clean, wherever it leads."""
        self._check_db_path()
        for sub in ("", *SUBDIRS):
            self._make(sub)
        for sub in ("", *SUBDIRS):
            path = os.path.join(self.base_dir, sub)
            if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise exceptions.BadDriverConfiguration(
                    self.name, f"{path} is not readable and writable"
                )
        self._reserved = frozenset(self._reserved_names())

    def _make(self, sub: str) -> None:
        path = os.path.join(self.base_dir, sub)
        try:
            if sub:
                os.mkdir(path)
            else:
                os.makedirs(path, exist_ok=True)
        except FileExistsError:
            pass
        except OSError as exc:
            raise exceptions.BadDriverConfiguration(
                self.name, f"cannot create {path}: {exc.strerror}"
            ) from None
        # The configured directory itself may be a link the operator
        # made; the cache's own subdirectories may not.
        if sub and not stat.S_ISDIR(os.lstat(path).st_mode):
            what = "a symbolic link" if os.path.islink(path) else "not a directory"
            raise exceptions.BadDriverConfiguration(
                self.name,
                f"{path} is {what}; the cache's {sub}/ must be a directory",
            )

    def _check_db_path(self) -> None:
        """Refuse an ``image_cache_sqlite_db`` where the cache's own files
        live: ``clean()`` empties ``invalid/`` and reaps ``incomplete/``, and
        ``queue/`` is read as image ids."""
        db_dir = os.path.realpath(os.path.dirname(self.db_path))
        for sub in SUBDIRS:
            inside = os.path.realpath(os.path.join(self.base_dir, sub))
            if db_dir == inside or db_dir.startswith(inside + os.sep):
                raise exceptions.BadDriverConfiguration(
                    self.name,
                    f"image_cache_sqlite_db {self.db_name!r} is inside the cache's "
                    f"{sub}/ directory; put it in the cache directory or elsewhere",
                )

    def _reserved_names(self) -> set[str]:
        """Names in the cache directory that are never images.

        The sqlite database's files are reserved for every driver (a cache
        directory may have been run with the other one before), however
        ``image_cache_sqlite_db`` names them: ``cache.db``, ``./cache.db`` or
        an absolute path into the cache directory.
        """
        names = {*SUBDIRS, CACHE_LOCK, GLANCE_DB_LOCK, *self.records.reserved_names()}
        db_dir, db_file = os.path.split(os.path.normpath(self.db_path))
        if os.path.realpath(db_dir) == os.path.realpath(self.base_dir):
            names |= {db_file + s for s in ("", "-wal", "-shm", "-journal")}
        return names

    # -- names and paths -------------------------------------------------

    def is_refused(self, name: str) -> bool:
        """Whether a valid image id still cannot name an entry: a name the
        cache or its driver reserves, or too long for the driver's records.

        :param name: a valid image id.
        """
        return name in self._reserved or (
            self._max_id_length is not None and len(name) > self._max_id_length
        )

    def is_entry_name(self, name: str) -> bool:
        """Whether ``name`` may name an entry: a valid image id, not reserved.

        :param name: a name in the cache directory, or an image id.
        """
        return image_id_problem(name) is None and not self.is_refused(name)

    def path(self, image_id: str, sub: str = "") -> str:
        """The path of ``image_id`` in the cache directory, or in its
        ``sub/`` directory.

        :param image_id: the name (an image id, or a ``.fsstore-`` name).
        :param sub: ``""`` for an entry, or one of ``SUBDIRS``.
        """
        return os.path.join(self.base_dir, sub, image_id)

    def checked(self, image_id: str) -> str:
        """``image_id``, once it is known valid (Invalid if not).

        :param image_id: the id to check.
        """
        validate_image_id(image_id)
        return image_id

    @contextlib.contextmanager
    def subdir(self, sub: str) -> Iterator[int]:
        """A descriptor of the cache's ``sub/`` directory, opened without
        following a link: names are worked on relative to it, so a
        subdirectory swapped for a link never redirects a write or a clean.

        :param sub: one of ``SUBDIRS``.
        """
        # A link is named as one ("a symbolic link where a directory
        # belongs"), anything else but a directory is NotADirectoryError.
        fd = safefiles.open_directory(os.path.join(self.base_dir, sub))
        try:
            yield fd
        finally:
            os.close(fd)

    # -- the entry files ---------------------------------------------------

    def entry_files(self) -> dict[str, os.stat_result]:
        """The entry files in the directory, by image id."""
        return dict(self.scan_entry_files())

    def scan_entry_files(self) -> Iterator[tuple[str, os.stat_result]]:
        """``(image id, lstat result)`` of each entry file, in directory order."""
        # By descriptor: each lstat is relative, no walk of the directory's
        # path. regular_files and is_entry_name inlined (an xattr listing is
        # this loop and little else), the name check cheaper: the kernel
        # guarantees a name non-empty, free of '/' and NUL, not '.' or '..',
        # and at most 255 bytes long.
        reserved, longest = self._reserved, self._max_id_length
        if longest is None:
            longest = 255
        dir_fd = os.open(self.base_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(dir_fd) as found:
                for entry in found:
                    name = entry.name
                    if (
                        name.startswith(RESERVED_PREFIX)
                        or name in reserved
                        or len(name) > longest
                        or not (name.isascii() or image_id_problem(name) is None)
                    ):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # Race: removed since the listing; not an entry
                    if stat.S_ISREG(st.st_mode):
                        yield name, st
        finally:
            os.close(dir_fd)
