"""The checked source: how every write path reads the data of an image.

A caller hands image data as a file-like object (``read``, and perhaps
``readinto``) or as an iterable of bytes-like chunks. Every store and every
cache fill reads it through :class:`CheckedSource`, which is where the rules
live:

* A chunk is any C-contiguous object with the buffer protocol (``bytes``,
  ``bytearray``, ``memoryview``, ``array``, ``mmap``, numpy arrays ...).
  ``str`` (a file opened in text mode) and other objects are ``Invalid``.
* ``read()`` returning ``None`` (a non-blocking stream with nothing ready) is
  ``Invalid``, never taken for the end of the data: taking it so would store
  a truncated image, and retrying would spin.
* Sizes are counted in bytes (``memoryview.nbytes``), never in items: a view
  of an ``array('i')`` is four bytes an item.
* A declared size (> 0) is checked: an overrun raises ``Invalid`` before the
  excess is handed on, an underrun at :meth:`CheckedSource.finish`.
* The verifier, if any, sees every byte once, in order.
* Held chunks are the caller's bytes. A source may reuse one buffer for every
  chunk (``readinto(buf); yield memoryview(buf)[:n]``), so a chunk that is
  kept past the next read (by the digest threads, the held-back head of a
  stream, a part being filled) must be a copy. :meth:`CheckedSource.chunks`
  hands on ``bytes`` objects as they are and copies anything else once;
  :meth:`CheckedSource.views` hands on views valid only until the next read,
  for a consumer that copies them at once.

The read side: :class:`FileChunkIterator` hands out an open image file's
chunks, for the filesystem store and the image cache.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Generator, Iterable, Iterator
from typing import Protocol, TypeAlias, cast

from fsstore import exceptions

READ_CHUNK = 64 * 1024


class Readable(Protocol):
    """A file-like source of image data: ``read(size)`` returns at most
    ``size`` bytes, and ``b""`` at the end (never None: see the module doc)."""

    def read(self, size: int, /) -> object: ...


# Image data as callers hand it to a store: a file-like object, or an
# iterable of bytes-like chunks (``bytes`` itself is taken as one chunk).
ImageData: TypeAlias = Readable | Iterable[object]


def no_chunks() -> Generator[bytes, None, None]:
    """The chunks of an empty image."""
    yield from ()


class ImageChunks(Protocol):
    """What a get returns: the chunks of an image, closable before the end
    (a generator is one)."""

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...

    def close(self) -> None: ...


class Verifier(Protocol):
    """What checks an image's data as it is added (Glance's signature
    verifier, say): ``update`` is shown every byte once, in order."""

    def update(self, chunk: bytes) -> None: ...


def byte_view(chunk: object, image_id: str) -> memoryview:
    """``chunk`` as a flat view of unsigned bytes, or Invalid naming its type.

    :param chunk: a chunk as a caller handed it (anything)
    :param image_id: the image, as the message names it
    :raises Invalid: for a ``str``, an object without the buffer protocol,
        or one not contiguous in memory
    """
    if isinstance(chunk, str):
        raise exceptions.Invalid(
            f"image {image_id}: data must be bytes, not str (is the file open "
            "in text mode?)"
        )
    try:
        view = memoryview(chunk)  # type: ignore[arg-type]
    except TypeError:
        raise exceptions.Invalid(
            f"image {image_id}: data must be bytes-like, not {type(chunk).__name__}"
        ) from None
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise exceptions.Invalid(
                f"image {image_id}: a chunk of type {type(chunk).__name__} is "
                "not contiguous in memory"
            )
        view = view.cast("B")
    return view


class SizeCheck:
    """Counts a stream's bytes against a declared size (0: unknown).

    :param image_id: the image, as the messages name it
    :param expected_size: the size the caller declared; 0 checks nothing
    """

    def __init__(self, image_id: str, expected_size: int) -> None:
        self.image_id = image_id
        self.expected = expected_size
        self.total = 0

    def add(self, n: int) -> None:
        """Count ``n`` more bytes; Invalid as soon as they overrun."""
        self.total += n
        if self.expected and self.total > self.expected:
            raise exceptions.Invalid(
                f"image {self.image_id}: data is larger than the declared size "
                f"of {self.expected} bytes"
            )

    def finish(self) -> int:
        """The total; Invalid if it falls short of the declared size."""
        if self.expected and self.total != self.expected:
            raise exceptions.Invalid(
                f"image {self.image_id}: data is {self.total} bytes, not the "
                f"declared {self.expected} bytes"
            )
        return self.total


class CheckedSource:
    """The data of one image, read and checked as the module doc says.

    :meth:`chunks`, :meth:`views` and :meth:`readinto` read from the same
    position, so a consumer may start with one and go on with another (the
    filesystem store reads a head of chunks, then reads the rest straight
    into its pipeline's buffers). :meth:`finish` ends the stream.

    :param data: a file-like object (``read``, perhaps ``readinto``), an
        iterable of bytes-like chunks, or one bytes-like object
    :param image_id: the image, as the messages name it
    :param size: the size the caller declared, checked; 0 if unknown
    :param verifier: shown every byte once, in order
    :param read_size: the size of each ``read`` of a file-like ``data``
    :raises Invalid: when ``data`` is neither file-like nor iterable
    """

    def __init__(
        self,
        data: ImageData,
        image_id: str,
        size: int = 0,
        verifier: Verifier | None = None,
        read_size: int = READ_CHUNK,
    ) -> None:
        self.image_id = image_id
        self.check = SizeCheck(image_id, size)
        self.verifier = verifier
        self.read_size = read_size
        read = getattr(data, "read", None)
        self._read = read if callable(read) else None
        readinto = getattr(data, "readinto", None)
        self._readinto = readinto if callable(readinto) else None
        if self._read is None:
            if isinstance(data, (str, bytes, bytearray, memoryview)):
                # One object, not an iterable of chunks: iterating bytes
                # would give ints, a str characters.
                data = [data]
            try:
                self._iter: Iterator[object] = iter(cast(Iterable[object], data))
            except TypeError:
                raise exceptions.Invalid(
                    f"image {image_id}: data must be a file-like object or an "
                    f"iterable of bytes, not {type(data).__name__}"
                ) from None
        else:
            self._iter = self._reads()
        self._ended = False

    @property
    def can_readinto(self) -> bool:
        """Whether the source has ``readinto``, so :meth:`readinto` works."""
        return self._readinto is not None

    def _reads(self) -> Iterator[object]:
        assert self._read is not None
        read = self._read
        while True:
            chunk = read(self.read_size)  # read_whole() may change it
            if chunk is None:
                raise self._no_data("read()")
            yield chunk

    def _no_data(self, call: str) -> exceptions.Invalid:
        return exceptions.Invalid(
            f"image {self.image_id}: {call} returned None (a non-blocking "
            "stream with no data ready); give a blocking stream"
        )

    def _next_view(self) -> tuple[object, memoryview] | None:
        """The next non-empty chunk and its byte view, counted and verified;
        None at the end."""
        if self._ended:
            return None
        for chunk in self._iter:
            view = byte_view(chunk, self.image_id)
            n = view.nbytes
            if not n:
                if self._read is not None:
                    break  # read() gave b"": the end
                continue  # an iterable may yield empty chunks anywhere
            self.check.add(n)
            return chunk, view
        self._ended = True
        return None

    def chunks(self) -> Iterator[bytes]:
        """The chunks, each safe to keep: ``bytes`` as given, others copied.

        Each is counted against the declared size (Invalid at once on an
        overrun) and shown to the verifier. An iterable's empty chunks are
        skipped; a file's empty read is the end.
        """
        verifier = self.verifier
        for safe in self._kept():
            if verifier is not None:
                verifier.update(safe)
            yield safe

    def _kept(self) -> Iterator[bytes]:
        while (item := self._next_view()) is not None:
            chunk, view = item
            safe = chunk if type(chunk) is bytes else bytes(view)
            # Race: holding a view across the yield would pin the caller's
            # buffer, and a source that resizes it for the next chunk fails.
            view.release()
            del item, chunk, view
            yield safe

    __iter__ = chunks

    def views(self) -> Iterator[memoryview]:
        """The chunks as byte views, each valid only until the next read."""
        verifier = self.verifier
        while (item := self._next_view()) is not None:
            view = item[1]
            del item
            if verifier is not None:
                verifier.update(view)  # type: ignore[arg-type]
            yield view
            view.release()  # see chunks(); a consumer must not keep it

    def readinto(self, buffer: memoryview) -> int:
        """Read into ``buffer`` (a file's ``readinto``); 0 at the end.

        Only for sources that :attr:`can_readinto`.

        :param buffer: where the bytes go; at most ``len(buffer)`` are read
        :returns: the number of bytes read, counted and verified
        :raises Invalid: when the source's readinto returns None (no data
            ready) or no byte count, or the bytes overrun the declared size
        """
        assert self._readinto is not None
        if self._ended:
            return 0
        n = self._readinto(buffer)
        if n is None:
            raise self._no_data("readinto()")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(buffer):
            raise exceptions.Invalid(
                f"image {self.image_id}: readinto() returned {n!r}, not a byte count"
            )
        if n == 0:
            self._ended = True
            return 0
        self.check.add(n)
        if self.verifier is not None:
            self.verifier.update(buffer[:n])  # type: ignore[arg-type]
        return n

    def read_whole(self) -> bytes:
        """Everything, for a declared size small enough to hold at once.

        A file is read one byte past the declared size, so that an overrun
        shows without reading it all.
        """
        expected = self.check.expected
        if expected:
            self.read_size = expected + 1
            if self._read is not None and not self.check.total and not self._ended:
                whole = self._read_exact(expected)
                if whole is not None:
                    return whole
        parts = list(self._kept())
        self.finish()
        whole = parts[0] if len(parts) == 1 else b"".join(parts)
        if self.verifier is not None:
            self.verifier.update(whole)
        return whole

    def _read_exact(self, expected: int) -> bytes | None:
        """The usual small add, in two reads and none of the per-chunk
        machinery: a file whose first read gives all ``expected`` bytes as
        ``bytes``, and whose next read gives ``b""``. Anything else (a
        short read, another type, more data) is put back in front of the
        stream for the general path, and None returned."""
        first = next(self._iter)  # Invalid for None, as every read
        if type(first) is not bytes or len(first) != expected:
            self._iter = itertools.chain((first,), self._iter)
            return None
        end = next(self._iter)
        if type(end) is not bytes or end:
            self._iter = itertools.chain((first, end), self._iter)
            return None
        self.check.total = expected
        self._ended = True
        if self.verifier is not None:
            self.verifier.update(first)
        return first

    def finish(self) -> int:
        """The number of bytes read; Invalid if short of the declared size."""
        return self.check.finish()


def read_chunks(
    data: ImageData,
    read_size: int,
    image_id: str,
    expected_size: int = 0,
    verifier: Verifier | None = None,
) -> Iterator[bytes]:
    """The checked chunks of ``data``, each safe to keep, then the size check:
    for drivers that need nothing more of :class:`CheckedSource`.

    :param data: a file-like object or an iterable of bytes-like chunks
    :param read_size: the size of each ``read`` of a file-like ``data``
    :param image_id: the image, as the messages name it
    :param expected_size: the size the caller declared, checked; 0 if unknown
    :param verifier: shown every byte once, in order
    """
    source = CheckedSource(data, image_id, expected_size, verifier, read_size)
    yield from source.chunks()
    source.finish()


class _OpenFile:
    """A descriptor closed once: explicitly, or when the last holder lets go."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    __del__ = close


class _BorrowedFile(_OpenFile):
    """A descriptor its owner closes: forgotten here, never closed."""

    __slots__ = ()

    def close(self) -> None:
        self.fd = -1

    __del__ = close


def _pread_chunks(
    file: _OpenFile, pos: int, left: int, read_size: int
) -> Generator[bytes, None, None]:
    # A generator, not a __next__ method: resuming one costs less than a
    # method call, and at 64 KiB a chunk that is a few percent of a full read.
    fd, pread = file.fd, os.pread
    try:
        while left > 0:
            chunk = pread(fd, read_size if read_size < left else left, pos)
            if not chunk:
                return  # truncated under us (only possible by hand): stop
            pos += len(chunk)
            left -= len(chunk)
            yield chunk
    finally:
        file.close()


class FileChunkIterator:
    """Chunks of one open image file; closes the file when done or closed.

    ``for chunk in it`` iterates the generator underneath directly. It holds
    the file too, so the loop may outlive this object (``for chunk in
    store.get(uri)[0]``): the file closes when the last of them goes.

    :param fd: an open descriptor of the file, which this object now owns
    :param offset: where the chunks start in the file
    :param length: how many bytes to read; fewer if the file is truncated
    :param read_size: the most bytes a chunk holds
    :param owned: False: ``fd`` stays its caller's, open until the caller
        closes it after the chunks (a scrub reading a file it goes on using)
    """

    def __init__(
        self, fd: int, offset: int, length: int, read_size: int, owned: bool = True
    ) -> None:
        self._file = _OpenFile(fd) if owned else _BorrowedFile(fd)
        self._chunks = _pread_chunks(self._file, offset, length, read_size)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Close the file, whether the chunks were read to the end or not."""
        self._chunks.close()  # runs its finally only if it had started
        self._file.close()

    def __enter__(self) -> FileChunkIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
