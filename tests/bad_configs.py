"""Bad configurations, written once.

Each case is a Glance-style conf file (its sections, made in a scratch
directory that the case may also put files in), the error it must raise and
a pattern its one-line message must match. The same table is run at every
level that reads configuration:

* ``store``: the filesystem store's own options in ``[glance_store]``;
  ``FilesystemStore.configure()`` refuses them (so do the registry and the
  command);
* ``registry``: what only ``StoreRegistry`` sees (which stores, which
  default, ``enabled_backends``, an option in a backend's group);
* ``cache``: the image cache's options, refused by ``ImageCache``.

The command refuses each with exit status 2 and one line (JSON with
``--format json``), and ``make stress`` runs the whole table again.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from oslo_config import cfg

from fsstore import exceptions
from fsstore.backends.filesystem import FilesystemStore
from fsstore.cache import ImageCache
from fsstore.registry import StoreRegistry
from tests.helpers import Sections, is_root, load_conf, write_conf

Level = Literal["store", "registry", "cache"]


@dataclasses.dataclass(frozen=True)
class BadConfig:
    name: str
    sections: Callable[[Path], Sections]
    error: type[exceptions.FsstoreError]
    message: str  # a regular expression the error's message must match
    level: Level = "store"
    root_only: bool = False

    def write(self, workdir: Path) -> Path:
        """The conf file of this case, in ``workdir``."""
        return write_conf(workdir / "bad.conf", self.sections(workdir))

    def load(self, conf: cfg.ConfigOpts) -> object:
        """Build what reads this configuration (the call that must fail)."""
        if self.level == "cache":
            return ImageCache(conf)
        return StoreRegistry(conf)

    def matches(self, text: str) -> bool:
        return re.search(self.message, text) is not None

    @property
    def command(self) -> list[str]:
        """The ``fsstore`` command that reads this configuration: one that
        would write, so that the stores open as a service opens them (a
        read-only command makes no data directory)."""
        return ["cache", "size"] if self.level == "cache" else ["add", "/dev/null"]


def build_store(conf: cfg.ConfigOpts) -> FilesystemStore:
    """The filesystem store of ``[glance_store]``, configured."""
    store = FilesystemStore(conf)
    store.configure()
    return store


def _fs(**options: object) -> Callable[[Path], Sections]:
    """``[glance_store]`` with filesystem options; ``{d}`` in a value is the
    scratch directory. A store with datadirs gets an empty datadir."""

    def sections(workdir: Path) -> Sections:
        values = {
            k: [x.format(d=workdir) for x in v]
            if isinstance(v, list)
            else str(v).format(d=workdir)
            for k, v in options.items()
        }
        if "filesystem_store_datadirs" in values:
            values.setdefault("filesystem_store_datadir", "")
        else:
            values.setdefault("filesystem_store_datadir", f"{workdir}/images")
        return {"glance_store": values}

    return sections


def _with_file(
    name: str, content: str, **options: object
) -> Callable[[Path], Sections]:
    """``_fs(**options)`` after writing ``content`` to ``{d}/name``."""

    def sections(workdir: Path) -> Sections:
        (workdir / name).write_text(content)
        return _fs(**options)(workdir)

    return sections


def _symlinked_twice(workdir: Path) -> Sections:
    (workdir / "real").mkdir(exist_ok=True)
    if not (workdir / "alias").is_symlink():
        (workdir / "alias").symlink_to(workdir / "real")
    return _fs(filesystem_store_datadirs=["{d}/real:1", "{d}/alias:2"])(workdir)


def _metadata(content: str, message: str) -> BadConfig:
    return BadConfig(
        f"metadata file {content[:24]}",
        _with_file(
            "meta.json", content, filesystem_store_metadata_file="{d}/meta.json"
        ),
        exceptions.BadStoreConfiguration,
        message,
    )


def _multi(
    default: dict[str, str], glance_store: dict[str, str], **group: str
) -> Callable[[Path], Sections]:
    def sections(workdir: Path) -> Sections:
        return {
            "DEFAULT": default,
            "glance_store": glance_store,
            "a": {"filesystem_store_datadir": str(workdir / "a")},
            **(
                {"fast": {"filesystem_store_datadir": str(workdir / "fast"), **group}}
                if group
                else {}
            ),
        }

    return sections


def _cache(driver: str) -> Callable[[Path], Sections]:
    def sections(workdir: Path) -> Sections:
        return {
            "DEFAULT": {
                "image_cache_dir": str(workdir / "cache"),
                "image_cache_driver": driver,
            }
        }

    return sections


_BAD = exceptions.BadStoreConfiguration
_LOAD = exceptions.DriverLoadFailure

CASES: tuple[BadConfig, ...] = (
    # -- data directories
    BadConfig(
        "directory listed twice",
        _fs(filesystem_store_datadirs=["{d}/a:1", "{d}/a:2"]),
        _BAD,
        "listed twice",
    ),
    BadConfig(
        "directory listed twice as ./",
        _fs(filesystem_store_datadirs=["{d}/a:1", "{d}/./a:2"]),
        _BAD,
        "listed twice",
    ),
    BadConfig(
        "directory listed twice through a symlink",
        _symlinked_twice,
        _BAD,
        "listed twice",
    ),
    BadConfig(
        "empty path", _fs(filesystem_store_datadirs=[":100"]), _BAD, "empty path"
    ),
    BadConfig(
        "word priority",
        _fs(filesystem_store_datadirs=["{d}/a:high"]),
        _BAD,
        "'high' is not an integer",
    ),
    BadConfig(
        "fraction priority",
        _fs(filesystem_store_datadirs=["{d}/a:1.5"]),
        _BAD,
        "not an integer",
    ),
    BadConfig(
        "datadir and datadirs",
        _fs(
            filesystem_store_datadir="{d}/one", filesystem_store_datadirs=["{d}/two:1"]
        ),
        _BAD,
        "either filesystem_store_datadir or filesystem_store_datadirs",
    ),
    BadConfig(
        "no data directory",
        _fs(filesystem_store_datadir=""),
        _BAD,
        "set filesystem_store",
    ),
    BadConfig(
        "datadir is a file",
        _with_file("afile", "x", filesystem_store_datadir="{d}/afile"),
        _BAD,
        "afile is not a directory",
    ),
    BadConfig(
        "datadir that cannot be created",
        _fs(filesystem_store_datadir="/proc/fsstore-images"),
        _BAD,
        "/proc/fsstore-images cannot be created",
        root_only=True,  # others may be refused the parent for another reason
    ),
    # -- option values
    BadConfig(
        "zero chunk size",
        _fs(filesystem_store_chunk_size=0),
        _BAD,
        "filesystem_store_chunk_size",
    ),
    BadConfig(
        "word chunk size",
        _fs(filesystem_store_chunk_size="big"),
        _BAD,
        "filesystem_store_chunk_size",
    ),
    BadConfig(
        "negative chunk size",
        _fs(filesystem_store_chunk_size=-1),
        _BAD,
        "filesystem_store_chunk_size",
    ),
    BadConfig(
        "file perm not octal",
        _fs(filesystem_store_file_perm=689),
        _BAD,
        "not an octal mode",
    ),
    BadConfig(
        "file perm without owner read",
        _fs(filesystem_store_file_perm=200),
        _BAD,
        "owner read",
    ),
    BadConfig(
        "file perm past 0777",
        _fs(filesystem_store_file_perm=7777),
        _BAD,
        "not a permission mode",
    ),
    BadConfig(
        "thin provisioning not a boolean",
        _fs(filesystem_thin_provisioning="maybe"),
        _BAD,
        "filesystem_thin_provisioning",
    ),
    # -- filesystem_store_metadata_file
    _metadata("{not json", "meta.json: is not JSON"),
    _metadata('{"id": "a", "mountpoint": "/", "size": 10}', "size"),
    _metadata('{"id": "a", "mountpoint": "/", "k": ["v", 1]}', r"k\[1\]"),
    _metadata('{"mountpoint": "/"}', "entry 0"),
    _metadata('"text"', "must hold an object"),
    _metadata('[{"id": "a"}]', "entry 0"),
    _metadata('[{"id": 1, "mountpoint": "/"}]', "entry 0"),
    _metadata('[{"id": "a", "mountpoint": "/"}, 3]', "entry 1"),
    BadConfig(
        "missing metadata file",
        _fs(filesystem_store_metadata_file="{d}/nope.json"),
        _BAD,
        "nope.json: cannot be read",
    ),
    # -- which stores (single-store mode)
    BadConfig(
        "unknown store driver",
        _fs(stores="file,nosuch"),
        _LOAD,
        "driver 'nosuch'",
        "registry",
    ),
    BadConfig(
        "broken store plugin",
        _fs(stores="file,broken_import"),
        _LOAD,
        "broken_import",
        "registry",
    ),
    BadConfig("no store", _fs(stores=""), _BAD, "names no store", "registry"),
    BadConfig(
        "default store not configured",
        _fs(default_store="s3"),
        _BAD,
        "default_store 's3'",
        "registry",
    ),
    # -- enabled_backends (multi-store mode)
    BadConfig(
        "no default backend",
        _multi({"enabled_backends": "a:file"}, {}),
        _BAD,
        "default_backend must be set",
        "registry",
    ),
    BadConfig(
        "default backend not enabled",
        _multi({"enabled_backends": "a:file"}, {"default_backend": "b"}),
        _BAD,
        "not one of",
        "registry",
    ),
    BadConfig(
        "unknown backend driver",
        _multi({"enabled_backends": "a:nosuch"}, {"default_backend": "a"}),
        _LOAD,
        "'nosuch'",
        "registry",
    ),
    BadConfig(
        "backend without a type",
        _multi({"enabled_backends": "a:"}, {"default_backend": "a"}),
        _BAD,
        "name:type",
        "registry",
    ),
    BadConfig(
        "bad option in a backend's group",
        _multi(
            {"enabled_backends": "fast:file"},
            {"default_backend": "fast"},
            filesystem_store_chunk_size="lots",
        ),
        _BAD,
        "'fast'.*filesystem_store_chunk_size",
        "registry",
    ),
    # -- the image cache
    BadConfig(
        "unknown cache driver",
        _cache("nosuch"),
        exceptions.BadDriverConfiguration,
        "nosuch",
        "cache",
    ),
    BadConfig(
        "broken cache plugin",
        _cache("broken_not_a_driver"),
        exceptions.BadDriverConfiguration,
        "broken_not_a_driver",
        "cache",
    ),
)


def cases(*levels: Level) -> list[BadConfig]:
    """The cases of ``levels`` that this user can run."""
    return [c for c in CASES if c.level in levels and (is_root() or not c.root_only)]


def ids(case: BadConfig) -> str:
    return case.name


def refused(case: BadConfig, workdir: Path) -> str | None:
    """Load ``case`` in this process: None if it is refused as it should
    be, else what went wrong."""
    try:
        case.load(load_conf(case.write(workdir)))
    except case.error as exc:
        return None if case.matches(str(exc)) else f"message {str(exc)!r}"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


def command_refuses(
    fsstore: str, case: BadConfig, workdir: Path, output_format: str = "text"
) -> str | None:
    """Run the command on ``case``: None if it exits 2 with one line that
    names the problem (a JSON error of the right type with
    ``output_format="json"``), else what it did."""
    import subprocess

    proc = subprocess.run(
        [
            fsstore,
            "--config-file",
            str(case.write(workdir)),
            "--format",
            output_format,
            *case.command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    err = proc.stderr
    said = f"fsstore said {err!r} ({proc.returncode})"
    if proc.returncode != 2 or len(err.splitlines()) != 1 or "Traceback" in err:
        return said
    if output_format == "json":
        error = json.loads(err)
        kind = getattr(exceptions, error.get("type", ""), None)
        if not (isinstance(kind, type) and issubclass(kind, case.error)):
            return said
        err = error["error"]
    return None if case.matches(err) else said
