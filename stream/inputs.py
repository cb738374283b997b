"""Network ways in (OSC, the web page): what they ask for, and the inbox the main thread drains.

A receiving thread turns each message into an ``Op`` (or refuses it: a bad address, type or
value) and puts it in the ``Inbox``; the main thread applies the ops to the one AlphaController
between frames, as it does MIDI messages, so the controller alone decides α (slew, range clamp,
presets). Model switches come back as ``Command``s for the live loop. Counts of ops taken and
refused are kept per input ("osc", "web").
"""

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal, Optional, Union

from dynastream.nets.errors import short_repr
from dynastream.stream.alpha import Action, AlphaController, Command, ControlsError

OpKind = Literal["alpha", "fraction", "preset", "model", "lfo"]
EDITED = None        # Op.site: the site(s) being edited (tab), as keys and MIDI do
EVERY_SITE = "*"     # Op.site: every site at once
_MAX_QUEUED = 4096   # ops waiting for the main thread; a flood beyond it is refused, not queued


class OpError(ValueError):
    """Why a message was refused (one short sentence, kept as the input's last refusal)."""


@dataclass(frozen=True)
class Op:
    kind: OpKind
    value: Union[float, int, str, bool]
    site: Optional[str] = EDITED      # alpha / fraction: a site name, EDITED or EVERY_SITE


def alpha_value(value) -> float:
    """A finite number (int or float; not a bool or text). Outside the model's range it is clamped
    by the controller, as every α from keys, MIDI and the LFO is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OpError(f"alpha must be a finite number, not {short_repr(value)}")
    return float(value)


def preset_value(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 0 <= value <= 9:
        raise OpError(f"preset must be a whole number from 0 to 9, not {short_repr(value)}")
    return int(value)


def lfo_value(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise OpError(f"lfo must be 1 (on) or 0 (off), not {short_repr(value)}")


def model_value(value) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise OpError(f"model must be 'next' or a model name, not {short_repr(value)}")
    return value.strip()


def apply_op(op: Op, controller: AlphaController) -> Optional[Command]:
    """Carry out one op on the controller (main thread); OpError if the current model cannot."""
    if op.kind in ("alpha", "fraction"):
        set_value = controller.set_alpha if op.kind == "alpha" else controller.set_fraction
        if op.site is EDITED:
            set_value(op.value)
        elif op.site == EVERY_SITE:
            for i in range(controller.n_sites):
                set_value(op.value, i)
        else:
            site = controller.site_index(op.site)
            if site is None:
                raise OpError(f"this model has no site {short_repr(op.site)} (sites: {', '.join(controller.sites)})")
            set_value(op.value, site)
    elif op.kind == "preset":
        try:
            controller.preset(int(op.value))
        except ControlsError as e:
            raise OpError(str(e)) from None
    elif op.kind == "lfo":
        controller.set_lfo(bool(op.value))
    elif op.value == "next":
        return Command(Action.NEXT_MODEL)
    else:
        return Command(Action.LOAD_MODEL, str(op.value))
    return None


class Inbox:
    """Ops from receiving threads to the main thread, with counts per input."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ops: deque[tuple[str, Op]] = deque()
        self.taken: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.last_refusal: dict[str, str] = {}

    def register(self, source: str) -> None:
        with self._lock:
            self.taken.setdefault(source, 0)
            self.refused.setdefault(source, 0)

    def put(self, source: str, op: Op) -> None:
        with self._lock:
            if len(self._ops) >= _MAX_QUEUED:
                self._refuse(source, "too many messages waiting")
            else:
                self._ops.append((source, op))

    def refuse(self, source: str, why: str) -> None:
        with self._lock:
            self._refuse(source, why)

    def _refuse(self, source: str, why: str) -> None:
        self.refused[source] = self.refused.get(source, 0) + 1
        self.last_refusal[source] = why

    def apply_all(self, controller: AlphaController) -> list[Command]:
        """Apply every waiting op, oldest first (main thread)."""
        commands = []
        while True:
            with self._lock:
                if not self._ops:
                    return commands
                source, op = self._ops.popleft()
            try:
                command = apply_op(op, controller)
            except OpError as e:
                self.refuse(source, str(e))
                continue
            with self._lock:
                self.taken[source] = self.taken.get(source, 0) + 1
            if command is not None:
                commands.append(command)

    def stats(self) -> dict:
        with self._lock:
            return {s: {"taken": self.taken[s], "refused": self.refused[s],
                        **({"last_refused": self.last_refusal[s]} if s in self.last_refusal else {})}
                    for s in self.taken}
