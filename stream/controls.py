"""The live window's keyboard: which key does what to the AlphaController (``stream.alpha``) and
which comes back as a Command for the live loop; the help overlay's lines."""

import os
from typing import Optional

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from dynastream.stream.alpha import Action, AlphaController, Command  # noqa: E402

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
