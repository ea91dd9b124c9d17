"""``python -m ambience``: the ``ambience`` command without the installed script."""

import sys

from ambience.cli import main

if __name__ == "__main__":
    sys.exit(main())
