"""Sphinx configuration of fsstore's documentation.

Build: ``.venv/bin/sphinx-build -W -b html docs docs/_build/html`` (``make
docs``). The Markdown pages are read by myst-parser; the command reference
is read from the ``fsstore`` command's parser (``_ext/fsstore_cli.py``) and
the configuration reference from the options by oslo.config's extension.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

from fsstore import __version__  # noqa: E402

project = "fsstore"
copyright = "fsstore contributors"
version = release = __version__

extensions = [
    "myst_parser",
    "oslo_config.sphinxext",
    "fsstore_cli",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

# Anchors for Markdown headings (levels 1-3), so that links such as
# readme.md#the-image-cache and glance.md#locations-the-stores-refuse resolve.
myst_heading_anchors = 3
# Where Markdown links look for targets. oslo_config's domain is left out:
# asked for a target it does not have, it raises KeyError and a broken link
# would stop the build with a traceback instead of naming the link.
myst_ref_domains = ["std", "py"]

html_theme = "alabaster"
html_title = f"fsstore {release}"
html_static_path: list[str] = []
