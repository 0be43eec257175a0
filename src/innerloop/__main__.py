"""``python -m innerloop`` runs the command line (as under ``torchrun``)."""

import sys

from innerloop.cli import main

if __name__ == "__main__":
    sys.exit(main())
