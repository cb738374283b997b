"""Ways out: every place a shown frame goes is a ``Sink`` behind its own ring and thread.

```
 main thread: out_ring --> WindowSink (pygame must stay here)
                       +-> SinkThread(ring "block")  --> Take (recorder: every frame)
                       +-> SinkThread(ring "latest") --> web preview, virtual camera, ...
```

``SinkThread.offer`` copies the frame into a slot of the sink's own ring and returns: a ``latest``
ring overwrites the oldest unread frame when the sink falls behind (a drop, counted per sink), so a
slow sink never holds up the display or inference, and a sink that raised is marked dead and
skipped from then on (its offers count as drops). The recorder's ring blocks instead: a take keeps
every frame, and the display waits for the encoder only when its ring is full.
"""

import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dynastream.nets.errors import DynastreamError
from dynastream.stream.ring import Frame, FrameRing, Policy
from dynastream.stream.writer import Recorder

LATEST_SLOTS = 2     # a streamed sink's ring: the frame being written and the newest one waiting
RECORD_SLOTS = 8     # frames the recording ring absorbs before the display waits for the writer


class StageError(DynastreamError):
    """A way in or out that cannot start (a port in use, a missing backend)."""


class Sink:
    """A way out. ``write`` runs on the sink's own thread (the window's: the main thread) with a
    frame it may read until it returns; ``close`` ends it once no more frames come; ``abort``
    replaces ``close`` after ``write`` raised."""

    name = "sink"

    def write(self, frame: Frame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.close()

    def describe(self) -> str:
        """The HUD's word for it while it is live (a web page adds its viewer count)."""
        return self.name

    def extra_stats(self) -> dict:
        """Counts of its own for the summary's JSON."""
        return {}


class SinkThread:
    """A sink fed through its own ring by its own thread."""

    def __init__(self, sink: Sink, shape_hwc: tuple[int, int, int], n_alpha: int, policy: Policy = "latest",
                 slots: int = LATEST_SLOTS, notice: Optional[Callable[[str], None]] = None):
        self.sink = sink
        self.name = sink.name
        self.policy = policy
        self.notice = notice
        self.ring = FrameRing(slots, shape_hwc, policy, n_alpha=n_alpha)
        self.offered = 0          # frames handed to offer()
        self.written = 0          # frames the sink finished writing
        self.refused = 0          # offers after the sink died, or of a frame it cannot hold
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._loop, name=f"sink-{sink.name}", daemon=True)
        self.thread.start()

    @property
    def live(self) -> bool:
        return self.error is None and self.thread.is_alive()

    @property
    def dropped(self) -> int:
        """Frames this sink never wrote: overwritten unread in its ring or refused; once it failed,
        every frame offered and not written (the one it failed on, those still queued)."""
        if self.error is not None:
            return self.offered - self.written
        return self.ring.dropped + self.refused

    def _loop(self) -> None:
        try:
            while (frame := self.ring.acquire_read()) is not None:
                try:
                    self.sink.write(frame)
                finally:
                    self.ring.release(frame)
                self.written += 1
            self.sink.close()
        except BaseException as e:
            self.error = e
            self.ring.close()   # offers stop at once
            try:
                self.sink.abort()
            except Exception as cleanup:   # a device that failed may fail to close too; the first error is the news
                e.add_note(f"closing it failed as well: {cleanup}")
            if self.notice is not None:
                self.notice(f"output {self.name} stopped: {e}")

    def offer(self, frame: Frame) -> bool:
        """Queue a copy of ``frame``; False (and a drop) if the sink is dead or the frame does not
        fit its ring (another model's site count). Only a ``block`` ring ever waits."""
        self.offered += 1
        if self.error is not None or frame.rgb_hwc_u8.shape != self.ring.shape_hwc:
            self.refused += 1
            return False
        slot = self.ring.acquire_write()
        if slot is None:
            self.refused += 1
            return False
        np.copyto(slot.rgb_hwc_u8, frame.rgb_hwc_u8)
        slot.copy_meta_from(frame)
        if slot.alpha.shape != frame.alpha.shape:
            slot.alpha = np.zeros_like(frame.alpha)   # only after a model with another site count
        slot.alpha[:] = frame.alpha
        self.ring.commit(slot)
        return True

    def stop(self) -> None:
        """No more frames: the sink writes what is queued, then closes (in its thread)."""
        self.ring.close()

    def join(self, timeout: Optional[float] = None) -> None:
        self.thread.join(timeout)

    def stats(self) -> dict:
        return {"written": self.written, "dropped": self.dropped, "failed": self.error is not None,
                "error": None if self.error is None else str(self.error), **self.sink.extra_stats()}


class WindowSink(Sink):
    """The pygame window as a sink. pygame must stay on the main thread, so this one is written to
    inline by the main loop; its ring is the pipeline's output ring (drops there are its drops)."""

    name = "window"

    def __init__(self, window, hud, original_of: Callable[[Frame], Optional[np.ndarray]]):
        self.window, self.hud, self.original_of = window, hud, original_of

    def write(self, frame: Frame) -> None:
        self.window.show(frame.rgb_hwc_u8, self.original_of(frame), self.hud)

    def close(self) -> None:
        self.window.close()


class _RecorderSink(Sink):
    name = "record"

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.result: Optional[tuple[Path, Optional[Path]]] = None

    def write(self, frame: Frame) -> None:
        self.recorder.write(frame)

    def close(self) -> None:
        self.result = self.recorder.close()

    def abort(self) -> None:
        self.recorder.abort()


class Take:
    """One recording: the frames shown while it is on go through a blocking ring (nothing lost) to
    a writer thread that encodes them with ``stream.writer.Recorder`` (the video and, next to it,
    the α track as performed). ``stop`` lets the writer finish the files in the background."""

    def __init__(self, target: Path, size_wh: tuple[int, int], sites: tuple[str, ...], fps: float):
        w, h = size_wh
        self.target = target
        self.n_sites = len(sites)
        self._sink = _RecorderSink(Recorder(target, w, h, sites, fps=fps))
        self._runner = SinkThread(self._sink, (h, w, 3), self.n_sites, "block", RECORD_SLOTS)
        self.thread = self._runner.thread
        self.frames = 0

    @property
    def result(self) -> Optional[tuple[Path, Optional[Path]]]:
        return self._sink.result

    @property
    def error(self) -> Optional[BaseException]:
        return self._runner.error

    def push(self, frame: Frame) -> bool:
        """Queue a copy of a shown frame; waits while the ring is full. False once the writer failed."""
        if not self._runner.offer(frame):
            return False
        self.frames += 1
        return True

    def stop(self) -> None:
        self._runner.stop()

    def outcome(self) -> str:
        if self.error is not None:
            return f"recording {self.target} failed and was not kept: {self.error}"
        video, keyframes = self.result
        if keyframes is None:
            return f"recording {video}: no frames, nothing written"
        return f"recorded {video} ({self.frames} frames) and its alpha track {keyframes}"


class VirtualCamSink(Sink):
    """A virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS Virtual Camera on Windows and
    macOS) that video-call and streaming programs open like a webcam."""

    name = "virtual-cam"

    def __init__(self, size_wh: tuple[int, int], fps: float):
        try:
            import pyvirtualcam
        except ImportError:
            raise StageError("--virtual-cam needs pyvirtualcam: pip install 'dynastream[stage]'") from None
        w, h = size_wh
        try:
            self.camera = pyvirtualcam.Camera(w, h, fps, fmt=pyvirtualcam.PixelFormat.RGB)
        except RuntimeError:
            raise StageError("--virtual-cam found no virtual camera device: on Linux install and load v4l2loopback "
                             "(sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback exclusive_caps=1), "
                             "on Windows or macOS install OBS Studio, whose Virtual Camera it feeds") from None
        self.device = self.camera.device

    def write(self, frame: Frame) -> None:
        self.camera.send(frame.rgb_hwc_u8)

    def close(self) -> None:
        self.camera.close()
