"""``python -m innerloop`` runs the command line (as under ``torchrun``)."""

import os
import sys

from innerloop.cli import main

if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # distributed.launched(), without importing torch here
        # One of several processes of a job, finished: its files are closed and the process group is destroyed.
        # Skip the interpreter's teardown: the C++ destructors of the collectives' threads can race at exit and abort
        # the process ("terminate called without an active exception", seen ~1 run in 25 with gloo on CPU), turning a
        # finished job into a reported crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0)
    sys.exit(code)
