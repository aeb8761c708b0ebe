"""StoreRegistry and the module-level API, configured from Glance-style files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import fsstore
from fsstore import exceptions
from fsstore.plugins import BACKENDS_NAMESPACE, load_driver
from fsstore.registry import StoreRegistry
from fsstore.store import Store
from fsstore.testing.suite import read_all
from tests import bad_configs
from tests.helpers import load_conf, write_conf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def set_options(text: str, section: str, **options: str | list[str]) -> str:
    """Set options in one section of a Glance sample, as an operator would:
    uncomment the sample line where there is one, else add a line under the
    section header."""
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("[")),
        len(lines),
    )
    for name, value in options.items():
        values = value if isinstance(value, list) else [value]
        new = [f"{name} = {v}" for v in values]
        pattern = re.compile(rf"^#{re.escape(name)} = ")
        hit = next((i for i in range(start, end) if pattern.match(lines[i])), None)
        if hit is None:
            lines[start + 1 : start + 1] = new
            end += len(new)
        else:
            lines[hit : hit + 1] = new
            end += len(new) - 1
    return "\n".join(lines) + "\n"


@pytest.fixture
def glance_sample() -> str:
    return (FIXTURES / "glance-api.conf.sample").read_text()


def test_unmodified_glance_sample_single_store(tmp_path, glance_sample):
    text = set_options(
        glance_sample,
        "glance_store",
        stores="file",
        default_store="file",
        filesystem_store_datadir=str(tmp_path / "images"),
    )
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(text)
    registry = StoreRegistry(load_conf(conf_file))
    assert registry.multi_store is False
    assert list(registry.stores) == ["file"]
    result = registry.add("img", iter([b"glance"]), 6)
    assert result.location == f"file://{tmp_path}/images/img"
    assert result.metadata == {}
    assert read_all(registry.get_store("file"), result.location) == b"glance"


def test_unmodified_glance_sample_with_datadirs(tmp_path, glance_sample):
    # An operator who sets datadirs empties filesystem_store_datadir.
    text = set_options(
        glance_sample,
        "glance_store",
        filesystem_store_datadir="",
        filesystem_store_datadirs=[f"{tmp_path}/fast:200", f"{tmp_path}/slow:100"],
    )
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(text)
    registry = StoreRegistry(load_conf(conf_file))
    result = registry.add("img", iter([b"x"]), 1)
    assert result.location == f"file://{tmp_path}/fast/img"


def test_unmodified_glance_sample_multi_store(tmp_path, glance_sample):
    text = set_options(
        glance_sample, "DEFAULT", enabled_backends="file:file, cheap:file"
    )
    text = set_options(text, "glance_store", default_backend="file")
    text = set_options(text, "file", filesystem_store_datadir=str(tmp_path / "f"))
    text += f"\n[cheap]\nfilesystem_store_datadir = {tmp_path / 'c'}\n"
    text += "store_description = Spinning disks\n"
    conf_file = tmp_path / "glance-api.conf"
    conf_file.write_text(text)
    registry = StoreRegistry(load_conf(conf_file))
    assert registry.multi_store is True
    assert sorted(registry.stores) == ["cheap", "file"]
    default = registry.add("a", iter([b"on file"]), 7)
    assert default.location == f"file://{tmp_path}/f/a"
    assert default.metadata == {"store": "file"}
    cheap = registry.add("b", iter([b"on cheap"]), 8, backend="cheap")
    assert cheap.location == f"file://{tmp_path}/c/b"
    assert cheap.metadata == {"store": "cheap"}
    # Locations route to the backend that owns them, by path.
    chunks, _ = registry.get(cheap.location)
    assert b"".join(chunks) == b"on cheap"
    assert registry.get_size(default.location) == 7
    registry.delete(cheap.location)
    with pytest.raises(exceptions.NotFound):
        registry.get_size(cheap.location)
    with pytest.raises(exceptions.Forbidden):
        registry.get("file:///etc/passwd")
    assert registry.conf.cheap.store_description == "Spinning disks"


def single_conf(tmp_path: Path, **glance_store: object):
    glance_store.setdefault("filesystem_store_datadir", str(tmp_path / "images"))
    return load_conf(
        write_conf(tmp_path / "fsstore.conf", {"glance_store": glance_store})
    )


@pytest.mark.parametrize(
    "case", bad_configs.cases("store", "registry", "cache"), ids=bad_configs.ids
)
def test_bad_configuration_is_refused_on_load(case, tmp_path):
    assert bad_configs.refused(case, tmp_path) is None


def test_lookups(tmp_path):
    registry = StoreRegistry(single_conf(tmp_path))
    assert registry.get_store() is registry.get_store("file")
    with pytest.raises(exceptions.UnknownScheme, match="'swift'"):
        registry.get_store("swift")
    with pytest.raises(exceptions.UnknownScheme, match="'swift'"):
        registry.get("swift://container/obj")
    with pytest.raises(exceptions.BadStoreUri):
        registry.get("no scheme at all")
    with pytest.raises(exceptions.BadStoreUri):
        registry.get("1nvalid://x")


def test_filesystem_alias_loads_the_same_driver(tmp_path):
    registry = StoreRegistry(single_conf(tmp_path, stores="file, filesystem"))
    assert list(registry.stores) == ["file"]
    assert load_driver("filesystem", BACKENDS_NAMESPACE, Store) is load_driver(
        "file", BACKENDS_NAMESPACE, Store
    )


def test_module_level_api(tmp_path):
    conf = single_conf(tmp_path)
    registry = fsstore.create_stores(conf)
    assert isinstance(registry, StoreRegistry)
    data = b"module level" * 1000
    location, size, checksum, metadata = fsstore.add_to_backend(
        conf, "one", iter([data]), len(data)
    )
    assert (size, checksum, metadata) == (len(data), hashlib.md5(data).hexdigest(), {})
    result = fsstore.add_to_backend_with_multihash(
        conf, "two", iter([data]), 0, "sha256", scheme="file"
    )
    assert isinstance(result, fsstore.AddResult)
    assert result.multihash == hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    chunks, length = fsstore.get_from_backend(location, offset=2, chunk_size=5)
    assert (b"".join(chunks), length) == (data[2:7], 5)
    assert fsstore.get_size_from_backend(result.location) == len(data)
    fsstore.delete_from_backend(location)
    with pytest.raises(exceptions.NotFound):
        fsstore.get_size_from_backend(location)
    with pytest.raises(exceptions.UnknownHashingAlgo):
        fsstore.add_to_backend_with_multihash(conf, "three", iter([b"x"]), 1, "md6")
    with pytest.raises(exceptions.UnknownScheme):
        fsstore.add_to_backend(conf, "four", iter([b"x"]), 1, scheme="rbd")


def test_register_opts_covers_the_cache_and_is_idempotent():
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    fsstore.register_opts(conf)
    fsstore.register_opts(conf)
    conf([], default_config_files=[])
    assert conf.image_cache_driver == "sqlite"
    assert conf.image_cache_max_size == 10 * 1024**3
    assert conf.glance_store.filesystem_store_chunk_size == 65536
    assert conf.glance_store.stores == ["file", "http"]
