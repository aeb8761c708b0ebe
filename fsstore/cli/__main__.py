import sys

from fsstore.cli.main import main

sys.exit(main())
