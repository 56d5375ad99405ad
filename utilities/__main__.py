"""`python -m utilities`: the command line (see `utilities.cli`)."""

import sys

from utilities.cli import main

sys.exit(main())
