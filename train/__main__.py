"""`python -m dynastream.train ARGS` is `dynastream train ARGS` (torchrun-friendly: `torchrun ... -m dynastream.train ...`)."""

import sys

from dynastream.stream.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
