"""What a subcommand is: a run function, its arguments as a table, and the
:class:`Context` it runs in (the registry and cache, built on first use)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from fsstore.cache import ImageCache
from fsstore.cli.output import Result
from fsstore.registry import StoreRegistry


class UsageError(Exception):
    """Bad arguments or configuration: exit status 2."""


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


Run = Callable[[argparse.Namespace, Context], Result]


@dataclasses.dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its flags and keyword arguments."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


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
