"""`python -m tinyllm ...` is the same as `tinyllm ...`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
