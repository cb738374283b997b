"""What one live session runs on, opened in order from its LiveConfig: the first model, the
picture source (or, for a dcgan model, the clock of its latent walk), the α controller, the
processing and window sizes, the α map, the window, the engine and the MIDI input. What opened is
closed again when a later part cannot open; ``Session.close`` closes the rest at the end.
"""

import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from dynastream import nets
from dynastream.nets.errors import DynastreamError
from dynastream.stream.alpha import AlphaController, ControlsError
from dynastream.stream.alphamap import MapSource, open_map
from dynastream.stream.display import Window
from dynastream.stream.engine import Engine, EngineConfig, FrameEngine, pick_device
from dynastream.stream.keyframes import load_track
from dynastream.stream.latent import WALK_SIZE, GeneratorEngine
from dynastream.stream.midi import MidiInput, open_midi
from dynastream.stream.sources import ClockSource, Source, open_source
from dynastream.stream.switch import ModelSwitch, model_cycle, warm_up
from dynastream.stream.writer import WriterError, check_output

CPU_AUTO_PIXELS = 320 * 240   # with no --size/--scale on the CPU, process at most this many pixels
SIZE_MULTIPLE = 4             # automatic sizes divide by 4: the net's two stride-2 levels need no crop


class LiveError(DynastreamError):
    pass


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


def walk_size(size: Optional[tuple[int, int]], scale: Optional[float]) -> tuple[int, int]:
    """A dcgan model's live picture: ``size``, or the generator's 64x64 times ``scale``, else 512x512."""
    if size is not None:
        return size
    side = max(16, round(64 * scale)) if scale is not None else WALK_SIZE
    return side, side


@dataclass
class Session:
    kind: str                       # of every model this session shows: "style" or "dcgan"
    source: Source
    clock: Optional[ClockSource]    # a dcgan model's source: the clock of its latent walk
    controller: AlphaController
    size_wh: tuple[int, int]        # processing (and recording) size
    what: str                       # the picture, for the first report line
    alpha_map: Optional[MapSource]
    window: Optional[Window]        # None: headless
    models: ModelSwitch             # the engine and net in use, and the m cycle
    midi: Optional[MidiInput]

    def close(self, source_done: bool = True) -> None:
        """``source_done``: the source thread has ended (a source still read is left open)."""
        if self.midi is not None:
            self.midi.close()
        if self.window is not None:
            self.window.close()
            self.window = None
        if source_done:
            self.source.close()
        if self.alpha_map is not None:
            self.alpha_map.close()


def open_session(c, source: Optional[Source], notice: Callable[[str], None]) -> Session:
    """``c``: a LiveConfig; ``source``: an opened source in place of ``c.source`` (closed with
    the session)."""
    with ExitStack() as opened:
        if source is not None:
            opened.callback(source.close)
        _check_outputs(c)
        net = nets.load(c.models[0])
        kind = net.kind
        names = model_cycle(c.models, kind, notice)
        device = pick_device(c.device)
        track = load_track(c.keyframes, net.sites, net.alpha_range) if c.keyframes else None
        if c.threads:
            torch.set_num_threads(c.threads)
        clock = None
        if kind == "dcgan":   # a dcgan model makes its own pictures: the source is a clock for its latent walk
            given = c.source if source is None else source.name
            if given is not None:
                notice(f"source {given} is not used: a dcgan model makes its own pictures (a latent walk)")
            opened.close()
            source = clock = ClockSource(c.fps)
            opened.callback(clock.close)
        elif source is None:
            source = open_source(c.source, size_wh=c.input_size, fps=c.fps, loop=c.loop, notice=notice)
            opened.callback(source.close)
        h, w = source.shape_hwc[:2]
        controller = AlphaController(net.sites, net.alpha_range, c.controls, track, source.fps)
        if kind == "dcgan":
            size_wh = view_wh = walk_size(c.size, c.scale)
            what = f"latent walk (seed {c.walk_seed}, a key point every {c.walk_seconds:g} s)"
        else:
            size_wh = processing_size((w, h), c.size, c.scale, device.type)
            view_wh, what = (w, h), f"{source.name} {w}x{h}"
        alpha_map = _open_alpha_map(c.alpha_map, kind, size_wh, source.fps)
        if alpha_map is not None:
            opened.callback(alpha_map.close)
        window = None
        if not c.headless:
            window = Window(window_size(view_wh, c.window), f"dynastream - {source.name}", c.fullscreen, c.hud,
                            c.save_dir)
            opened.callback(window.close)
            window.show_status(f"loading {c.models[0]} ...")
        engine_config = EngineConfig(device=c.device, precision=c.precision, backend=c.backend, size_wh=size_wh,
                                     channels_last=True, max_batch=1, alpha_map=alpha_map is not None)

        def make_engine(net, start_eager: bool = False) -> FrameEngine:
            if kind == "dcgan":
                return GeneratorEngine(net, engine_config, c.walk_seed, c.walk_seconds)
            return Engine(net, engine_config, source.shape_hwc[:2], start_eager=start_eager)

        engine = make_engine(net, start_eager=True)   # compiled (if at all) in the background
        warm_up(engine)
        midi = None
        if c.midi.enabled:
            try:
                midi = open_midi(c.midi.device)
                notice(f"MIDI input: {midi.name}")
            except ControlsError as e:
                notice(f"warning: {e}; the keys still work")
        models = ModelSwitch(names, kind, engine, net, make_engine, notice, windowed=window is not None)
        opened.pop_all()
    return Session(kind, source, clock, controller, size_wh, what, alpha_map, window, models, midi)


def _check_outputs(c) -> None:
    """Refused before any work: a missing or unwritable folder, the input itself."""
    if c.record is not None:
        check_output(c.record, [c.source] if c.source and Path(c.source).is_file() else [])
    if c.stats_json is not None:   # likewise, rather than a traceback when the run ends
        try:
            check_output(c.stats_json)
        except WriterError as e:
            raise WriterError(f"--stats-json: {e}") from None


def _open_alpha_map(spec: Optional[str], kind: str, size_wh: tuple[int, int], fps: float) -> Optional[MapSource]:
    """The α map source the inference thread asks for each frame's map (None without one)."""
    if spec is None:
        return None
    if kind == "dcgan":
        raise LiveError("--alpha-map scales alpha over a stylized picture; a dcgan model's latent walk takes none")
    return open_map(spec, size_wh, fps, at_end="loop")
