"""Named trace points: where a test opens a race window, never a fault.

Code that handles a race calls ``trace("module.step")`` at the instant the
race is open (between an open and its flock, between a check and a link).
Nothing happens unless a test installed a hook with ``hooked``: the hook is
then called with the point's name, in the thread that reached it, and may
do there what a concurrent process would (unlink the name, link a rival,
wait for another thread). Production code never installs one.

One style for every race hook, as osbuild's fscache does with its
``_trace``: no test-only attributes on production classes, no ``between=``
arguments threaded through signatures. Faults (ENOSPC, EIO) are still
injected by replacing the failing call; a trace point only names a moment.

A hook sees every thread of the process (a test racing two threads needs
that); a child process starts with the hooks its parent had when it
forked, and a test that wants one in a spawned child installs it there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator

__all__ = ["Hook", "hooked", "trace"]

Hook = Callable[[str], None]

# Replaced whole, never changed in place: trace() reads it without a lock.
_hooks: tuple[Hook, ...] = ()
_install = threading.Lock()


def trace(name: str) -> None:
    """Report reaching the trace point ``name`` to the installed hooks (in
    the order they were installed); a no-op, one global read, without."""
    hooks = _hooks
    for hook in hooks:
        hook(name)


@contextlib.contextmanager
def hooked(hook: Hook, names: Collection[str] | None = None) -> Iterator[None]:
    """Call ``hook(name)`` at each trace point reached in the block (only
    those in ``names``, when given), from whichever thread reaches it.

    Hooks nest and may be installed from several threads at once; each is
    removed when its block ends, even if another was installed later.
    What a hook raises propagates from the trace point, as the failure
    of the call it interrupts.
    """
    installed = hook if names is None else _only(hook, frozenset(names))
    global _hooks
    with _install:
        _hooks = (*_hooks, installed)
    try:
        yield
    finally:
        with _install:
            i = _hooks.index(installed)
            _hooks = _hooks[:i] + _hooks[i + 1 :]


def _only(hook: Hook, names: frozenset[str]) -> Hook:
    def filtered(name: str) -> None:
        if name in names:
            hook(name)

    return filtered
