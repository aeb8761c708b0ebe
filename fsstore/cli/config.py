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


def searched() -> list[str]:
    """Where oslo.config looks for a configuration when none is given, in
    order (its documented search): for ``fsstore.conf``, the first found is
    read; each ``fsstore.conf.d`` found is read too, its ``*.conf`` sorted."""
    dirs = [
        os.path.expanduser(f"~/.{PROJECT}"),
        os.path.expanduser("~"),
        f"/etc/{PROJECT}",
        "/etc",
    ]
    for var in ("SNAP_COMMON", "SNAP"):
        if os.environ.get(var):
            dirs.append(os.path.join(os.environ[var], "etc", PROJECT))
    files = [os.path.join(d, f"{PROJECT}.conf") for d in dirs]
    return files + [os.path.join(d, f"{PROJECT}.conf.d") for d in dirs]


def _backends(ctx: Context) -> list[str]:
    try:
        backends: dict[str, str] = ctx.conf.enabled_backends or {}
    except Exception:  # noqa: BLE001 - a bad value is the stores' to report
        return []
    return [name.strip() for name in backends]


def cmd_config(args: argparse.Namespace, ctx: Context) -> Result:
    given = bool(args.config_file or args.config_dir)
    failures: list[str] = []
    try:
        unknown = unknown_options(
            ctx.files, _backends(ctx), lambda failure: failures.append(str(failure))
        )
    except (OSError, iniparser.ParseError) as exc:
        raise UsageError(f"cannot check the configuration: {exc}") from None
    record = {
        "files": ctx.files,
        "searched": [] if given else searched(),
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
    if not given:
        lines.append("searched, as no --config-file or --config-dir was given:")
        lines += [f"  {f}" for f in searched()]
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
