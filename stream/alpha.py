"""α as an instrument: the one AlphaController, which every input drives (keyboard and MIDI:
``stream.controls``, ``stream.midi``; OSC, the web page, keyframe tracks, the LFO) and the
inference thread reads. It imports neither pygame nor a MIDI library.

The main thread (keyboard, MIDI) writes targets; the inference thread calls ``snapshot`` once per
frame and gets the α it must use, per site. Latest value wins: many MIDI messages between two frames
leave only the last target. The current α follows the target with a slew limit, so a jump on a
knob ramps over a few frames instead of flashing.
"""

import math
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Protocol, Sequence, Union

import numpy as np

from dynastream.configs.schema import ConfigError, finite_number, option, positive
from dynastream.nets.errors import DynastreamError

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


def _slew(v, label) -> float:
    return 0.0 if v == 0 else positive()(v, label)


def _presets(v, label) -> tuple:
    if not isinstance(v, list) or len(v) != 10:
        raise ConfigError(f"{label} must be a list of 10 entries (keys 0-9)")
    return tuple(tuple(finite_number(x, f"{label}[{i}]") for x in p) if isinstance(p, list)
                 else finite_number(p, f"{label}[{i}]") for i, p in enumerate(v))


@dataclass(frozen=True)
class ControllerConfig:
    """live.yaml's controls section."""

    slew: float = option(4.0, parse=_slew)   # α units per second the current α may move (0: jump to the target)
    step: float = option(0.05, parse=positive())        # arrow-key nudge
    fine_step: float = option(0.01, parse=positive())   # shift + arrow
    # keys 0-9: ten entries, each one α (for the edited site, or all) or a list with one α per site;
    # None spreads 0-9 evenly over the model's range (0 = lowest, 9 = highest)
    presets: Optional[tuple] = option(None, parse=_presets)
    lfo_period: float = option(4.0, parse=positive(3600.0))   # seconds for one full sweep of the LFO
    initial: Optional[float] = option(None, parse=finite_number)   # α at start; None = the middle of the model's range

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
