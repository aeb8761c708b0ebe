"""The shape of the tree: imports point down, modules and functions stay small.

The order below is the one README and DESIGN.md draw (cli -> registry/cache
-> store -> exceptions): a module may import only what comes before it, or
its own package. A backend never imports another backend; the framework
(everything before ``backends``) imports no plugin.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fsstore"

#: Lowest first. A package entry ("backends", "cache", "cli", "testing")
#: covers every module in it.
ORDER = [
    "exceptions",
    "tracing",
    "confvalues",
    "safefiles",
    "locking",
    "hashing",
    "ids",
    "location",
    "streams",
    "pipeline",
    "writepath",
    "store",
    "scrub",
    "plugins",
    "opts",
    "confcheck",
    "registry",
    "backends",
    "cache",
    "testing",
    "glance",
    "cli",
    "__main__",
    "__init__",
]
FRAMEWORK_END = ORDER.index("backends")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 50


def modules(root: Path = ROOT) -> list[Path]:
    return sorted((root / "fsstore").rglob("*.py"))


def dotted(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    where = root.joinpath(*name.split("."))
    return where.is_dir() or where.with_suffix(".py").is_file()


def imported(path: Path, root: Path = ROOT) -> set[str]:
    """The fsstore modules ``path`` imports, anywhere in it (functions too);
    ``from a import b`` counts as importing ``a.b`` when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fsstore"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "fsstore":
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found.update(s for s in subs if is_module(s, root))
            if node.module != "fsstore" and not subs <= found:
                found.add(node.module)
    return found


def rank(module: str) -> int:
    """Where ``module`` (dotted) sits in ORDER."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in ORDER, f"{module} is not placed in tests/unit/test_shape.ORDER"
    return ORDER.index(top)


def unit(module: str) -> str:
    """Within a unit imports go any way: a store's package
    (fsstore.backends.s3), any other package, or a module."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "backends":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def upward(path: Path, root: Path = ROOT) -> list[str]:
    """The imports of ``path`` that break the order, each in words."""
    me = dotted(path, root)
    wrong = []
    for other in sorted(imported(path, root)):
        if unit(other) == unit(me) or other == "fsstore.backends":
            continue
        if me.startswith("fsstore.backends.") and other.startswith("fsstore.backends."):
            wrong.append(f"{me} imports another backend, {other}")
        elif rank(other) >= rank(me):
            wrong.append(f"{me} imports {other}, above it")
    return wrong


def test_no_import_runs_upward() -> None:
    wrong = [w for path in modules() for w in upward(path)]
    assert wrong == []


def test_a_backend_never_imports_another_backend() -> None:
    wrong = [w for path in (PACKAGE / "backends").rglob("*.py") for w in upward(path)]
    assert wrong == []


def test_the_framework_imports_no_plugin() -> None:
    framework = [p for p in modules() if rank(dotted(p)) < FRAMEWORK_END]
    assert {dotted(p) for p in framework} >= {"fsstore.registry", "fsstore.opts"}
    reach = {
        f"{dotted(p)} imports {other}"
        for p in framework
        for other in imported(p)
        if rank(other) >= FRAMEWORK_END
    }
    assert reach == set()


@pytest.mark.parametrize(
    "path",
    [*modules(), *sorted((ROOT / "bench").glob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_module_and_function_sizes(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    # The rules themselves, on a tree written to break them.
    for name in ("backends/filesystem/store", "backends/s3/x", "cli/main", "store"):
        module = tmp_path / "fsstore" / f"{name}.py"
        module.parent.mkdir(parents=True, exist_ok=True)
        module.touch()
    bad = tmp_path / "fsstore" / "backends" / "s3" / "x.py"
    bad.write_text(
        "from fsstore.backends.filesystem import store\n"
        "def f():\n    import fsstore.cli.main\n"
        "from fsstore import store\n"
    )
    assert upward(bad, tmp_path) == [
        "fsstore.backends.s3.x imports another backend, "
        "fsstore.backends.filesystem.store",
        "fsstore.backends.s3.x imports fsstore.cli.main, above it",
    ]
    framework = tmp_path / "fsstore" / "store.py"
    framework.write_text("from fsstore.backends import s3\n")
    assert upward(framework, tmp_path) == [
        "fsstore.store imports fsstore.backends.s3, above it"
    ]
