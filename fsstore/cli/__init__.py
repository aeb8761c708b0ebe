"""The ``fsstore`` command (``fsstore.cli:main``)."""

from fsstore.cli.main import main

__all__ = ["main"]
