"""Which configuration the command reads, what it refuses without one,
options it does not read, read-only data directories, and paths relative
to their configuration file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_conf

FSSTORE = str(Path(sys.executable).with_name("fsstore"))


def run(*args: str, home: Path | None = None, cwd: Path | None = None):
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        [FSSTORE, *args], capture_output=True, timeout=120, env=env, cwd=cwd
    )


def ok(*args: str, **kwargs) -> bytes:
    proc = run(*args, **kwargs)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def fails(code: int, *args: str, match: str, **kwargs) -> str:
    proc = run(*args, **kwargs)
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err, proc.stdout)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def _conf(tmp_path: Path, datadir: Path, name: str = "fsstore.conf") -> list[str]:
    path = write_conf(
        tmp_path / name, {"glance_store": {"filesystem_store_datadir": str(datadir)}}
    )
    return ["--config-file", str(path)]


# -- which files are read ---------------------------------------------------


def test_config_names_the_files_read_in_order(tmp_path):
    first = _conf(tmp_path, tmp_path / "images", "a.conf")
    confd = tmp_path / "conf.d"
    confd.mkdir()
    for name in ("20-b.conf", "10-a.conf", "ignored.txt"):
        (confd / name).write_text("[glance_store]\n")
    args = [*first, "--config-dir", str(confd)]
    record = json.loads(ok(*args, "--format", "json", "config"))
    assert record["files"] == [
        str(tmp_path / "a.conf"),
        str(confd / "10-a.conf"),
        str(confd / "20-b.conf"),
    ]
    assert record["searched"] == []  # files were given: nothing is searched
    assert record["unknown_options"] == []
    text = ok(*args, "config").decode()
    assert f"  {tmp_path}/a.conf\n  {confd}/10-a.conf\n" in text
    assert "every option set in fsstore's groups is one it reads" in text


def test_with_nothing_given_the_search_is_shown_and_its_find_read(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    record = json.loads(ok("--format", "json", "config", home=home))
    assert record["files"] == []
    searched = record["searched"]
    assert searched[:4] == [
        f"{home}/.fsstore/fsstore.conf",
        f"{home}/fsstore.conf",
        "/etc/fsstore/fsstore.conf",
        "/etc/fsstore.conf",
    ]
    assert f"{home}/.fsstore/fsstore.conf.d" in searched
    # A file put where the search looks first is the one read, and used.
    (home / ".fsstore").mkdir()
    _conf(home / ".fsstore", tmp_path / "found-images")
    record = json.loads(ok("--format", "json", "config", home=home))
    assert record["files"] == [f"{home}/.fsstore/fsstore.conf"]
    stores = json.loads(ok("--format", "json", "stores", home=home))
    assert stores[0]["datadirs"][0]["path"] == str(tmp_path / "found-images")


def test_nothing_is_written_without_a_configuration_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    src = tmp_path / "image"
    src.write_bytes(b"data")
    for args in (
        ["add", str(src)],
        ["delete", "file:///var/lib/glance/images/x"],
        ["scrub", "--record"],
        ["cache", "prune"],
    ):
        fails(2, *args, match="no configuration file was read", home=home)
    # A file that sets up no store is no configuration of one.
    cache_only = write_conf(
        tmp_path / "cache.conf", {"DEFAULT": {"image_cache_dir": "c"}}
    )
    for given in ("/dev/null", str(cache_only)):
        fails(
            2,
            "--config-file",
            given,
            "add",
            str(src),
            match="no configuration file read sets up a store ([glance_store] options",
            home=home,
        )
    # Only stevedore's cache of entry points, which it keeps in ~/.cache.
    made = {str(p.relative_to(home)) for p in home.rglob("*") if p.is_dir()}
    assert made <= {".cache", ".cache/python-entrypoints"}, made


# -- read-only commands make nothing ------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["stores"],
        ["ls"],
        ["ls", "-l"],
        ["scrub"],
        ["info", "img"],
        ["get", "img"],
        ["size", "img"],
        ["verify", "img", "--checksum", "0" * 32],
    ],
)
def test_a_read_only_command_makes_no_data_directory(tmp_path, args):
    datadir = tmp_path / "images"
    run(*_conf(tmp_path, datadir), *args)  # whatever it says of the image
    assert not datadir.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "fsstore.conf"]


def test_a_read_only_registry_opens_its_stores_read_only():
    from oslo_config import cfg

    from fsstore import StoreRegistry, register_opts

    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", "/dev/null"], default_config_files=[])
    conf.set_override("stores", ["http"], group="glance_store")
    conf.set_override("default_store", "http", group="glance_store")
    registry = StoreRegistry(conf, read_only=True)
    assert registry.stores["http"].read_only
    assert not StoreRegistry(conf).stores["http"].read_only


def test_a_read_only_store_refuses_its_own_add_and_delete(tmp_path):
    from oslo_config import cfg

    from fsstore import StorageWriteDenied, StoreRegistry, register_opts

    conf = cfg.ConfigOpts()
    register_opts(conf)
    path = _conf(tmp_path, tmp_path / "images")[1]
    conf(["--config-file", path], default_config_files=[])
    written = StoreRegistry(conf).add("img", b"data", 4)
    store = StoreRegistry(conf, read_only=True).get_store()
    with pytest.raises(StorageWriteDenied, match="cannot add in store 'file'"):
        store.add("new", b"data", 4)
    with pytest.raises(StorageWriteDenied, match="cannot delete in store 'file'"):
        store.delete(written.location)
    assert sorted(os.listdir(tmp_path / "images")) == ["img"]


# -- options fsstore does not read ----------------------------------------------


def test_options_fsstore_does_not_read_are_named_with_file_and_line(tmp_path):
    path = tmp_path / "glance-api.conf"
    path.write_text(
        "[DEFAULT]\n"
        "enabled_backends = fast:file\n"
        "filesystem_store_datadir = /x\n"  # line 3: a store option in DEFAULT
        "image_cache_max_sise = 5\n"  # line 4: a typo
        "workers = 4\n"  # Glance's own: not fsstore's to judge
        "[glance_store]\n"
        "default_backend = fast\n"
        "[fast]\n"
        f"filesystem_store_datadir = {tmp_path}/fast\n"
        "filesystem_store_datdir = typo\n"  # line 10
        "store_description = fast disks\n"
        "[backend_defaults]\n"
        "filesystem-store-chunk-size = 65536\n"  # line 13: oslo.config reads no dashes
        "no_such = 1\n"  # line 14
        "[database]\n"
        "connection = sqlite://\n"
        "[keystone_authtoken]\n"
        "whatever = 1\n"
    )
    proc = run("--config-file", str(path), "--format", "json", "config")
    assert proc.returncode == 1, proc.stderr
    found = json.loads(proc.stdout)["unknown_options"]
    assert [(u["line"], u["group"], u["name"]) for u in found] == [
        (3, "DEFAULT", "filesystem_store_datadir"),
        (4, "DEFAULT", "image_cache_max_sise"),
        (10, "fast", "filesystem_store_datdir"),
        (13, "backend_defaults", "filesystem-store-chunk-size"),
        (14, "backend_defaults", "no_such"),
    ]
    assert "never from [DEFAULT]" in found[0]["hint"]
    assert found[1]["hint"].endswith("(did you mean image_cache_max_size?)")
    assert found[2]["hint"].endswith("(did you mean filesystem_store_datadir?)")
    assert found[3]["hint"] == (
        "oslo.config does not read a name with dashes: write filesystem_store_chunk_size"
    )
    text = run("--config-file", str(path), "config").stdout.decode()
    assert f"  {path}:10: [fast] filesystem_store_datdir: not an option" in text


def test_a_file_that_is_no_ini_file_is_one_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("[glance_store\n")
    fails(2, "--config-file", str(path), "config", match=str(path))


def test_an_option_group_is_named_as_a_group(tmp_path):
    path = write_conf(tmp_path / "f.conf", {"glance_store": {"stores": ""}})
    fails(
        2,
        "--config-file",
        str(path),
        "stores",
        match="option group [glance_store] is misconfigured: option stores names no store",
    )


def test_a_bad_value_names_its_file_not_oslo_internals(tmp_path):
    path = write_conf(
        tmp_path / "f.conf",
        {"glance_store": {"filesystem_store_chunk_size": "lots"}},
    )
    err = fails(
        2, "--config-file", str(path), "stores", match=f"in {path} is not valid"
    )
    assert "LocationInfo" not in err


# -- paths relative to their file ---------------------------------------------------


def test_relative_paths_are_taken_from_the_files_directory(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write_conf(
        etc / "fsstore.conf",
        {
            "DEFAULT": {"image_cache_dir": "cache"},
            "glance_store": {
                "filesystem_store_datadirs": ["images:1", "../more:0"],
                "filesystem_store_metadata_file": "meta.json",  # Store.path_option
            },
        },
    )
    (etc / "meta.json").write_text('{"id": "etc-disk", "mountpoint": "/"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = tmp_path / "image"
    src.write_bytes(b"relative")
    args = ["--config-file", str(path), "--format", "json"]
    added = json.loads(ok(*args, "add", "--id", "img", str(src), cwd=elsewhere))
    assert added["location"] == f"file://{etc}/images/img"
    assert added["metadata"] == {"id": "etc-disk", "mountpoint": "/"}
    assert (etc / "images" / "img").read_bytes() == b"relative"
    assert (tmp_path / "more").is_dir()
    assert list(elsewhere.iterdir()) == []
    cache = json.loads(ok(*args, "cache", "size", cwd=elsewhere))
    assert cache["size"] == 0 and (etc / "cache").is_dir()


# -- a data directory that is only read -------------------------------------------


@pytest.mark.root
def test_a_read_only_data_directory_is_read_and_never_written(mount_tmpfs, tmp_path):
    ro = mount_tmpfs("ro", "4m")
    rw = tmp_path / "rw"
    rw.mkdir()  # not made: another data directory (the mount) exists
    both = write_conf(
        tmp_path / "both.conf",
        {"glance_store": {"filesystem_store_datadirs": [f"{ro}:200", f"{rw}:100"]}},
    )
    args = ["--config-file", str(both)]
    src = tmp_path / "image"
    src.write_bytes(b"old image")
    ok(*args, "add", "--id", "old", str(src))
    assert (ro / "old").read_bytes() == b"old image"
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    # Reads work...
    assert ok(*args, "get", "old") == b"old image"
    assert (
        f"{ro}  priority 200  free 4.0 MiB, read-only" in ok(*args, "stores").decode()
    )
    assert ok(*args, "ls").decode() == "old\n"
    assert json.loads(ok(*args, "--format", "json", "info", "old"))["size"] == 9
    # ...a new image goes where it can be written...
    src.write_bytes(b"new image")
    added = json.loads(ok(*args, "--format", "json", "add", "--id", "new", str(src)))
    assert added["location"] == f"file://{rw}/new"
    # ...and a delete there fails in one line, the image kept.
    fails(1, *args, "delete", "old", match=f"cannot delete file://{ro}/old")
    assert ok(*args, "get", "old") == b"old image"
    only_ro = _conf(tmp_path, ro, "ro.conf")
    fails(
        1,
        *only_ro,
        "add",
        str(src),
        match=f"no data directory of store 'file' can be written (not writable: {ro})",
    )
    assert ok(*only_ro, "get", "old") == b"old image"


def test_a_config_dir_found_is_read_even_with_a_config_file(tmp_path):
    """oslo.config's rule: --config-file stops the search for fsstore.conf,
    not for fsstore.conf.d; the command shows what that read."""
    home = tmp_path / "home"
    confd = home / ".fsstore" / "fsstore.conf.d"
    confd.mkdir(parents=True)
    (confd / "extra.conf").write_text("[glance_store]\nfilesystem_store_datdir = x\n")
    given = _conf(tmp_path, tmp_path / "images")
    proc = run(*given, "--format", "json", "config", home=home)
    record = json.loads(proc.stdout)
    assert record["files"] == [
        str(tmp_path / "fsstore.conf"),
        str(confd / "extra.conf"),
    ]
    assert record["searched"][0] == str(home / ".fsstore" / "fsstore.conf.d")
    assert all(p.endswith(".conf.d") for p in record["searched"])
    assert [u["name"] for u in record["unknown_options"]] == ["filesystem_store_datdir"]
    assert proc.returncode == 1


def _unknown(tmp_path: Path, text: str) -> list[tuple[int, str, str, str]]:
    path = tmp_path / "glance-api.conf"
    path.write_text(text)
    proc = run("--config-file", str(path), "--format", "json", "config")
    found = json.loads(proc.stdout)["unknown_options"]
    assert proc.returncode == (1 if found else 0), proc.stderr
    return [(u["line"], u["group"], u["name"], u["hint"]) for u in found]


def test_store_options_where_the_mode_does_not_read_them(tmp_path):
    multi = _unknown(
        tmp_path,
        "[DEFAULT]\n"
        "enabled_backends = Fast:file\n"
        "[glance_store]\n"
        "default_backend = Fast\n"
        "filesystem_store_datadir = /srv/a\n"  # line 5: multi-store reads [Fast]
        "[Fast]\n"
        "filesystem_store_datadir = /srv/b\n"
        "bogus = 1\n",  # line 8: the backend's group, in oslo.config's case
    )
    assert [(line, group, name) for line, group, name, _ in multi] == [
        (5, "glance_store", "filesystem_store_datadir"),
        (8, "fast", "bogus"),
    ]
    assert "not read from [glance_store] in multi-store mode" in multi[0][3]
    single = _unknown(
        tmp_path,
        "[glance_store]\n"
        "filesystem_store_datadir = /srv/a\n"
        "[backend_defaults]\n"
        "filesystem_store_chunk_size = 65536\n",  # line 4: multi-store only
    )
    assert [(line, group) for line, group, _, _ in single] == [(4, "backend_defaults")]
    assert "read in multi-store mode only" in single[0][3]


def test_a_misspelt_group_is_named_when_it_holds_fsstore_options(tmp_path):
    found = _unknown(
        tmp_path,
        "[glance_stores]\n"
        "filesystem_store_datadir = /srv/a\n"
        "[default]\n"
        "image_cache_dir = /srv/cache\n"
        "[keystone_authtoken]\n"
        "auth_url = http://keystone\n",  # the service's: not fsstore's to judge
    )
    assert found == [
        (
            2,
            "glance_stores",
            "filesystem_store_datadir",
            "[glance_stores] is not a group fsstore reads (did you mean [glance_store]?)",
        ),
        (
            4,
            "default",
            "image_cache_dir",
            "[default] is not a group fsstore reads (did you mean [DEFAULT]?)",
        ),
    ]


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin.conf"
    path.write_bytes(b"[glance_store]\nfilesystem_store_datadir = /tmp/\xe9\n")
    for command in ("ls", "config"):
        fails(
            2,
            "--config-file",
            str(path),
            command,
            match=f"cannot read configuration {path}: it is not UTF-8 (byte 47)",
        )
