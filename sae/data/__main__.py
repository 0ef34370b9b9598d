"""`python -m sae.data`: fetch or verify MNIST (see `sae.commands.data`)."""

import sys

from sae.commands.data import main

sys.exit(main())
