"""Trace points (fsstore.tracing): silent without a hook, in order with one,
seen from every thread, and each hook gone with its block."""

from __future__ import annotations

import threading

import pytest

from fsstore import tracing


def test_no_hook_no_effect() -> None:
    tracing.trace("nobody.listens")


def test_hooks_see_points_in_order_and_only_while_installed() -> None:
    seen: list[str] = []
    with tracing.hooked(seen.append):
        tracing.trace("a")
        tracing.trace("b")
    tracing.trace("c")
    assert seen == ["a", "b"]


def test_a_hook_can_be_limited_to_names() -> None:
    seen: list[str] = []
    with tracing.hooked(seen.append, ["b"]):
        for name in ("a", "b", "c", "b"):
            tracing.trace(name)
    assert seen == ["b", "b"]


def test_hooks_nest_and_leave_in_any_order() -> None:
    first: list[str] = []
    second: list[str] = []
    outer = tracing.hooked(first.append)
    inner = tracing.hooked(second.append)
    outer.__enter__()
    inner.__enter__()
    tracing.trace("both")
    outer.__exit__(None, None, None)  # removed though installed first
    tracing.trace("second only")
    inner.__exit__(None, None, None)
    tracing.trace("none")
    assert first == ["both"]
    assert second == ["both", "second only"]


def test_a_hook_sees_other_threads_and_can_raise() -> None:
    seen: list[str] = []

    def hook(name: str) -> None:
        seen.append(f"{threading.current_thread().name}:{name}")
        if name == "fail":
            raise OSError("injected at the point")

    with tracing.hooked(hook):
        thread = threading.Thread(target=tracing.trace, args=("x",), name="t")
        thread.start()
        thread.join()
        with pytest.raises(OSError, match="injected"):
            tracing.trace("fail")
    assert seen == ["t:x", "MainThread:fail"]
