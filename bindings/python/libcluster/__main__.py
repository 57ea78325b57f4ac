"""``python -m libcluster [options] module:app``: see ``libcluster._runner``."""

import sys

from ._runner import main

sys.exit(main())
