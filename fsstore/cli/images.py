"""``fsstore add|get|size|delete|verify|stores``: the store operations."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import stat
import sys
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from fsstore import exceptions, safefiles
from fsstore.cli.command import (
    BACKEND,
    Command,
    Context,
    OneOf,
    UsageError,
    arg,
    nonnegative,
    positive,
)
from fsstore.cli.output import (
    EXIT_FAILED,
    CountingReader,
    Failure,
    Result,
    human_size,
    progress,
)
from fsstore.hashing import (
    DEFAULT_HASHING_ALGO,
    Expected,
    ImageHasher,
    KeptDigests,
    hashing_algo_problem,
    mismatch,
)
from fsstore.location import FileLocation


def hashing_algo(text: str) -> str:
    """``--hashing-algo``: the library's one rule for an algorithm
    (fsstore.hashing.hashing_algo_problem), a usage error when broken."""
    problem = hashing_algo_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


@contextlib.contextmanager
def _source(path: str) -> Iterator[io.BufferedReader]:
    if path == "-":
        # typeshed calls it a BinaryIO; it is a BufferedReader (readinto).
        yield cast(io.BufferedReader, sys.stdin.buffer)
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        yield f


def _size_left(f: BinaryIO) -> int:
    """What is left to read of a regular file, named or on stdin (add - <
    image); 0 (unknown) for a pipe."""
    fd = f.fileno()
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return 0
    return max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)


def _changed(before: os.stat_result, now: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns) != (now.st_size, now.st_mtime_ns)


def cmd_add(args: argparse.Namespace, ctx: Context) -> Result:
    image_id = str(uuid.uuid4()) if args.id is None else args.id
    with _source(args.file) as source:
        size = _size_left(source) if args.size is None else args.size
        before = os.fstat(source.fileno())
        with progress(args.progress, size, f"add {image_id}") as bar:
            try:
                result = ctx.registry.add(
                    image_id,
                    CountingReader(source, bar),
                    size,
                    backend=args.backend,
                    hashing_algo=args.hashing_algo,
                )
            except exceptions.Invalid:
                # The size the store checked was the file's, not one the
                # user declared: a mismatch means the file changed.
                now = os.fstat(source.fileno())
                if args.size is None and size and _changed(before, now):
                    raise exceptions.Invalid(
                        f"{args.file} changed while it was read ({before.st_size} "
                        f"bytes when the add began, {now.st_size} now); nothing "
                        "was stored"
                    ) from None
                raise
    record = {
        "id": image_id,
        "location": result.location,
        "size": result.size,
        "checksum": result.checksum,
        "multihash": result.multihash,
        "hashing_algo": args.hashing_algo,
        "metadata": result.metadata,
    }
    text = (
        f"id:        {image_id}\n"
        f"location:  {result.location}\n"
        f"size:      {result.size} ({human_size(result.size)})\n"
        f"checksum:  {result.checksum} (md5)\n"
        f"multihash: {result.multihash} ({args.hashing_algo})"
    )
    return Result(record, text)


def _cannot_write(path: str, exc: OSError) -> UsageError:
    return UsageError(f"cannot write {path}: {exc.strerror}")


@contextlib.contextmanager
def _write_through(path: str, target: str) -> Iterator[BinaryIO]:
    try:
        device = open(target, "wb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    with device:
        yield device


@contextlib.contextmanager
def _replace(path: str, target: str, st: os.stat_result | None) -> Iterator[BinaryIO]:
    with contextlib.ExitStack() as stack:
        try:
            # As a new file would be made: mode 0666 less the umask.
            fd = stack.enter_context(
                safefiles.atomic_file(
                    None, target, replace=True, mode=0o666, fsync=False
                )
            )
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "wb", closefd=False) as f:
            yield f


def _is_stdout(path: str) -> bool:
    """Whether ``path`` is what stdout is (/dev/stdout, /proc/self/fd/1, or
    the very file stdout was redirected to)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):  # ValueError: stdout closed or replaced
        return False


@contextlib.contextmanager
def _destination(path: str | None) -> Iterator[BinaryIO]:
    """Where ``get`` writes: stdout, or ``path``.

    A regular file (or a new one) is written whole or not at all: a
    temporary file beside it, renamed over it on success, with the existing
    file's mode (and, as root, owner). A device or a FIFO is written
    through, as ``cat`` would. Anything else (a directory, a socket) is
    refused. A symlink is followed, never replaced.
    """
    if path is None or path == "-" or _is_stdout(path):
        # Written through, as a shell's redirection would: /dev/stdout may be
        # a file opened for appending, a socket, a pipe.
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    if st is None or stat.S_ISREG(st.st_mode):
        # The file a symlink names is replaced, never the link.
        target = os.path.realpath(path) if os.path.islink(path) else path
        with _replace(path, target, st) as f:
            yield f
    elif (
        stat.S_ISCHR(st.st_mode)
        or stat.S_ISBLK(st.st_mode)
        or stat.S_ISFIFO(st.st_mode)
    ):
        with _write_through(path, path) as f:
            yield f
    else:
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a file"
        raise UsageError(f"cannot write {path}: it is {kind}")


def _is_the_image(path: str, uri: str) -> bool:
    """Whether ``path`` is the file of the image at ``uri`` (a file:// one)."""
    try:
        image = FileLocation.from_uri(uri).path
        return os.path.samestat(os.stat(path), os.stat(image))
    except (OSError, exceptions.FsstoreError):
        return False


def cmd_get(args: argparse.Namespace, ctx: Context) -> Result:
    to_stdout = args.output is None or args.output == "-"
    if to_stdout and not args.force and sys.stdout.isatty():
        raise UsageError(
            "refusing to write an image to a terminal; give -o FILE, or --force"
        )
    uri = ctx.location(args.image, args.backend)
    if args.output not in (None, "-") and _is_the_image(args.output, uri):
        # Replacing it would make it a new file, its kept digests lost.
        raise UsageError(f"cannot write {args.output}: it is the image being read")
    chunks, length = ctx.registry.get(uri, args.offset, args.length)
    with (
        contextlib.closing(chunks),
        _destination(args.output) as out,
        progress(args.progress, length, "get") as bar,
    ):
        for chunk in chunks:
            out.write(chunk)
            bar.update(len(chunk))
    # The data is the output: nothing is printed after it.
    return Result(None)


def cmd_size(args: argparse.Namespace, ctx: Context) -> Result:
    uri = ctx.location(args.image, args.backend)
    size = ctx.registry.get_size(uri)
    return Result({"location": uri, "size": size}, str(size))


def cmd_delete(args: argparse.Namespace, ctx: Context) -> Result:
    uri = ctx.location(args.image, args.backend)
    ctx.registry.delete(uri)
    return Result({"location": uri, "deleted": True}, f"deleted {uri}")


def cmd_verify(args: argparse.Namespace, ctx: Context) -> Result:
    algo = args.hashing_algo
    expected = Expected(args.checksum, args.multihash, algo)
    uri = ctx.location(args.image, args.backend)
    chunks, length = ctx.registry.get(uri)
    hasher, size = ImageHasher(algo), 0
    with contextlib.closing(chunks), progress(args.progress, length, "verify") as bar:
        for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            bar.update(len(chunk))
    actual = KeptDigests(*hasher.hexdigests(), algo, size)
    kind = "checksum" if args.checksum is not None else "multihash"
    record = {
        "location": uri,
        "kind": kind,
        "expected": getattr(expected, kind),
        "actual": getattr(actual, kind),
        "ok": mismatch(expected, actual) is None,
    }
    if record["ok"]:
        return Result(record, f"OK {uri} {kind} {record['actual']}")
    failure = Failure(
        f"{kind} mismatch for {uri}: expected {record['expected']}, "
        f"got {record['actual']}",
        "ChecksumMismatch",
    )
    return Result(record, None, EXIT_FAILED, failure)


def _store_text(info: dict[str, Any]) -> str:
    default = " (default)" if info["default"] else ""
    lines = [
        f"{info['name']}{default}: driver {info['driver']}, "
        f"schemes {','.join(info['schemes'])}, "
        f"capabilities {','.join(info['capabilities'])}"
    ]
    for d in info.get("datadirs", []):
        free = d["free_bytes"]
        room = "missing" if free is None else f"free {human_size(free)}"
        if free is not None and not d.get("writable", True):
            room += ", read-only"
        lines.append(f"    {d['path']}  priority {d['priority']}  {room}")
    shown = {"name", "default", "driver", "schemes", "capabilities", "datadirs"}
    lines += [f"    {key}: {info[key]}" for key in sorted(set(info) - shown)]
    return "\n".join(lines)


def cmd_stores(args: argparse.Namespace, ctx: Context) -> Result:
    registry = ctx.registry
    records = []
    for name, store in registry.stores.items():
        info = store.describe()
        info["name"] = name
        info["default"] = name == registry.default_name
        records.append(info)
    return Result(records, "\n".join(_store_text(info) for info in records) or None)


def _algorithms() -> str:
    """The hashing algorithms this Python offers with a fixed digest length
    (hashing_algo_problem's rule), for the help text."""
    return ", ".join(
        sorted(
            a for a in hashlib.algorithms_available if hashing_algo_problem(a) is None
        )
    )


_IMAGE = arg("image", metavar="ID|URI", help="an image id, or the image's location")
_HASHING_ALGO = arg(
    "--hashing-algo",
    type=hashing_algo,
    default=DEFAULT_HASHING_ALGO,
    metavar="ALGO",
    help=f"the multihash's algorithm (default: {DEFAULT_HASHING_ALGO}); one of: "
    + _algorithms(),
)

COMMANDS = (
    Command(
        "add",
        "store an image",
        cmd_add,
        (
            arg(
                "file",
                metavar="FILE|-",
                help="the image's bytes: a file, or - for stdin",
            ),
            arg("--id", help="image id (default: a new UUID)"),
            BACKEND,
            arg(
                "--size",
                type=nonnegative,
                help="declared size in bytes, checked against the data "
                "(default: the file's size; unknown for a pipe)",
            ),
            _HASHING_ALGO,
        ),
        writes="stores",
    ),
    Command(
        "get",
        "read an image",
        cmd_get,
        (
            _IMAGE,
            BACKEND,
            arg(
                "-o",
                "--output",
                metavar="FILE",
                help="write here, not stdout (a file is replaced whole, or left as it was)",
            ),
            arg(
                "--force",
                action="store_true",
                help="write to stdout even when it is a terminal",
            ),
            arg(
                "--offset",
                type=nonnegative,
                default=0,
                help="the first byte to read (default: 0)",
            ),
            arg(
                "--length",
                type=positive,
                default=None,
                help="at most this many bytes (default: to the end)",
            ),
        ),
    ),
    Command("size", "print an image's size", cmd_size, (_IMAGE, BACKEND)),
    Command(
        "delete", "delete an image", cmd_delete, (_IMAGE, BACKEND), writes="stores"
    ),
    Command(
        "verify",
        "check an image's digest",
        cmd_verify,
        (
            _IMAGE,
            BACKEND,
            OneOf(
                (
                    arg(
                        "--checksum", metavar="MD5", help="the MD5 it must have, in hex"
                    ),
                    arg(
                        "--multihash",
                        metavar="HEX",
                        help="the --hashing-algo digest it must have, in hex",
                    ),
                ),
                required=True,
            ),
            _HASHING_ALGO,
        ),
    ),
    Command("stores", "list the configured stores", cmd_stores),
)
