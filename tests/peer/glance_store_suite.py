"""glance_store's own unit tests, run on fsstore's glance_store adapters.

    python tests/peer/glance_store_suite.py [--update]

Downloads glance_store's source distribution (the version pinned below; it
holds ``glance_store/tests``), derives copies of its filesystem, S3 and RBD
test modules whose class under test is fsstore's adapter, by the short fixed
list of substitutions in SUBSTITUTIONS (and the test-side helpers of HELPERS),
runs them with pytest in this interpreter (the peer venv that ``make
test-glance`` builds), and compares each test's outcome with
``expectations.txt`` beside this file: a test listed there must fail, any
other must pass. An unexpected failure or an unexpected pass fails the run.
``--update`` rewrites the file's list from this run, keeping the reasons
already written.

S3: glance_store's tests stub boto3's client around each call; s3_shim.py
makes fsstore's store ask boto3 for its client on each use, so that it gets
the stub.

RBD: glance_store's tests put ``MockRados`` and ``MockRBD`` (the ``rados``
and ``rbd`` modules, as classes whose every call succeeds and does nothing)
in its driver's module in each setUp. In the derived copies that setUp also
calls ``rbd_fake.install``, which grows the two mocks, in place, into an
in-memory librados/librbd (images of bytes, snapshots and their protection,
metadata, watchers, a rename and a create that never replace, RADOS write
operations applied whole with exclusive create, asynchronous I/O, the real
modules' error classes) and puts them where fsstore's store imports its
bindings from (``sys.modules['rados']`` and ``['rbd']``) for the test. The
mocks keep their names, so what a test patches (``MockRBD.RBD.remove``...) is
what fsstore's store calls. The pool starts with the image the tests'
location names. rbd_fake_check.py compares the fake with librbd on a real
cluster, call by call. The tests that count calls of glance_store's synchronous
``Image.write`` or of its private helpers are ``internals``; librbd itself is
tested under fsstore on a real Ceph cluster (tests/functional/test_rbd.py).

Expectation categories:

* ``internals``: the test mocks or reads glance_store's private names (a
  driver module's ``os``, ``TimeoutExecutor``, ``_find_best_datadir``,
  ``_delete_image``...), which an adapter does not have, or counts the calls
  its driver makes on a mock;
* ``deliberate``: a documented difference (docs/glance.md): containment,
  atomic publish, configuration errors that raise instead of silently
  disabling writes, ranged reads of RBD images;
* ``real``: a real incompatibility not fixed yet.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

VERSION = "5.7.0"
HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
EXPECTATIONS = HERE / "expectations.txt"
# Shared bases first; the others are the modules run.
BASES = ["test_filesystem_store_base", "test_s3_store_base", "test_rbd_store_base"]
MODULES = [
    *BASES,
    "test_filesystem_store",
    "test_multistore_filesystem",
    "test_s3_store",
    "test_multistore_s3",
    "test_rbd_store",
    "test_multistore_rbd",
]
# Test-side helpers copied into the derived package beside the modules.
HELPERS = ["s3_shim.py", "rbd_fake.py"]
# (old, new) on every derived module: the class under test becomes fsstore's
# adapter, and the modules import each other's derived copies.
SUBSTITUTIONS = [
    ("filesystem.Store(", "fsstore_glance.FileStore("),
    (
        "from glance_store.tests.unit import test_filesystem_store_base",
        "from peer_tests import test_filesystem_store_base",
    ),
    (
        "from glance_store._drivers import filesystem\n",
        "from glance_store._drivers import filesystem\n"
        "from fsstore import glance as fsstore_glance\n",
    ),
    ("s3.Store(", "fsstore_glance.S3Store("),
    (
        "from glance_store.tests.unit import test_s3_store_base",
        "from peer_tests import test_s3_store_base",
    ),
    (
        "from glance_store._drivers import s3\n",
        "from glance_store._drivers import s3\n"
        "from fsstore import glance as fsstore_glance\n"
        "from peer_tests import s3_shim  # noqa: F401\n",
    ),
    # Not a region name (botocore refuses it; fsstore says so at configure,
    # deliberately): the tests of everything else use a valid one.
    ("s3_store_region_name='custom_region_name'", "s3_store_region_name='custom-1'"),
    ("rbd_store.Store(", "fsstore_glance.RbdStore("),
    (
        "from glance_store.tests.unit import test_rbd_store_base as rbd_base",
        "from peer_tests import test_rbd_store_base as rbd_base\n"
        "from peer_tests import rbd_fake",
    ),
    (
        "from glance_store._drivers import rbd as rbd_store\n",
        "from glance_store._drivers import rbd as rbd_store\n"
        "from fsstore import glance as fsstore_glance\n",
    ),
    # Each setUp puts glance_store's mocks in its driver's module; then, grown
    # by rbd_fake, where fsstore's store imports rados and rbd from.
    (
        "rbd_store.rbd = rbd_base.MockRBD\n",
        "rbd_store.rbd = rbd_base.MockRBD\n"
        "        rbd_fake.install(self, rbd_base.MockRados, rbd_base.MockRBD)\n",
    ),
]
CATEGORIES = ("internals", "deliberate", "real")


def source_tree() -> Path:
    """glance_store's unpacked source distribution, downloaded once."""
    unpacked = WORK / f"glance_store-{VERSION}"
    if unpacked.is_dir():
        return unpacked
    WORK.mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", f"glance_store=={VERSION}", "-d", str(WORK),
        ],
        check=True,
    )  # fmt: skip
    with tarfile.open(WORK / f"glance_store-{VERSION}.tar.gz") as tar:
        tar.extractall(WORK, filter="data")
    return unpacked


def derive(tree: Path) -> Path:
    """The derived test modules, in a package ``peer_tests``; its parent."""
    package = WORK / "derived" / "peer_tests"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for helper in HELPERS:
        (package / helper).write_text((HERE / helper).read_text())
    for name in MODULES:
        text = (tree / "glance_store" / "tests" / "unit" / f"{name}.py").read_text()
        for old, new in SUBSTITUTIONS:
            text = text.replace(old, new)
        (package / f"{name}.py").write_text(text)
    return package.parent


def run(derived: Path) -> dict[str, str]:
    """Each test's outcome: passed, failed or skipped."""
    report = WORK / "report.xml"
    log = WORK / "pytest.log"
    with open(log, "w") as out:
        subprocess.run(
            [
                sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--junitxml={report}", *[f"peer_tests/{m}.py" for m in MODULES if m not in BASES],
            ],
            cwd=derived, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        # module.Class.test, whatever pytest took for the root directory
        module_class = ".".join(str(case.get("classname")).split(".")[-2:])
        test_id = f"{module_class}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[test_id] = "failed"
        elif case.find("skipped") is not None:
            outcomes[test_id] = "skipped"
        else:
            outcomes[test_id] = "passed"
    return outcomes


def read_expectations() -> dict[str, tuple[str, str]]:
    expected = {}
    for line in EXPECTATIONS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        test_id, category, reason = (line.split(None, 2) + [""])[:3]
        if category not in CATEGORIES:
            raise SystemExit(f"{EXPECTATIONS}: {test_id}: unknown category {category}")
        expected[test_id] = (category, reason)
    return expected


def write_expectations(
    outcomes: dict[str, str], old: dict[str, tuple[str, str]]
) -> None:
    header = (
        [line for line in EXPECTATIONS.read_text().splitlines() if line.startswith("#")]
        if EXPECTATIONS.exists()
        else []
    )
    lines = header[:]
    for test_id in sorted(t for t, o in outcomes.items() if o == "failed"):
        category, reason = old.get(test_id, ("real", "not yet examined"))
        lines.append(f"{test_id} {category} {reason}")
    EXPECTATIONS.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--update", action="store_true")
    args = parser.parse_args()
    outcomes = run(derive(source_tree()))
    if not outcomes:
        print("glance_store suite: no test ran; see", WORK / "pytest.log")
        return 1
    expected = read_expectations() if EXPECTATIONS.exists() else {}
    if args.update:
        write_expectations(outcomes, expected)
        expected = read_expectations()
    unexpected_failures = sorted(
        t for t, o in outcomes.items() if o == "failed" and t not in expected
    )
    unexpected_passes = sorted(
        t for t in expected if outcomes.get(t) in ("passed", None)
    )
    for test_id in unexpected_failures:
        print(f"UNEXPECTED FAILURE {test_id}")
    for test_id in unexpected_passes:
        print(f"UNEXPECTED PASS {test_id} (listed as {expected[test_id][0]})")
    counts = {c: sum(1 for cat, _ in expected.values() if cat == c) for c in CATEGORIES}
    passed = sum(1 for o in outcomes.values() if o == "passed")
    print(
        f"glance_store {VERSION} suite on fsstore's adapters: {passed} passed, "
        f"{len(expected)} expected failures ("
        + ", ".join(f"{n} {c}" for c, n in counts.items())
        + f"), {len(unexpected_failures)} unexpected failures, "
        f"{len(unexpected_passes)} unexpected passes"
    )
    return 1 if unexpected_failures or unexpected_passes else 0


if __name__ == "__main__":
    sys.exit(main())
