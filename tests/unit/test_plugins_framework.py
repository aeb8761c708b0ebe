"""The framework knows its drivers only through their entry points
(fsstore.plugins): it imports none, loads stores and cache drivers with one
loader, and registers each driver's declared options in one place."""

from __future__ import annotations

import ast
import logging
import sys
import textwrap
from pathlib import Path

import pytest
import stevedore._cache
from oslo_config import cfg
from stevedore.extension import ExtensionManager

from fsstore import exceptions, opts, plugins, register_opts
from fsstore.registry import StoreRegistry
from fsstore.store import SHARED_GROUP, Store
from tests.helpers import load_conf, write_conf

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK = ["registry.py", "opts.py", "plugins.py", "store.py"]
PLUGIN_PACKAGES = ("fsstore.backends", "fsstore.cache")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # "from fsstore import backends" imports the package too.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("name", FRAMEWORK)
def test_the_framework_imports_no_driver(name):
    imported = imported_modules(ROOT / "fsstore" / name)
    upward = {
        module
        for module in imported
        if any(module == p or module.startswith(p + ".") for p in PLUGIN_PACKAGES)
    }
    assert not upward, f"fsstore/{name} imports {sorted(upward)}"


def test_the_import_check_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from fsstore.cache import central\n"
        "    import fsstore.backends.s3\n"
    )
    assert {"fsstore.cache.central", "fsstore.backends.s3"} <= imported_modules(module)


# -- options -----------------------------------------------------------------


def listed(options_by_group):
    return {
        (group, opt.dest)
        for group, group_opts in options_by_group
        for opt in group_opts
    }


def test_builtin_options_are_the_framework_and_every_shipped_driver():
    names = listed(opts.list_builtin_opts())
    # One option of each shipped driver, found without naming its module.
    for expected in [
        ("glance_store", "filesystem_store_datadir"),
        ("glance_store", "s3_store_host"),
        ("glance_store", "http_store_timeout"),
        ("DEFAULT", "worker_self_reference_url"),
        ("database", "connection"),
        ("DEFAULT", "image_cache_driver"),
        ("DEFAULT", "enabled_backends"),
        ("glance_store", "default_backend"),
    ]:
        assert expected in names
    assert [group for group, _ in opts.list_builtin_opts()] == [
        "DEFAULT",
        "database",
        "glance_store",
    ]


def test_list_opts_lists_the_builtin_options_and_more(caplog):
    with caplog.at_level(logging.WARNING, logger="fsstore.opts"):
        everything = listed(opts.list_opts())
    assert listed(opts.list_builtin_opts()) <= everything


def test_register_opts_registers_what_list_opts_lists_but_cache_drivers_options():
    conf = cfg.ConfigOpts()
    register_opts(conf)
    cache_drivers = {
        (group or "DEFAULT", opt.dest)
        for group, opt in plugins.driver_options(
            plugins.CACHE_DRIVERS_NAMESPACE, None, own=True
        )
    }
    assert ("database", "connection") in cache_drivers
    assert ("DEFAULT", "worker_self_reference_url") in cache_drivers
    for group, name in listed(opts.list_opts()):
        if group == "DEFAULT":
            registered = name in conf
        else:
            registered = group in conf and name in conf[group]
        assert registered is ((group, name) not in cache_drivers), (group, name)


def test_register_opts_leaves_the_database_to_the_service():
    # Glance registers [database] through oslo.db after (or before) fsstore;
    # the centralized_db driver's options come only when that driver loads.
    conf = cfg.ConfigOpts()
    register_opts(conf)
    theirs = cfg.StrOpt("connection", secret=True, default="sqlite://")
    conf.register_opt(theirs, group="database")  # no DuplicateOptError
    conf([], default_config_files=[])
    assert conf.database.connection == "sqlite://"


def driver_with(options):
    return type("Driver", (), {"OPTIONS": options})


def test_declared_options_take_the_default_group_or_their_own():
    plain, grouped = cfg.StrOpt("a"), cfg.StrOpt("b")
    assert plugins.declared_options(
        "x", driver_with([plain, ("database", grouped), (None, grouped)]), "g"
    ) == [("g", plain), ("database", grouped), (None, grouped)]


@pytest.mark.parametrize(
    ("driver", "reason"),
    [
        (object, "declares no OPTIONS list"),
        (driver_with("not a list"), "declares no OPTIONS list"),
        (driver_with(["a"]), "holds 'a', neither an oslo.config option"),
        (driver_with([(1, cfg.StrOpt("a"))]), "neither an oslo.config option"),
    ],
)
def test_declared_options_refuse_what_is_not_a_driver(driver, reason):
    with pytest.raises(exceptions.DriverLoadFailure, match=reason) as caught:
        plugins.declared_options("weird", driver, "g")
    assert caught.value.driver_name == "weird"


def test_store_options_go_where_the_store_reads_them():
    class OneOption(Store):
        OPTIONS = [cfg.StrOpt("one_option")]

    [opt] = OneOption.OPTIONS
    assert OneOption.declared_options() == [("glance_store", opt)]
    assert OneOption.declared_options("fast") == [("fast", opt), (SHARED_GROUP, opt)]


def test_a_store_registers_its_options_once_per_load(tmp_path, monkeypatch):
    calls: list[tuple[str | None, str]] = []
    register_opt = cfg.ConfigOpts.register_opt

    def counted(self, opt, group=None, *args, **kwargs):
        calls.append((getattr(group, "name", group), opt.dest))
        return register_opt(self, opt, group, *args, **kwargs)

    monkeypatch.setattr(cfg.ConfigOpts, "register_opt", counted)
    path = write_conf(
        tmp_path / "multi.conf",
        {
            "DEFAULT": {"enabled_backends": "a:file, b:filesystem"},
            "glance_store": {"default_backend": "a"},
            "a": {"filesystem_store_datadir": str(tmp_path / "a")},
            "b": {"filesystem_store_datadir": str(tmp_path / "b")},
        },
    )
    StoreRegistry(load_conf(path))
    for backend in ("a", "b"):
        assert calls.count((backend, "filesystem_store_datadir")) == 1
    # Once per backend (two loads), as glance_store registers them there.
    assert calls.count((SHARED_GROUP, "filesystem_store_datadir")) == 2


# -- loading -----------------------------------------------------------------


def test_a_driver_of_the_wrong_kind_names_its_base():
    with pytest.raises(exceptions.DriverLoadFailure) as caught:
        plugins.load_driver("sqlite", plugins.CACHE_DRIVERS_NAMESPACE, Store)
    assert str(caught.value) == (
        "driver 'sqlite' could not be loaded: <class "
        "'fsstore.cache.sqlite.SqliteDriver'> is not a subclass of "
        "fsstore.store.Store"
    )


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install a distribution for this test only: a dist-info directory and
    its module on sys.path, found by importlib.metadata and stevedore as an
    installed one is (stevedore's caches of entry points are set aside)."""
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    cache = stevedore._cache.Cache(str(tmp_path / "stevedore-cache"))
    monkeypatch.setattr(stevedore._cache, "get_group_all", cache.get_group_all)
    site = tmp_path / "site"
    site.mkdir()

    def install(name: str, entry_points: str, module: str) -> None:
        dist = site / f"{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        )
        (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
        (site / f"{name}.py").write_text(textwrap.dedent(module))
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.syspath_prepend(str(site))

    return install


DUPLICATE_FILE = """\
    [fsstore.backends]
    file = dup_file:OtherFileStore
    """
OTHER_FILE_STORE = """\
    from oslo_config import cfg
    from fsstore.store import Store

    class OtherFileStore(Store):
        OPTIONS = [cfg.IntOpt("dup_file_option", default=7)]
    """


def test_two_entry_points_of_one_name_is_an_error_naming_it(installed, tmp_path):
    installed("dup_file", DUPLICATE_FILE, OTHER_FILE_STORE)
    with pytest.raises(exceptions.DriverLoadFailure) as caught:
        plugins.load_driver("file", plugins.BACKENDS_NAMESPACE, Store)
    assert str(caught.value) == (
        "driver 'file' could not be loaded: several entry points of that name "
        "in 'fsstore.backends' (dup_file:OtherFileStore, "
        "fsstore.backends.filesystem:FilesystemStore): uninstall all but one"
    )
    path = write_conf(
        tmp_path / "c.conf",
        {"glance_store": {"filesystem_store_datadir": str(tmp_path / "images")}},
    )
    with pytest.raises(exceptions.DriverLoadFailure, match="driver 'file'"):
        StoreRegistry(load_conf(path))


def test_a_third_party_driver_options_are_listed_and_registered(installed):
    installed(
        "dup_file",
        DUPLICATE_FILE.replace("file =", "other_file ="),
        OTHER_FILE_STORE,
    )
    assert ("glance_store", "dup_file_option") in listed(opts.list_opts())
    assert ("glance_store", "dup_file_option") not in listed(opts.list_builtin_opts())
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    assert conf.glance_store.dup_file_option == 7


def test_a_driver_that_fails_to_import(installed, caplog):
    installed(
        "fails_here",
        "[fsstore.backends]\nbroken_here = fails_here:Store\n",
        "raise ImportError('libfoo is missing')\n",
    )
    message = (
        "driver 'broken_here' could not be loaded: entry point "
        "'fails_here:Store' failed to import: libfoo is missing"
    )
    with pytest.raises(exceptions.DriverLoadFailure) as caught:
        plugins.driver_options(plugins.BACKENDS_NAMESPACE, "glance_store")
    assert str(caught.value) == message
    # The generator lists the rest and says what it left out.
    with caplog.at_level(logging.WARNING, logger="fsstore.opts"):
        everything = listed(opts.list_opts())
    assert ("glance_store", "filesystem_store_datadir") in everything
    assert f"{message}; its options are not listed" in caplog.messages
    # A service that does not use it starts; one that does is told why not.
    conf = cfg.ConfigOpts()
    register_opts(conf)
    with pytest.raises(exceptions.DriverLoadFailure) as caught:
        plugins.load_driver("broken_here", plugins.BACKENDS_NAMESPACE, Store)
    assert str(caught.value) == message


def test_a_cache_driver_registers_its_options_when_the_cache_loads_it(tmp_path):
    from fsstore.cache.image_cache import load_records_driver
    from fsstore.testing.cache_base import make_cache_conf

    sqlite = make_cache_conf(tmp_path / "a", "sqlite")
    load_records_driver(sqlite)
    assert "database" not in sqlite  # left to the service (oslo.db)
    central = make_cache_conf(tmp_path / "b", "centralized_db")
    assert "database" not in central
    load_records_driver(central)
    assert "connection" in central.database
    assert "worker_self_reference_url" in central
