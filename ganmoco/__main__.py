"""`python -m ganmoco ...` is the `ganmoco` command (and the entry for `accelerate launch -m ganmoco ...`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
