"""`python -m train ARGS` is `dynastream train ARGS` (torchrun-friendly: `torchrun ... -m train ...`)."""

import sys

from stream.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
