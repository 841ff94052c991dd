"""Repository-wide pytest setup: notebooks run at smoke size unless told otherwise."""

import os

os.environ.setdefault("CFJAX_SMOKE", "1")
