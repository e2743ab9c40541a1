"""`python -m bricklm ...` is the same as the `bricklm` command."""

import sys

from bricklm.cli import main

sys.exit(main())
