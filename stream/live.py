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

The parts beside the loops: ``stream.session`` opens what a session runs on (model, source,
controller, sizes, window, engine, MIDI), ``stream.switch`` loads the next model while the feed
runs, ``stream.takes`` keeps the recordings, ``stream.stage`` the network ways in and out.
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

from dynastream.configs.schema import ConfigError, option, positive, size_wh, text, whole_number
from dynastream.nets.atomic import atomic_open
from dynastream.nets.checkpoint import DEFAULT_MODEL
from dynastream.nets.errors import short_repr
from dynastream.stream import signals
from dynastream.stream.alpha import Action, Command, ControllerConfig
from dynastream.stream.controls import handle_event
from dynastream.stream.display import HudInfo
from dynastream.stream.limits import (
    MAX_CAMERA_INDEX,
    MAX_FPS,
    MAX_RING_SLOTS,
    MAX_SCALE,
    MAX_SEED,
    MAX_SIDE,
    MAX_STABILIZE,
    MAX_THREADS,
)
from dynastream.stream.midi import MidiConfig
from dynastream.stream.ring import Frame, FrameRing
from dynastream.stream.session import Session, open_session
from dynastream.stream.sinks import WindowSink
from dynastream.stream.sources import Source, pump
from dynastream.stream.stabilize import Stabilizer
from dynastream.stream.stage import MidiLearn, OscConfig, Stage, WebConfig, controller_state
from dynastream.stream.takes import Takes

_LATENCY_CAPACITY = 1 << 16


parse_size = size_wh(MAX_SIDE)


def _source(v, label) -> str:
    """A camera index is a small number; anything else is checked when the source opens."""
    name = text(v, label)
    if name.strip().isdigit() and int(name) > MAX_CAMERA_INDEX:
        raise ConfigError(f"{label} {short_repr(name)} is not a camera index (0 to {MAX_CAMERA_INDEX}), a file or demo")
    return name


def _models(v, label) -> tuple[str, ...]:
    names = v if isinstance(v, (list, tuple)) else str(v).split(",")
    names = tuple(str(n).strip() for n in names if str(n).strip())
    if not names:
        raise ConfigError(f"{label} names no model")
    return names


def _stabilize(v, label) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_STABILIZE:
        raise ConfigError(f"{label} must be a number from 0 (off) to {MAX_STABILIZE}, not {short_repr(v)}")
    return float(v)


@dataclass(frozen=True)
class LiveConfig:
    """configs/live.yaml, one field a key (``stream.config`` reads it, flags over it)."""

    source: Optional[str] = option(None, parse=_source)   # None: camera 0, else the demo clip
    models: tuple[str, ...] = option((DEFAULT_MODEL, "arbitrary-dual-mouse-elephants-firstgeneration"), key="model",
                                     parse=_models)       # `m` cycles through these, then the zoo's
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    size: Optional[tuple[int, int]] = option(None, parse=parse_size)         # processing WxH
    scale: Optional[float] = option(None, parse=positive(MAX_SCALE))         # processing size = source size x scale
    input_size: Optional[tuple[int, int]] = option(None, parse=parse_size)   # asked of a camera; the demo's size
    fps: Optional[float] = option(None, parse=positive(MAX_FPS))             # asked of a camera; the demo's rate
    loop: bool = False
    headless: bool = False
    frames: int = option(0, parse=whole_number(0))   # stop after this many frames shown; 0 = no limit
    window: Optional[tuple[int, int]] = option(None, parse=parse_size)   # None = the source's size, at most 1280x720
    fullscreen: bool = False
    hud: bool = True
    save_dir: str = "."                           # screenshots, and recordings started without --record
    ring_slots: int = option(3, parse=whole_number(2, MAX_RING_SLOTS))
    threads: int = option(0, parse=whole_number(0, MAX_THREADS))   # torch CPU threads; 0 = torch's default
    keyframes: Optional[str] = None               # an α track (YAML or CSV, stream.keyframes)
    alpha_map: Optional[str] = None               # an α map spec (stream.alphamap), scaling α over the picture
    record: Optional[str] = None                  # record from the start into this file (r toggles)
    stats_json: Optional[str] = None
    walk_seed: int = option(0, parse=whole_number(0, MAX_SEED))   # dcgan models: the latent walk's key points
    walk_seconds: float = option(4.0, parse=positive(3600.0))     # dcgan models: seconds between key points
    stabilize: float = option(0.0, parse=_stabilize)   # style models: stream.stabilize strength; 0 = off
    controls: ControllerConfig = ControllerConfig()
    midi: MidiConfig = MidiConfig()
    osc: OscConfig = OscConfig()                  # OSC in, the web page, the virtual camera: stream.stage
    web: WebConfig = WebConfig()
    virtual_cam: bool = False

    def __post_init__(self):
        if self.size is not None and self.scale is not None:
            raise ValueError("give a processing size or a scale, not both")


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


def _model_label(net) -> tuple[str, bool]:
    return net.meta.get("name", "?"), bool(net.meta.get("provenance", {}).get("untrained"))


def _notice(message: str) -> None:
    print(f"dynastream: {message}", file=sys.stderr)


class LivePipeline:
    """One live session: ``run`` opens it (``stream.session``), starts the source and inference
    threads, runs the main loop until the session ends, then closes everything and reports.
    ``on_shown(frame)`` runs on the main thread for each frame after it is shown."""

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
        self._originals: dict[int, np.ndarray] = {}
        self._latency = _Samples()
        self._infer = _Samples()
        self.processed = 0
        self.skipped_while_paused = 0
        self._first_shown = self._last_shown = 0.0
        self._started = time.perf_counter()
        self._compile_shown_s = -1
        self.session: Optional[Session] = None
        self.stage: Optional[Stage] = None
        self.stabilizer = Stabilizer(config.stabilize) if config.stabilize > 0 else None

    @property
    def loading(self) -> bool:
        """A model is still being loaded or compiled beside the feed (the run may have ended before it)."""
        return self.session is not None and self.session.models.busy

    # -- the session --------------------------------------------------------------------------

    def run(self) -> LiveStats:
        started = self._started = time.perf_counter()
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        threads = [threading.Thread(target=pump, args=(self.session.source, self.in_ring, self.stop, self.errors),
                                    name="source", daemon=True),
                   threading.Thread(target=self._infer_loop, name="inference", daemon=True)]
        for t in threads:
            t.start()
        ended_by = "error"
        signals.graceful()
        try:
            with signals.deferred():   # raised at the loop's poll (every 10-100 ms), never inside a lock
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
            self._close(source_done=not threads[0].is_alive())
            if self.takes.recording:
                self.takes.stop(quiet=True)
            self._report_takes(wait=True)
            self._finish_stats(started, ended_by)
            self.report(self.stats.summary())
            if self.config.stats_json:
                self.stats.write_json(self.config.stats_json)
        if self.errors:
            error = self.errors[0]
            raise error
        return self.stats

    def _open(self) -> None:
        c = self.config
        source, self.source = self.source, None   # the session's from now on (it closes it)
        s = self.session = open_session(c, source, self.notice)
        models, net = s.models, s.models.net
        slots, n_sites = max(2, c.ring_slots), len(net.sites)
        self.in_ring = FrameRing(slots, s.source.shape_hwc, "latest")
        self.out_ring = FrameRing(slots, (s.size_wh[1], s.size_wh[0], 3), "latest", n_alpha=n_sites)
        name, untrained = _model_label(net)
        device = str(models.engine.device)
        self.hud = HudInfo(model=name, untrained=untrained, device=device, size_wh=s.size_wh, sites=net.sites,
                           alpha_range=net.alpha_range)
        self.stats = LiveStats(source=s.source.name, model=name, device=device, size=f"{s.size_wh[0]}x{s.size_wh[1]}")
        note = " (untrained: random weights, the picture is a placeholder until trained models ship)" if untrained else ""
        self.report(f"live: {s.what} -> {name}{note} on {device} at {s.size_wh[0]}x{s.size_wh[1]}"
                    + ("" if c.headless else "; h shows the keys, q quits"))
        self._last_alpha = np.zeros(n_sites, np.float32)
        self.midi_map, self.learn = c.midi.midi_map, MidiLearn(c.midi.learn_file)
        self.window_sink = None if s.window is None else WindowSink(s.window, self.hud, self._original_of)
        self.stage = Stage(c.osc, c.web, c.virtual_cam, s.size_wh, s.source.fps, n_sites, self._web_state,
                           self.notice, self.report)
        if models.engine.compile_pending:
            w, h = s.size_wh
            self.hud.status = f"compiling the net for {w}x{h} (eager frames meanwhile)"
            self.notice(f"compiling the net for {w}x{h} in the background (typically 10-40 s on a 2-core CPU); "
                        "eager frames meanwhile")
            models.compile_in_background(name)
        self.takes = Takes(c.record, c.save_dir, s.size_wh, s.source.fps, self._message)
        if c.record is not None:
            self.takes.start(s.controller.sites)

    def _close(self, source_done: bool = True) -> None:
        if self.stage is not None:
            self.stage.close()
        if self.session is not None:
            self.session.close(source_done)

    # -- inference thread ---------------------------------------------------------------------

    def _infer_loop(self) -> None:
        s = self.session
        in_ring, out_ring, controller, models = self.in_ring, self.out_ring, s.controller, s.models
        batch: list[np.ndarray] = [np.zeros(0, np.uint8)]
        alpha_bs = np.zeros((1, models.engine.n_sites), np.float32)
        held_rgb = np.empty(s.source.shape_hwc, np.uint8)   # the picture kept while paused
        held = Frame(held_rgb)
        holding = False
        alpha_map = s.alpha_map
        map_1hw = None if alpha_map is None else np.full((1, s.size_wh[1], s.size_wh[0]), 255, np.uint8)
        walk = s.kind == "dcgan"
        try:
            while not self.stop.is_set():
                src = in_ring.acquire_read(timeout=0.1)
                if src is None:
                    if in_ring.drained:
                        break
                    continue
                previous = models.net
                net = models.swap()   # a model the loader thread made ready, between two frames
                if net is not None:
                    self._model_swapped(net, another_model=net is not previous)
                    alpha_bs = np.zeros((1, models.engine.n_sites), np.float32)
                engine = models.engine
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
                    engine.seek(src.time_s)   # z of the walk at this frame's time
                if alpha_map is None:
                    y = engine.run(batch, alpha_bs)
                else:
                    y = engine.run(batch, alpha_bs, alpha_map.map_into(map_1hw[0], src.time_s, src.index)[None])
                np.copyto(out.rgb_hwc_u8, y[0])
                if self.stabilizer is not None and not walk:
                    self.stabilizer.apply(src.rgb_hwc_u8, out.rgb_hwc_u8)
                out.copy_meta_from(src)
                if self.want_original:
                    original = self._originals.get(id(out))
                    if original is None:
                        original = self._originals[id(out)] = np.empty(s.source.shape_hwc, np.uint8)
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

    def _model_swapped(self, net, another_model: bool) -> None:
        """The controller, HUD and stats follow the model now in use (``another_model``: not the
        compiled copy of the same one)."""
        models = self.session.models
        if self.stabilizer is not None and another_model:
            self.stabilizer.reset()   # the previous result is the other model's picture: not blended into this one
        self.session.controller.set_model(net.sites, net.alpha_range)
        if self.hud.status and not models.engine.compile_pending:
            self.hud.status = ""
            if models.engine.runs == "compile":
                self.stats.compiled_after_s = time.perf_counter() - self._started
        label, untrained = _model_label(net)
        self.hud.model, self.hud.untrained = label, untrained
        self.hud.sites, self.hud.alpha_range = net.sites, net.alpha_range
        self.stats.model = label

    # -- main thread --------------------------------------------------------------------------

    def _main_loop(self) -> str:
        s = self.session
        out_ring, window, limit, hud = self.out_ring, s.window, self.config.frames, self.hud
        timeout = 0.01 if window is not None else 0.1
        while True:
            signals.raise_if_requested()
            if window is not None:
                for event in window.events():
                    command = handle_event(event, s.controller)
                    if command is not None and (why := self._command(command)):
                        return why
            if s.midi is not None:
                messages = s.midi.read()
                if self.learn.active and messages:
                    self.midi_map, learned = self.learn.feed(messages, self.midi_map)
                    if learned:
                        self._message(learned)
                for command in self.midi_map.apply_all(messages, s.controller):
                    if why := self._command(command):
                        return why
            for command in self.stage.poll(s.controller):
                if why := self._command(command):
                    return why
            if s.models.news:
                self._message(s.models.news)
                s.models.news = ""
            if self.takes.finishing:
                self._report_takes()
            frame = out_ring.acquire_read(timeout=timeout)
            if frame is None:
                if out_ring.drained:
                    return "error" if self.errors else (getattr(s.source, "end_reason", "") or "end of stream")
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
                if self.takes.recording and not self.paused:
                    self.takes.push(frame)
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

    def _command(self, command: Command) -> Optional[str]:
        """Carry out a command; returns why the run ends, if it does."""
        a = command.action
        s = self.session
        w = s.window
        if a == Action.QUIT:
            return "quit"
        if a == Action.NEXT_MODEL:
            self._message(s.models.next())
        elif a == Action.LOAD_MODEL:
            self._message(s.models.request(command.model))
        elif a == Action.PAUSE:
            self.paused = not self.paused
            if s.clock is not None:
                s.clock.paused = self.paused
        elif a == Action.RECORD:
            self.takes.toggle(s.controller.sites)
        elif a == Action.LEARN:
            self._message(self.learn.start(s.controller) if s.midi is not None
                          else "MIDI learn needs a MIDI input: start with --midi")
        elif w is None:
            pass
        elif a == Action.VIEW:
            if s.kind == "dcgan":
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
        s = self.session
        hud, status = self.hud, s.controller.status()
        if hud.status and s.models.engine.compile_pending:
            seconds = int(time.perf_counter() - s.models.compile_started)
            if seconds != self._compile_shown_s:
                self._compile_shown_s = seconds
                w, h = s.size_wh
                hud.status = f"compiling the net for {w}x{h}: {seconds} s (eager frames meanwhile)"
        hud.alpha, hud.target = frame.alpha, status.target
        hud.edit_site, hud.lfo, hud.track, hud.paused = status.edit_site, status.lfo, status.track, self.paused
        hud.dropped = self.in_ring.dropped + self.out_ring.dropped
        hud.latency_ms = 1000 * self._latency.last()
        hud.sinks, hud.learning, hud.recording = self.stage.live_sinks(window=True), self.learn.active, \
            self.takes.recording

    def _message(self, text: str) -> None:
        if self.session is not None and self.session.window is not None:
            self.session.window.message(text)
        else:
            self.notice(text)

    def _report_takes(self, wait: bool = False) -> None:
        for outcome, failed in self.takes.finished(wait):
            if wait or self.session.window is None:
                (self.notice if failed else self.report)(outcome)
            else:
                self._message(outcome)

    def _original_of(self, frame: Frame) -> Optional[np.ndarray]:
        return self._originals.get(id(frame)) if self.want_original else None

    def _web_state(self) -> dict:
        """What the web page shows (read on its event loop's thread)."""
        models = self.session.models
        return {**controller_state(self.session.controller, self._last_alpha), "model": self.stats.model,
                "model_name": models.name, "models": models.names}

    def _finish_stats(self, started: float, ended_by: str) -> None:
        s = self.stats
        s.captured = self.in_ring.produced
        s.processed = self.processed
        s.skipped_while_paused = self.skipped_while_paused
        s.dropped = self.in_ring.dropped + self.out_ring.dropped
        s.recorded, s.recordings = self.takes.frames, list(self.takes.files)
        s.elapsed_s = time.perf_counter() - started
        span = self._last_shown - self._first_shown
        s.fps = (s.shown - 1) / span if s.shown > 1 and span > 0 else 0.0
        s.latency_ms_p50 = 1000 * self._latency.percentile(50)
        s.latency_ms_p95 = 1000 * self._latency.percentile(95)
        s.infer_ms_p50 = 1000 * self._infer.percentile(50)
        s.ended_by = ended_by
        if s.shown:
            s.alpha_last = {site: round(float(a), 4) for site, a in zip(self.session.controller.sites, self._last_alpha)}
        s.inputs, s.sinks = self.stage.input_stats(), self.stage.sink_stats()


def run_live(config: LiveConfig, on_shown: Optional[Callable[[Frame], None]] = None,
             notice: Callable[[str], None] = _notice, report: Callable[[str], None] = print,
             source: Optional[Source] = None) -> LiveStats:
    return LivePipeline(config, on_shown, notice, report, source).run()
