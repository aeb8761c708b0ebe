"""oslo.config's errors about a value, as fsstore words them."""

from __future__ import annotations

import pytest
from oslo_config import cfg

from fsstore.confvalues import option_error


def _error(conf: cfg.ConfigOpts) -> Exception:
    with pytest.raises((cfg.Error, ValueError)) as caught:
        _ = conf.size
    return caught.value  # type: ignore[return-value]


def test_a_bad_value_from_a_file_names_the_file(tmp_path):
    path = tmp_path / "it's here.conf"
    path.write_text("[DEFAULT]\nsize = abc\n")
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.IntOpt("size"))
    conf(["--config-file", str(path)], default_config_files=[])
    raw = str(_error(conf))
    assert "LocationInfo" in raw  # what oslo.config says, for this test to matter
    text = option_error(_error(conf))
    assert "LocationInfo" not in text
    assert text == (
        f"Value for option size in {path} is not valid: "
        "invalid literal for int() with base 10: 'abc'"
    )


def test_other_messages_pass_unchanged():
    assert option_error(ValueError("no such thing")) == "no such thing"
