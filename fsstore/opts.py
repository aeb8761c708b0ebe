"""Every option fsstore reads, and ``list_opts()`` for oslo-config-generator.

The names are glance_store's and Glance's, so that an existing
glance-api.conf configures fsstore unchanged.
"""

from __future__ import annotations

from oslo_config import cfg

STORE_GROUP = "glance_store"

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


def builtin_store_opts() -> list[cfg.Opt]:
    """Options of the store drivers shipped with fsstore."""
    from fsstore.backends import filesystem, http, s3

    return [*filesystem.OPTIONS, *s3.OPTIONS, *http.OPTIONS]


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options by group, for oslo-config-generator (namespace ``fsstore``)."""
    from fsstore.cache import central

    return [
        (
            "DEFAULT",
            [ENABLED_BACKENDS_OPT, *CACHE_OPTS]
            + [opt for group, opt in central.OPTIONS if group is None],
        ),
        (STORE_GROUP, [*STORE_OPTS, *builtin_store_opts()]),
        ("database", [opt for group, opt in central.OPTIONS if group == "database"]),
    ]
