#!/usr/bin/env bash
# make package-check: build the sdist and the wheel as a user would, then
#   1. install the wheel into a new venv and use the command on a demo store;
#   2. install the sdist with only the `testing` extra into another new venv,
#      install the example plugin from the unpacked sdist and run its
#      conformance test.
# Everything it needs is installed from the package index into venvs under a
# temporary directory, removed at the end (KEEP=1 keeps it). The source tree
# is only read (setuptools writes build/ and fsstore.egg-info, both ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/fsstore-package.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "package-check: working in $work (kept)"
else
    trap 'rm -rf "$work"' EXIT
fi

step() { printf '== %s\n' "$*"; }
fail() {
    printf 'package-check: %s\n' "$*" >&2
    exit 1
}

# A new venv with pip upgraded: new_venv DIR
new_venv() {
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

step "building the sdist and the wheel (python -m build)"
new_venv "$work/build-venv"
"$work/build-venv/bin/python" -m pip install --quiet build
"$work/build-venv/bin/python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; fail "python -m build failed"; }
sdist=$(ls "$work"/dist/fsstore-*.tar.gz)
wheel=$(ls "$work"/dist/fsstore-*-py3-none-any.whl)
version=${sdist##*/fsstore-}
version=${version%.tar.gz}
echo "built $(basename "$sdist") and $(basename "$wheel")"

step "checking what the sdist and the wheel hold"
tar tzf "$sdist" | sed "s|^fsstore-$version/||" >"$work/sdist.txt"
for f in LICENSE README.md Makefile setup.cfg pyproject.toml \
    etc/fsstore.conf.sample etc/fsstore-demo.conf \
    etc/oslo-config-generator/fsstore.conf docs/glance.md docs/plugins.md \
    tests/conftest.py tests/plugins/example/pyproject.toml \
    tests/plugins/example/tests/test_conformance.py fsstore/testing/suite.py; do
    grep -qx "$f" "$work/sdist.txt" || fail "the sdist lacks $f"
done
leaks=$(grep -E '(^|/)(\.venv[^/]*|__pycache__|_build|build|work|[^/]*\.egg-info|\.pytest_cache|\.hypothesis)/' \
    "$work/sdist.txt" | grep -v "^fsstore\.egg-info/" || true)
[ -z "$leaks" ] || fail "the sdist holds build or test leftovers: $(echo "$leaks" | head -5)"
"$work/build-venv/bin/python" -m zipfile -l "$wheel" | grep -q "dist-info/licenses/LICENSE" ||
    fail "the wheel lacks LICENSE"
echo "sdist: $(wc -l <"$work/sdist.txt") entries, nothing left over from builds or tests"

step "the wheel in a new venv: fsstore --version, add, ls"
new_venv "$work/wheel-venv"
"$work/wheel-venv/bin/python" -m pip install --quiet "$wheel"
mkdir -p "$work/demo/images"
printf '[glance_store]\nstores = file\ndefault_store = file\nfilesystem_store_datadir = %s\n' \
    "$work/demo/images" >"$work/demo/fsstore.conf"
head -c 1048576 /dev/urandom >"$work/demo/image.raw"
(
    # Outside the source tree, so that python -m fsstore is the wheel's.
    cd "$work/demo"
    fsstore="$work/wheel-venv/bin/fsstore"
    out=$("$fsstore" --version)
    echo "$out"
    [ "$out" = "fsstore $version" ] || fail "fsstore --version says '$out', not 'fsstore $version'"
    out=$("$work/wheel-venv/bin/python" -m fsstore --version)
    [ "$out" = "fsstore $version" ] || fail "python -m fsstore --version says '$out'"
    "$fsstore" --config-file fsstore.conf add --id package-check-image image.raw | tee add.txt
    location=$(awk '$1 == "location:" {print $2}' add.txt)
    if "$fsstore" ls --help >/dev/null 2>&1; then
        "$fsstore" --config-file fsstore.conf ls --long | tee ls.txt
        grep -q package-check-image ls.txt || fail "fsstore ls does not list the image"
    else
        echo "ls not available yet: fsstore stores instead"
        "$fsstore" --config-file fsstore.conf stores
    fi
    "$fsstore" --config-file fsstore.conf get -o image.out "$location"
    cmp image.raw image.out || fail "the image read back differs"
)

step "the sdist with only the testing extra; the example plugin from the sdist"
new_venv "$work/sdist-venv"
"$work/sdist-venv/bin/python" -m pip install --quiet "$sdist[testing]"
mkdir -p "$work/src"
tar xzf "$sdist" -C "$work/src"
example="$work/src/fsstore-$version/tests/plugins/example"
"$work/sdist-venv/bin/python" -m pip install --quiet "$example"
# pytest itself, not python -m pytest: the plugin is imported as installed,
# not from the directory the tests run in.
(cd "$example" && "$work/sdist-venv/bin/pytest" -q -p no:cacheprovider tests)

step "package-check: all passed"
