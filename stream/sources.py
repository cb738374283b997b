"""Frame sources. Each fills ring slots in place (``read_into``) and ``pump`` runs one in a thread.

Video files and URLs (PyAV), cameras (OpenCV), images and folders of images, and the built-in demo
clip; ``open_source`` picks one from what the user typed.
"""

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Protocol, Union

import av
import cv2
import numpy as np

from dynastream.nets.errors import DynastreamError
from dynastream.stream import avlog
from dynastream.stream.avlog import DAMAGE_POLICIES, DamagePolicy
from dynastream.stream.ring import Frame, FrameRing


class SourceError(DynastreamError):
    pass


class Source(Protocol):
    name: str
    shape_hwc: tuple[int, int, int]
    fps: float

    def read_into(self, frame: Frame) -> bool:
        """Fill ``frame`` in place with the next frame; False at the end of the stream."""

    def close(self) -> None: ...


@dataclass
class Damage:
    """What a damaged input cost. ``left_out``: frames that decoded damaged (or packets that did
    not decode), and the frames after them that predict from damaged pictures, up to the next
    keyframe; ``missing``: frames the file should hold that never came (cut short, bytes the
    demuxer skipped), counted from the file's frame index, or estimated from its duration where it
    has none (``missing_exact`` False)."""

    errors: int = 0              # damaged spots: packets refused, or decoded with an error logged
    left_out: int = 0
    missing: int = 0
    missing_exact: bool = True
    first_s: Optional[float] = None
    first_frame: int = -1
    reason: str = ""

    @property
    def frames(self) -> int:
        return self.left_out + self.missing

    def summary(self) -> str:
        if self.first_s is None:
            return ""
        about = "" if self.missing_exact or not self.missing else "about "
        spots = f"{self.errors} decode error{'' if self.errors == 1 else 's'}"
        return (f"input damaged from {self.first_s:.1f} s (frame {self.first_frame}: {self.reason}; {spots}): "
                f"{about}{self.frames} frames could not be decoded and are left out")


@dataclass(frozen=True)
class Span:
    """A part of a video: the frames from ``start_pts`` (a keyframe's, in the stream's time base) up
    to, not including, ``end_pts`` (None: to the end). ``first_index`` is the index of its first frame
    in the whole video and ``frames`` the number of frames it holds, as the packets count them."""

    start_pts: int
    end_pts: Optional[int]
    first_index: int
    frames: int


class VideoFileSource:
    """A video file or URL decoded with PyAV.

    ``pace`` releases frames at the file's own rate (live playback); without it frames come as
    fast as they decode (render). ``loop`` restarts at the end, with times continuing to grow.
    ``time_s`` and ``pts`` keep the file's own timestamps, so variable frame rate stays variable.

    Damage (a packet the decoder refuses, an error the decoder or demuxer logs while concealing or
    skipping bytes, a frame marked corrupt): with ``damaged="stop"`` the frames decoded before it
    are delivered and then a SourceError names the time and frame; with ``"skip"`` damaged frames
    and those that depend on them (up to the next keyframe) are left out and counted in ``damage``,
    and ``notice`` hears of the first.

    ``span`` decodes only that part of the file, from the keyframe it starts at, with the frame
    indices and timestamps the frames have in the whole file (``stream.scale`` splits a video).
    """

    def __init__(self, path: str, pace: bool = False, loop: bool = False, damaged: DamagePolicy = "stop",
                 notice: Optional[Callable[[str], None]] = None, span: Optional[Span] = None):
        if damaged not in DAMAGE_POLICIES:
            raise ValueError(f"damaged must be one of {DAMAGE_POLICIES}, not {damaged!r}")
        if span is not None and loop:
            raise ValueError("a span of a video cannot loop")
        self.name = str(path)
        is_url = "://" in self.name
        if not is_url and not Path(path).is_file():
            raise SourceError(f"video file {path} does not exist")
        avlog.install()
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
        self.damaged: DamagePolicy = damaged
        self.damage = Damage()
        self._notice = notice
        self._log_names = {ctx.name, ctx.codec.name}   # how the decoder signs its log lines
        avlog.take_global(())                           # what an earlier decoder logged is not ours
        self._packets = self._container.demux(self.stream)
        self._decoded: deque = deque()   # decoded frames not handed out yet
        self._ended = False              # the demuxer is done (or damage stopped it)
        self._stop_error: Optional[SourceError] = None
        self._skipping = False           # damage seen: frames are left out up to the next keyframe
        self._pass_seen = 0              # frames decoded or lost in this pass over the file
        self._index = 0
        self._loop_offset_s = 0.0
        self._last_time_s = 0.0
        self._pacer = _Pacer()
        self.span = span                 # frame_count stays the whole file's: render picks its backend by it
        if span is not None:
            self._index = span.first_index
            if span.first_index:
                self._container.seek(span.start_pts, stream=self.stream)   # to the keyframe at (or before) it
                self._packets = self._container.demux(self.stream)

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
            self._pacer.wait_until(frame.time_s)
        frame.captured_at = time.perf_counter()
        return True

    def _next_decoded(self):
        decoded = self._next_in_file()
        span = self.span
        if span is None:
            return decoded
        while decoded is not None and decoded.pts is not None and decoded.pts < span.start_pts:
            decoded = self._next_in_file()     # a seek that landed on an earlier keyframe
        if decoded is not None and span.end_pts is not None and decoded.pts is not None and \
                decoded.pts >= span.end_pts:
            self._ended, decoded = True, None  # frames come in presentation order: the span is done
            self._decoded.clear()
            self._stop_error = None            # damage past the span is the next span's to report
        return decoded

    def _next_in_file(self):
        while not self._decoded:
            if not self._ended:
                self._decode_packet()
                continue
            if self._stop_error is not None:
                raise self._stop_error
            if not self.loop or self._pass_seen == 0:
                return None
            self._restart()
        return self._decoded.popleft()

    def _restart(self) -> None:
        self._loop_offset_s += self._last_time_s + 1.0 / self.fps
        self._container.seek(0, stream=self.stream)
        self._packets = self._container.demux(self.stream)
        self._ended = self._skipping = False
        self._pass_seen = 0

    def _decode_packet(self) -> None:
        """Demux and decode one packet, queueing the frames it completes; notes any damage."""
        packet, frames, failed = None, [], ""
        with avlog.Capture() as log:
            try:
                packet = next(self._packets, None)
            except (av.error.FFmpegError, OSError, ValueError) as e:
                failed = _reason(e)
            if packet is not None:
                try:
                    frames = packet.decode()
                except (av.error.FFmpegError, ValueError) as e:
                    failed = _reason(e)
        lines = log.lines + avlog.take_global(self._log_names)
        lost = 1 if failed and packet is not None else 0   # a packet that did not decode: a frame
        self._pass_seen += lost
        if packet is None:
            self._ended = True
        damaged = bool(failed or lines) or any(f.is_corrupt for f in frames)
        if damaged:
            reason = failed or (lines[0] if lines else "the decoder marks a frame corrupt")
            self._on_damage(reason, packet, frames, lost)
            if self._stop_error is not None:
                return
        for f in frames:
            self._pass_seen += 1
            if self._skipping and f.key_frame and not damaged:
                self._skipping = False
            if self._skipping or f.is_corrupt:
                self.damage.left_out += 1
            else:
                self._decoded.append(f)
        if self._ended and not self.loop and self.damage.first_s is not None:
            self._count_missing()

    def _on_damage(self, reason: str, packet, frames: list, lost: int) -> None:
        if frames and frames[0].time is not None:
            time_s = float(frames[0].time)
        elif packet is not None and packet.pts is not None:
            time_s = float(packet.pts * packet.time_base)
        else:
            time_s = self._last_time_s + (1.0 / self.fps if self._index else 0.0)
        time_s += self._loop_offset_s
        at_frame = self._index + len(self._decoded)
        where = f"{self.name} is damaged at {time_s:.1f} s (frame {at_frame})"
        if self.damaged == "stop":
            self._stop_error = SourceError(f"{where}: {reason}; --skip-damaged renders it without the damaged frames")
            self._ended = True
            return
        if self.damage.first_s is None:
            self.damage.first_s, self.damage.first_frame, self.damage.reason = time_s, at_frame, reason
            if self._notice is not None:
                self._notice(f"{where}: {reason}; damaged frames are left out")
        self._skipping = True
        self.damage.errors += 1
        self.damage.left_out += lost

    def _count_missing(self) -> None:
        """Frames the file should hold beyond those it gave (decoded or lost) in this pass."""
        expected = self.frame_count
        if not expected:
            if self.stream.duration is not None:
                duration_s = float(self.stream.duration * self.time_base)
            elif self._container.duration is not None:
                duration_s = self._container.duration / av.time_base
            else:
                return
            expected = round(duration_s * self.fps)
            self.damage.missing_exact = False
        self.damage.missing += max(0, expected - self._pass_seen)

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


class _Pacer:
    """Releases frames on a stream clock: ``wait_until(t)`` returns at start + t (wall clock)."""

    def __init__(self):
        self._started_at: Optional[float] = None

    def wait_until(self, time_s: float) -> None:
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now - time_s
        delay = self._started_at + time_s - now
        if delay > 0:
            time.sleep(delay)


class CameraError(SourceError):
    def __init__(self, message: str, tried: str, reason: str):
        super().__init__(message)
        self.tried, self.reason = tried, reason


class CameraSource:
    """A camera opened with OpenCV by index (0) or device path (/dev/video0).

    A reader thread grabs frames as fast as the camera delivers them and keeps only the newest, so
    a slow consumer never sees stale buffered frames: ``read_into`` waits for a frame newer than
    the one it handed out last. A camera that stops delivering for ``stall_timeout_s`` ends the
    stream (``end_reason`` says why) instead of hanging the pipeline. OpenCV also opens video files
    through the same call, which the tests use in place of camera hardware.
    """

    def __init__(self, device: Union[int, str], size_wh: Optional[tuple[int, int]] = None,
                 fps: Optional[float] = None, open_timeout_s: float = 3.0, stall_timeout_s: float = 2.0):
        self.name = f"camera {device}"
        tried = f"/dev/video{device}" if isinstance(device, int) and sys.platform.startswith("linux") \
            else (f"index {device}" if isinstance(device, int) else str(device))
        self.tried = tried
        self.stall_timeout_s = stall_timeout_s
        self.end_reason = ""
        if isinstance(device, str) and "://" not in device and not Path(device).exists():
            self._fail(device, tried, "no such device")
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we say it in one sentence
        try:
            self._cap = cv2.VideoCapture(device)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not self._cap.isOpened():
            self._cap.release()
            self._fail(device, tried, "no camera there, or it is busy")
        if size_wh is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size_wh[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size_wh[1])
        if fps is not None:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._rgb_hwc_u8: Optional[np.ndarray] = None
        self._seq = 0            # frames the reader has grabbed
        self._handed = 0         # the reader's count at the last frame handed out
        self._grabbed_at = 0.0
        self._t0: Optional[float] = None
        self._ended = False
        self._reader = threading.Thread(target=self._read_loop, name="camera-reader", daemon=True)
        self._reader.start()
        with self._cond:
            self._cond.wait_for(lambda: self._seq > 0 or self._ended, timeout=open_timeout_s)
            first = self._rgb_hwc_u8
        if first is None:
            self.close()
            why = "it opened but delivered no frame" + ("" if self._ended else f" within {open_timeout_s:g} s")
            self._fail(device, tried, why + ", so another program may be using it")
        self.shape_hwc = first.shape
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and 0 < reported < 1000 else float(fps or 30.0)

    @staticmethod
    def _fail(device, tried: str, reason: str):
        raise CameraError(f"could not open camera {device} (tried {tried} with OpenCV: {reason}); "
                          "use --source demo for the built-in clip, or --source FILE", tried, reason)

    def _read_loop(self) -> None:
        bgr: Optional[np.ndarray] = None
        try:
            while not self._stop.is_set():
                ok, img = self._cap.read(bgr)  # reuses ``bgr`` once its shape is known
                if not ok or img is None:
                    self.end_reason = f"{self.name} stopped delivering frames"
                    break
                bgr = img
                now = time.perf_counter()
                with self._cond:
                    if self._rgb_hwc_u8 is None:
                        self._rgb_hwc_u8 = np.empty(img.shape, np.uint8)
                        self._t0 = now
                    elif img.shape != self._rgb_hwc_u8.shape:
                        self.end_reason = f"{self.name} changed its frame size mid-stream"
                        break
                    cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=self._rgb_hwc_u8)
                    self._seq += 1
                    self._grabbed_at = now
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def read_into(self, frame: Frame) -> bool:
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > self._handed or self._ended, self.stall_timeout_s):
                self.end_reason = f"{self.name} stopped delivering frames (none for {self.stall_timeout_s:g} s)"
                return False
            if self._seq == self._handed:  # ended, nothing new
                return False
            np.copyto(frame.rgb_hwc_u8, self._rgb_hwc_u8)
            self._handed = self._seq
            frame.index, frame.pts = self._seq - 1, -1
            frame.time_s = self._grabbed_at - self._t0
            frame.captured_at = self._grabbed_at
        return True

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=2.0)
        if not self._reader.is_alive():  # a reader stuck in a driver call keeps the device open
            self._cap.release()


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def decode_image_file(path: Path, flags: int, error: type = SourceError, what: str = "") -> np.ndarray:
    """An image file decoded by OpenCV (``flags``: ``cv2.IMREAD_COLOR`` gives BGR,
    ``cv2.IMREAD_GRAYSCALE`` gray); a file that cannot be read or decoded is one sentence as
    ``error``, naming it as ``what`` (e.g. "alpha map ") and its path."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise error(f"cannot read {what}{path} ({e.strerror or e})") from None
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise error(f"cannot read {what}{path} as an image (corrupt or not an image)")
    return img


def _read_image_bgr(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"cannot read {path} as an image")
    return img


class ImageSource:
    """One image (a still that repeats for as long as the stream runs) or a folder of images (played
    in name order at ``fps``, looping with ``loop``). Images of another size than the first (or
    than ``size_wh``) are resized to it."""

    def __init__(self, path: str, fps: Optional[float] = None, loop: bool = False,
                 size_wh: Optional[tuple[int, int]] = None, pace: bool = True):
        p = Path(path)
        self.name = str(path)
        if p.is_dir():
            self._files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not self._files:
                raise SourceError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        elif p.is_file():
            self._files = [p]
        else:
            raise SourceError(f"image {path} does not exist")
        first = _read_image_bgr(self._files[0])
        w, h = size_wh or (first.shape[1], first.shape[0])
        self.shape_hwc = (h, w, 3)
        self.fps = float(fps or 30.0)
        self.still = len(self._files) == 1
        self.loop, self.pace = loop, pace
        self._bgr_hwc_u8 = np.empty(self.shape_hwc, np.uint8)
        self._still_rgb: Optional[np.ndarray] = None
        if self.still:
            self._still_rgb = np.empty(self.shape_hwc, np.uint8)
            self._to_rgb(first, self._still_rgb)
        self._index = 0
        self._pacer = _Pacer()
        self.end_reason = ""

    def _to_rgb(self, bgr: np.ndarray, out_hwc_u8: np.ndarray) -> None:
        if bgr.shape != self.shape_hwc:
            bgr = cv2.resize(bgr, (self.shape_hwc[1], self.shape_hwc[0]), dst=self._bgr_hwc_u8,
                             interpolation=cv2.INTER_AREA)
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out_hwc_u8)

    def read_into(self, frame: Frame) -> bool:
        i = self._index
        if self.still:
            np.copyto(frame.rgb_hwc_u8, self._still_rgb)
        else:
            if i >= len(self._files) and not self.loop:
                return False
            self._to_rgb(_read_image_bgr(self._files[i % len(self._files)]), frame.rgb_hwc_u8)
        frame.index, frame.pts, frame.time_s = i, i, i / self.fps
        self._index += 1
        if self.pace:
            self._pacer.wait_until(frame.time_s)
        frame.captured_at = time.perf_counter()
        return True

    def close(self) -> None:
        pass


DEMO_IMAGE = Path(__file__).resolve().parent / "assets" / "demo.jpg"
DEMO_SIZE_WH = (640, 480)


class DemoSource:
    """The built-in moving clip: a slow pan and zoom over a picture shipped in the package
    (``stream/assets/demo.jpg``, see its CREDITS.md). Endless, deterministic in the frame index."""

    def __init__(self, size_wh: Optional[tuple[int, int]] = None, fps: Optional[float] = None, pace: bool = True):
        self.name = "demo"
        w, h = size_wh or DEMO_SIZE_WH
        self.shape_hwc = (h, w, 3)
        self.fps = float(fps or 30.0)
        self.pace = pace
        self._picture_rgb = cv2.cvtColor(_read_image_bgr(DEMO_IMAGE), cv2.COLOR_BGR2RGB)
        ph, pw = self._picture_rgb.shape[:2]
        fit = min(pw / w, ph / h)                      # the largest crop of the output's aspect
        self._crop_wh = (w * fit, h * fit)
        self._affine = np.zeros((2, 3), np.float64)    # output pixel -> picture pixel
        self._index = 0
        self._pacer = _Pacer()
        self.end_reason = ""

    def _place(self, t: float) -> None:
        ph, pw = self._picture_rgb.shape[:2]
        zoom = 1.15 + 0.3 * (0.5 - 0.5 * math.cos(2 * math.pi * t / 14.0))
        cw, ch = self._crop_wh[0] / zoom, self._crop_wh[1] / zoom
        cx = pw / 2 + (pw - cw) / 2 * 0.9 * math.sin(2 * math.pi * t / 19.0)
        cy = ph / 2 + (ph - ch) / 2 * 0.9 * math.sin(2 * math.pi * t / 23.0 + 1.0)
        s = cw / self.shape_hwc[1]
        self._affine[0, 0] = self._affine[1, 1] = s
        self._affine[0, 2], self._affine[1, 2] = cx - cw / 2, cy - ch / 2

    def read_into(self, frame: Frame) -> bool:
        i = self._index
        t = i / self.fps
        self._place(t)
        cv2.warpAffine(self._picture_rgb, self._affine, (self.shape_hwc[1], self.shape_hwc[0]),
                       dst=frame.rgb_hwc_u8, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REFLECT)
        frame.index, frame.pts, frame.time_s = i, i, t
        self._index += 1
        if self.pace:
            self._pacer.wait_until(t)
        frame.captured_at = time.perf_counter()
        return True

    def close(self) -> None:
        pass


class ClockSource:
    """Frames without pixels at ``fps``, for a picture a model makes by itself (the Dynamic DCGAN's
    latent walk, stream.latent). ``time_s`` advances one frame period per frame while ``paused`` is
    off and holds while it is on, so pausing freezes the walk and resuming continues it from there."""

    shape_hwc = (1, 1, 3)

    def __init__(self, fps: Optional[float] = None, name: str = "latent walk"):
        self.name = name
        self.fps = float(fps or 30.0)
        self.paused = False
        self.end_reason = ""
        self._ticks = 0          # frames delivered (paces the clock on the wall clock)
        self._steps = 0          # frame periods the walk has advanced
        self._pacer = _Pacer()

    def read_into(self, frame: Frame) -> bool:
        self._pacer.wait_until(self._ticks / self.fps)
        self._ticks += 1
        frame.index, frame.pts, frame.time_s = self._steps, self._steps, self._steps / self.fps
        if not self.paused:
            self._steps += 1
        frame.captured_at = time.perf_counter()
        return True

    def close(self) -> None:
        pass


def _camera_device(spec: str) -> Optional[Union[int, str]]:
    if spec.isdigit():
        return int(spec)
    if spec.startswith("/dev/video"):
        return spec
    return None


def open_source(spec: Optional[str], *, size_wh: Optional[tuple[int, int]] = None, fps: Optional[float] = None,
                loop: bool = False, notice: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> Source:
    """The source a user names: ``demo``; a camera index (``0``) or device path (``/dev/video0``);
    a video file or URL (paced at its frame rate, ``loop`` restarts it); an image or a folder of
    images. ``None`` tries camera 0 and, if none opens, says so through ``notice`` and uses the demo
    clip. ``size_wh`` and ``fps`` are what to ask of a camera, the demo and images."""
    if spec is None:
        try:
            return CameraSource(0, size_wh, fps)
        except CameraError as e:
            notice(f"no camera found ({e.tried}: {e.reason}), showing the built-in demo clip (--source demo)")
            return DemoSource(size_wh, fps)
    if spec == "demo":
        return DemoSource(size_wh, fps)
    device = _camera_device(spec)
    if device is not None:
        return CameraSource(device, size_wh, fps)
    path = Path(spec)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(spec, fps, loop, size_wh)
    if "://" not in spec and not path.exists():
        raise SourceError(f"source {spec} does not exist (not demo, a camera index, a file, a folder or a URL)")
    if size_wh is not None or fps is not None:
        raise SourceError("--input-size and --fps apply to cameras, images and the demo clip; a video file "
                          "plays at its own size and rate (use --size for the processing size)")
    return VideoFileSource(spec, pace=True, loop=loop, damaged="skip", notice=notice)
