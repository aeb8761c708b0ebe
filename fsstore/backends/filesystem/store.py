"""The filesystem store: images as files in prioritized data directories.

On-disk layout, per data directory::

    <datadir>/
        <image_id>                 a published image: complete, fsync'ed
        .fsstore-publish.lock      (multi-directory stores) serializes publish
        .fsstore-staging/          named staging files, only on file systems
            <random>               without O_TMPFILE; each flock'ed by its writer
        .fsstore-digests/          digest records, only on file systems
            <inode>                without user xattrs (filesystem/digests.py)

Writing protocol. An image is written to an anonymous ``O_TMPFILE`` file in
the chosen data directory (or, where the file system lacks it, to a named
staging file that its writer holds an exclusive ``flock`` on), hashed on the
way, fsync'ed (``filesystem_store_fsync``), and only then linked under its
final name with ``link(2)``, which is atomic and fails with ``EEXIST`` rather
than replace anything. So a reader sees either no file or a whole one, a
``kill -9`` at any moment leaves at most an anonymous file the kernel frees (or
an unlocked named staging file that the next ``configure()`` removes), and of
two concurrent adds of one id exactly one link succeeds.

With several data directories, an id must be unique across all of them. The
existence check and the link then run under an exclusive ``flock`` on
``.fsstore-publish.lock`` in the first directory (by path), which every process
sharing the store agrees on (a locking.LockFile).

An add reads top to bottom in ``_add``: choose a directory, write and hash
into a staging file, publish it (``DataDirs.publish``: digests, fsync, the
lock and the check across directories, the link, the directory's fsync).

Reading protocol. A location names a file directly inside one of the data
directories. The file is opened relative to the directory's file descriptor
through ``safefiles.open_regular``, so neither ``..``, an absolute path
elsewhere, a symlink nor a FIFO planted in a data directory reaches outside
it or hangs the read.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.backends.filesystem.config import (
    OPTIONS,
    load_metadata,
    metadata_for,
    parse_datadirs,
    parse_file_perm,
)
from fsstore.backends.filesystem.datadirs import PUBLISH_LOCK, DataDir, DataDirs
from fsstore.backends.filesystem.digests import (
    ScrubbedFile,
    forget_name,
    read_kept_digests,
)
from fsstore.backends.filesystem.staging import STAGING_DIR, Staging
from fsstore.backends.filesystem.timed import TimedCalls
from fsstore.hashing import ImageHasher, KeptDigests, hexdigests_of
from fsstore.location import FileLocation, Location
from fsstore.pipeline import WriteFailed
from fsstore.safefiles import NotRegularFile, open_regular_stat
from fsstore.store import (
    RESERVED_PREFIX,
    AddResult,
    ListedImage,
    Store,
    range_length,
    validate_image_id,
)
from fsstore.streams import (
    READ_CHUNK,
    CheckedSource,
    FileChunkIterator,
    ImageChunks,
    ImageData,
    Verifier,
)
from fsstore.writepath import (
    PIPELINE_THRESHOLD,
    ImageFileWriter,
    one_read_limit,
    write_all,
    write_error,
    write_errors,
)

__all__ = ["OPTIONS", "PUBLISH_LOCK", "STAGING_DIR", "DataDir", "FilesystemStore"]

LOG = logging.getLogger(__name__)


class FilesystemStore(Store):
    __doc__ = __doc__
    OPTIONS = OPTIONS
    # filesystem:// is glance_store's legacy spelling of file://.
    SCHEMES = ("file", "filesystem")
    DRIVER_NAME = "file"

    def __init__(self, conf: cfg.ConfigOpts, backend_group: str | None = None) -> None:
        super().__init__(conf, backend_group)
        self.metadata: list[dict[str, Any]] = []
        self.file_mode = 0
        self.io_size = READ_CHUNK  # until configure reads filesystem_store_chunk_size
        self.thin = False
        self._one_read_limit = 0
        self._zero_block = b""
        self.fsync = True
        self._timed = TimedCalls(self.name, 0, 1, 100)
        self._dirs = DataDirs(self.name, self._timed)

    @property
    def datadirs(self) -> list[DataDir]:
        """The configured data directories, missing ones included."""
        return self._dirs.all

    # -- configuration ---------------------------------------------------

    def _configured_datadirs(self) -> list[DataDir]:
        datadir = self.option("filesystem_store_datadir")
        specs = self.option("filesystem_store_datadirs") or []
        if specs:
            explicit = self.conf.get_location("filesystem_store_datadir", self.group)
            if datadir and explicit and explicit.location != cfg.Locations.opt_default:
                raise exceptions.BadStoreConfiguration(
                    self.name,
                    "set either filesystem_store_datadir or filesystem_store_datadirs, "
                    "not both",
                )
            return parse_datadirs(
                self.name, specs, self.option_file("filesystem_store_datadirs")
            )
        if datadir:
            return parse_datadirs(
                self.name,
                [datadir + ":0"],
                self.option_file("filesystem_store_datadir"),
            )
        raise exceptions.BadStoreConfiguration(
            self.name,
            "set filesystem_store_datadir or filesystem_store_datadirs",
        )

    def configure(self) -> None:
        """Read the options, open the data directories (a fresh store's are
        made) and remove the staging files no live writer holds.

        :raises BadStoreConfiguration: for no data directory or both options
            set, a bad priority, permission or metadata file, or a directory
            that cannot be made or is not readable and writable
        """
        dirs = self._configured_datadirs()
        self.file_mode = parse_file_perm(
            self.name, self.option("filesystem_store_file_perm")
        )
        metadata_file = self.path_option("filesystem_store_metadata_file")
        self.metadata = load_metadata(self.name, metadata_file) if metadata_file else []
        self.io_size = self.option("filesystem_store_chunk_size")
        self.thin = self.option("filesystem_thin_provisioning")
        self._one_read_limit = 0 if self.thin else one_read_limit(self.io_size)
        self._zero_block = bytes(self.io_size) if self.thin else b""
        self.fsync = self.option("filesystem_store_fsync")
        self.verify_on_read = self.option("filesystem_store_verify_on_read")
        timed = (
            self.option("filesystem_store_timeout"),
            self.option("filesystem_store_thread_pool_size"),
            self.option("filesystem_store_threadpool_threshold"),
        )

        self.close()
        self._timed = TimedCalls(self.name, *timed)
        self._dirs = DataDirs(self.name, self._timed)
        self._dirs.open(dirs, self.file_mode, self.fsync, read_only=self.read_only)

    def close(self) -> None:
        """Close the data directories' descriptors, the publish lock and the
        threads of filesystem_store_timeout; configure opens them anew."""
        self._dirs.close()
        self._timed.close()

    def describe(self) -> dict[str, Any]:
        """Store.describe, and each data directory's path, priority and free
        bytes (None: missing), highest priority first."""
        info = super().describe()
        info["datadirs"] = [
            {
                "path": d.path,
                "priority": d.priority,
                # None: missing (maybe unmounted), so no room to speak of.
                "free_bytes": d.free_bytes() if self._dirs.available(d) else None,
                "writable": d.writable,
            }
            for d in sorted(self.datadirs, key=lambda d: (-d.priority, d.path))
        ]
        return info

    # -- locations -------------------------------------------------------

    def parse_location(self, uri: str) -> FileLocation:
        """A ``file://`` (or ``filesystem://``) location (FileLocation.from_uri)."""
        return FileLocation.from_uri(uri)

    def owns(self, location: Location) -> bool:
        """Whether ``location`` names a file directly inside one of the data
        directories (by path, or by the path resolved), under a valid id."""
        return self._dirs.find(location) is not None

    def _resolve(self, location: Location) -> tuple[DataDir, str]:
        found = self._dirs.find(location)
        if found is None:
            raise exceptions.Forbidden(
                f"location {location.uri} is outside the data directories of "
                f"store {self.name!r}"
            )
        datadir, name = found
        if not self._dirs.available(datadir):
            raise exceptions.NotFound(
                f"image {location.uri} not found: data directory {datadir.path} "
                "is missing"
            )
        return datadir, name

    def _stat(self, location: Location) -> tuple[DataDir, str, os.stat_result]:
        datadir, name = self._resolve(location)
        try:
            st = self._timed(os.stat, name, dir_fd=datadir.fd, follow_symlinks=False)
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None
        except PermissionError:
            raise exceptions.Forbidden(f"access to {location.uri} denied") from None
        if stat.S_ISLNK(st.st_mode):
            raise exceptions.Forbidden(
                f"location {location.uri} is a symlink; images are never symlinks"
            )
        if not stat.S_ISREG(st.st_mode):
            raise exceptions.Forbidden(f"location {location.uri} is not an image file")
        return datadir, name, st

    # -- operations ------------------------------------------------------

    def _open_image(
        self, location: Location
    ) -> tuple[DataDir, str, int, os.stat_result]:
        """The image file at ``location`` opened for reading: its data
        directory, its name, the descriptor and its fstat. Never a symlink,
        and never anything but a regular file (safefiles.open_regular: a
        FIFO planted in a data directory must not hang the open)."""
        datadir, name = self._resolve(location)
        try:
            fd, opened = self._timed(open_regular_stat, name, dir_fd=datadir.fd)
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None
        except NotRegularFile as exc:
            if exc.what == "a symbolic link":
                raise exceptions.Forbidden(
                    f"location {location.uri} is a symlink; images are never symlinks"
                ) from None
            raise exceptions.Forbidden(
                f"location {location.uri} is not an image file"
            ) from None
        except OSError as exc:
            raise exceptions.Forbidden(
                f"cannot open {location.uri}: {exc.strerror}"
            ) from None
        return datadir, name, fd, opened

    def _get(
        self, location: Location, offset: int, limit: int | None
    ) -> tuple[ImageChunks, int]:
        _, _, fd, opened = self._open_image(location)
        try:
            length = range_length(opened.st_size, offset, limit, location.uri)
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_SEQUENTIAL)
        except BaseException:
            os.close(fd)
            raise
        return FileChunkIterator(fd, offset, length, self.io_size), length

    def _get_size(self, location: Location) -> int:
        return self._stat(location)[2].st_size

    def _delete(self, location: Location) -> None:
        datadir, name, st = self._stat(location)
        try:
            self._timed(os.unlink, name, dir_fd=datadir.fd)
        except FileNotFoundError:
            raise exceptions.NotFound(f"image {location.uri} not found") from None
        except OSError as exc:
            raise exceptions.Forbidden(
                f"cannot delete {location.uri}: {exc.strerror}"
            ) from None
        # After the file: a crash between the two leaves a record of an
        # inode no image has (see digests.py).
        self._timed(forget_name, datadir.fd, st, name, self.fsync)

    def _add(
        self,
        image_id: str,
        data: ImageData,
        size: int,
        hashing_algo: str,
        verifier: Verifier | None,
    ) -> AddResult:
        source = CheckedSource(data, image_id, size, verifier, self.io_size)
        # A small file-like source is read whole before anything is made:
        # at a few KiB the streaming machinery costs as much as the file
        # system's own work (writepath.one_read_limit).
        whole = (
            source.read_whole()
            if 0 < size <= self._one_read_limit and hasattr(data, "read")
            else None
        )
        if whole is None and not 0 < size <= PIPELINE_THRESHOLD:
            # Fail fast before streaming a large image; for a small one the
            # publish step (link(2), and the check under the publish lock)
            # finds a duplicate at no extra cost.
            self._dirs.check_absent(image_id)
        datadir = self._dirs.choose(image_id, size, small=whole is not None)
        if whole is not None:
            digests = hexdigests_of(whole, hashing_algo)
            kept = KeptDigests(*digests, hashing_algo, len(whole))
            with Staging(datadir, image_id) as staging:
                try:
                    self._write(staging.fd, whole)
                except OSError as exc:
                    raise write_error(exc, datadir.described, image_id) from None
                self._dirs.publish(staging, kept)
        else:
            kept = self._add_stream(datadir, image_id, source, size, hashing_algo)
        written = kept.size
        LOG.debug("added %s (%d bytes) to %s", image_id, written, datadir.path)
        return AddResult(
            datadir.uri_prefix + image_id,
            written,
            kept.checksum,
            kept.multihash,
            self._metadata_for(datadir, image_id),
        )

    def _add_stream(
        self,
        datadir: DataDir,
        image_id: str,
        source: CheckedSource,
        size: int,
        hashing_algo: str,
    ) -> KeptDigests:
        """Write, hash and publish ``source`` in ``datadir``; what is kept."""
        hasher = ImageHasher(hashing_algo)
        try:
            with Staging(datadir, image_id) as staging:
                with write_errors(datadir.described, image_id, stream_inside=True):
                    written = self._write_stream(staging.fd, hasher, source, size)
                kept = KeptDigests(*hasher.hexdigests(), hashing_algo, written)
                self._dirs.publish(staging, kept)
        except BaseException:
            hasher.close()  # its threads, if any (hexdigests stopped them)
            raise
        return kept

    def _write_stream(
        self, fd: int, hasher: ImageHasher, source: CheckedSource, size: int
    ) -> int:
        """Write and hash the checked stream to ``fd`` (see
        fsstore.writepath); the bytes written. Once the pipeline runs, the
        rest of the source is read straight into its buffers."""
        writer = ImageFileWriter(
            fd,
            hasher,
            inline=self.thin or 0 < size <= PIPELINE_THRESHOLD,
            write=self._write,
        )
        try:
            for chunk in source.chunks():
                writer.add(chunk)
                if writer.pipeline is not None:
                    writer.drain(source)
                    break
            writer.finish()
        finally:
            writer.close()
        written = source.finish()
        if self.thin:
            try:
                os.ftruncate(fd, written)  # a trailing hole has no write to size it
            except OSError as exc:
                raise WriteFailed(exc) from exc
        return written

    def _write(self, fd: int, chunk: bytes) -> None:
        if self.thin and chunk == self._zeros(len(chunk)):
            os.lseek(fd, len(chunk), os.SEEK_CUR)
            return
        write_all(fd, chunk)

    def _zeros(self, length: int) -> bytes:
        if len(self._zero_block) != length:
            return bytes(length)
        return self._zero_block

    # -- integrity -------------------------------------------------------
    def images(self) -> Iterator[ListedImage]:
        """The regular files of every data directory present, but the
        store's own (``.fsstore-*``); a missing directory is skipped
        (``unavailable`` names it)."""
        for datadir in self.datadirs:
            if not self._dirs.available(datadir):
                continue
            for entry in os.scandir(datadir.fd):
                if entry.name.startswith(RESERVED_PREFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since the directory was read
                if stat.S_ISREG(st.st_mode):
                    location = datadir.uri_prefix + entry.name
                    yield ListedImage(entry.name, location, st.st_size)

    def find_image(self, image_id: str) -> ListedImage | None:
        """The regular file ``image_id`` in the first data directory present
        that holds one (an id is in one directory at most)."""
        validate_image_id(image_id)
        for datadir in self.datadirs:
            if not self._dirs.available(datadir):
                continue
            try:
                st = self._timed(
                    os.stat, image_id, dir_fd=datadir.fd, follow_symlinks=False
                )
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                return ListedImage(image_id, datadir.uri_prefix + image_id, st.st_size)
        return None

    def identity(self) -> str:
        """``file:`` and the data directories' resolved paths, sorted."""
        # Priorities only order where new images go; the directories (as
        # resolved, so that two spellings of one path agree) are the store.
        paths = sorted({os.path.realpath(d.path) for d in self.datadirs})
        return "file:" + json.dumps(paths)

    def unavailable(self) -> list[str]:
        """The data directories missing now, and those a fresh store made
        that still hold no image (maybe in place of an unmounted one)."""
        return self._dirs.missing()

    def kept_digests(self, location: Location | str) -> KeptDigests | None:
        """The digests recorded with the image file (a user xattr, or a
        record in ``.fsstore-digests``); None too when no file can be opened."""
        try:
            datadir, name, fd, _ = self._open_image(self._location(location))
        except (exceptions.NotFound, exceptions.Forbidden):
            return None  # reading it will name the problem
        try:
            return read_kept_digests(fd, datadir.fd, name)
        finally:
            os.close(fd)

    def read_image(self, location: Location | str) -> ScrubbedFile:
        """The image file opened for a scrub; its ``keep`` keeps digests
        with that open file only (see ImageRead)."""
        where = self._location(location)
        datadir, name, fd, opened = self._open_image(where)
        try:
            return ScrubbedFile(
                fd, opened, datadir.fd, name, where.uri, self.io_size, self.fsync
            )
        except BaseException:
            os.close(fd)  # once made, it is the one that closes it
            raise

    def keep_digests(self, location: Location | str, kept: KeptDigests) -> None:
        """Keep ``kept`` for the image at ``location`` if nothing is kept
        for it yet and it has ``kept.size`` bytes; never over digests that
        are there (see ScrubbedFile.keep)."""
        where = self._location(location)
        with self.read_image(where) as image:
            datadir, name = self._resolve(where)
            with write_errors(datadir.described, name):
                image.keep(kept)

    def preferred_datadir(self) -> DataDir:
        """Where an image of unknown size would go now."""
        return self._dirs.preferred()

    def _metadata_for(self, datadir: DataDir, image_id: str) -> dict[str, Any]:
        if not self.metadata:
            return {}  # the usual case, and every add asks
        return metadata_for(self.metadata, os.path.join(datadir.path, image_id))
