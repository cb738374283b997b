"""Frame sources. Each fills ring slots in place (``read_into``) and ``pump`` runs one in a thread.

So far: video files and URLs decoded with PyAV. Camera, images and the demo clip join them with
the live pipeline.
"""

import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Optional, Protocol

import av
import numpy as np

from nets.errors import DynastreamError
from stream.ring import Frame, FrameRing


class SourceError(DynastreamError):
    pass


class Source(Protocol):
    name: str
    shape_hwc: tuple[int, int, int]
    fps: float

    def read_into(self, frame: Frame) -> bool:
        """Fill ``frame`` in place with the next frame; False at the end of the stream."""

    def close(self) -> None: ...


class VideoFileSource:
    """A video file or URL decoded with PyAV.

    ``pace`` releases frames at the file's own rate (live playback); without it frames come as
    fast as they decode (render). ``loop`` restarts at the end, with times continuing to grow.
    ``time_s`` and ``pts`` keep the file's own timestamps, so variable frame rate stays variable.
    """

    def __init__(self, path: str, pace: bool = False, loop: bool = False):
        self.name = str(path)
        is_url = "://" in self.name
        if not is_url and not Path(path).is_file():
            raise SourceError(f"video file {path} does not exist")
        try:
            self._container = av.open(self.name)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise SourceError(f"cannot open {path} as a video ({_reason(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{path} has no video stream")
        self.stream = self._container.streams.video[0]
        self.stream.thread_type = "AUTO"
        ctx = self.stream.codec_context
        if not ctx.width or not ctx.height:
            self._container.close()
            raise SourceError(f"{path} has a video stream with no frame size (corrupt or unsupported)")
        self.shape_hwc = (ctx.height, ctx.width, 3)
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        self.frame_count = self.stream.frames or 0     # 0 when the container does not say
        self.pace, self.loop = pace, loop
        self._decoder = self._container.decode(self.stream)
        self._index = 0
        self._loop_offset_s = 0.0
        self._last_time_s = 0.0
        self._started_at: Optional[float] = None

    def read_into(self, frame: Frame) -> bool:
        decoded = self._next_decoded()
        if decoded is None:
            return False
        # PyAV allocates the converted array; it is copied once into the preallocated slot.
        rgb = decoded.to_ndarray(format="rgb24")
        if rgb.shape != self.shape_hwc:
            raise SourceError(f"{self.name} changes frame size mid-stream ({rgb.shape[1]}x{rgb.shape[0]}), "
                              "which is not supported")
        frame.rgb_hwc_u8[...] = rgb
        pts = decoded.pts if decoded.pts is not None else -1
        time_s = float(decoded.time) if decoded.time is not None else self._index / self.fps
        self._last_time_s = time_s
        frame.index, frame.pts, frame.time_s = self._index, pts, time_s + self._loop_offset_s
        self._index += 1
        if self.pace:
            self._wait_until(frame.time_s)
        frame.captured_at = time.perf_counter()
        return True

    def _next_decoded(self):
        for attempt in range(2):
            try:
                return next(self._decoder)
            except StopIteration:
                if not self.loop or attempt == 1 or self._index == 0:
                    return None
                self._loop_offset_s += self._last_time_s + 1.0 / self.fps
                self._container.seek(0, stream=self.stream)
                self._decoder = self._container.decode(self.stream)
            except (av.error.FFmpegError, ValueError) as e:
                raise SourceError(f"{self.name} is corrupt at frame {self._index} ({_reason(e)})") from None
        return None

    def _wait_until(self, time_s: float) -> None:
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now - time_s
        delay = self._started_at + time_s - now
        if delay > 0:
            time.sleep(delay)

    def close(self) -> None:
        self._container.close()


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().rstrip(".").split("\n")[0]


def pump(source: Source, ring: FrameRing, stop: threading.Event, errors: list) -> None:
    """Producer loop for a thread: fill ring slots until the stream ends, ``stop`` is set or the
    consumer closes the ring. A SourceError is appended to ``errors`` for the consumer to raise;
    the ring is always closed at the end."""
    try:
        while not stop.is_set():
            frame = ring.acquire_write(timeout=0.1)
            if frame is None:
                if ring.closed:
                    break
                continue
            try:
                ok = source.read_into(frame)
            except BaseException:
                ring.cancel_write(frame)
                raise
            if not ok:
                ring.cancel_write(frame)
                break
            ring.commit(frame)
    except Exception as e:  # handed to the consumer thread, which raises it
        errors.append(e)
    finally:
        ring.close()
