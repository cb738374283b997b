"""The live pipeline: source thread -> ring -> inference thread -> ring -> main thread (display).

```
 source thread (pump)     inference thread                          main thread (pygame)
 camera/file/demo --ring(latest)--> α snapshot, engine.run --ring(latest)--> window + HUD, keys, MIDI
                                                                        --ring(block)--> writer thread
```

The two live rings use the ``latest`` policy: a slow stage drops the oldest frame (counted), so
latency stays bounded. The recording ring blocks instead: every frame shown while recording is on
is written. The controller is read once per frame by the inference thread and the α it returned
travels with the frame (``Frame.alpha``). pygame must stay on the main thread.

A dcgan model (Dynamic DCGAN) makes its own pictures: the source is then a ``ClockSource`` whose
pixel-less frames carry the walk time, and a ``stream.latent.GeneratorEngine`` generates z(time_s)
in place of the engine; pause stops the clock, so the walk holds while α stays live.
"""

import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

import nets
from nets.atomic import atomic_open
from nets.checkpoint import DEFAULT_MODEL
from nets.errors import DynastreamError
from stream import signals
from stream.alpha import Action, AlphaController, Command, ControllerConfig, ControlsError
from stream.alphamap import MapSource, open_map
from stream.controls import handle_event
from stream.display import HudInfo, Window
from stream.engine import Engine, EngineConfig, FrameEngine, pick_device
from stream.keyframes import load_track
from stream.latent import WALK_SIZE, GeneratorEngine
from stream.midi import MidiInput, MidiMap, open_midi
from stream.ring import Frame, FrameRing
from stream.sinks import Take as _Take, WindowSink
from stream.sources import ClockSource, Source, open_source, pump
from stream.stabilize import Stabilizer
from stream.stage import MidiLearn, Stage, StageConfig, controller_state
from stream.writer import WriterError, check_output

CPU_AUTO_PIXELS = 320 * 240   # with no --size/--scale on the CPU, process at most this many pixels
SIZE_MULTIPLE = 4             # automatic sizes divide by 4: the net's two stride-2 levels need no crop
_LATENCY_CAPACITY = 1 << 16


class LiveError(DynastreamError):
    pass


@dataclass(frozen=True)
class LiveConfig:
    source: Optional[str] = None                  # None: camera 0, else the demo clip
    models: tuple[str, ...] = (DEFAULT_MODEL, "fast-dual-gold-blue-red")  # `m` cycles through these, then the zoo's
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    size: Optional[tuple[int, int]] = None        # processing WxH
    scale: Optional[float] = None                 # processing size = source size x scale
    input_size: Optional[tuple[int, int]] = None  # asked of a camera; the demo's / images' size
    fps: Optional[float] = None                   # asked of a camera; the demo's / images' rate
    loop: bool = False
    headless: bool = False
    frames: int = 0                               # stop after this many frames shown; 0 = no limit
    window: Optional[tuple[int, int]] = None      # window WxH; None = the source's size, at most 1280x720
    fullscreen: bool = False
    hud: bool = True
    save_dir: str = "."                           # screenshots, and recordings started without --record
    ring_slots: int = 3
    threads: int = 0                              # torch CPU threads; 0 = torch's default
    controls: ControllerConfig = ControllerConfig()
    keyframes: Optional[str] = None               # an α track (YAML or CSV, stream.keyframes)
    alpha_map: Optional[str] = None               # an α map spec (stream.alphamap), scaling α over the picture
    midi: bool = False
    midi_device: str = ""                         # part of the device name; "" = the first input
    midi_map: MidiMap = MidiMap()
    record: Optional[str] = None                  # record from the start into this file (r toggles)
    stats_json: Optional[str] = None
    walk_seed: int = 0                            # dcgan models: the latent walk's key points
    walk_seconds: float = 4.0                     # dcgan models: seconds from one key point to the next
    stage: StageConfig = StageConfig()            # OSC, the web page, the virtual camera, MIDI learn (stream.stage)
    stabilize: float = 0.0                        # style models: stream.stabilize strength; 0 = off


@dataclass
class LiveStats:
    source: str
    model: str
    device: str
    size: str                       # processing WxH
    captured: int = 0               # frames the source delivered into the pipeline
    processed: int = 0              # frames stylized
    shown: int = 0                  # frames displayed (headless: handed to the main thread)
    dropped: int = 0                # frames overwritten unread in either ring
    skipped_while_paused: int = 0
    recorded: int = 0               # frames written to recordings
    recordings: list = field(default_factory=list)   # files written: video, keyframes, ...
    elapsed_s: float = 0.0
    fps: float = 0.0                # shown frames per second, first to last shown frame
    latency_ms_p50: float = math.nan   # capture -> shown (after the window flip)
    latency_ms_p95: float = math.nan
    infer_ms_p50: float = math.nan
    first_frame_s: float = math.nan    # start of the run -> first frame shown
    compiled_after_s: float = math.nan  # start of the run -> the compiled net took over (compile backend)
    ended_by: str = ""
    alpha_last: dict = field(default_factory=dict)   # site -> the α of the last frame shown
    inputs: dict = field(default_factory=dict)       # "osc", "web" -> messages taken and refused
    sinks: dict = field(default_factory=dict)        # outputs beside the window: frames written, dropped, live

    def summary(self) -> str:
        return (f"live: {self.shown} frames shown, {self.processed} processed, {self.captured} captured, "
                f"{self.dropped} dropped in {self.elapsed_s:.1f} s; {self.fps:.1f} fps; latency "
                f"p50 {self.latency_ms_p50:.0f} ms, p95 {self.latency_ms_p95:.0f} ms; inference p50 "
                f"{self.infer_ms_p50:.0f} ms ({self.model} on {self.device} at {self.size}); "
                + (f"{self.recorded} frames recorded; " if self.recorded else "")
                + "".join(f"{name} {s['written']} frames ({s['dropped']} dropped{', failed' if s['failed'] else ''}); "
                          for name, s in self.sinks.items())
                + "".join(f"{name} {s['taken']} messages taken, {s['refused']} refused; "
                          for name, s in self.inputs.items())
                + (f"last alpha {' '.join(f'{k} {v:.2f}' for k, v in self.alpha_last.items())}; "
                   if self.inputs else "")
                + f"ended by {self.ended_by}")

    def write_json(self, path: str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}
        with atomic_open(target, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")


class _Samples:
    """Durations in a preallocated circular buffer (the most recent 65536)."""

    def __init__(self):
        self._values = np.zeros(_LATENCY_CAPACITY, np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        self._values[self.count % _LATENCY_CAPACITY] = value
        self.count += 1

    def percentile(self, q: float) -> float:
        n = min(self.count, _LATENCY_CAPACITY)
        return float(np.percentile(self._values[:n], q)) if n else math.nan

    def last(self) -> float:
        return float(self._values[(self.count - 1) % _LATENCY_CAPACITY]) if self.count else 0.0


def processing_size(source_wh: tuple[int, int], size: Optional[tuple[int, int]], scale: Optional[float],
                    device_type: str) -> tuple[int, int]:
    if size is not None:
        return size
    w, h = source_wh
    if scale is None:
        scale = min(1.0, math.sqrt(CPU_AUTO_PIXELS / (w * h))) if device_type == "cpu" else 1.0
    m = SIZE_MULTIPLE
    return max(m * 4, round(w * scale / m) * m), max(m * 4, round(h * scale / m) * m)


def window_size(source_wh: tuple[int, int], window: Optional[tuple[int, int]]) -> tuple[int, int]:
    if window is not None:
        return window
    w, h = source_wh
    s = min(1.0, 1280 / w, 720 / h)
    return max(160, round(w * s)), max(120, round(h * s))


def _model_label(net) -> tuple[str, bool]:
    return net.meta.get("name", "?"), bool(net.meta.get("provenance", {}).get("untrained"))


def walk_size(size: Optional[tuple[int, int]], scale: Optional[float]) -> tuple[int, int]:
    """A dcgan model's live picture: ``size``, or the generator's 64x64 times ``scale``, else 512x512."""
    if size is not None:
        return size
    side = max(16, round(64 * scale)) if scale is not None else WALK_SIZE
    return side, side


def _known_kind(name: str) -> Optional[str]:
    """A model's kind without loading it, where the name says (untrained:* and zoo names)."""
    if name in nets.UNTRAINED:
        return nets.UNTRAINED[name][0]
    return next((e.kind for e in nets.zoo_entries() if e.name == name), None)


def _check_kind(net, name: str, kind: str) -> None:
    if net.kind != kind:
        raise LiveError(f"model {name} is a {net.kind} model and this session shows {kind} models; "
                        "start another session for it")


def _notice(message: str) -> None:
    print(f"dynastream: {message}", file=sys.stderr)


class LivePipeline:
    """One live session. ``on_shown(frame)`` runs on the main thread for each frame after it is
    shown."""

    def __init__(self, config: LiveConfig, on_shown: Optional[Callable[[Frame], None]] = None,
                 notice: Callable[[str], None] = _notice, report: Callable[[str], None] = print,
                 source: Optional[Source] = None):
        self.config = config
        self.source = source          # an already opened source replaces config.source
        self.on_shown = on_shown
        self.notice = notice
        self.report = report
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.paused = False
        self.want_original = False
        self._pending = None          # (engine or None, prepared net, net, name) from the loader thread
        self._loader: Optional[threading.Thread] = None
        self._loader_message = ""
        self._originals: dict[int, np.ndarray] = {}
        self._latency = _Samples()
        self._infer = _Samples()
        self.processed = 0
        self.skipped_while_paused = 0
        self._first_shown = self._last_shown = 0.0
        self._take: Optional[_Take] = None
        self._clock: Optional[ClockSource] = None   # the source of a dcgan model's latent walk
        self._finishing: list[_Take] = []
        self._takes = 0
        self._started = time.perf_counter()
        self._compile_started = 0.0
        self._compile_shown_s = -1
        self.stabilizer = Stabilizer(config.stabilize) if config.stabilize > 0 else None

    # -- setup --------------------------------------------------------------------------------

    def _model_cycle(self, kind: str) -> list[str]:
        """The --model list, then the zoo's models, of the first model's kind only: a style model
        needs a source and a dcgan model makes its own pictures, so m never switches between them."""
        names = list(self.config.models[:1])
        for name in self.config.models[1:]:
            other = _known_kind(name)
            if other is not None and other != kind:
                self.notice(f"{name} is a {other} model and is left out of the m cycle: this session shows {kind} models")
            else:
                names.append(name)
        names += [e.name for e in nets.zoo_entries() if e.kind == kind and e.name not in names]
        return names

    def _open_clock(self) -> None:
        """A dcgan model makes its own pictures: the source is a clock for its latent walk."""
        given = self.config.source if self.source is None else self.source.name
        if given is not None:
            self.notice(f"source {given} is not used: a dcgan model makes its own pictures (a latent walk)")
        if self.source is not None:
            self.source.close()
        self.source = self._clock = ClockSource(self.config.fps)

    def _make_engine(self, net, start_eager: bool = False) -> FrameEngine:
        c = self.config
        if self.kind == "dcgan":
            return GeneratorEngine(net, self.engine_config, c.walk_seed, c.walk_seconds)
        return Engine(net, self.engine_config, self.source.shape_hwc[:2], start_eager=start_eager)

    def _open(self) -> None:
        c = self.config
        if c.record is not None:   # refused before any work: a missing or unwritable folder, the input itself
            check_output(c.record, [c.source] if c.source and Path(c.source).is_file() else [])
        if c.stats_json is not None:   # likewise, rather than a traceback when the run ends
            try:
                check_output(c.stats_json)
            except WriterError as e:
                raise WriterError(f"--stats-json: {e}") from None
        net = nets.load(c.models[0])
        self.kind = net.kind
        self.model_names = self._model_cycle(net.kind)
        self.model_index = 0
        device = pick_device(c.device)
        track = load_track(c.keyframes, net.sites, net.alpha_range) if c.keyframes else None
        if c.threads:
            torch.set_num_threads(c.threads)
        if self.kind == "dcgan":
            self._open_clock()
        elif self.source is None:
            self.source = open_source(c.source, size_wh=c.input_size, fps=c.fps, loop=c.loop, notice=self.notice)
        h, w = self.source.shape_hwc[:2]
        self.controller = AlphaController(net.sites, net.alpha_range, c.controls, track, self.source.fps)
        if self.kind == "dcgan":
            self.size_wh = view_wh = walk_size(c.size, c.scale)
            what = f"latent walk (seed {c.walk_seed}, a key point every {c.walk_seconds:g} s)"
        else:
            self.size_wh = processing_size((w, h), c.size, c.scale, device.type)
            view_wh, what = (w, h), f"{self.source.name} {w}x{h}"
        self.alpha_map = self._open_alpha_map()
        self.window: Optional[Window] = None
        if not c.headless:
            self.window = Window(window_size(view_wh, c.window), f"dynastream - {self.source.name}",
                                 c.fullscreen, c.hud, c.save_dir)
            self.window.show_status(f"loading {c.models[0]} ...")
        self.engine_config = EngineConfig(device=c.device, precision=c.precision, backend=c.backend, size_wh=self.size_wh,
                                          channels_last=True, max_batch=1, alpha_map=self.alpha_map is not None)
        self.engine: FrameEngine = self._make_engine(net, start_eager=True)   # compiled (if at all) in the background
        self._warm_up(self.engine)
        self.net = net
        self.midi: Optional[MidiInput] = None
        if c.midi:
            try:
                self.midi = open_midi(c.midi_device)
                self.notice(f"MIDI input: {self.midi.name}")
            except ControlsError as e:
                self.notice(f"warning: {e}; the keys still work")
        slots, n_sites = max(2, c.ring_slots), len(net.sites)
        self.in_ring = FrameRing(slots, self.source.shape_hwc, "latest")
        self.out_ring = FrameRing(slots, (self.size_wh[1], self.size_wh[0], 3), "latest", n_alpha=n_sites)
        name, untrained = _model_label(net)
        self.hud = HudInfo(model=name, untrained=untrained, device=str(self.engine.device), size_wh=self.size_wh,
                           sites=net.sites, alpha_range=net.alpha_range)
        self.stats = LiveStats(source=self.source.name, model=name, device=str(self.engine.device),
                               size=f"{self.size_wh[0]}x{self.size_wh[1]}")
        note = " (untrained: random weights, the picture is a placeholder until trained models ship)" if untrained else ""
        self.report(f"live: {what} -> {name}{note} on {self.engine.device} at "
                    f"{self.size_wh[0]}x{self.size_wh[1]}" + ("" if c.headless else "; h shows the keys, q quits"))
        self._last_alpha = np.zeros(n_sites, np.float32)
        self.midi_map, self.learn = c.midi_map, MidiLearn(c.stage.midi_learn_file)
        self.window_sink = None if self.window is None else WindowSink(self.window, self.hud, self._original_of)
        self.stage = Stage(c.stage, self.size_wh, self.source.fps, n_sites, self._web_state, self.notice, self.report)
        if self.engine.compile_pending:
            self._compile_in_background(net, name)
        if c.record is not None:
            self._start_take()

    def _original_of(self, frame: Frame) -> Optional[np.ndarray]:
        return self._originals.get(id(frame)) if self.want_original else None

    def _web_state(self) -> dict:
        """What the web page shows (read on its event loop's thread)."""
        return {**controller_state(self.controller, self._last_alpha), "model": self.stats.model,
                "model_name": self.model_names[self.model_index], "models": self.model_names}

    def _open_alpha_map(self) -> Optional[MapSource]:
        """The α map source the inference thread asks for each frame's map (None without one)."""
        spec = self.config.alpha_map
        if spec is None:
            return None
        if self.kind == "dcgan":
            raise LiveError("--alpha-map scales alpha over a stylized picture; a dcgan model's latent walk takes none")
        return open_map(spec, self.size_wh, self.source.fps, at_end="loop")

    def _compile_in_background(self, net, name: str) -> None:
        """The first frames run eager at once; the compiled net takes over when it is ready."""
        w, h = self.size_wh
        self._compile_started = time.perf_counter()
        self.hud.status = f"compiling the net for {w}x{h} (eager frames meanwhile)"
        self.notice(f"compiling the net for {w}x{h} in the background (typically 10-40 s on a 2-core CPU); "
                    "eager frames meanwhile")
        self._loader = threading.Thread(target=self._compile, args=(net, name), name="compiler", daemon=True)
        self._loader.start()

    @property
    def compiling(self) -> bool:
        """The background compile is still running (the run may have ended before it)."""
        return self.engine.compile_pending and self._loader is not None and self._loader.is_alive()

    def _compile(self, net, name: str) -> None:
        prepared = self.engine.prepare(net)
        seconds = time.perf_counter() - self._compile_started
        if prepared.backend == "compile":
            text = f"compiled in {seconds:.0f} s: the compiled net runs now"
        else:
            text = f"{prepared.notes[-1] if prepared.notes else 'torch.compile failed'}; eager frames go on"
        self._pending = (None, prepared, net, name)
        self.notice(text)
        if self.window is not None:
            self._loader_message = text

    def _warm_up(self, engine: FrameEngine) -> None:
        """First calls allocate and pick kernels; keep that out of the first frames' latency."""
        frame = np.zeros((*engine.in_hw, 3), np.uint8)
        alpha = np.zeros((1, engine.n_sites), np.float32)
        for _ in range(2):
            engine.run([frame], alpha)

    # -- inference thread ---------------------------------------------------------------------

    def _apply_pending_model(self) -> None:
        pending, self._pending = self._pending, None
        engine, prepared, net, name = pending
        if engine is not None:
            self.engine = engine
        else:
            self.engine.use(prepared)
        if self.stabilizer is not None and net is not self.net:
            self.stabilizer.reset()   # the previous result is the other model's picture: not blended into this one
        self.net = net
        self.controller.set_model(net.sites, net.alpha_range)
        if self.hud.status and not self.engine.compile_pending:
            self.hud.status = ""
            if self.engine.runs == "compile":
                self.stats.compiled_after_s = time.perf_counter() - self._started
        label, untrained = _model_label(net)
        self.hud.model, self.hud.untrained = label, untrained
        self.hud.sites, self.hud.alpha_range = net.sites, net.alpha_range
        self.stats.model = label

    def _infer_loop(self) -> None:
        in_ring, out_ring, controller = self.in_ring, self.out_ring, self.controller
        batch: list[np.ndarray] = [np.zeros(0, np.uint8)]
        alpha_bs = np.zeros((1, self.engine.n_sites), np.float32)
        held_rgb = np.empty(self.source.shape_hwc, np.uint8)   # the picture kept while paused
        held = Frame(held_rgb)
        holding = False
        alpha_map = self.alpha_map
        map_1hw = None if alpha_map is None else np.full((1, self.size_wh[1], self.size_wh[0]), 255, np.uint8)
        walk = self.kind == "dcgan"
        try:
            while not self.stop.is_set():
                src = in_ring.acquire_read(timeout=0.1)
                if src is None:
                    if in_ring.drained:
                        break
                    continue
                if self._pending is not None:
                    self._apply_pending_model()
                    alpha_bs = np.zeros((1, self.engine.n_sites), np.float32)
                start = time.perf_counter()
                if self.paused:
                    if holding:
                        self.skipped_while_paused += 1
                    else:
                        np.copyto(held_rgb, src.rgb_hwc_u8)
                        held.copy_meta_from(src)
                        holding = True
                    in_ring.release(src)
                    src = held
                    src.captured_at = start   # latency of a paused frame: processing + display only
                else:
                    holding = False
                out = out_ring.acquire_write(timeout=1.0)
                if out is None:
                    if src is not held:
                        in_ring.release(src)
                    break
                if out.alpha.shape[0] != alpha_bs.shape[1]:   # only after a model with another site count
                    out.alpha = np.zeros(alpha_bs.shape[1], np.float32)
                controller.snapshot(out.alpha, start, src.time_s, src.index)
                alpha_bs[0] = out.alpha
                batch[0] = src.rgb_hwc_u8
                if walk:
                    self.engine.seek(src.time_s)   # z of the walk at this frame's time
                if alpha_map is None:
                    y = self.engine.run(batch, alpha_bs)
                else:
                    y = self.engine.run(batch, alpha_bs, alpha_map.map_into(map_1hw[0], src.time_s, src.index)[None])
                np.copyto(out.rgb_hwc_u8, y[0])
                if self.stabilizer is not None and not walk:
                    self.stabilizer.apply(src.rgb_hwc_u8, out.rgb_hwc_u8)
                out.copy_meta_from(src)
                if self.want_original:
                    original = self._originals.get(id(out))
                    if original is None:
                        original = self._originals[id(out)] = np.empty(self.source.shape_hwc, np.uint8)
                    np.copyto(original, src.rgb_hwc_u8)
                if src is not held:
                    in_ring.release(src)
                self._infer.add(time.perf_counter() - start)
                self.processed += 1
                out_ring.commit(out)
        except BaseException as e:  # raised again on the main thread after shutdown
            self.errors.append(e)
        finally:
            out_ring.close()
            in_ring.close()

    # -- model switching (loader thread) ------------------------------------------------------

    def _request_model(self, name: str) -> None:
        if self._loader is not None and self._loader.is_alive():
            self._message("the net is still compiling; m works once it is done"
                          if self.engine.compile_pending else "still loading the previous model")
            return
        self._message(f"loading {name} ...")
        self._loader = threading.Thread(target=self._load_model, args=(name,), name="model-loader", daemon=True)
        self._loader.start()

    def _load_model(self, name: str) -> None:
        """Loads and prepares a model while the feed keeps running on the current one."""
        try:
            net = nets.load(name)
            _check_kind(net, name, self.kind)
            if len(net.sites) == self.engine.n_sites:
                self._pending = (None, self.engine.prepare(net), net, name)
            else:  # another site count: a fresh engine, swapped in by the inference thread
                engine = self._make_engine(net)
                self._warm_up(engine)
                self._pending = (engine, engine.net, net, name)
            self._loader_message = f"model {name}"
        except DynastreamError as e:
            self._loader_message = f"could not load {name}: {e}"

    def _next_model(self) -> None:
        if len(self.model_names) < 2:
            self._message("no other model: pass several, e.g. --model A,B")
            return
        self.model_index = (self.model_index + 1) % len(self.model_names)
        self._request_model(self.model_names[self.model_index])

    def _message(self, text: str) -> None:
        if self.window is not None:
            self.window.message(text)
        else:
            self.notice(text)

    # -- recording (main thread) --------------------------------------------------------------

    def _next_take_path(self) -> Path:
        self._takes += 1
        c = self.config
        if c.record is not None:
            base = Path(c.record)
            if self._takes == 1:
                return base
        else:
            base = Path(c.save_dir) / f"dynastream-{time.strftime('%Y%m%d-%H%M%S')}.mp4"
            if not base.exists():
                return base
        n = 2
        while (path := base.with_name(f"{base.stem}-{n}{base.suffix}")).exists():
            n += 1
        return path

    def _start_take(self) -> None:
        target = self._next_take_path()
        try:
            self._take = _Take(target, self.size_wh, self.controller.sites, self.source.fps)
        except DynastreamError as e:
            if self._takes == 1 and self.config.record is not None:
                raise
            self._message(f"cannot record: {e}")
            return
        self.hud.recording = True
        self._message(f"recording {target}")

    def _stop_take(self, quiet: bool = False) -> None:
        take, self._take = self._take, None
        take.stop()
        self._finishing.append(take)
        self.stats.recorded += take.frames
        self.hud.recording = False
        if not quiet:
            self._message(f"saving {take.target} ...")

    def _record(self, frame: Frame) -> None:
        take = self._take
        if frame.alpha.shape[0] != take.n_sites:
            self._stop_take()   # a model with other tuning sites: this take's α track cannot hold it
        elif not take.push(frame):
            self._stop_take()

    def _report_takes(self, wait: bool = False) -> None:
        for take in list(self._finishing):
            if wait:
                take.thread.join()
            if not take.thread.is_alive():
                self._finishing.remove(take)
                outcome = take.outcome()
                if take.result is not None and take.result[1] is not None:
                    self.stats.recordings += [str(p) for p in take.result]
                if wait or self.window is None:
                    (self.notice if take.error is not None else self.report)(outcome)
                else:
                    self._message(outcome)

    # -- main thread --------------------------------------------------------------------------

    def _command(self, command: Command) -> Optional[str]:
        """Carry out a command; returns why the run ends, if it does."""
        a = command.action
        w = self.window
        if a == Action.QUIT:
            return "quit"
        if a == Action.NEXT_MODEL:
            self._next_model()
        elif a == Action.LOAD_MODEL:
            self._request_model(command.model)
        elif a == Action.PAUSE:
            self.paused = not self.paused
            if self._clock is not None:
                self._clock.paused = self.paused
        elif a == Action.RECORD:
            if self._take is None:
                self._start_take()
            else:
                self._stop_take()
        elif a == Action.LEARN:
            self._message(self.learn.start(self.controller) if self.midi is not None
                          else "MIDI learn needs a MIDI input: start with --midi")
        elif w is None:
            pass
        elif a == Action.VIEW:
            if self.kind == "dcgan":
                self._message("a latent walk has no source picture to compare with")
            else:
                w.cycle_view()
                self.want_original = w.wants_original
        elif a == Action.FULLSCREEN:
            w.toggle_fullscreen()
        elif a == Action.SCREENSHOT:
            w.request_screenshot()
        elif a == Action.HELP:
            w.toggle_help()
        return None

    def _update_hud(self, frame: Frame) -> None:
        hud, status = self.hud, self.controller.status()
        if hud.status and self.engine.compile_pending:
            seconds = int(time.perf_counter() - self._compile_started)
            if seconds != self._compile_shown_s:
                self._compile_shown_s = seconds
                w, h = self.size_wh
                hud.status = f"compiling the net for {w}x{h}: {seconds} s (eager frames meanwhile)"
        hud.alpha, hud.target = frame.alpha, status.target
        hud.edit_site, hud.lfo, hud.track, hud.paused = status.edit_site, status.lfo, status.track, self.paused
        hud.dropped = self.in_ring.dropped + self.out_ring.dropped
        hud.latency_ms = 1000 * self._latency.last()
        hud.sinks, hud.learning = self.stage.live_sinks(window=True), self.learn.active

    def _main_loop(self) -> str:
        out_ring, window, limit, hud = self.out_ring, self.window, self.config.frames, self.hud
        timeout = 0.01 if window is not None else 0.1
        while True:
            signals.raise_if_requested()
            if window is not None:
                for event in window.events():
                    command = handle_event(event, self.controller)
                    if command is not None and (why := self._command(command)):
                        return why
            if self.midi is not None:
                messages = self.midi.read()
                if self.learn.active and messages:
                    self.midi_map, learned = self.learn.feed(messages, self.midi_map)
                    if learned:
                        self._message(learned)
                for command in self.midi_map.apply_all(messages, self.controller):
                    if why := self._command(command):
                        return why
            for command in self.stage.poll(self.controller):
                if why := self._command(command):
                    return why
            if self._loader_message:
                self._message(self._loader_message)
                self._loader_message = ""
            if self._finishing:
                self._report_takes()
            frame = out_ring.acquire_read(timeout=timeout)
            if frame is None:
                if out_ring.drained:
                    return "error" if self.errors else (getattr(self.source, "end_reason", "") or "end of stream")
                continue
            try:
                if window is not None:
                    self._update_hud(frame)
                    self.window_sink.write(frame)
                now = time.perf_counter()
                self._latency.add(now - frame.captured_at)
                if self.stats.shown == 0:
                    self._first_shown = now
                    self.stats.first_frame_s = now - self._started
                else:
                    fps = 1.0 / max(now - self._last_shown, 1e-6)
                    hud.fps = fps if hud.fps == 0 else 0.9 * hud.fps + 0.1 * fps
                self._last_shown = now
                self.stats.shown += 1
                if self._take is not None and not self.paused:
                    self._record(frame)
                self.stage.offer(frame)
                if frame.alpha.shape != self._last_alpha.shape:
                    self._last_alpha = np.zeros_like(frame.alpha)   # only after a model with another site count
                np.copyto(self._last_alpha, frame.alpha)
                if self.on_shown is not None:
                    self.on_shown(frame)
            finally:
                out_ring.release(frame)
            if limit and self.stats.shown >= limit:
                return f"--frames {limit}"

    def run(self) -> LiveStats:
        started = self._started = time.perf_counter()
        try:
            self._open()
        except BaseException:
            self._close_partial()
            raise
        threads = [threading.Thread(target=pump, args=(self.source, self.in_ring, self.stop, self.errors),
                                    name="source", daemon=True),
                   threading.Thread(target=self._infer_loop, name="inference", daemon=True)]
        for t in threads:
            t.start()
        ended_by = "error"
        signals.graceful()
        try:
            ended_by = self._main_loop()
        except KeyboardInterrupt as e:   # Ctrl-C, or SIGTERM/SIGHUP (stream.signals): end as on q
            ended_by = signals.describe(e)
        finally:
            signals.stopping()           # a second signal must not cut the take's saving short
            self.stop.set()
            self.in_ring.close()
            self.out_ring.close()
            for t in threads:
                t.join(timeout=5.0)
            self._close_partial(source_done=not threads[0].is_alive())
            if self._take is not None:
                self._stop_take(quiet=True)
            self._report_takes(wait=True)
            self._finish_stats(started, ended_by)
            self.report(self.stats.summary())
            if self.config.stats_json:
                self.stats.write_json(self.config.stats_json)
        if self.errors:
            error = self.errors[0]
            raise error
        return self.stats

    def _close_partial(self, source_done: bool = True) -> None:
        if getattr(self, "stage", None) is not None:
            self.stage.close()
        if getattr(self, "midi", None) is not None:
            self.midi.close()
        if getattr(self, "window", None) is not None:
            self.window.close()
            self.window = None
        if getattr(self, "source", None) is not None and source_done:
            self.source.close()
        if getattr(self, "alpha_map", None) is not None:
            self.alpha_map.close()

    def _finish_stats(self, started: float, ended_by: str) -> None:
        s = self.stats
        s.captured = self.in_ring.produced
        s.processed = self.processed
        s.skipped_while_paused = self.skipped_while_paused
        s.dropped = self.in_ring.dropped + self.out_ring.dropped
        s.elapsed_s = time.perf_counter() - started
        span = self._last_shown - self._first_shown
        s.fps = (s.shown - 1) / span if s.shown > 1 and span > 0 else 0.0
        s.latency_ms_p50 = 1000 * self._latency.percentile(50)
        s.latency_ms_p95 = 1000 * self._latency.percentile(95)
        s.infer_ms_p50 = 1000 * self._infer.percentile(50)
        s.ended_by = ended_by
        if s.shown:
            s.alpha_last = {site: round(float(a), 4) for site, a in zip(self.controller.sites, self._last_alpha)}
        s.inputs, s.sinks = self.stage.input_stats(), self.stage.sink_stats()


def run_live(config: LiveConfig, on_shown: Optional[Callable[[Frame], None]] = None,
             notice: Callable[[str], None] = _notice, report: Callable[[str], None] = print,
             source: Optional[Source] = None) -> LiveStats:
    return LivePipeline(config, on_shown, notice, report, source).run()
