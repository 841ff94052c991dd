"""`python -m cfjax` is the `cfjax` command."""

import sys

from cfjax.cli import main

sys.exit(main())
