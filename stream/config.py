"""configs/live.yaml (and the MIDI and OSC maps it names) -> LiveConfig, flags over the file.

Called by the CLI only. The checks are the dataclasses' own (``configs.schema.from_dict`` with
the ``option``s of LiveConfig, ControllerConfig, MidiConfig, OscConfig and WebConfig): unknown
keys are refused naming the key, and a bad value is named with where it came from
(``live.yaml: size`` or ``--size``).
"""

import dataclasses
from pathlib import Path
from typing import Any, Optional, Union

from dynastream import configs
from dynastream.configs.schema import ConfigError, from_dict, read_mapping
from dynastream.stream.alpha import ControlsError
from dynastream.stream.live import LiveConfig
from dynastream.stream.midi import PACKAGED_MAP, MidiMap
from dynastream.stream.osc import OscMap
from dynastream.stream.stage import PACKAGED_OSC_MAP, user_midi_map

DEFAULT_LIVE = configs.path("live.yaml")
DEFAULT_MIDI = Path(PACKAGED_MAP)
DEFAULT_OSC = Path(PACKAGED_OSC_MAP)


def _load_map(kind, path: Union[str, Path], what: str):
    path = Path(path)
    try:
        return kind.from_dict(read_mapping(path, what), where=str(path))
    except ControlsError as e:
        raise ConfigError(str(e)) from None


def load_midi_map(path: Union[str, Path]) -> MidiMap:
    return _load_map(MidiMap, path, "MIDI map")


def load_osc_map(path: Union[str, Path]) -> OscMap:
    return _load_map(OscMap, path, "OSC map")


def load_live_config(path: Optional[Union[str, Path]] = None,
                     overrides: Optional[dict[str, tuple[Any, str]]] = None) -> LiveConfig:
    """``path`` (default configs/live.yaml), then ``overrides``: a live.yaml key (``section.key``
    in a section) -> (value, label), e.g. ``{"size": ("320x240", "--size")}``. A size or a scale
    given there replaces the file's other one. The MIDI map is read when MIDI is on (the user's
    learned map in place of the packaged one), the OSC map when OSC listens."""
    path = Path(path) if path is not None else DEFAULT_LIVE
    overrides = dict(overrides or {})
    for key, other in (("size", "scale"), ("scale", "size")):
        if key in overrides and other not in overrides:
            overrides[other] = (None, overrides[key][1])
    config = from_dict(LiveConfig, read_mapping(path, "live config"), path.name, overrides, folder=path.parent)
    midi, osc = config.midi, config.osc
    if midi.enabled:
        packaged = midi.learn_file is None
        midi_map = load_midi_map(user_midi_map() if packaged and user_midi_map().is_file() else midi.map)
        midi = dataclasses.replace(midi, midi_map=midi_map)
    if osc.port is not None:
        osc = dataclasses.replace(osc, osc_map=load_osc_map(osc.map))
    return dataclasses.replace(config, midi=midi, osc=osc)
