"""Offline render: every frame of a video (or an image, or a folder of images) through the net,
each frame with its own α from a keyframe track (or from the input's audio: ``stream.audiotrack``),
and optionally an α map (``stream.alphamap``) that scales that α over the picture.

Video::

    decode thread --ring(block)--> main thread: batches of B frames, α per frame, Engine.run
                  --ring(block)--> encode thread: VideoWriter (timestamps kept, audio copied)

Nothing is dropped: both rings block. The main thread runs inference so that Ctrl-C (and SIGTERM,
SIGHUP: ``stream.signals``) lands there; any error or interrupt stops the threads and leaves the
target path untouched (see ``stream.writer``). A damaged input stops the render after the frames
decoded before the damage are written, or with ``skip_damaged`` is rendered without its damaged
frames, which are counted (``stream.sources.Damage``). Each stage's busy time is measured, so a run
says where its time went.
"""

import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, Union

import numpy as np

from dynastream import nets
from dynastream.nets.errors import DynastreamError
from dynastream.stream import signals
from dynastream.stream.alphamap import MapSource, open_map, parse_spec
from dynastream.stream.audiotrack import AudioOptions, audio_track
from dynastream.stream.engine import Engine, EngineConfig, render_backend
from dynastream.stream.keyframes import Key, Track, load_track
from dynastream.stream.ring import Frame, FrameRing
from dynastream.stream.sources import Damage, Span, VideoFileSource, decode_image_file, pump
from dynastream.stream.stabilize import Stabilizer
from dynastream.stream.writer import (
    VideoOptions,
    VideoWriter,
    check_output,
    check_video_name,
    temp_path,
    write_bytes_atomic,
)

InputKind = Literal["video", "image", "folder"]
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
PathLike = Union[str, os.PathLike]


class RenderError(DynastreamError):
    pass


class RenderInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a stop signal: ``signum``, ``signal_name``) with ``keep_partial``: what was
    rendered is kept at ``partial``."""

    def __init__(self, partial: Path, frames: int, cause: Optional[KeyboardInterrupt] = None):
        super().__init__(f"interrupted; the {frames} frames rendered before are kept in {partial}")
        self.partial, self.frames = partial, frames
        if hasattr(cause, "signum"):
            self.signum, self.signal_name = cause.signum, cause.signal_name


@dataclass(frozen=True)
class RenderConfig:
    model: str = nets.checkpoint.DEFAULT_MODEL
    alpha: Optional[float] = None            # constant α; with no keyframes either: mid-range
    keyframes: Optional[str] = None          # YAML/CSV track
    allow_extrapolation: bool = False
    size_wh: Optional[tuple[int, int]] = None
    scale: Optional[float] = None
    batch: int = 1
    device: str = "auto"
    video: VideoOptions = VideoOptions()
    keep_partial: bool = False
    skip_damaged: bool = False               # damaged input: leave those frames out (counted) instead of stopping
    fps: float = 25.0                        # a folder of images is a sequence at this rate (for t keys)
    alpha_map: Optional[str] = None          # an α map spec (stream.alphamap): image, video, radial, linear:ANGLE
    audio: Optional[AudioOptions] = None     # α follows the input's audio (stream.audiotrack)
    stabilize: float = 0.0                   # videos: stream.stabilize strength; 0 = off


@dataclass
class RenderStats:
    output: Path
    frames: int = 0
    wall_s: float = 0.0
    decode_s: float = 0.0      # busy time per stage (threads overlap, so they may sum past wall_s)
    infer_s: float = 0.0
    encode_s: float = 0.0
    size_wh: tuple[int, int] = (0, 0)
    audio: list[str] = field(default_factory=list)
    unit: str = "frame"        # "image" for an image or a folder of images
    damage: Damage = field(default_factory=Damage)   # input frames left out (--skip-damaged)
    audio_left_out: int = 0                          # damaged audio packets left out (--skip-damaged)

    @property
    def fps(self) -> float:
        """Frames (images) per second of the whole render stage: setup of the engine included."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        audio = f", audio: {', '.join(self.audio)}" if self.audio else ""
        count = f"{self.frames} {self.unit}{'' if self.frames == 1 else 's'}"
        if self.unit == "frame":
            rate = f"{_rate(self.fps)} fps; "
        else:   # one image: its time says it all
            rate = f"{_rate(self.fps)} images/s; " if self.frames != 1 else ""
        text = (f"{self.output}: {count} at {self.size_wh[0]}x{self.size_wh[1]} in {_seconds(self.wall_s)} "
                f"({rate}busy: decode {self.decode_s:.1f} s, inference {self.infer_s:.1f} s, "
                f"encode {self.encode_s:.1f} s{audio})")
        if self.damage.first_s is not None:
            text += f"; {self.damage.summary()}"
        if self.audio_left_out:
            text += f"; {self.audio_left_out} damaged audio packet{'' if self.audio_left_out == 1 else 's'} left out"
        return text


def _rate(per_s: float) -> str:
    """Two significant digits below 1 (0.043, not 0.0), one decimal above."""
    return f"{per_s:.2g}" if per_s < 1 else f"{per_s:.1f}"


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 1 else f"{s:.1f} s"


class Progress:
    """The render's bar on stderr: done / total, rate, ETA. It appears with the first finished step
    or after a second of a long one (a large image, a first batch that compiles), and is redrawn
    while a step runs so the elapsed time moves; an error before that prints only the error. On a
    pipe (CI logs) tqdm still writes, at most once a second, and the ticker every 5 s."""

    def __init__(self, total: Optional[int], unit: str, desc: str, show: bool = True,
                 tick_s: Optional[float] = None):
        self.total, self.unit, self.desc, self.show = total, unit, desc, show
        self.tty = sys.stderr.isatty()
        self.tick_s = tick_s or (1.0 if self.tty else 5.0)
        self._t0 = time.time()    # tqdm's clock
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="render-progress", daemon=True)
        if show:
            self._ticker.start()

    def _open(self):
        from tqdm import tqdm

        with self._lock:
            if self._bar is None:
                bar = tqdm(total=self.total, unit=self.unit, desc=self.desc, file=sys.stderr, dynamic_ncols=self.tty,
                           mininterval=0.1 if self.tty else 1.0, delay=1e-9)   # delay: no draw before the clock is set
                bar.delay = 0
                bar.start_t = bar.last_print_t = self._t0   # elapsed and rate count from the start of the work
                self._bar = bar
            return self._bar

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            self._open().refresh()

    def update(self, n: int = 1) -> None:
        if self.show:
            self._open().update(n)

    def complete(self) -> None:
        """The work is done: a total that was an estimate (a container that does not count its
        frames) becomes what was done, so the bar ends at 100 %."""
        if self._bar is not None and self._bar.total != self._bar.n:
            self._bar.total = self._bar.n
            self._bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()


def input_kind(path: PathLike) -> InputKind:
    path = Path(path)
    if not path.exists():
        raise RenderError(f"input {path} does not exist")
    if path.is_dir():
        return "folder"
    return "image" if path.suffix.lower() in IMAGE_EXTS else "video"


def alpha_track(net, alpha: Optional[float], keyframes: Optional[PathLike],
                allow_extrapolation: bool = False) -> Track:
    """The α per frame: a keyframe file, or a constant (by default the middle of the model's
    range, which for a dual model is the main net)."""
    lo, hi = net.alpha_range
    if keyframes is not None:
        if alpha is not None:
            raise RenderError("give either a constant alpha or a keyframe file, not both")
        return load_track(keyframes, net.sites, net.alpha_range, allow_extrapolation)
    value = (lo + hi) / 2 if alpha is None else float(alpha)
    if not np.isfinite(value):
        raise RenderError(f"alpha must be a finite number, not {value}")
    track = Track([Key("t", 0.0, np.full(len(net.sites), value, np.float32), "--alpha")], net.sites, "step",
                  name="--alpha")
    track.check_range(net.alpha_range, allow_extrapolation)
    return track


def output_size(in_hw: tuple[int, int], size_wh: Optional[tuple[int, int]], scale: Optional[float]
                ) -> Optional[tuple[int, int]]:
    if size_wh is not None and scale is not None:
        raise RenderError("give either a size or a scale, not both")
    if size_wh is not None:
        w, h = size_wh
        if w < 1 or h < 1:
            raise RenderError(f"the size must be at least 1x1, not {w}x{h}")
        return (w, h)
    if scale is not None:
        if not scale > 0:
            raise RenderError(f"the scale must be above 0, not {scale:g}")
        h, w = in_hw
        return (max(1, round(w * scale)), max(1, round(h * scale)))
    return None


def load_style_model(name: str):
    net = nets.load(name, "cpu")
    if net.kind != "style":
        raise RenderError(f"model {name} is a {net.kind} generator, not a style model: it cannot stylize a video")
    return net


def render(input_path: PathLike, output_path: PathLike, config: RenderConfig = RenderConfig(),
           progress: bool = False, notice: Optional[Callable[[str], None]] = None,
           span: Optional[Span] = None, frames_done: Optional[Callable[[int], None]] = None) -> RenderStats:
    """Render a video to a video, an image to an image or a folder of images to a folder.
    ``notice`` hears of temporary files that a killed earlier run left at the target (removed).
    ``span``: only that part of a video, without its audio (``stream.scale`` joins the parts);
    ``frames_done`` hears of each batch of video frames rendered (``stream.scale``'s progress)."""
    input_path, output_path = Path(input_path), Path(output_path)
    kind = input_kind(input_path)
    if span is not None and kind != "video":
        raise RenderError(f"only a video can be rendered in parts, and {input_path.name} is "
                          f"{'an image' if kind == 'image' else 'a folder of images'}")
    if config.batch < 1:
        raise RenderError(f"the batch size must be at least 1, not {config.batch}")
    out_suffix = output_path.suffix.lower()
    if kind == "video" and out_suffix in IMAGE_EXTS:
        raise RenderError(f"a video renders to a video file (.mp4, .mkv, .mov, .webm), not {output_path.name}")
    if kind == "video":
        check_video_name(output_path)
    if kind != "video" and config.stabilize > 0:
        raise RenderError("--stabilize steadies a video: an image or a folder of images has no motion to follow")
    if kind == "image" and out_suffix not in IMAGE_EXTS:
        raise RenderError(f"an image renders to an image: give the output one of the extensions {', '.join(IMAGE_EXTS)}")
    if kind == "folder" and output_path.exists() and not output_path.is_dir():
        raise RenderError(f"a folder of images renders to a folder, and {output_path} is a file")
    check_output(output_path, [input_path], folder_ok=kind == "folder", notice=notice)
    if config.alpha_map is not None:
        parse_spec(config.alpha_map)   # its form and files, before any work
    if config.audio is not None and (config.alpha is not None or config.keyframes is not None):
        raise RenderError("give one of a constant alpha, a keyframe file or alpha from the audio")
    if config.audio is not None and kind != "video":
        raise RenderError(f"alpha from audio needs a video with sound, and {input_path.name} is "
                          f"{'an image' if kind == 'image' else 'a folder of images'}")
    net = load_style_model(config.model)
    if config.audio is not None:
        track = audio_track(input_path, net.sites, net.alpha_range, config.audio, config.allow_extrapolation)
    else:
        track = alpha_track(net, config.alpha, config.keyframes, config.allow_extrapolation)
    if kind == "video":
        return render_video(input_path, output_path, net, track, config, progress, span, frames_done)
    if kind == "image":
        return render_images([(input_path, output_path)], output_path, net, track, config, progress)
    return render_folder(input_path, output_path, net, track, config, progress)


# -- video -------------------------------------------------------------------------------------

class _TimedSource:
    """A source that adds up the time spent decoding (for the per-stage report)."""

    def __init__(self, source: VideoFileSource):
        self.source = source
        self.busy_s = 0.0

    def read_into(self, frame: Frame) -> bool:
        t0 = time.perf_counter()
        try:
            return self.source.read_into(frame)
        finally:
            self.busy_s += time.perf_counter() - t0


def _encode_loop(ring: FrameRing, writer: VideoWriter, errors: list, stats: RenderStats) -> None:
    """Writes every frame committed to ``ring`` until it is closed and drained (also on an abort,
    so a kept partial file holds every frame that was rendered)."""
    tb = writer.time_base
    try:
        while True:
            frame = ring.acquire_read(timeout=0.2)
            if frame is None:
                if ring.drained:
                    break
                continue
            pts = frame.pts if frame.pts >= 0 else round(frame.time_s / tb)
            t0 = time.perf_counter()
            writer.write(frame.rgb_hwc_u8, pts)
            stats.encode_s += time.perf_counter() - t0
            stats.frames += 1
            ring.release(frame)
    except Exception as e:  # handed to the main thread, which raises it
        errors.append(e)
    finally:
        ring.close()


def _join(*threads: Optional[threading.Thread]) -> None:
    for t in threads:
        if t is not None and t.ident is not None:   # started
            t.join()


def render_video(input_path: Path, output_path: Path, net, track: Track, config: RenderConfig,
                 progress: bool = False, span: Optional[Span] = None,
                 frames_done: Optional[Callable[[int], None]] = None) -> RenderStats:
    damaged = "skip" if config.skip_damaged else "stop"
    source = VideoFileSource(str(input_path), damaged=damaged, span=span)
    writer = None
    try:
        h, w, _ = source.shape_hwc
        engine = Engine(net, EngineConfig(device=config.device, size_wh=output_size((h, w), config.size_wh, config.scale),
                                          max_batch=config.batch, alpha_map=config.alpha_map is not None,
                                          backend=render_backend(source.frame_count or None)), (h, w))
        oh, ow = engine.out_hw
        alpha_map = None if config.alpha_map is None else open_map(config.alpha_map, (ow, oh), source.fps)
    except BaseException:
        source.close()
        raise
    maps_bhw = np.full((config.batch, oh, ow), 255, np.uint8)
    stats = RenderStats(output_path, damage=source.damage)
    b, n_sites = config.batch, len(track.sites)
    ring_in = FrameRing(2 * b + 1, source.shape_hwc, "block", n_alpha=n_sites)
    ring_out = FrameRing(2 * b + 1, (oh, ow, 3), "block", n_alpha=n_sites)
    timed = _TimedSource(source)
    # A decode error is raised once the frames decoded before it are rendered (so a kept partial
    # file holds all of them); an encode error stops at once.
    stop, decode_errors, errors = threading.Event(), [], []
    decoder = threading.Thread(target=pump, args=(timed, ring_in, stop, decode_errors), name="render-decode",
                               daemon=True)
    alpha_bs = np.zeros((b, n_sites), np.float32)
    stabilizer = Stabilizer(config.stabilize) if config.stabilize > 0 else None
    batch: list[Frame] = []
    rgbs: list[np.ndarray] = []
    bar = Progress((span.frames if span is not None else source.frame_count) or None, "frame", output_path.name,
                   progress)
    start = time.perf_counter()
    writer: Optional[VideoWriter] = None
    encoder: Optional[threading.Thread] = None
    try:
        # From here a temporary file exists: everything up to its rename or removal is in this try.
        writer = VideoWriter(output_path, ow, oh, rate=source.stream.average_rate or Fraction(source.fps),
                             time_base=source.time_base, options=config.video,
                             audio_from=input_path if span is None else None,
                             keep_partial=config.keep_partial, damaged=damaged)
        stats.size_wh, stats.audio = writer.encoded_wh, writer.audio_mode
        encoder = threading.Thread(target=_encode_loop, args=(ring_out, writer, errors, stats),
                                   name="render-encode", daemon=True)
        decoder.start()
        encoder.start()
        with signals.deferred():   # a stop signal raises at the loop's polls, never inside a ring's lock
            while True:
                signals.raise_if_requested()
                batch.clear()
                rgbs.clear()
                while len(batch) < b:
                    frame = ring_in.acquire_read(timeout=0.2)
                    if frame is None:
                        if errors or ring_in.drained:
                            break
                        signals.raise_if_requested()
                        continue
                    batch.append(frame)
                if errors:
                    raise errors[0]
                if not batch:
                    if decode_errors:
                        raise decode_errors[0]
                    break
                for i, frame in enumerate(batch):
                    track.alpha_into(alpha_bs[i], t=frame.time_s, frame=frame.index, fps=source.fps)
                    if alpha_map is not None:
                        alpha_map.map_into(maps_bhw[i], frame.time_s, frame.index)
                    rgbs.append(frame.rgb_hwc_u8)
                t0 = time.perf_counter()
                out_bhwc_u8 = engine.run(rgbs, alpha_bs) if alpha_map is None else engine.run(rgbs, alpha_bs, maps_bhw)
                stats.infer_s += time.perf_counter() - t0
                for i, frame in enumerate(batch):
                    slot = None
                    while slot is None:
                        slot = ring_out.acquire_write(timeout=0.2)
                        if slot is None and (errors or ring_out.closed):
                            raise errors[0] if errors else RenderError("the encoder stopped early")
                        if slot is None:
                            signals.raise_if_requested()
                    slot.rgb_hwc_u8[...] = out_bhwc_u8[i]
                    if stabilizer is not None:
                        stabilizer.apply(frame.rgb_hwc_u8, slot.rgb_hwc_u8)
                    slot.copy_meta_from(frame)
                    slot.alpha[:] = alpha_bs[i]
                    ring_out.commit(slot)
                    ring_in.release(frame)
                bar.update(len(batch))
                if frames_done is not None:
                    frames_done(len(batch))
                batch.clear()
        ring_out.close()
        encoder.join()
        if errors:
            raise errors[0]
        writer.close()
        bar.complete()
        stats.audio_left_out = writer.audio_left_out
    except BaseException as e:
        signals.stopping()   # a second stop signal must not cut this cleanup short
        stop.set()
        ring_in.close()
        ring_out.close()     # the encoder writes what was already rendered, then ends
        _join(decoder, encoder)
        if writer is None:
            raise
        partial = writer.abort()
        if writer.partial_error and isinstance(e, DynastreamError):
            raise RenderError(f"{e}; the frames rendered before could not be kept either") from None
        if partial is not None and isinstance(e, DynastreamError):
            raise RenderError(f"{e} (the {writer.frames} frames rendered before are kept in {partial})") from None
        if partial is not None and isinstance(e, KeyboardInterrupt):
            raise RenderInterrupted(partial, writer.frames, e) from None
        raise
    finally:
        _join(decoder, encoder)
        source.close()
        if alpha_map is not None:
            alpha_map.close()
        bar.close()
        stats.wall_s = time.perf_counter() - start
        stats.decode_s = timed.busy_s
    return stats


# -- images ------------------------------------------------------------------------------------

def read_image(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(decode_image_file(path, cv2.IMREAD_COLOR, RenderError), cv2.COLOR_BGR2RGB)


def write_image(path: Path, rgb_hwc_u8: np.ndarray, shown_as: Optional[Path] = None) -> None:
    """Encode in memory, then write it atomically (errors name ``shown_as``, default ``path``)."""
    import cv2

    ok, buf = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb_hwc_u8, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RenderError(f"cannot encode {path.name} as {path.suffix} image")
    write_bytes_atomic(path, buf.tobytes(), shown_as)


def render_images(pairs: Sequence[tuple[Path, Path]], output: Path, net, track: Track, config: RenderConfig,
                  progress: bool = False) -> RenderStats:
    """Image i of ``pairs`` is frame i of a sequence at ``config.fps``; one Engine per image size."""
    stats = RenderStats(output, unit="image")
    engines: dict[tuple[int, int], Engine] = {}
    maps: dict[tuple[int, int], tuple[MapSource, np.ndarray]] = {}   # per size: the α map source and buffer
    alpha_1s = np.zeros((1, len(track.sites)), np.float32)
    bar = Progress(len(pairs), "image", output.name, progress)
    start = time.perf_counter()
    try:
        for i, (src, dst) in enumerate(pairs):
            t0 = time.perf_counter()
            rgb = read_image(src)
            t1 = time.perf_counter()
            in_hw = rgb.shape[:2]
            if in_hw not in engines:
                size = output_size(in_hw, config.size_wh, config.scale)
                engines[in_hw] = Engine(net, EngineConfig(device=config.device, size_wh=size,
                                                          alpha_map=config.alpha_map is not None,
                                                          backend=render_backend(len(pairs))), in_hw)
                if config.alpha_map is not None:
                    oh, ow = engines[in_hw].out_hw
                    maps[in_hw] = (open_map(config.alpha_map, (ow, oh), config.fps), np.empty((1, oh, ow), np.uint8))
            track.alpha_into(alpha_1s[0], t=i / config.fps, frame=i, fps=config.fps)
            map_1hw = None
            if in_hw in maps:
                source, map_1hw = maps[in_hw]
                source.map_into(map_1hw[0], i / config.fps, i)
            out = engines[in_hw].run([rgb], alpha_1s) if map_1hw is None else engines[in_hw].run([rgb], alpha_1s, map_1hw)
            t2 = time.perf_counter()
            write_image(dst, out[0], shown_as=dst if dst == output else output / dst.name)
            t3 = time.perf_counter()
            stats.decode_s += t1 - t0
            stats.infer_s += t2 - t1
            stats.encode_s += t3 - t2
            stats.frames += 1
            stats.size_wh = (out.shape[2], out.shape[1])
            bar.update()
    finally:
        for source, _ in maps.values():
            source.close()
        bar.close()
    stats.wall_s = time.perf_counter() - start
    return stats


def list_images(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                    and not p.name.startswith("."))
    if not images:
        raise RenderError(f"the folder {folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return images


def render_folder(input_dir: Path, output_dir: Path, net, track: Track, config: RenderConfig,
                  progress: bool = False) -> RenderStats:
    """Every image of ``input_dir`` (in name order) to the same name in ``output_dir``. The images
    are written into a hidden folder next to the target and moved in only when all are done."""
    images = list_images(input_dir)
    tmp_dir = temp_path(output_dir)
    signals.graceful()
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        stats = render_images([(p, tmp_dir / p.name) for p in images], output_dir, net, track, config, progress)
        if not output_dir.exists():
            os.replace(tmp_dir, output_dir)
        else:
            for p in images:
                os.replace(tmp_dir / p.name, output_dir / p.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return stats
