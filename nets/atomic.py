"""The one atomic file output: a hidden temporary next to the target, flushed to the disk and
renamed over the target when complete; removed on any error or signal.

The temporary is ``.STEM.tmp-PID.EXT``: the extension stays (PyAV and PIL pick the format by it),
and the PID lets a later run remove what a killed one left (``stream.writer.remove_stale_temps``).
It is created with ``os.open(..., 0o666)``, which the kernel reduces by the umask as for a plain
``open(path, "w")`` (``tempfile.mkstemp`` would make every output 0600). Torch-free.
"""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_path(target: PathLike, tag: str = "") -> Path:
    """The hidden temporary name of ``target`` for this process (``tag`` tells apart several)."""
    target = Path(target)
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}{tag}{target.suffix}")


def create_temp(target: PathLike) -> tuple[int, Path]:
    """A new, exclusively created temporary for ``target``: (fd open for writing, path)."""
    for attempt in range(100):
        tmp = temp_path(target, f"-{secrets.token_hex(3)}" if attempt else "")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue    # this process is writing the same target elsewhere
    raise FileExistsError(f"no free temporary name next to {target}")


@contextmanager
def atomic_open(target: PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_open(path) as f: ...``: ``path`` appears, complete and on the disk (a full
    disk can surface only at the flush), when the block ends without an error; on any error (or
    Ctrl-C) the temporary is removed and ``path`` is untouched."""
    fd, tmp = create_temp(target)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
