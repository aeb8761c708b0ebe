"""list_opts() and the committed sample configuration."""

from __future__ import annotations

from pathlib import Path

from oslo_config import cfg, generator

from fsstore import opts, register_opts
from fsstore.cache import central

ROOT = Path(__file__).resolve().parents[2]


def test_list_opts_lists_every_registered_option():
    conf = cfg.ConfigOpts()
    register_opts(conf)
    # The centralized_db driver registers the two Glance options it reads
    # itself (Glance and oslo.db may have registered them already).
    central.register_opts(conf)
    oslo_own = set(cfg.ConfigOpts())  # what oslo.config registers by itself
    listed = {
        (group, opt.dest)
        for group, group_opts in opts.list_opts()
        for opt in group_opts
    }
    groups = {"glance_store", "database"}
    registered = {("DEFAULT", name) for name in set(conf) - oslo_own - groups}
    for group in groups:
        registered |= {(group, name) for name in conf[group]}
    assert listed == registered


def test_sample_config_is_current(tmp_path):
    # The oslo.config.opts entry point is what the generator loads: this also
    # proves it is installed.
    out = tmp_path / "fsstore.conf.sample"
    generator.main(
        [
            "--config-file",
            str(ROOT / "etc/oslo-config-generator/fsstore.conf"),
            "--output-file",
            str(out),
        ]
    )
    committed = (ROOT / "etc/fsstore.conf.sample").read_text()
    assert out.read_text() == committed, (
        "etc/fsstore.conf.sample is stale: run `make genconfig` (or tox -e genconfig)"
    )
