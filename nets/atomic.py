"""Atomic file output: a hidden temporary next to the target, renamed over it when complete.

``tempfile.mkstemp`` creates its file with mode 0600, so an output written through it is private
to its owner while every other file we write is 0644 (0666 less the umask). The temporary here is
created with ``os.open(..., 0o666)``, which the kernel reduces by the umask as for a plain
``open(path, "w")``. Torch-free: the checkpoint saver, the ONNX export and the bench JSON use it.
"""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]


def create_temp(target: PathLike) -> tuple[int, Path]:
    """A new, exclusively created hidden file in ``target``'s folder: (fd open for writing, path)."""
    target = Path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {target}")


@contextmanager
def atomic_open(target: PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_open(path) as f: ...``: ``path`` appears, complete, only when the block ends
    without an error; on any error (or Ctrl-C) the temporary is removed and ``path`` is untouched."""
    fd, tmp = create_temp(target)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
