"""`python -m genclip_hf.cli`: the `genclip` command."""

import sys

from . import main

sys.exit(main())
