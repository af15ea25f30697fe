"""``python -m p2pnode``: the same command line as the ``p2pnode`` script."""

import sys

from p2pnode.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
