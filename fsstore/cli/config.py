"""``fsstore config``: which configuration files were read, where they are
looked for, and the options in them that fsstore does not read."""

from __future__ import annotations

import argparse
import os

from oslo_config import iniparser

from fsstore.cli.command import Command, Context, UsageError
from fsstore.cli.output import EXIT_FAILED, Result
from fsstore.confcheck import unknown_options

PROJECT = "fsstore"


def searched(files: bool, dirs: bool) -> list[str]:
    """Where oslo.config looks, in order (its documented search), for
    ``fsstore.conf`` when no --config-file is given (``files``; the first
    found is read) and for ``fsstore.conf.d`` when no --config-dir is given
    (``dirs``; the first found is read, its ``*.conf`` sorted, even with a
    --config-file)."""
    places = [
        os.path.expanduser(f"~/.{PROJECT}"),
        os.path.expanduser("~"),
        f"/etc/{PROJECT}",
        "/etc",
    ]
    for var in ("SNAP_COMMON", "SNAP"):
        if os.environ.get(var):
            places.append(os.path.join(os.environ[var], "etc", PROJECT))
    found = [os.path.join(d, f"{PROJECT}.conf") for d in places] if files else []
    return found + (
        [os.path.join(d, f"{PROJECT}.conf.d") for d in places] if dirs else []
    )


def _backends(ctx: Context) -> list[str]:
    try:
        backends: dict[str, str] = ctx.conf.enabled_backends or {}
    except Exception:  # noqa: BLE001 - a bad value is the stores' to report
        return []
    return [name.strip() for name in backends]


def cmd_config(args: argparse.Namespace, ctx: Context) -> Result:
    looked = searched(not args.config_file, not args.config_dir)
    failures: list[str] = []
    try:
        unknown = unknown_options(
            ctx.files, _backends(ctx), lambda failure: failures.append(str(failure))
        )
    except (OSError, iniparser.ParseError) as exc:
        raise UsageError(f"cannot check the configuration: {exc}") from None
    record = {
        "files": ctx.files,
        "searched": looked,
        "drivers_not_loaded": failures,
        "unknown_options": [
            {
                "file": u.file,
                "line": u.line,
                "group": u.group,
                "name": u.name,
                "hint": u.hint,
            }
            for u in unknown
        ],
    }
    lines = ["configuration files read, in order:"]
    lines += [f"  {f}" for f in ctx.files] or ["  none"]
    if looked:
        lines.append("looked for, in order, as no --config-file or --config-dir said:")
        lines += [f"  {f}" for f in looked]
    if failures:
        lines.append(
            "installed drivers that do not load (their options are not known):"
        )
        lines += [f"  {f}" for f in failures]
    if unknown:
        lines.append("options fsstore does not read:")
        lines += [f"  {u}" for u in unknown]
    else:
        lines.append("every option set in fsstore's groups is one it reads")
    return Result(record, "\n".join(lines), EXIT_FAILED if unknown else 0)


CONFIG = Command(
    "config",
    "show the configuration files read and name the options fsstore does not read",
    cmd_config,
)
