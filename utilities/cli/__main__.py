"""`python -m utilities.cli`: the same as `python -m utilities`."""

import sys

from utilities.cli import main

sys.exit(main())
