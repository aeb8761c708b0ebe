# fsstore: `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_CONF := etc/fsstore-demo.conf
FSSTORE := $(BIN)/fsstore --config-file $(DEMO_CONF)

.PHONY: demo test test-glance test-ceph ceph-bindings test-mariadb stress bench bench-quick bench-growth lint format genconfig package-check docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

PLUGINS := tests/plugins/example tests/plugins/broken
PLUGIN_FILES := $(shell find $(PLUGINS) -name '*.py' -o -name pyproject.toml)

# The example plugins are installed for real (not on sys.path by hand), so the
# tests load them through their entry points exactly as users' drivers load.
$(VENV)/.installed-test: $(BIN)/python setup.cfg setup.py pyproject.toml $(PLUGIN_FILES)
	$(BIN)/python -m pip install --quiet -e '.[test,s3,central]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(PLUGINS)
	touch $@ $(VENV)/.installed

# The peer venv: glance_store 5.7.0 (its own unit tests on fsstore's
# adapters) and Glance 33.0.0 (a real API under gunicorn for the end-to-end
# tests), with fsstore installed as Glance finds its drivers, pinned by
# tests/peer/constraints.txt. Their dependencies are not fsstore's.
PEER_VENV := tests/peer/.venv
$(PEER_VENV)/.installed: setup.cfg setup.py pyproject.toml tests/peer/constraints.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -c tests/peer/constraints.txt \
		-e '.[s3]' glance_store==5.7.0 glance==33.0.0 gunicorn \
		pytest oslotest testtools fixtures requests-mock ddt testscenarios
	touch $@

# OpenStack Swift with s3api, a real S3 engine for the S3 tests (wheels only).
SWIFT_VENV := tests/engines/.venv-swift
$(SWIFT_VENV)/.installed: tests/engines/swift-constraints.txt
	$(PYTHON) -m venv $(SWIFT_VENV)
	$(SWIFT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SWIFT_VENV)/bin/python -m pip install --quiet --only-binary :all: \
		-c tests/engines/swift-constraints.txt swift
	touch $@

# The RBD store's bindings: Debian's python3-rbd and python3-rados (PyPI has
# none), made importable in fsstore's venv and the peer venv (Glance runs
# fsstore_rbd there) by tests/engines/ceph-bindings.sh.
ceph-bindings: $(BIN)/python $(PEER_VENV)/.installed
	@sh tests/engines/ceph-bindings.sh $(BIN)/python $(PEER_VENV)/bin/python

test: $(VENV)/.installed-test $(PEER_VENV)/.installed $(SWIFT_VENV)/.installed ceph-bindings
	$(BIN)/python -m pytest tests

# The S3 tests on Ceph RGW and the RBD store's tests on a one-node cluster
# (Debian's packages, installed when missing; root).
CEPH_PACKAGES := ceph-mon ceph-osd ceph-common radosgw python3-rbd python3-rados
CEPH_PRESENT := command -v radosgw >/dev/null && command -v rbd >/dev/null && \
	ls /usr/lib/python3/dist-packages/rbd.cpython-*.so >/dev/null 2>&1
test-ceph: $(VENV)/.installed-test
	@$(CEPH_PRESENT) || [ "$$(id -u)" = 0 ] || \
		{ echo "make test-ceph: Ceph is not installed, and installing it needs root" >&2; exit 1; }
	@$(CEPH_PRESENT) || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CEPH_PACKAGES) >/dev/null; } || \
		{ echo "make test-ceph: could not install $(CEPH_PACKAGES)" >&2; exit 1; }
	@$(MAKE) --no-print-directory ceph-bindings
	$(BIN)/python -m pytest tests/functional/test_s3.py tests/functional/test_s3_races.py \
		tests/functional/test_s3_faults.py tests/functional/test_s3_scrub.py \
		tests/functional/test_no_secrets.py tests/functional/test_rbd.py \
		tests/functional/test_rbd_crash.py tests/functional/test_rbd_restart.py \
		tests/functional/test_rbd_abort.py tests/functional/test_rbd_glance.py \
		tests/functional/test_rbd_glance_api.py tests/functional/test_rbd_fake.py \
		--s3-engines rgw

# The centralized_db cache driver on MariaDB (Debian's mariadb-server,
# installed when missing; root).
MARIADB_PACKAGES := mariadb-server
test-mariadb: $(VENV)/.installed-test
	@command -v mariadb-install-db >/dev/null || [ "$$(id -u)" = 0 ] || \
		{ echo "make test-mariadb: MariaDB is not installed, and installing it needs root" >&2; exit 1; }
	@command -v mariadb-install-db >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(MARIADB_PACKAGES) >/dev/null; } || \
		{ echo "make test-mariadb: could not install $(MARIADB_PACKAGES)" >&2; exit 1; }
	$(BIN)/python -m pytest tests/functional/test_cache_central.py --mariadb -m mariadb

test-glance: $(PEER_VENV)/.installed
	$(PEER_VENV)/bin/python tests/peer/glance_store_suite.py

# Faults and hostile input, bounded (well under 10 minutes on 2 cores).
stress: $(VENV)/.installed-test
	$(BIN)/python -m tests.stress

# Side by side with glance_store 5.7.0 (its own venv under bench/) and the
# machine's limits; writes bench/results/latest.md and chart.png.
$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,s3,central,bench]'
	touch $@

bench: $(VENV)/.installed-bench $(SWIFT_VENV)/.installed ceph-bindings
	$(BIN)/python bench/run.py

bench-quick: $(VENV)/.installed-bench $(SWIFT_VENV)/.installed ceph-bindings
	$(BIN)/python bench/run.py --quick

# The filesystem store as it grows to 1,000,000 images (a few minutes; a
# tmpfs of its own when root): bench/results/growth.md and growth.png.
bench-growth: $(VENV)/.installed-bench
	$(BIN)/python bench/growth.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check fsstore tests bench
	$(BIN)/ruff format --check fsstore tests bench
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format fsstore tests bench
	$(BIN)/ruff check --fix fsstore tests bench

# The sdist and the wheel built as a user builds them, the wheel's command
# run from a new venv, and the example plugin's conformance test run from
# the unpacked sdist with only fsstore[testing] (a minute or two; each step
# installs what it needs into venvs of its own in a temporary directory).
package-check:
	PYTHON=$(PYTHON) bash tests/package/check.sh

# The documentation (Sphinx, the Markdown pages through myst-parser), with
# warnings as errors, into docs/_build/html.
$(VENV)/.installed-docs: $(BIN)/python setup.cfg setup.py pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.installed-docs
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

genconfig: $(VENV)/.installed
	$(BIN)/oslo-config-generator --config-file etc/oslo-config-generator/fsstore.conf

# Add a generated 256 MiB image, read it back and verify it, show the stores,
# delete it: the main job end to end on two prioritized data directories.
demo: $(VENV)/.installed
	@set -e; mkdir -p var; \
	echo "== generating a 256 MiB image"; \
	head -c 268435456 /dev/urandom > var/demo-image.raw; \
	echo "== fsstore add"; \
	$(FSSTORE) add --progress --id demo-image var/demo-image.raw | tee var/demo-add.txt; \
	loc=$$(awk '$$1 == "location:" {print $$2}' var/demo-add.txt); \
	md5=$$(awk '$$1 == "checksum:" {print $$2}' var/demo-add.txt); \
	echo "== fsstore get $$loc"; \
	$(FSSTORE) get --progress -o var/demo-image.out "$$loc"; \
	cmp var/demo-image.raw var/demo-image.out && echo "read back: identical"; \
	$(FSSTORE) verify "$$loc" --checksum "$$md5"; \
	echo "== fsstore stores"; \
	$(FSSTORE) stores; \
	echo "== fsstore scrub (digests kept with the image, read back and checked)"; \
	$(FSSTORE) scrub --checkpoint var/demo-scrub.json; \
	echo "== fsstore delete"; \
	$(FSSTORE) delete "$$loc"; \
	rm -f var/demo-image.raw var/demo-image.out var/demo-add.txt var/demo-scrub.json

clean:
	rm -rf $(VENV) var build dist *.egg-info .pytest_cache bench/work bench/.venv-glance \
		$(PEER_VENV) tests/peer/work docs/_build
