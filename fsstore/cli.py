"""The ``fsstore`` command: add, get, size, delete, verify, stores.

Configured like the library, through oslo.config (``--config-file``,
``--config-dir``, Glance-style files). Every error a user can cause is one
line on stderr and a non-zero exit status: 1 for a failed operation, 2 for bad
usage or bad configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol, cast

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache import ImageCache, Prefetcher
from fsstore.hashing import DEFAULT_HASHING_ALGO, ImageHasher
from fsstore.location import redact
from fsstore.registry import StoreRegistry, register_opts

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or configuration: exit status 2."""


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _progress(args: argparse.Namespace, total: int | None, desc: str) -> Any:
    from tqdm import tqdm

    enabled = args.progress if args.progress is not None else sys.stderr.isatty()
    return tqdm(
        total=total or None,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    )


class _BinaryFile(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...

    def readinto(self, buffer: Any, /) -> int | None: ...


class _CountingReader:
    """A file wrapper that reports each read to a progress bar."""

    def __init__(self, f: _BinaryFile, bar: Any) -> None:
        self._f = f
        self._bar = bar

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._bar.update(len(chunk))
        return chunk

    def readinto(self, buffer: Any) -> int:
        # Lets the store read large images straight into its buffers.
        n = self._f.readinto(buffer) or 0
        self._bar.update(n)
        return n


def _print(args: argparse.Namespace, record: dict[str, Any], text: str) -> None:
    if args.format == "json":
        print(json.dumps(record, sort_keys=True))
    else:
        print(text)


class Context:
    """What a subcommand works on, built on first use."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self._registry: StoreRegistry | None = None
        self._cache: ImageCache | None = None

    @property
    def registry(self) -> StoreRegistry:
        if self._registry is None:
            self._registry = StoreRegistry(self.conf)
        return self._registry

    @property
    def cache(self) -> ImageCache:
        if self._cache is None:
            self._cache = ImageCache(self.conf)
        return self._cache

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


# -- subcommands --------------------------------------------------------------


def cmd_add(args: argparse.Namespace, ctx: Context) -> int:
    registry = ctx.registry
    image_id = str(uuid.uuid4()) if args.id is None else args.id
    if args.file == "-":
        source: BinaryIO = sys.stdin.buffer
        close = False
    else:
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
        close = True
    try:
        size = args.size
        if size is None:
            # A regular file, named or on stdin (add - < image), has a
            # size to check the data against; a pipe has none.
            fd = source.fileno()
            st = os.fstat(fd)
            size = 0
            if stat.S_ISREG(st.st_mode):
                size = max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)
        with _progress(args, size, f"add {image_id}") as bar:
            result = registry.add(
                image_id,
                # sys.stdin.buffer and open(..., "rb") both have readinto.
                _CountingReader(cast(_BinaryFile, source), bar),
                size,
                backend=args.backend,
                hashing_algo=args.hashing_algo,
            )
    finally:
        if close:
            source.close()
    record = {
        "id": image_id,
        "location": result.location,
        "size": result.size,
        "checksum": result.checksum,
        "multihash": result.multihash,
        "hashing_algo": args.hashing_algo,
        "metadata": result.metadata,
    }
    _print(
        args,
        record,
        f"id:        {image_id}\n"
        f"location:  {result.location}\n"
        f"size:      {result.size} ({human_size(result.size)})\n"
        f"checksum:  {result.checksum} (md5)\n"
        f"multihash: {result.multihash} ({args.hashing_algo})",
    )
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    """Where ``get`` writes: stdout, or ``path``.

    A regular file (or a new one) is written whole or not at all: a
    temporary file beside it, renamed over it on success, with the existing
    file's mode (and, as root, owner). A device or a FIFO is written
    through, as ``cat`` would. Anything else (a directory, a socket) is
    refused. A symlink is followed, never replaced.
    """
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not (
            stat.S_ISCHR(st.st_mode)
            or stat.S_ISBLK(st.st_mode)
            or stat.S_ISFIFO(st.st_mode)
        ):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a file"
            raise UsageError(f"cannot write {path}: it is {kind}")
        try:
            device = open(target, "wb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        with device:
            yield device
        return
    directory = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(directory, f".fsstore-get-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        # As a new file would be made: mode 0666 less the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    registry = ctx.registry
    chunks, length = registry.get(args.uri, args.offset, args.length)
    with (
        contextlib.closing(chunks),
        _output(args.output) as out,
        _progress(args, length, "get") as bar,
    ):
        for chunk in chunks:
            out.write(chunk)
            bar.update(len(chunk))
    return 0


def cmd_size(args: argparse.Namespace, ctx: Context) -> int:
    registry = ctx.registry
    size = registry.get_size(args.uri)
    _print(args, {"location": args.uri, "size": size}, str(size))
    return 0


def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    registry = ctx.registry
    registry.delete(args.uri)
    _print(args, {"location": args.uri, "deleted": True}, f"deleted {args.uri}")
    return 0


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    registry = ctx.registry
    chunks, length = registry.get(args.uri)
    hasher = ImageHasher(args.hashing_algo)
    with contextlib.closing(chunks), _progress(args, length, "verify") as bar:
        for chunk in chunks:
            hasher.update(chunk)
            bar.update(len(chunk))
    checksum, multihash = hasher.hexdigests()
    if args.checksum is not None:
        kind, expected, actual = "checksum", args.checksum.lower(), checksum
    else:
        kind, expected, actual = "multihash", args.multihash.lower(), multihash
    ok = expected == actual
    record = {
        "location": args.uri,
        "kind": kind,
        "expected": expected,
        "actual": actual,
        "ok": ok,
    }
    if args.format == "json":
        print(json.dumps(record, sort_keys=True))
    elif ok:
        print(f"OK {args.uri} {kind} {actual}")
    if not ok:
        print(
            f"fsstore: {kind} mismatch for {args.uri}: expected {expected}, "
            f"got {actual}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def cmd_stores(args: argparse.Namespace, ctx: Context) -> int:
    registry = ctx.registry
    records = []
    for name, store in registry.stores.items():
        info = store.describe()
        info["name"] = name
        info["default"] = name == registry.default_name
        records.append(info)
    if args.format == "json":
        print(json.dumps(records, sort_keys=True))
        return 0
    for info in records:
        default = " (default)" if info["default"] else ""
        print(
            f"{info['name']}{default}: driver {info['driver']}, "
            f"schemes {','.join(info['schemes'])}, "
            f"capabilities {','.join(info['capabilities'])}"
        )
        for d in info.get("datadirs", []):
            print(
                f"    {d['path']}  priority {d['priority']}  "
                f"free {human_size(d['free_bytes'])}"
            )
        for key in sorted(
            set(info)
            - {"name", "default", "driver", "schemes", "capabilities", "datadirs"}
        ):
            print(f"    {key}: {info[key]}")
    return 0


# -- fsstore cache ... ---------------------------------------------------------


def _when(epoch: float) -> str:
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def cmd_cache_list(args: argparse.Namespace, ctx: Context) -> int:
    rows = ctx.cache.get_cached_images()
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in rows], sort_keys=True))
        return 0
    table = [("ID", "SIZE", "HITS", "VERIFIED", "LAST ACCESSED")]
    table += [
        (
            r.image_id,
            human_size(r.size),
            str(r.hits),
            "yes" if r.verified else "no",
            _when(r.last_accessed),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  "
            f"{row[2]:>{widths[2]}}  {row[3]:<{widths[3]}}  {row[4]}"
        )
    return 0


def cmd_cache_queued(args: argparse.Namespace, ctx: Context) -> int:
    queued = ctx.cache.get_queued_images()
    if args.format == "json":
        print(json.dumps(queued))
    else:
        for image_id in queued:
            print(image_id)
    return 0


def _done(args: argparse.Namespace, record: dict[str, Any], text: str) -> int:
    _print(args, record, text)
    return 0


def cmd_cache_queue(args: argparse.Namespace, ctx: Context) -> int:
    queued = ctx.cache.queue_image(
        args.image_id,
        location=args.location,
        checksum=args.checksum,
        multihash=args.multihash,
        hashing_algo=args.hashing_algo,
        allow_unverified=args.allow_unverified,
    )
    if not queued:
        state = (
            "cached"
            if ctx.cache.is_cached(args.image_id)
            else "being cached"
            if ctx.cache.is_being_cached(args.image_id)
            else "queued already"
            if ctx.cache.is_queued(args.image_id)
            else "not cacheable"
        )
        raise exceptions.Invalid(f"image {args.image_id} was not queued: it is {state}")
    return _done(
        args, {"image_id": args.image_id, "queued": True}, f"queued {args.image_id}"
    )


def cmd_cache_delete(args: argparse.Namespace, ctx: Context) -> int:
    if not ctx.cache.delete_cached_image(args.image_id):
        raise exceptions.NotFound(f"image {args.image_id} is not cached")
    return _done(
        args,
        {"image_id": args.image_id, "deleted": True},
        f"deleted {args.image_id} from the cache",
    )


def cmd_cache_delete_all(args: argparse.Namespace, ctx: Context) -> int:
    count = ctx.cache.delete_all_cached_images()
    return _done(args, {"deleted": count}, f"deleted {count} cached images")


def cmd_cache_delete_queued(args: argparse.Namespace, ctx: Context) -> int:
    if not ctx.cache.delete_queued_image(args.image_id):
        raise exceptions.NotFound(f"image {args.image_id} is not queued")
    return _done(
        args,
        {"image_id": args.image_id, "dequeued": True},
        f"removed {args.image_id} from the queue",
    )


def cmd_cache_delete_all_queued(args: argparse.Namespace, ctx: Context) -> int:
    count = ctx.cache.delete_all_queued_images()
    return _done(args, {"dequeued": count}, f"removed {count} images from the queue")


def cmd_cache_prune(args: argparse.Namespace, ctx: Context) -> int:
    files, freed = ctx.cache.prune()
    return _done(
        args,
        {"files": files, "bytes": freed},
        f"pruned {files} images, {human_size(freed)}",
    )


def cmd_cache_clean(args: argparse.Namespace, ctx: Context) -> int:
    invalid, incomplete = ctx.cache.clean(args.stall_time)
    return _done(
        args,
        {"invalid": invalid, "incomplete": incomplete},
        f"removed {invalid} invalid and {incomplete} incomplete files",
    )


def cmd_cache_size(args: argparse.Namespace, ctx: Context) -> int:
    size = ctx.cache.get_cache_size()
    limit = ctx.cache.max_size
    return _done(
        args,
        {"size": size, "max_size": limit},
        f"{size} bytes ({human_size(size)} of {human_size(limit)})",
    )


def cmd_cache_check(args: argparse.Namespace, ctx: Context) -> int:
    problems = ctx.cache.check(fix=args.fix)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "problems": [p.as_dict() for p in problems],
                    "fixed": bool(args.fix and problems),
                },
                sort_keys=True,
            )
        )
    else:
        for p in problems:
            print(f"{p.kind}: {p.image_id or '-'}: {p.detail}")
        verdict = "fixed" if args.fix else "found"
        print(f"{len(problems)} problems {verdict}" if problems else "no problems")
    return EXIT_FAILED if problems and not args.fix else 0


def cmd_cache_prefetch(args: argparse.Namespace, ctx: Context) -> int:
    prefetcher = Prefetcher(ctx.cache, ctx.registry, workers=args.workers)
    total = len(ctx.cache.get_queued_images())
    from tqdm import tqdm

    enabled = args.progress if args.progress is not None else sys.stderr.isatty()
    with tqdm(
        total=total,
        desc="prefetch",
        unit="image",
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    ) as bar:
        report = prefetcher.run(on_done=lambda _i, _ok: bar.update(1))
    record = {
        "cached": sorted(report.cached),
        "skipped": sorted(report.skipped),
        "failed": report.failed,
    }
    if args.format == "json":
        print(json.dumps(record, sort_keys=True))
    else:
        for image_id in sorted(report.cached):
            print(f"cached {image_id}")
        for image_id, reason in sorted(report.failed.items()):
            print(f"failed {image_id}: {reason}")
    return EXIT_FAILED if report.failed else 0


def add_cache_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    cache = sub.add_parser("cache", parents=[common], help="manage the image cache")
    csub = cache.add_subparsers(
        dest="cache_command", required=True, parser_class=_Parser
    )
    simple = [
        ("list", cmd_cache_list, "list cached images"),
        ("queued", cmd_cache_queued, "list queued images, in queue order"),
        ("delete-all", cmd_cache_delete_all, "delete every cached image"),
        ("delete-all-queued", cmd_cache_delete_all_queued, "empty the queue"),
        ("prune", cmd_cache_prune, "evict LRU images down to image_cache_max_size"),
        ("size", cmd_cache_size, "print the cache's total size"),
    ]
    for name, func, help_text in simple:
        csub.add_parser(name, parents=[common], help=help_text).set_defaults(func=func)
    for name, func, help_text in [
        ("delete", cmd_cache_delete, "delete one cached image"),
        ("delete-queued", cmd_cache_delete_queued, "remove one image from the queue"),
    ]:
        p = csub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("image_id", metavar="ID")
        p.set_defaults(func=func)
    p = csub.add_parser("queue", parents=[common], help="queue an image for prefetch")
    p.add_argument("image_id", metavar="ID")
    p.add_argument("--location", help="the image's store location URI")
    p.add_argument("--checksum", metavar="MD5")
    p.add_argument("--multihash", metavar="HEX")
    p.add_argument("--hashing-algo", type=_hashing_algo)
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="cache it even with no --checksum or --multihash to verify it against",
    )
    p.set_defaults(func=cmd_cache_queue)
    p = csub.add_parser(
        "clean", parents=[common], help="remove invalid and crashed incomplete files"
    )
    p.add_argument("--stall-time", type=_nonnegative, default=None)
    p.set_defaults(func=cmd_cache_clean)
    p = csub.add_parser(
        "check", parents=[common], help="reconcile the driver's records with the files"
    )
    p.add_argument("--fix", action="store_true", help="repair what differs")
    p.set_defaults(func=cmd_cache_check)
    p = csub.add_parser("prefetch", parents=[common], help="cache every queued image")
    p.add_argument("--workers", type=_positive, default=4)
    p.set_defaults(func=cmd_cache_prefetch)


# -- argument parsing ---------------------------------------------------------


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive(text: str) -> int:
    value = _nonnegative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _hashing_algo(text: str) -> str:
    if text not in hashlib.algorithms_available:
        raise argparse.ArgumentTypeError(f"unknown hashing algorithm {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before and after the subcommand. Their
    # defaults are SUPPRESS so that a subparser does not overwrite a value
    # given before it; parse_args() fills them in afterwards.
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument(
        "--config-file",
        action="append",
        metavar="PATH",
        help="a Glance-style configuration file (repeatable)",
    )
    common.add_argument(
        "--config-dir",
        action="append",
        metavar="DIR",
        help="a directory of *.conf files (repeatable)",
    )
    common.add_argument(
        "--format", choices=("text", "json"), help="output format (default: text)"
    )
    progress = common.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        help="show a progress bar on stderr (default: on a tty)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")

    parser = _Parser(
        prog="fsstore", description=__doc__.split("\n")[0], parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("add", parents=[common], help="store an image")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("--id", help="image id (default: a new UUID)")
    p.add_argument("--backend", help="backend name or scheme (default: the default)")
    p.add_argument(
        "--size",
        type=_nonnegative,
        help="declared size in bytes, checked against the data",
    )
    p.add_argument("--hashing-algo", type=_hashing_algo, default=DEFAULT_HASHING_ALGO)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("get", parents=[common], help="read an image")
    p.add_argument("uri")
    p.add_argument("-o", "--output", metavar="FILE", help="write here, not stdout")
    p.add_argument("--offset", type=_nonnegative, default=0)
    p.add_argument("--length", type=_positive, default=None)
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("size", parents=[common], help="print an image's size")
    p.add_argument("uri")
    p.set_defaults(func=cmd_size)

    p = sub.add_parser("delete", parents=[common], help="delete an image")
    p.add_argument("uri")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("verify", parents=[common], help="check an image's digest")
    p.add_argument("uri")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checksum", metavar="MD5")
    which.add_argument("--multihash", metavar="HEX")
    p.add_argument("--hashing-algo", type=_hashing_algo, default=DEFAULT_HASHING_ALGO)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("stores", parents=[common], help="list the configured stores")
    p.set_defaults(func=cmd_stores)
    add_cache_parser(sub, common)
    return parser


GLOBAL_DEFAULTS: dict[str, object] = {
    "config_file": [],
    "config_dir": [],
    "format": "text",
    "progress": None,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf_args: list[str] = []
    for path in args.config_file:
        conf_args += ["--config-file", path]
    for path in args.config_dir:
        conf_args += ["--config-dir", path]
    try:
        conf(conf_args, project="fsstore", prog="fsstore", use_env=False)
    except cfg.Error as exc:
        raise UsageError(str(exc).strip().splitlines()[0]) from None
    except OSError as exc:  # e.g. --config-file naming a directory
        name = f" {exc.filename}" if exc.filename else ""
        raise UsageError(f"cannot read configuration{name}: {exc.strerror}") from None
    except SystemExit:  # oslo.config's own argument errors
        raise UsageError("invalid --config-file or --config-dir") from None
    return conf


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        ctx = Context(load_conf(args))
        try:
            status: int = args.func(args, ctx)
            return status
        finally:
            ctx.close()
    except UsageError as exc:
        print(
            f"fsstore: {exc}" if not str(exc).startswith("fsstore") else exc,
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (
        exceptions.BadStoreConfiguration,
        exceptions.BadDriverConfiguration,
    ) as exc:
        print(f"fsstore: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except exceptions.FsstoreError as exc:
        print(f"fsstore: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (fsstore get ... | head): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        name = f" {exc.filename}" if exc.filename else ""
        print(f"fsstore: {exc.strerror or exc}{name}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("fsstore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a driver's, sqlite's, botocore's...: one line
        print(f"fsstore: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    """The first line of an unexpected error's message, without any
    ``user:password@`` a URI in it may carry."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else "no detail"
    return " ".join(redact(word) for word in text.split(" "))


if __name__ == "__main__":
    sys.exit(main())
