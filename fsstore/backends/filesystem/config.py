"""The filesystem store's options and how their values are checked.

Every value is checked when the store is configured, never after an image
was written; an error is BadStoreConfiguration naming the store and the
option.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from typing import Any

from oslo_config import cfg

from fsstore import exceptions
from fsstore.backends.filesystem.datadirs import DataDir
from fsstore.confvalues import beside
from fsstore.streams import READ_CHUNK

LOG = logging.getLogger(__name__)

OPTIONS = [
    cfg.StrOpt(
        "filesystem_store_datadir",
        default="/var/lib/glance/images",
        help="Directory to which the filesystem backend store writes images. "
        "Mutually exclusive with filesystem_store_datadirs.",
    ),
    cfg.MultiStrOpt(
        "filesystem_store_datadirs",
        help="Directories and their priorities, as path:priority (priority an "
        "integer, 0 when omitted). Images go to the highest priority that has "
        "room; within a priority, to the directory with the most free space.",
    ),
    cfg.StrOpt(
        "filesystem_store_metadata_file",
        help="JSON file with the metadata returned for every image: a dict, or "
        'a list of dicts each with string "id" and "mountpoint" keys, matched '
        "against the image path on directory boundaries.",
    ),
    cfg.IntOpt(
        "filesystem_store_file_perm",
        default=0,
        help="File permissions of the image files, octal written as decimal "
        "(e.g. 640). 0 or less leaves them as created. Must keep owner-read.",
    ),
    cfg.IntOpt(
        "filesystem_store_chunk_size",
        default=READ_CHUNK,
        min=1,
        help="Chunk size, in bytes, for reading and writing image files.",
    ),
    cfg.BoolOpt(
        "filesystem_thin_provisioning",
        default=False,
        help="Write chunks that are all zero as holes (sparse files).",
    ),
    cfg.IntOpt(
        "filesystem_store_timeout",
        default=0,
        min=0,
        help="Seconds a file system call that can hang on a stalled network "
        "file system (stat, statvfs, open for reading, unlink) may take before "
        "the operation fails; 0: no limit, the calls run in the caller's "
        "thread.",
    ),
    cfg.IntOpt(
        "filesystem_store_thread_pool_size",
        default=10,
        min=1,
        help="Threads that run the calls filesystem_store_timeout limits.",
    ),
    cfg.IntOpt(
        "filesystem_store_threadpool_threshold",
        default=75,
        min=0,
        max=100,
        help="Busy share of those threads, in percent, from which a warning is logged.",
    ),
    cfg.BoolOpt(
        "filesystem_store_verify_on_read",
        default=False,
        help="Check every read of a whole image against the digests kept with "
        "it when it was stored: one that differs raises an error at its end "
        "instead of ending normally (the image cache then never keeps it). "
        "Ranged reads are not checked.",
    ),
    cfg.BoolOpt(
        "filesystem_store_fsync",
        default=True,
        help="Flush each image to disk before it is published, so that a "
        "crash never leaves a published image incomplete.",
    ),
]


def parse_datadirs(
    store_name: str, specs: list[str], config_file: str | None = None
) -> list[DataDir]:
    """``path:priority`` strings to DataDirs, refusing what glance_store
    refuses; a relative path is taken from the directory of
    ``config_file``, the file that set them (None: the working directory)."""
    dirs: list[DataDir] = []
    seen: dict[str, tuple[str, int]] = {}
    for spec in specs:
        path, sep, priority_text = spec.strip().rpartition(":")
        if not sep:
            path, priority_text = spec.strip(), "0"
        path = path.strip()
        if not path:
            raise exceptions.BadStoreConfiguration(
                store_name,
                f"filesystem_store_datadirs entry {spec!r} has an empty path",
            )
        try:
            priority = int(priority_text.strip())
        except ValueError:
            raise exceptions.BadStoreConfiguration(
                store_name,
                f"filesystem_store_datadirs entry {spec!r}: priority "
                f"{priority_text!r} is not an integer",
            ) from None
        path = os.path.abspath(beside(path, config_file))
        real = os.path.realpath(path)
        if real in seen:
            first, first_priority = seen[real]
            message = (
                f"data directory {path} is listed twice in filesystem_store_datadirs "
                f"(as {first!r} and {spec!r})"
            )
            # As glance_store: the same directory at two priorities is a
            # contradiction; at the same priority only a repetition.
            if priority != first_priority:
                raise exceptions.BadStoreConfiguration(store_name, message)
            LOG.warning("store %s: %s; using it once", store_name, message)
            continue
        seen[real] = (spec, priority)
        dirs.append(DataDir(path=path, priority=priority))
    return dirs


def parse_file_perm(store_name: str, perm: int) -> int:
    """``filesystem_store_file_perm`` (octal written as decimal) as a mode."""
    if perm <= 0:
        return 0
    try:
        mode = int(str(perm), 8)
    except ValueError:
        raise exceptions.BadStoreConfiguration(
            store_name, f"filesystem_store_file_perm {perm} is not an octal mode"
        ) from None
    if mode > 0o777:
        raise exceptions.BadStoreConfiguration(
            store_name, f"filesystem_store_file_perm {perm} is not a permission mode"
        )
    if not mode & stat.S_IRUSR:
        raise exceptions.BadStoreConfiguration(
            store_name,
            f"filesystem_store_file_perm {perm} does not let the owner read the images",
        )
    return mode


def load_metadata(store_name: str, path: str) -> list[dict[str, Any]]:
    """``filesystem_store_metadata_file``, checked as glance_store checks it.

    A dict or a list of dicts, each with string ``id`` and ``mountpoint``;
    every value anywhere in it a string, a list or a dict. A dict is a list
    of one. Errors are BadStoreConfiguration at configure time, never after
    an image was written.
    """

    def bad(reason: str) -> exceptions.BadStoreConfiguration:
        return exceptions.BadStoreConfiguration(
            store_name, f"filesystem_store_metadata_file {path}: {reason}"
        )

    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise bad(f"is not JSON: {exc}") from None
    entries = [metadata] if isinstance(metadata, dict) else metadata
    if not isinstance(entries, list):
        raise bad("must hold an object or a list of objects")
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("id"), str)
            and isinstance(entry.get("mountpoint"), str)
        ):
            raise bad(f'entry {i} must be an object with string "id" and "mountpoint"')
        key = _non_string_value(entry)
        if key is not None:
            raise bad(f"the value of {key} is not a string, a list or an object")
    return entries


def metadata_for(entries: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The metadata of an image at ``path``: a copy of the first entry of
    ``filesystem_store_metadata_file`` whose mountpoint holds it, {} if none.

    glance_store's rule, on directory boundaries as the option's help says:
    glance_store compares strings, so its mountpoint /srv/imag claims the
    images of /srv/images.
    """
    for entry in entries:
        if holds(entry["mountpoint"], path):
            return dict(entry)
    return {}


def holds(mountpoint: str, path: str) -> bool:
    """Whether ``path`` is ``mountpoint`` or below it, component by
    component: /srv/images holds /srv/images/x and /srv/images/ does too;
    /srv/imag holds neither. Repeated and trailing slashes, and ``.``, do
    not count; ``..`` is taken as written (lexically), as glance_store
    takes the whole mountpoint."""

    def parts(p: str) -> tuple[bool, list[str]]:
        absolute = p.startswith("/")
        return absolute, [c for c in os.path.normpath(p).split("/") if c]

    (mount_abs, mount), (path_abs, below) = parts(mountpoint), parts(path)
    return mount_abs == path_abs and below[: len(mount)] == mount


def _non_string_value(value: Any, key: str = "") -> str | None:
    """The key of the first value that is not a string, list or dict."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None if isinstance(value, str) else key or "?"
    for name, item in items:
        found = _non_string_value(item, str(name))
        if found is not None:
            return found
    return None
