"""The ``fsstore`` command: add, get, size, delete, verify, stores, ls, info,
scrub, cache, config.

Configured like the library, through oslo.config (``--config-file``,
``--config-dir``, Glance-style files). Every error a user can cause is one
line on stderr (a JSON object with ``--format json``) and a non-zero exit
status: 1 for a failed operation, 2 for bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
from typing import NoReturn

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cli.cache import CACHE
from fsstore.cli.command import (
    Arg,
    Command,
    Context,
    OneOf,
    UsageError,
    arg,
    config_files,
)
from fsstore.cli.config import CONFIG
from fsstore.cli.images import COMMANDS
from fsstore.cli.listing import LISTING
from fsstore.cli.output import EXIT_FAILED, EXIT_USAGE, emit, emit_error
from fsstore.cli.scrub import SCRUB
from fsstore.location import redact
from fsstore.registry import register_opts

EXIT_INTERRUPTED = 130

# Plain text: argparse prints it as it is (the docstring above is RST).
DESCRIPTION = "Store, read, check and cache images, configured as Glance is."
EPILOG = (
    "Configuration: --config-file and --config-dir, else the files "
    "'fsstore config' lists. Exit status: 0 done, 1 failed, 2 bad usage "
    "or configuration."
)

# Accepted before and after the subcommand. Their defaults are SUPPRESS so
# that a subparser does not overwrite a value given before it; parse_args()
# fills in GLOBAL_DEFAULTS afterwards.
GLOBAL_ARGS: tuple[Arg | OneOf, ...] = (
    arg(
        "--config-file",
        action="append",
        metavar="PATH",
        help="a Glance-style configuration file (repeatable)",
    ),
    arg(
        "--config-dir",
        action="append",
        metavar="DIR",
        help="a directory of *.conf files (repeatable)",
    ),
    arg("--format", choices=("text", "json"), help="output format (default: text)"),
    OneOf(
        (
            arg(
                "--progress",
                dest="progress",
                action="store_true",
                help="show a progress bar on stderr (default: on a tty)",
            ),
            arg(
                "--no-progress",
                dest="progress",
                action="store_false",
                help="show no progress bar, even on a tty",
            ),
        )
    ),
)
GLOBAL_DEFAULTS: dict[str, object] = {
    "config_file": [],
    "config_dir": [],
    "format": "text",
    "progress": None,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def _add_args(parser: argparse.ArgumentParser, args: tuple[Arg | OneOf, ...]) -> None:
    for item in args:
        if isinstance(item, OneOf):
            group = parser.add_mutually_exclusive_group(required=item.required)
            for one in item.args:
                group.add_argument(*one.flags, **one.options)
        else:
            parser.add_argument(*item.flags, **item.options)


def _add_commands(
    parser: argparse.ArgumentParser,
    commands: tuple[Command, ...],
    dest: str,
    common: _Parser,
) -> None:
    # The metavar is what a missing subcommand's error names.
    sub = parser.add_subparsers(
        dest=dest, required=True, parser_class=_Parser, metavar="COMMAND"
    )
    for command in commands:
        p = sub.add_parser(
            command.name, parents=[common], help=command.help, description=command.help
        )
        _add_args(p, command.args)
        if command.subcommands:
            _add_commands(p, command.subcommands, f"{command.name}_command", common)
        else:
            p.set_defaults(run=command.run, writes=command.writes)


def _version() -> str:
    """The installed distribution's version (setup.cfg takes it from
    ``fsstore.__version__``, which the command cannot import: it sits above)."""
    try:
        return importlib.metadata.version("fsstore")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_args(common, GLOBAL_ARGS)
    parser = _Parser(
        prog="fsstore", description=DESCRIPTION, epilog=EPILOG, parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"fsstore {_version()}")
    _add_commands(
        parser, (*COMMANDS, *LISTING, SCRUB, CACHE, CONFIG), "command", common
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def requested_format(argv: list[str] | None) -> str:
    """The ``--format`` asked for, wherever it is, so that errors found
    while parsing the rest are already in that format."""
    pre = _Parser(add_help=False)
    pre.add_argument("--format", choices=("text", "json"), default="text")
    # A bad --format is reported by the full parse, in text.
    with contextlib.suppress(UsageError):
        known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
        return str(known.format)
    return "text"


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
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"cannot read configuration{_undecodable(args)}: it is not UTF-8 "
            f"(byte {exc.start})"
        ) from None
    except OSError as exc:  # e.g. --config-file naming a directory
        name = f" {exc.filename}" if exc.filename else ""
        raise UsageError(f"cannot read configuration{name}: {exc.strerror}") from None
    except SystemExit:  # oslo.config's own argument errors
        raise UsageError("invalid --config-file or --config-dir") from None
    return conf


def _undecodable(args: argparse.Namespace) -> str:
    """`` <path>``: the first file given that is not UTF-8 (or "")."""
    for path in config_files(args.config_file, args.config_dir):
        try:
            with open(path, encoding="utf-8") as f:
                f.read()
        except UnicodeDecodeError:
            return f" {path}"
        except OSError:
            continue
    return ""


def _one_line(exc: BaseException) -> str:
    """The first line of an unexpected error's message, without any
    ``user:password@`` a URI in it may carry."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else "no detail"
    return " ".join(redact(word) for word in text.split(" "))


def describe_error(exc: BaseException) -> tuple[str, str, int]:
    """What to say about an error that ended the command: its message, its
    kind (the exception's class name) and the exit status."""
    kind = type(exc).__name__
    usage = (
        UsageError,
        exceptions.BadStoreConfiguration,
        exceptions.BadDriverConfiguration,
    )
    if isinstance(exc, usage):
        return str(exc), kind, EXIT_USAGE
    if isinstance(exc, exceptions.FsstoreError):
        return str(exc), kind, EXIT_FAILED
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", kind, EXIT_INTERRUPTED
    if isinstance(exc, OSError):
        name = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{name}", kind, EXIT_FAILED
    # A driver's, sqlite's, botocore's...: one line, with its class name.
    return f"{kind}: {_one_line(exc)}", kind, EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    ctx = Context(conf, config_files(conf.config_file or [], conf.config_dir or []))
    if args.writes:
        ctx.will_write(args.writes)
    try:
        status = emit(args.run(args, ctx), args.format)
    finally:
        ctx.close()
    return status


def main(argv: list[str] | None = None) -> int:
    output_format = requested_format(argv)
    try:
        return _run(parse_args(argv))
    except BrokenPipeError:
        # The reader went away (fsstore get ... | head): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (Exception, KeyboardInterrupt) as exc:
        message, kind, status = describe_error(exc)
        emit_error(message, kind, output_format)
        return status
