"""Model switching without freezing the feed: m (and /model, the page's switch) asks for another
model; a loader thread loads and prepares it (or compiles the first one) while the inference thread
keeps running the current one, then hands it over, and the inference thread swaps it in between two
frames (``ModelSwitch.swap``).

A session shows models of one kind: a style model needs a source and a dcgan model makes its own
pictures, so the m cycle holds the first model's kind only.
"""

import threading
import time
from typing import Callable, Optional

import numpy as np

from dynastream import nets
from dynastream.nets.errors import DynastreamError
from dynastream.stream.engine import FrameEngine


class SwitchError(DynastreamError):
    pass


def known_kind(name: str) -> Optional[str]:
    """A model's kind without loading it, where the name says (untrained:* and zoo names)."""
    if name in nets.UNTRAINED:
        return nets.UNTRAINED[name][0]
    return next((e.kind for e in nets.zoo_entries() if e.name == name), None)


def check_kind(net, name: str, kind: str) -> None:
    if net.kind != kind:
        raise SwitchError(f"model {name} is a {net.kind} model and this session shows {kind} models; "
                          "start another session for it")


def model_cycle(models: tuple[str, ...], kind: str, notice: Callable[[str], None]) -> list[str]:
    """The --model list, then the zoo's models, of the first model's kind only."""
    names = list(models[:1])
    for name in models[1:]:
        other = known_kind(name)
        if other is not None and other != kind:
            notice(f"{name} is a {other} model and is left out of the m cycle: this session shows {kind} models")
        else:
            names.append(name)
    names += [e.name for e in nets.zoo_entries() if e.kind == kind and e.name not in names]
    return names


def warm_up(engine: FrameEngine) -> None:
    """First calls allocate and pick kernels; keep that out of the first frames' latency."""
    frame = np.zeros((*engine.in_hw, 3), np.uint8)
    alpha = np.zeros((1, engine.n_sites), np.float32)
    for _ in range(2):
        engine.run([frame], alpha)


class ModelSwitch:
    """The models of one session and the one in use. ``make_engine(net)`` builds an engine for a
    model with another number of tuning sites; ``notice`` tells the performer at once and
    ``news`` (read and cleared by the main thread) is what the window shows next."""

    def __init__(self, names: list[str], kind: str, engine: FrameEngine, net, make_engine: Callable,
                 notice: Callable[[str], None], windowed: bool):
        self.names, self.index, self.kind = names, 0, kind
        self.engine, self.net = engine, net
        self._make_engine = make_engine
        self._notice = notice
        self._windowed = windowed
        self._pending = None          # (engine or None, prepared net, net, name) from the loader thread
        self._loader: Optional[threading.Thread] = None
        self.news = ""
        self.compile_started = 0.0

    @property
    def name(self) -> str:
        return self.names[self.index]

    @property
    def busy(self) -> bool:
        """A model is still being loaded or compiled beside the feed (the run may have ended before
        it): the first compile, or the next model's after ``m``."""
        return self._loader is not None and self._loader.is_alive()

    # -- main thread --------------------------------------------------------------------------

    def compile_in_background(self, name: str) -> None:
        """The first frames run eager at once; the compiled net takes over when it is ready."""
        self.compile_started = time.perf_counter()
        self._loader = threading.Thread(target=self._compile, args=(self.net, name), name="compiler", daemon=True)
        self._loader.start()

    def next(self) -> str:
        """Ask for the next model of the cycle; what to tell the performer."""
        if len(self.names) < 2:
            return "no other model: pass several, e.g. --model A,B"
        self.index = (self.index + 1) % len(self.names)
        return self.request(self.names[self.index])

    def request(self, name: str) -> str:
        """Ask for model ``name``; what to tell the performer."""
        if self._loader is not None and self._loader.is_alive():
            return ("the net is still compiling; m works once it is done" if self.engine.compile_pending
                    else "still loading the previous model")
        self._loader = threading.Thread(target=self._load, args=(name,), name="model-loader", daemon=True)
        self._loader.start()
        return f"loading {name} ..."

    # -- inference thread ---------------------------------------------------------------------

    def swap(self):
        """The model handed over since the last call, now in use (``engine``, ``net``); None when
        none was."""
        if self._pending is None:
            return None
        pending, self._pending = self._pending, None
        engine, prepared, net, _name = pending
        if engine is not None:
            self.engine = engine
        else:
            self.engine.use(prepared)
        self.net = net
        return net

    # -- loader thread ------------------------------------------------------------------------

    def _compile(self, net, name: str) -> None:
        prepared = self.engine.prepare(net)
        seconds = time.perf_counter() - self.compile_started
        if prepared.backend == "compile":
            text = f"compiled in {seconds:.0f} s: the compiled net runs now"
        else:
            text = f"{prepared.notes[-1] if prepared.notes else 'torch.compile failed'}; eager frames go on"
        self._pending = (None, prepared, net, name)
        self._notice(text)
        if self._windowed:
            self.news = text

    def _load(self, name: str) -> None:
        """Loads and prepares a model while the feed keeps running on the current one."""
        try:
            net = nets.load(name)
            check_kind(net, name, self.kind)
            if len(net.sites) == self.engine.n_sites:
                self._pending = (None, self.engine.prepare(net), net, name)
            else:  # another site count: a fresh engine, swapped in by the inference thread
                engine = self._make_engine(net)
                warm_up(engine)
                self._pending = (engine, engine.net, net, name)
            self.news = f"model {name}"
        except DynastreamError as e:
            self.news = f"could not load {name}: {e}"
