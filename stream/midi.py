"""MIDI: the map of what controllers and notes do (configs/midi.yaml) and the input devices
(pygame.midi, imported only when a device is listed or opened)."""

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from dynastream import configs
from dynastream.configs.schema import file_or, option, text
from dynastream.nets.errors import short_repr
from dynastream.stream.alpha import Action, AlphaController, Command, ControlsError

PACKAGED_MAP = str(configs.path("midi.yaml"))

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


@dataclass(frozen=True)
class MidiConfig:
    """live.yaml's midi section; ``midi_map`` is what the loader read from ``map`` (when enabled)."""

    enabled: bool = False                                  # or --midi [NAME]
    device: str = option("", parse=lambda v, label: "" if v is None else text(v, label))   # part of the name
    map: str = option(PACKAGED_MAP, parse=file_or(PACKAGED_MAP), relative=True)   # or --midi-map
    midi_map: MidiMap = option(MidiMap(), derived=True)

    @property
    def learn_file(self) -> Optional[str]:
        """Where MIDI learn saves: the map file given, or None (the user's own map) for the
        packaged one, which is never written."""
        return None if Path(self.map).resolve() == Path(PACKAGED_MAP).resolve() else self.map


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
