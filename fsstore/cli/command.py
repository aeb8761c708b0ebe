"""What a subcommand is: a run function, its arguments as a table, and the
:class:`Context` it runs in (the registry and cache, built on first use)."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
from collections.abc import Callable
from typing import Any, Literal

from oslo_config import cfg

from fsstore import exceptions
from fsstore.cache import ImageCache
from fsstore.cli.output import Result
from fsstore.confvalues import file_of
from fsstore.registry import StoreRegistry
from fsstore.store import STORE_GROUP, ListedImage, Store


class UsageError(Exception):
    """Bad arguments or configuration: exit status 2."""


# What a command changes: images in the stores, or the image cache.
Writes = Literal["stores", "cache"]


def _sets_up_stores(conf: cfg.ConfigOpts) -> bool:
    """Whether a configuration file sets an option of ``[glance_store]``
    (single-store mode) or ``enabled_backends`` (multi-store mode)."""
    if file_of(conf, "enabled_backends", None) is not None:
        return True
    return any(
        file_of(conf, name, STORE_GROUP) is not None for name in conf[STORE_GROUP]
    )


class Context:
    """What a subcommand works on, built on first use.

    The stores are opened read-only (StoreRegistry's ``read_only``: no data
    directory is made) unless the command said it writes (``will_write``)
    before it first used them.

    :param conf: the parsed configuration
    :param files: the configuration files read, in order (config_files)
    """

    def __init__(self, conf: cfg.ConfigOpts, files: list[str]) -> None:
        self.conf = conf
        self.files = files
        self.writes = False
        self._registry: StoreRegistry | None = None
        self._cache: ImageCache | None = None

    def will_write(self, what: Writes) -> None:
        """Say that the command changes ``what``: refused when no
        configuration file was read, and for the stores when none sets one
        up (a ``[glance_store]`` option or ``enabled_backends``): the
        defaults alone name a place (/var/lib/glance/images) nobody chose."""
        if not self.files:
            raise UsageError(
                "no configuration file was read (see fsstore config): nothing "
                "is written without one"
            )
        if what == "stores" and not _sets_up_stores(self.conf):
            raise UsageError(
                f"no configuration file read sets up a store ([{STORE_GROUP}] "
                "options or enabled_backends; see fsstore config): nothing is "
                "written where the defaults alone point"
            )
        self.writes = True

    @property
    def registry(self) -> StoreRegistry:
        if self._registry is None:
            self._registry = StoreRegistry(self.conf, read_only=not self.writes)
        return self._registry

    @property
    def cache(self) -> ImageCache:
        if self._cache is None:
            self._cache = ImageCache(self.conf)
        return self._cache

    def find(self, image_id: str, backend: str | None) -> tuple[Store, ListedImage]:
        """The image ``image_id`` in store ``backend`` (None: the default).

        :raises NotFound: when that store has no image of that id
        """
        store = self.registry.get_store(backend)
        try:
            found = store.find_image(image_id)
        except exceptions.StoreListNotSupported:
            raise UsageError(
                f"store {store.name!r} cannot find an image by its id; "
                "give the image's location (a URI)"
            ) from None
        if found is None:
            # An image in a data directory that is missing (unmounted) is
            # not known to be gone: say where it was not looked for.
            missing = store.unavailable()
            unseen = f" ({'; '.join(missing)}: not looked in)" if missing else ""
            raise exceptions.NotFound(
                f"no image {image_id!r} in store {store.name!r}{unseen}"
            )
        return store, found

    def location(self, image: str, backend: str | None) -> str:
        """The location ``image`` names: itself when it is a URI, else the
        location of the image of that id in store ``backend``."""
        if "://" not in image:
            return self.find(image, backend)[1].location
        if backend is not None:
            raise UsageError("--backend is for an image id; a URI names its own store")
        return image

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


Run = Callable[[argparse.Namespace, Context], Result]


@dataclasses.dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its flags and keyword arguments."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


BACKEND = arg(
    "--backend",
    metavar="NAME",
    help="the store: a backend name (multi-store) or a scheme (default: the default store)",
)


@dataclasses.dataclass(frozen=True)
class OneOf:
    """Arguments of which at most one (exactly one if ``required``) is given."""

    args: tuple[Arg, ...]
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Run | None = None  # None for a group of subcommands
    args: tuple[Arg | OneOf, ...] = ()
    subcommands: tuple[Command, ...] = ()
    # What it changes whatever its arguments (Context.will_write); one that
    # changes something only with some arguments calls will_write itself.
    writes: Writes | None = None


# -- argument types: argparse turns their ArgumentTypeError into a usage error


def nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive(text: str) -> int:
    value = nonnegative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def config_files(files: list[str], dirs: list[str]) -> list[str]:
    """The configuration files oslo.config reads, in order: ``files`` (its
    ``config_file``: given or found), then the ``*.conf`` of each of
    ``dirs`` (``config_dir``), sorted."""
    files = [os.path.abspath(f) for f in files]
    for directory in dirs:
        files += sorted(glob.glob(os.path.join(os.path.abspath(directory), "*.conf")))
    # Once each: oslo.config finds fsstore.conf twice, as the project's and
    # the program's file (both named fsstore).
    return list(dict.fromkeys(files))
