"""Helpers shared by the tests: Glance-style conf files and tmpfs mounts."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from oslo_config import cfg

from fsstore.registry import register_opts

Sections = Mapping[str, Mapping[str, object]]


def write_conf(path: Path, sections: Sections) -> Path:
    """Write an ini file; a list value becomes a repeated (multi-valued) option."""
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        for name, value in options.items():
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            lines += [f"{name} = {v}" for v in values]
        lines.append("")
    # Atomically: processes that write the same file concurrently must never
    # let a reader see half of it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path


def load_conf(*files: Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    args: list[str] = []
    for f in files:
        args += ["--config-file", str(f)]
    conf(args, project="fsstore", default_config_files=[], use_env=False)
    return conf


def is_root() -> bool:
    return os.geteuid() == 0


@contextlib.contextmanager
def _mounted(path: Path, fstype: str, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", fstype, "-o", options, fstype, str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def tmpfs(path: Path, size: str) -> contextlib.AbstractContextManager[Path]:
    """Mount a tmpfs of ``size`` at ``path`` for the duration."""
    return _mounted(path, "tmpfs", f"size={size},mode=0755")


def ramfs(path: Path) -> contextlib.AbstractContextManager[Path]:
    """Mount a ramfs at ``path`` for the duration: a real file system with
    no user extended attributes (setxattr fails with ENOTSUP)."""
    return _mounted(path, "ramfs", "mode=0755")


def tree(root: Path) -> dict[str, int]:
    """Every file below ``root`` (hidden ones included) with its size."""
    found: dict[str, int] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            found[os.path.relpath(p, root)] = os.lstat(p).st_size
    return found
