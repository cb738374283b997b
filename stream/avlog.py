"""FFmpeg's error log, kept so that damage in an input file can be counted.

A decoder that meets a broken slice usually conceals it and returns the frame anyway, and a demuxer
that cannot parse some bytes skips them; both only say so in FFmpeg's log, which PyAV drops by
default. ``install`` keeps the ERROR lines (nothing lower, so the cost is nil for a clean file):
lines logged on a thread that holds a ``Capture`` (demuxers, and decoders without frame threads)
go to that capture; lines from FFmpeg's own worker threads (frame-threaded decoders) go to one
process-wide list that ``take_global`` drains.
"""

import threading
from typing import Iterable, Literal

import av
import av.logging

DamagePolicy = Literal["stop", "skip"]      # what a reader does at damage in its input
DAMAGE_POLICIES: tuple[str, ...] = ("stop", "skip")

_lock = threading.Lock()
_global_lines: list = []
_installed = False


def install() -> None:
    """Route FFmpeg's ERROR lines into captures instead of dropping them (idempotent). Nothing is
    printed: a line that no capture takes is dropped, as before."""
    global _installed, _global_lines
    with _lock:
        if _installed:
            return
        av.logging.set_level(av.logging.ERROR)
        av.logging.set_skip_repeated(False)    # a repeated line is a second damaged spot
        capture = av.logging.Capture(local=False)
        _global_lines = capture.__enter__()    # held for the life of the process
        _installed = True


def take_global(names: Iterable[str]) -> list[str]:
    """The worker-thread lines logged since the last call by a component named in ``names`` (a
    codec or format name); the others are dropped."""
    lines = _global_lines
    n = len(lines)
    if not n:
        return []
    taken = lines[:n]
    del lines[:n]
    wanted = set(names)
    return [_text(message) for level, name, message in taken if name in wanted]


def _text(message: str) -> str:
    return message.strip().rstrip(".")


class Capture:
    """ERROR lines logged on this thread inside the ``with`` block: ``lines`` after it."""

    def __init__(self):
        self._capture = av.logging.Capture(local=True)
        self.lines: list[str] = []

    def __enter__(self) -> "Capture":
        self._logs = self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)
        self.lines = [_text(message) for level, name, message in self._logs]
