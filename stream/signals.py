"""Stop signals: Ctrl-C (SIGINT), SIGTERM (``kill``, a service manager) and SIGHUP (the terminal or
the SSH session went away) all end a command, in one of three phases:

* **starting** (imports, loading a model, compiling; nothing written yet): the process exits at
  once with one line. Raising KeyboardInterrupt there is not safe: libraries swallow it (a weakref
  callback during compilation, a broad ``except`` in an import) and go on running, or leave a
  half-imported module that fails later with a traceback.
* **running** (``graceful``: a file is being written, or the live loop runs): the first signal
  raises ``KeyboardInterrupt`` (``Interrupted`` for SIGTERM/SIGHUP) in the main thread, so the
  cleanup of Ctrl-C runs: temporary files removed, a live take finished. Loops also call
  ``raise_if_requested``, in case a library swallowed that exception. Inside ``deferred`` (a
  render's frame loop, whose threads share locks with it) the signal is only recorded and that
  call raises it.
* **stopping** (``stopping``: the cleanup has begun): further signals are ignored, so they cannot
  cut it short.

SIGKILL cannot be caught; what it leaves is removed by the next write to the same target
(``stream.writer.remove_stale_temps``). Light on purpose: the CLI imports this before torch.
"""

import os
import signal
import stat
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Literal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Phase = Literal["starting", "running", "stopping"]
_phase: Phase = "running"      # outside ``stop_signals`` (a library caller) nothing exits early
_requested = 0                 # the stop signal received while running, 0 for none
_deferred = False              # inside ``deferred``: a stop signal is recorded, raised at a safe point


class Interrupted(KeyboardInterrupt):
    """A stop signal other than Ctrl-C; ``signal_name`` is e.g. ``SIGTERM``."""

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


def describe(e: KeyboardInterrupt) -> str:
    """What ended the command: ``Ctrl-C`` or the signal's name (a KeyboardInterrupt that stands
    for a stop signal carries ``signum`` and ``signal_name``)."""
    return getattr(e, "signal_name", "Ctrl-C")


def exit_code(e: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (Ctrl-C: 130)."""
    return 128 + int(getattr(e, "signum", signal.SIGINT))


def graceful() -> None:
    """Something that must be cleaned up exists now: stop signals raise instead of exiting."""
    global _phase
    if _phase == "starting":
        _phase = "running"


def stopping() -> None:
    """The command is stopping and cleaning up: further stop signals are ignored."""
    global _phase
    _phase = "stopping"


def raise_if_requested() -> None:
    """Raise the stop signal received while running, if its exception went astray."""
    if _requested and _phase == "running":
        raise _interrupt(_requested)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside the block a stop signal only records itself, and the block's loop raises it where it
    is safe (``raise_if_requested``, polled at least every few hundred milliseconds). A handler's
    exception can land anywhere, between a lock's acquire and its ``with`` block too, and leave the
    lock held: a render hung so, its decoder thread waiting for good on a frame-ring lock that the
    main thread kept while it joined that thread."""
    global _deferred
    before, _deferred = _deferred, True
    try:
        yield
    finally:
        _deferred = before


@contextmanager
def stop_signals() -> Iterator[None]:
    """Handle the stop signals as above while the block runs (main thread only)."""
    global _phase, _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _phase, _requested = "starting", 0
    previous = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _phase, _requested = "running", 0


def _interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def _handle(signum: int, frame) -> None:
    global _requested
    if signum == signal.SIGHUP:
        _leave_terminal()
    if _phase == "stopping" or _requested:
        return
    if _phase == "starting":
        _exit_now(signum)
    _requested = signum
    if _deferred:
        return
    raise _interrupt(signum)


def _exit_now(signum: int) -> None:
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    try:
        sys.stdout.flush()
        sys.stderr.write(f"dynastream: {how}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)


def _leave_terminal() -> None:
    """After a hang-up, writing to the terminal fails (EIO) and would abort the cleanup: output
    that went to a terminal goes to /dev/null from now on (pipes and files are kept)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
            except OSError:
                pass
    finally:
        os.close(devnull)
