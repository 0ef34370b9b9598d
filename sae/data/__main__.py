"""`python -m sae.data`: fetch or verify MNIST (see `sae.data.cli`)."""

import sys

from sae.data.cli import main

sys.exit(main())
