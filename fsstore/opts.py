"""The framework's options, and ``list_opts()`` for oslo-config-generator.

The names are glance_store's and Glance's, so that an existing
glance-api.conf configures fsstore unchanged. Drivers declare their own
options (``OPTIONS``); they are found through the entry points, as the
drivers are (fsstore.plugins), so this module names no driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from oslo_config import cfg

from fsstore import exceptions, plugins
from fsstore.store import STORE_GROUP

LOG = logging.getLogger(__name__)

__all__ = [
    "BACKEND_OPTS",
    "CACHE_OPTS",
    "ENABLED_BACKENDS_OPT",
    "STORE_GROUP",
    "STORE_OPTS",
    "driver_options",
    "list_builtin_opts",
    "list_opts",
    "own_options",
]

STORE_OPTS = [
    cfg.ListOpt(
        "stores",
        default=["file", "http"],
        help="Single-store mode: the store drivers to load, by their name in the "
        "fsstore.backends entry-point namespace.",
    ),
    cfg.StrOpt(
        "default_store",
        default="file",
        help="Single-store mode: the driver name or scheme of the store that new "
        "images go to.",
    ),
    cfg.StrOpt(
        "default_backend",
        help="Multi-store mode: the backend (a name from enabled_backends) that "
        "new images go to.",
    ),
]

ENABLED_BACKENDS_OPT = cfg.DictOpt(
    "enabled_backends",
    help="Multi-store mode: backends as name:type pairs, type being a driver "
    "name in the fsstore.backends namespace. Each backend reads its options from "
    "the group named after it.",
)

BACKEND_OPTS = [
    cfg.StrOpt("store_description", help="What the backend is, for people."),
    cfg.IntOpt("weight", default=0, help="Preference of the backend, for Glance."),
]

CACHE_OPTS = [
    cfg.StrOpt(
        "image_cache_dir",
        help="Directory of the image cache. Unset: no cache.",
    ),
    cfg.StrOpt(
        "image_cache_driver",
        default="sqlite",
        help="Cache driver, by name in the fsstore.cache_drivers namespace: "
        "sqlite, xattr, centralized_db (records in Glance's database) or a "
        "third-party driver.",
    ),
    cfg.IntOpt(
        "image_cache_max_size",
        default=10 * 1024**3,
        min=0,
        help="Upper limit, in bytes, of the total size of cached images.",
    ),
    cfg.IntOpt(
        "image_cache_stall_time",
        default=86400,
        min=0,
        help="Seconds after which an incomplete cache entry counts as stalled.",
    ),
    cfg.StrOpt(
        "image_cache_sqlite_db",
        default="cache.db",
        help="The sqlite driver's database, relative to image_cache_dir.",
    ),
]


def driver_options(
    *,
    skipped: Callable[[exceptions.DriverLoadFailure], None] | None = None,
    own: bool = False,
) -> list[tuple[str | None, cfg.Opt]]:
    """``(group, option)`` of every option the drivers declare: the stores'
    in ``[glance_store]``, the cache drivers' where each says (``[DEFAULT]``
    when it says nothing), all found through the entry points.

    :param skipped: None: a driver that cannot be loaded raises
        DriverLoadFailure naming it; else it is left out and ``skipped`` is
        called with the failure
    :param own: only the drivers fsstore's own distribution declares
    :raises DriverLoadFailure: with ``skipped`` None, naming the driver
    """
    return [
        *plugins.driver_options(
            plugins.BACKENDS_NAMESPACE, STORE_GROUP, skipped=skipped, own=own
        ),
        *plugins.driver_options(
            plugins.CACHE_DRIVERS_NAMESPACE, None, skipped=skipped, own=own
        ),
    ]


def own_options() -> list[tuple[str | None, cfg.Opt]]:
    """``(group, option)`` of the framework's own options.

    ``enabled_backends`` and the image cache's are in ``[DEFAULT]``, the
    rest in ``[glance_store]``.
    """
    return [
        (None, ENABLED_BACKENDS_OPT),
        *((None, opt) for opt in CACHE_OPTS),
        *((STORE_GROUP, opt) for opt in STORE_OPTS),
    ]


def _by_group(
    options: list[tuple[str | None, cfg.Opt]],
) -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options by group, ``[DEFAULT]`` first and the rest by name, as
    oslo-config-generator prints them."""
    groups: dict[str, list[cfg.Opt]] = {}
    for group, opt in options:
        groups.setdefault(group or "DEFAULT", []).append(opt)
    names = sorted(groups, key=lambda name: (name != "DEFAULT", name))
    return [(name, groups[name]) for name in names]


def _warn(failure: exceptions.DriverLoadFailure) -> None:
    LOG.warning("%s; its options are not listed", failure)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options by group, for oslo-config-generator (namespace ``fsstore``):
    the framework's and every installed driver's, built-in and third-party.

    A driver that cannot be loaded is left out with a warning naming it
    (the generator shows warnings): one broken plugin must not keep an
    operator from a sample of everything else, Glance's own options
    included when the generator lists several namespaces at once.

    :returns: ``(group, options)`` pairs, ``[DEFAULT]`` first, then by name
    """
    return _by_group([*own_options(), *driver_options(skipped=_warn)])


def list_builtin_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options by group of the framework and of the drivers fsstore ships,
    whatever else is installed (namespace ``fsstore.builtin``): what the
    committed sample, etc/fsstore.conf.sample, documents. Every one must
    load: a failure is fsstore's own bug.

    :raises DriverLoadFailure: naming the built-in driver that did not load
    """
    return _by_group([*own_options(), *driver_options(own=True)])
