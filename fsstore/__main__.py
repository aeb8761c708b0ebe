"""``python -m fsstore``: the ``fsstore`` command."""

import sys

from fsstore.cli.main import main

sys.exit(main())
