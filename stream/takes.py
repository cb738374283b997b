"""The recordings of one live session (main thread): r starts a take and stops it; each take's
writer thread (``stream.sinks.Take``) finishes its files in the background while the session goes
on, and the outcome is told once they are written."""

import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from dynastream.nets.errors import DynastreamError
from dynastream.stream.ring import Frame
from dynastream.stream.sinks import Take


class Takes:
    """``record``: the first take's file (--record), later ones numbered beside it; without it,
    takes are named by the time in ``save_dir``. ``message`` tells the performer."""

    def __init__(self, record: Optional[str], save_dir: str, size_wh: tuple[int, int], fps: float,
                 message: Callable[[str], None]):
        self.record, self.save_dir = record, save_dir
        self.size_wh, self.fps = size_wh, fps
        self._message = message
        self._take: Optional[Take] = None
        self._finishing: list[Take] = []
        self._count = 0
        self.frames = 0                  # frames written by the takes stopped so far
        self.files: list[str] = []       # what they wrote: video, keyframes, ...

    @property
    def recording(self) -> bool:
        return self._take is not None

    def toggle(self, sites: tuple[str, ...]) -> None:
        if self._take is None:
            self.start(sites)
        else:
            self.stop()

    def start(self, sites: tuple[str, ...]) -> None:
        """A new take; the first one of --record raises if it cannot start (before any frame)."""
        target = self._next_path()
        try:
            self._take = Take(target, self.size_wh, sites, self.fps)
        except DynastreamError as e:
            if self._count == 1 and self.record is not None:
                raise
            self._message(f"cannot record: {e}")
            return
        self._message(f"recording {target}")

    def stop(self, quiet: bool = False) -> None:
        take, self._take = self._take, None
        take.stop()
        self._finishing.append(take)
        self.frames += take.frames
        if not quiet:
            self._message(f"saving {take.target} ...")

    def push(self, frame: Frame) -> None:
        """A frame shown while recording; a model with other tuning sites ends the take (its α
        track cannot hold them), as a writer that failed does."""
        take = self._take
        if frame.alpha.shape[0] != take.n_sites or not take.push(frame):
            self.stop()

    def finished(self, wait: bool = False) -> Iterator[tuple[str, bool]]:
        """(outcome, failed) of each take whose files are done (``wait``: of every take)."""
        for take in list(self._finishing):
            if wait:
                take.thread.join()
            if not take.thread.is_alive():
                self._finishing.remove(take)
                if take.result is not None and take.result[1] is not None:
                    self.files += [str(p) for p in take.result]
                yield take.outcome(), take.error is not None

    @property
    def finishing(self) -> bool:
        return bool(self._finishing)

    def _next_path(self) -> Path:
        self._count += 1
        if self.record is not None:
            base = Path(self.record)
            if self._count == 1:
                return base
        else:
            base = Path(self.save_dir) / f"dynastream-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
            if not base.exists():
                return base
        n = 2
        while (path := base.with_name(f"{base.stem}-{n}{base.suffix}")).exists():
            n += 1
        return path
