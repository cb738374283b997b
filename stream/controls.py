"""α as an instrument: the one AlphaController, the keyboard map, MIDI (pygame.midi) and the LFO.

The main thread (keyboard, MIDI) writes targets; the inference thread calls ``snapshot`` once per
frame and gets the α it must use, per site. Latest value wins: many MIDI messages between two frames
leave only the last target. The current α follows the target with a slew limit, so a jump on a
knob ramps over a few frames instead of flashing.
"""

import math
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator, Optional, Protocol, Sequence, Union

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from nets.errors import DynastreamError, short_repr  # noqa: E402

ALL_SITES = -1


class ControlsError(DynastreamError):
    pass


class Action(Enum):
    NEXT_MODEL = "next model"
    LOAD_MODEL = "load model"
    PAUSE = "pause"
    VIEW = "view"
    FULLSCREEN = "fullscreen"
    SCREENSHOT = "screenshot"
    RECORD = "record"
    LEARN = "midi learn"
    HELP = "help"
    QUIT = "quit"


@dataclass(frozen=True)
class Command:
    """What the live loop must do beyond α (which the controls set on the controller directly)."""

    action: Action
    model: str = ""   # for LOAD_MODEL


@dataclass(frozen=True)
class ControllerConfig:
    slew: float = 4.0          # α units per second the current α may move (0: jump to the target)
    step: float = 0.05         # arrow-key nudge
    fine_step: float = 0.01    # shift + arrow
    # keys 0-9: ten entries, each one α (for the edited site, or all) or a list with one α per site;
    # None spreads 0-9 evenly over the model's range (0 = lowest, 9 = highest)
    presets: Optional[tuple] = None
    lfo_period: float = 4.0    # seconds for one full sweep of the LFO
    initial: Optional[float] = None   # α at start; None = the middle of the model's range

    def __post_init__(self):
        numbers = {"slew": self.slew, "step": self.step, "fine_step": self.fine_step, "lfo_period": self.lfo_period,
                   "initial": 0.0 if self.initial is None else self.initial}
        bad = next((k for k, v in numbers.items() if not math.isfinite(v)), None)
        if bad is not None:
            raise ControlsError(f"controls: {bad} must be a finite number, not {numbers[bad]}")
        if self.slew < 0 or self.step <= 0 or self.fine_step <= 0 or self.lfo_period <= 0:
            raise ControlsError("controls: slew must be >= 0 and step, fine_step and lfo_period > 0")
        if self.presets is not None and len(self.presets) != 10:
            raise ControlsError(f"controls: presets needs 10 entries (keys 0-9), not {len(self.presets)}")
        values = [v for p in self.presets or () for v in (p if isinstance(p, tuple) else (p,))]
        if not all(math.isfinite(v) for v in values):
            raise ControlsError("controls: presets must hold finite numbers")


class AlphaTrack(Protocol):
    """A scripted α (``stream.keyframes.Track``): α per site at a time and/or frame index of the
    source, written into ``out``."""

    sites: tuple[str, ...]

    def alpha_into(self, out: np.ndarray, t: Optional[float] = None, frame: Optional[int] = None,
                   fps: Optional[float] = None) -> np.ndarray: ...


@dataclass(frozen=True)
class ControllerStatus:
    """A copy of the controller's state for the HUD."""

    sites: tuple[str, ...]
    alpha_range: tuple[float, float]
    target: np.ndarray
    edit_site: int
    lfo: bool
    track: bool


class AlphaController:
    """Thread-safe α state: targets written from the main thread, ``snapshot`` read per frame."""

    def __init__(self, sites: Sequence[str], alpha_range: tuple[float, float],
                 config: ControllerConfig = ControllerConfig(), track: Optional[AlphaTrack] = None,
                 track_fps: Optional[float] = None):
        self.config = config
        self._lock = threading.Lock()
        self._track = track
        self._track_on = track is not None
        self._track_fps = track_fps   # the source's rate, for a track mixing frame and time keys
        self._lfo_on = False
        self._lfo_started = 0.0
        self._lfo_phase = 0.0
        self._lfo_site = ALL_SITES
        self._last_now: Optional[float] = None
        self._now = 0.0
        self.set_model(sites, alpha_range)
        mid = (self.lo + self.hi) / 2
        self._target[:] = self._clamp(mid if config.initial is None else config.initial)
        self._current[:] = self._target

    # -- model --------------------------------------------------------------------------------

    def set_model(self, sites: Sequence[str], alpha_range: tuple[float, float]) -> None:
        """A new model: keep α per site where the sites match, clamped to the new range."""
        with self._lock:
            old = dict(zip(getattr(self, "sites", ()), getattr(self, "_target", ())))
            self.sites = tuple(sites)
            self.lo, self.hi = float(alpha_range[0]), float(alpha_range[1])
            mid = (self.lo + self.hi) / 2
            self._target = np.array([self._clamp(old.get(s, mid)) for s in self.sites], np.float32)
            self._current = self._target.copy()
            self._step = np.zeros_like(self._target)   # scratch for the slew step
            self._edit = ALL_SITES
            self._last_now = None
            if self._track is not None and tuple(self._track.sites) != self.sites:
                self._track, self._track_on = None, False   # a track names the sites it drives

    @property
    def n_sites(self) -> int:
        return len(self.sites)

    def site_index(self, name: str) -> Optional[int]:
        return self.sites.index(name) if name in self.sites else None

    def _clamp(self, value: float) -> float:
        return min(max(float(value), self.lo), self.hi)

    def _edited(self) -> Union[slice, int]:
        return slice(None) if self._edit == ALL_SITES else self._edit

    # -- inputs (main thread) -----------------------------------------------------------------

    def _manual(self) -> None:
        """A person took over: the LFO and a scripted track stop."""
        self._lfo_on = False
        self._track_on = False

    def set_alpha(self, value: float, site: Optional[int] = None) -> None:
        """Absolute target for one site (index) or, with None, the site(s) being edited."""
        with self._lock:
            self._manual()
            self._target[self._edited() if site is None else site] = self._clamp(value)

    def set_fraction(self, fraction: float, site: Optional[int] = None) -> None:
        """Target as a fraction of the range (a MIDI knob: 0 -> lowest α, 1 -> highest)."""
        self.set_alpha(self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0), site)

    def nudge(self, delta: float) -> None:
        with self._lock:
            self._manual()
            sel = self._edited()
            self._target[sel] = np.clip(self._target[sel] + delta, self.lo, self.hi)

    def preset(self, key: int) -> None:
        if not 0 <= key <= 9:
            raise ValueError(f"preset key must be 0-9, not {key}")
        presets = self.config.presets
        value = self.lo + (self.hi - self.lo) * key / 9 if presets is None else presets[key]
        with self._lock:
            self._manual()
            if isinstance(value, (list, tuple)):
                if len(value) != self.n_sites:
                    raise ControlsError(f"preset {key} has {len(value)} values but the model has "
                                        f"{self.n_sites} sites")
                self._target[:] = [self._clamp(v) for v in value]
            else:
                self._target[self._edited()] = self._clamp(value)

    def cycle_site(self) -> int:
        """all sites -> site 0 -> site 1 -> ... -> all sites; returns the new edited site."""
        with self._lock:
            self._edit = 0 if self._edit == ALL_SITES else (self._edit + 1 if self._edit + 1 < self.n_sites
                                                            else ALL_SITES)
            return self._edit

    def toggle_lfo(self) -> bool:
        """Start or stop a sine sweep over the whole range for the edited site(s). It starts from
        the current α, so switching it on does not jump; switching it off holds α where it is."""
        with self._lock:
            return self._set_lfo(not self._lfo_on)

    def set_lfo(self, on: bool) -> bool:
        """The LFO on or off (as ``toggle_lfo``); already in that state: nothing changes."""
        with self._lock:
            return self._set_lfo(on) if on != self._lfo_on else on

    def _set_lfo(self, on: bool) -> bool:
        self._lfo_on = on
        sel = self._edited()
        if self._lfo_on:
            self._track_on = False
            self._lfo_site = self._edit
            span = self.hi - self.lo
            frac = 0.5 if span == 0 else (float(np.mean(self._current[sel])) - self.lo) / span
            self._lfo_phase = math.acos(min(max(1 - 2 * frac, -1.0), 1.0))
            self._lfo_started = self._now
        else:
            self._target[:] = self._current
        return self._lfo_on

    def toggle_track(self) -> bool:
        with self._lock:
            self._track_on = self._track is not None and not self._track_on
            return self._track_on

    # -- per frame (inference thread) ---------------------------------------------------------

    def snapshot(self, out: np.ndarray, now_s: float, time_s: float, frame: Optional[int] = None) -> None:
        """Write the α to use for one frame into ``out`` (n_sites,). ``now_s`` is the wall clock
        (slew, LFO); ``time_s`` and ``frame`` place the frame on the source (keyframe track)."""
        with self._lock:
            self._now = now_s
            dt = 0.0 if self._last_now is None else max(now_s - self._last_now, 0.0)
            self._last_now = now_s
            if self._track_on:
                self._track.alpha_into(self._target, t=time_s, frame=frame, fps=self._track_fps)
                np.clip(self._target, self.lo, self.hi, out=self._target)
                self._current[:] = self._target        # a track is already smooth: no slew
            else:
                if self._lfo_on:
                    sel = slice(None) if self._lfo_site == ALL_SITES else self._lfo_site
                    phase = self._lfo_phase + 2 * math.pi * (now_s - self._lfo_started) / self.config.lfo_period
                    self._target[sel] = self.lo + (self.hi - self.lo) * (0.5 - 0.5 * math.cos(phase))
                if self.config.slew == 0:
                    self._current[:] = self._target
                else:
                    limit = self.config.slew * dt
                    np.subtract(self._target, self._current, out=self._step)
                    np.clip(self._step, -limit, limit, out=self._step)
                    self._current += self._step
            out[:] = self._current

    def status(self) -> ControllerStatus:
        with self._lock:
            return ControllerStatus(self.sites, (self.lo, self.hi), self._target.copy(), self._edit,
                                    self._lfo_on, self._track_on)


# -- keyboard ---------------------------------------------------------------------------------

HELP_LINES: tuple[tuple[str, str], ...] = (
    ("up / right", "alpha + step (shift: fine)"),
    ("down / left", "alpha - step (shift: fine)"),
    ("0 - 9", "presets (0 lowest ... 9 highest)"),
    ("a", "LFO sweep on / off"),
    ("tab", "edit all sites / one site"),
    ("m", "next model"),
    ("space", "pause"),
    ("v", "view: stylized / split / side by side"),
    ("f", "fullscreen"),
    ("s", "screenshot (PNG)"),
    ("r", "record on / off"),
    ("l", "MIDI learn: the next knob moved drives what tab edits"),
    ("h", "this help"),
    ("q / esc", "quit"),
)

_COMMAND_KEYS = {
    pygame.K_m: Action.NEXT_MODEL, pygame.K_SPACE: Action.PAUSE, pygame.K_v: Action.VIEW,
    pygame.K_f: Action.FULLSCREEN, pygame.K_s: Action.SCREENSHOT, pygame.K_r: Action.RECORD, pygame.K_l: Action.LEARN,
    pygame.K_h: Action.HELP, pygame.K_q: Action.QUIT, pygame.K_ESCAPE: Action.QUIT,
}
_UP_KEYS = (pygame.K_UP, pygame.K_RIGHT)
_DOWN_KEYS = (pygame.K_DOWN, pygame.K_LEFT)
_DIGITS = {**{pygame.K_0 + i: i for i in range(10)}, **{getattr(pygame, f"K_KP{i}"): i for i in range(10)}}


def handle_event(event: "pygame.event.Event", controller: AlphaController) -> Optional[Command]:
    """Apply one pygame event: α keys change the controller; the rest come back as a Command."""
    if event.type == pygame.QUIT:
        return Command(Action.QUIT)
    if event.type != pygame.KEYDOWN:
        return None
    key = event.key
    fine = bool(getattr(event, "mod", 0) & pygame.KMOD_SHIFT)
    step = controller.config.fine_step if fine else controller.config.step
    if key in _UP_KEYS:
        controller.nudge(step)
    elif key in _DOWN_KEYS:
        controller.nudge(-step)
    elif key in _DIGITS:
        controller.preset(_DIGITS[key])
    elif key == pygame.K_a:
        controller.toggle_lfo()
    elif key == pygame.K_TAB:
        controller.cycle_site()
    elif key in _COMMAND_KEYS:
        return Command(_COMMAND_KEYS[key])
    return None


# -- MIDI -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MidiMap:
    """What MIDI messages do (configs/midi.yaml).

    ``cc``: controller number -> ``alpha`` (the site(s) being edited) or a site name (that site).
    ``notes``: note number -> ``preset N``, ``model next`` or ``model NAME``. ``channel``: 1-16, or
    None for any channel.
    """

    channel: Optional[int] = None
    cc: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.channel is not None and not (_is_int(self.channel) and 1 <= self.channel <= 16):
            raise ControlsError(f"midi map: channel must be 1-16 or any, not {short_repr(self.channel)}")
        for what, mapping in (("cc", self.cc), ("notes", self.notes)):
            if not isinstance(mapping, dict):
                raise ControlsError(f"midi map: {what} must be a mapping of numbers to actions, not {short_repr(mapping)}")
        for number, target in self.cc.items():
            if not (_is_int(number) and 0 <= number <= 127):
                raise ControlsError(f"midi map: CC number {short_repr(number)} is not 0-127")
            if not isinstance(target, str) or not target:
                raise ControlsError(f"midi map: CC {number} maps to {short_repr(target)}; use 'alpha' or a site name")
        for number, target in self.notes.items():
            if not (_is_int(number) and 0 <= number <= 127):
                raise ControlsError(f"midi map: note number {short_repr(number)} is not 0-127")
            _parse_note_target(number, target)

    def apply(self, status: int, data1: int, data2: int, controller: AlphaController) -> Optional[Command]:
        """One raw MIDI message (status byte, two data bytes)."""
        kind, channel = status & 0xF0, (status & 0x0F) + 1
        if self.channel is not None and channel != self.channel:
            return None
        if kind == 0xB0 and data1 in self.cc:
            target = self.cc[data1]
            if target == "alpha":
                controller.set_fraction(data2 / 127.0)
            else:
                site = controller.site_index(target)
                if site is not None:  # a site this model lacks: ignored
                    controller.set_fraction(data2 / 127.0, site)
        elif kind == 0x90 and data2 > 0 and data1 in self.notes:  # note on (velocity 0 is note off)
            what, arg = _parse_note_target(data1, self.notes[data1])
            if what == "preset":
                controller.preset(arg)
            elif arg == "next":
                return Command(Action.NEXT_MODEL)
            else:
                return Command(Action.LOAD_MODEL, arg)
        return None

    def apply_all(self, messages: Sequence[tuple[int, int, int]], controller: AlphaController) -> list[Command]:
        commands = []
        for status, data1, data2 in messages:
            command = self.apply(status, data1, data2, controller)
            if command is not None:
                commands.append(command)
        return commands

    def bind(self, cc: int, target: str) -> "MidiMap":
        """This map with controller ``cc`` driving ``target`` (``alpha`` or a site name): MIDI learn."""
        return MidiMap(self.channel, {**self.cc, cc: target}, self.notes)

    def to_dict(self) -> dict:
        """The YAML form ``from_dict`` reads back."""
        return {"channel": "any" if self.channel is None else self.channel, "cc": dict(sorted(self.cc.items())),
                "notes": dict(sorted(self.notes.items()))}

    @classmethod
    def from_dict(cls, data: dict, where: str = "midi map") -> "MidiMap":
        unknown = set(data) - {"channel", "cc", "notes"}
        if unknown:
            raise ControlsError(f"{where}: unknown key {short_repr(sorted(map(str, unknown))[0])} (known: channel, cc, notes)")
        channel = data.get("channel")
        if channel == "any":
            channel = None
        try:
            return cls(channel, data.get("cc") or {}, data.get("notes") or {})
        except ControlsError as e:
            raise ControlsError(str(e).replace("midi map", where, 1)) from None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_note_target(number: int, target) -> tuple[str, Union[int, str]]:
    parts = str(target).split(maxsplit=1)
    if len(parts) == 2 and parts[0] == "preset" and parts[1].isdigit() and int(parts[1]) <= 9:
        return "preset", int(parts[1])
    if len(parts) == 2 and parts[0] == "model":
        return "model", parts[1]
    raise ControlsError(f"midi map: note {number} maps to {short_repr(target)}; use 'preset 0'-'preset 9', "
                        "'model next' or 'model NAME'")


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """ALSA prints configuration warnings straight to file descriptor 2 when PortMidi starts on a
    machine without sound configuration; they say nothing the user can act on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _midi_init() -> None:
    import pygame.midi

    if not pygame.midi.get_init():
        with _quiet_stderr():
            pygame.midi.init()


def list_midi_inputs() -> list[tuple[int, str]]:
    """(device id, name) of every MIDI input."""
    import pygame.midi

    _midi_init()
    inputs = []
    for i in range(pygame.midi.get_count()):
        _interface, name, is_input, _is_output, _opened = pygame.midi.get_device_info(i)
        if is_input:
            inputs.append((i, name.decode(errors="replace")))
    return inputs


class MidiInput:
    """An opened MIDI input: ``read`` returns the (status, data1, data2) messages waiting."""

    def __init__(self, device_id: int, name: str):
        import pygame.midi

        self.name = name
        self._input = pygame.midi.Input(device_id)

    def read(self) -> list[tuple[int, int, int]]:
        if not self._input.poll():
            return []
        return [(data[0], data[1], data[2]) for data, _timestamp in self._input.read(128)]

    def close(self) -> None:
        self._input.close()


def open_midi(name: str = "") -> MidiInput:
    """The first MIDI input, or the first whose name contains ``name``; ControlsError if none."""
    inputs = list_midi_inputs()
    if not inputs:
        raise ControlsError("no MIDI input device found")
    for device_id, device_name in inputs:
        if name.lower() in device_name.lower():
            return MidiInput(device_id, device_name)
    raise ControlsError(f"no MIDI input named like {short_repr(name)} (found: {', '.join(n for _, n in inputs)})")
