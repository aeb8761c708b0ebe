"""Loading drivers through entry points: stores and cache drivers alike.

A driver is a class registered under a name in an entry-point namespace
(:data:`BACKENDS_NAMESPACE` for stores, :data:`CACHE_DRIVERS_NAMESPACE` for
cache records drivers). Built-in and third-party drivers are found the same
way: nothing in the framework imports a driver's module by name.

A driver declares the oslo.config options it reads in its class attribute
``OPTIONS``: a list whose items are options (in the driver's own group, which
its kind decides: ``[glance_store]`` for a store) or ``(group, option)`` pairs
(``None`` for ``[DEFAULT]``). :func:`driver_options` gathers them for
``list_opts()`` and ``register_opts()``; :func:`register_options` is the one
way any of them is registered.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from oslo_config import cfg
from stevedore import driver as stevedore_driver
from stevedore.exception import MultipleMatches, NoMatches
from stevedore.extension import ExtensionManager

from fsstore import exceptions

BACKENDS_NAMESPACE = "fsstore.backends"
CACHE_DRIVERS_NAMESPACE = "fsstore.cache_drivers"
#: The distribution whose entry points are fsstore's own drivers.
DISTRIBUTION = "fsstore"

T = TypeVar("T")
GroupedOption = tuple[str | None, cfg.Opt]


def load_driver(name: str, namespace: str, base: type[T]) -> type[T]:
    """Load the driver class registered as ``name`` in ``namespace``.

    :param name: the driver's entry-point name (``file``, ``sqlite``, ...)
    :param namespace: the entry-point namespace to look in
    :param base: the class the driver must subclass; the result is typed
        as it is, as stevedore's ``DriverManager[T]``
    :returns: the driver class, not instantiated
    :raises DriverLoadFailure: naming the driver, when no entry point or
        several have that name, its module fails to import, or what it
        names is not a subclass of ``base``
    """

    def failed(_manager: Any, entrypoint: Any, exc: BaseException) -> None:
        raise exceptions.DriverLoadFailure(
            name, f"entry point {entrypoint.value!r} failed to import: {exc}"
        ) from exc

    try:
        manager = stevedore_driver.DriverManager(
            namespace,
            name,
            invoke_on_load=False,
            on_load_failure_callback=failed,
        )
    except NoMatches:
        raise exceptions.DriverLoadFailure(
            name, f"no driver of that name in the {namespace!r} entry points"
        ) from None
    except MultipleMatches:
        raise _several(name, namespace) from None
    driver_cls = manager.driver
    if not (isinstance(driver_cls, type) and issubclass(driver_cls, base)):
        raise exceptions.DriverLoadFailure(
            name,
            f"{driver_cls!r} is not a subclass of {base.__module__}.{base.__qualname__}",
        )
    return driver_cls


def _several(name: str, namespace: str) -> exceptions.DriverLoadFailure:
    """The error for several entry points named ``name``: which one would
    load depends on the order of sys.path, so none does, and every target
    is named, for the user to know what to uninstall."""
    targets = sorted(
        {
            ep.value
            for ep in importlib.metadata.entry_points(group=namespace)
            if ep.name == name
        }
    )
    return exceptions.DriverLoadFailure(
        name,
        f"several entry points of that name in {namespace!r} "
        f"({', '.join(targets)}): uninstall all but one",
    )


def declared_options(
    name: str, driver_cls: object, default_group: str | None
) -> list[GroupedOption]:
    """The options a driver class declares in ``OPTIONS``, each with its group.

    :param name: the driver's entry-point name, for errors
    :param driver_cls: the class the entry point names
    :param default_group: the group of an option declared without one
    :returns: ``(group, option)`` pairs, in the order declared
    :raises DriverLoadFailure: when it declares no ``OPTIONS`` list of
        options and ``(group, option)`` pairs (it is not a driver)
    """
    declared = getattr(driver_cls, "OPTIONS", None)
    if not isinstance(driver_cls, type) or not isinstance(declared, list | tuple):
        raise exceptions.DriverLoadFailure(
            name, f"{driver_cls!r} declares no OPTIONS list: it is not a driver"
        )
    found: list[GroupedOption] = []
    for item in declared:
        if isinstance(item, cfg.Opt):
            found.append((default_group, item))
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and (item[0] is None or isinstance(item[0], str))
            and isinstance(item[1], cfg.Opt)
        ):
            found.append((item[0], item[1]))
        else:
            raise exceptions.DriverLoadFailure(
                name,
                f"{driver_cls.__qualname__}.OPTIONS holds {item!r}, neither an "
                "oslo.config option nor a (group, option) pair",
            )
    return found


def _loaded(namespace: str, own: bool) -> list[tuple[str, str, object]]:
    """``(name, target, class or why it failed to import)`` of each entry
    point of ``namespace``, by name."""
    found: list[tuple[str, str, object]] = []
    if own:
        try:
            dist = importlib.metadata.distribution(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise exceptions.DriverLoadFailure(
                DISTRIBUTION, "it is not installed, so its entry points are unknown"
            ) from None
        for ep in dist.entry_points.select(group=namespace):
            try:
                found.append((ep.name, ep.value, ep.load()))
            except Exception as exc:
                found.append((ep.name, ep.value, exc))
    else:

        def failed(_manager: Any, ep: Any, exc: BaseException) -> None:
            found.append((ep.name, ep.value, exc))

        # Through stevedore, as load_driver: one view of what is installed,
        # read once per process.
        manager: ExtensionManager[Any] = ExtensionManager(
            namespace, invoke_on_load=False, on_load_failure_callback=failed
        )
        found += [(ext.name, ext.entry_point.value, ext.plugin) for ext in manager]
    # Sorted, as glance_store's list_opts: a sample generated anywhere lists
    # the drivers in one order, whatever the order of sys.path.
    return sorted(found, key=lambda item: (item[0], item[1]))


def driver_options(
    namespace: str,
    default_group: str | None,
    *,
    skipped: Callable[[exceptions.DriverLoadFailure], None] | None = None,
    own: bool = False,
) -> list[GroupedOption]:
    """The options every driver of ``namespace`` declares, built-in and
    third-party alike, found through the entry points.

    Each class counts once (``file`` and ``filesystem`` name one), and of
    two options of one name in one group the first is kept, as
    :func:`register_options` keeps it.

    :param namespace: the entry-point namespace of the drivers
    :param default_group: the group of an option declared without one
    :param skipped: None: a driver that fails to import or declares no
        options raises DriverLoadFailure naming it; else that driver is
        left out and ``skipped`` is called with the failure
    :param own: only the drivers fsstore's own distribution declares
    :returns: ``(group, option)`` pairs, drivers in the order of their names
    """
    seen_classes: set[object] = set()
    seen_names: set[tuple[str | None, str]] = set()
    found: list[GroupedOption] = []
    for name, target, driver_cls in _loaded(namespace, own):
        try:
            if isinstance(driver_cls, BaseException):
                raise exceptions.DriverLoadFailure(
                    name, f"entry point {target!r} failed to import: {driver_cls}"
                ) from driver_cls
            options = declared_options(name, driver_cls, default_group)
        except exceptions.DriverLoadFailure as exc:
            if skipped is None:
                raise
            skipped(exc)
            continue
        if driver_cls in seen_classes:
            continue  # an alias of a driver already listed
        seen_classes.add(driver_cls)
        for group, opt in options:
            if (group, opt.dest) not in seen_names:
                seen_names.add((group, opt.dest))
                found.append((group, opt))
    return found


def register_options(conf: cfg.ConfigOpts, options: Iterable[GroupedOption]) -> None:
    """Register each ``(group, option)`` of ``options`` in ``conf``.

    An option already registered under the same name in its group, with
    another definition, is kept as it is: the service registers its own
    before it loads drivers (Glance's ``[database] connection``, through
    oslo.db; glance_store's filesystem options in a staging store's group),
    and it is the service that reads them too. Registering the same option
    again does nothing, as in oslo.config.

    :param conf: the configuration to register in
    :param options: ``(group, option)`` pairs; group None is ``[DEFAULT]``
    """
    for group, opt in options:
        with contextlib.suppress(cfg.DuplicateOptError):
            conf.register_opt(opt, group=group)
