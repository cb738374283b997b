"""YAML -> the live pipeline's dataclasses (configs/live.yaml, configs/midi.yaml).

Called by the CLI only. Unknown keys are refused naming the key; every value is checked and a bad
one is named with where it came from (``live.yaml: size`` or ``--size``).
"""

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Optional, Union

import configs
from nets import yamlfile
from nets.errors import DynastreamError, short_repr
from stream.alpha import ControllerConfig, ControlsError
from stream.midi import MidiMap
from stream.limits import (MAX_CAMERA_INDEX, MAX_FPS, MAX_RING_SLOTS, MAX_SCALE, MAX_SEED, MAX_SIDE, MAX_STABILIZE,
                           MAX_THREADS)
from stream.live import LiveConfig
from stream.osc import OscMap
from stream.stage import StageConfig, user_midi_map

DEFAULT_LIVE = configs.path("live.yaml")
DEFAULT_MIDI = configs.path("midi.yaml")
DEFAULT_OSC = configs.path("osc.yaml")


class ConfigError(DynastreamError):
    pass


def parse_size(value: Any, label: str) -> tuple[int, int]:
    """'320x240' -> (320, 240), both from 1 to MAX_SIDE."""
    parts = str(value).strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and 0 < int(p) <= MAX_SIDE for p in parts):
        raise ConfigError(f"bad {label} {short_repr(value)}: use WIDTHxHEIGHT with numbers from 1 to {MAX_SIDE}, "
                          "such as 320x240")
    return int(parts[0]), int(parts[1])


def _opt(convert: Callable) -> Callable:
    return lambda v, label: None if v is None else convert(v, label)


def _str(v, label):
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ConfigError(f"{label} must be a text, not {short_repr(v)}")
    return str(v)


def _source(v, label):
    """A camera index is a small number; anything else is checked when the source opens."""
    text = _str(v, label)
    if text.strip().isdigit() and int(text) > MAX_CAMERA_INDEX:
        raise ConfigError(f"{label} {short_repr(text)} is not a camera index (0 to {MAX_CAMERA_INDEX}), a file or demo")
    return text


def _bool(v, label):
    if not isinstance(v, bool):
        raise ConfigError(f"{label} must be true or false, not {short_repr(v)}")
    return v


def _int_in(low: int, high: int) -> Callable:
    def convert(v, label):
        if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).strip().lstrip("-").isdigit() \
                or not low <= int(v) <= high:
            raise ConfigError(f"{label} must be a whole number from {low} to {high}, not {short_repr(v)}")
        return int(v)
    return convert


def _int_at_least(low: int) -> Callable:
    def convert(v, label):
        if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).strip().lstrip("-").isdigit() \
                or int(v) < low:
            raise ConfigError(f"{label} must be a whole number >= {low}, not {short_repr(v)}")
        return int(v)
    return convert


def _positive(high: float = math.inf) -> Callable:
    def convert(v, label):
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{label} must be a number, not {short_repr(v)}") from None
        if isinstance(v, bool) or not (math.isfinite(f) and 0 < f <= high):
            up_to = f" and at most {high:g}" if high < math.inf else ""
            raise ConfigError(f"{label} must be a finite number > 0{up_to}, not {short_repr(v)}")
        return f
    return convert


def _stabilize(v, label):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_STABILIZE:
        raise ConfigError(f"{label} must be a number from 0 (off) to {MAX_STABILIZE}, not {short_repr(v)}")
    return float(v)


def _models(v, label):
    names = v if isinstance(v, (list, tuple)) else str(v).split(",")
    names = tuple(str(n).strip() for n in names if str(n).strip())
    if not names:
        raise ConfigError(f"{label} names no model")
    return names


_LIVE_FIELDS: dict[str, Callable] = {
    "source": _opt(_source), "model": _models, "device": _str, "precision": _str, "backend": _str,
    "size": _opt(parse_size), "scale": _opt(_positive(MAX_SCALE)),
    "input_size": _opt(parse_size), "fps": _opt(_positive(MAX_FPS)),
    "loop": _bool, "headless": _bool, "frames": _int_at_least(0),
    "window": _opt(parse_size), "fullscreen": _bool, "hud": _bool,
    "save_dir": _str, "ring_slots": _int_in(2, MAX_RING_SLOTS), "threads": _int_in(0, MAX_THREADS),
    "keyframes": _opt(_str), "alpha_map": _opt(_str), "record": _opt(_str), "stats_json": _opt(_str),
    "walk_seed": _int_in(0, MAX_SEED), "walk_seconds": _positive(3600.0),
    "stabilize": lambda v, label: _stabilize(v, label),
}
_CONTROL_FIELDS: dict[str, Callable] = {
    "slew": lambda v, label: 0.0 if v == 0 else _positive()(v, label), "step": _positive(),
    "fine_step": _positive(), "lfo_period": _positive(3600.0), "initial": _opt(lambda v, label: float(_number(v, label))),
    "presets": _opt(lambda v, label: _presets(v, label)),
}
_MIDI_FIELDS = ("enabled", "device", "map")


def _host(v, label):
    text = _str(v, label).strip()
    if not text or len(text) > 255 or any(c.isspace() for c in text):
        raise ConfigError(f"{label} must be a host name or address such as 127.0.0.1, not {short_repr(v)}")
    return text


def _token(v, label):
    text = _str(v, label)
    if len(text) < 8 or len(text) > 200 or not all(c.isalnum() or c in "-_." for c in text):
        raise ConfigError(f"{label} must be 8 to 200 letters, digits, '-', '_' or '.'")
    return text


_PORT = _opt(_int_in(0, 65535))    # 0: any free port (the one taken is printed)
_OSC_FIELDS: dict[str, Callable] = {"port": _PORT, "host": _host, "map": _opt(_str)}
_WEB_FIELDS: dict[str, Callable] = {"port": _PORT, "host": _host, "token": _opt(_token)}


def _number(v, label):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= 1e300:   # NaN fails the comparison
        raise ConfigError(f"{label} must be a finite number, not {short_repr(v)}")
    return v


def _presets(v, label):
    if not isinstance(v, list) or len(v) != 10:
        raise ConfigError(f"{label} must be a list of 10 entries (keys 0-9)")
    out = []
    for i, p in enumerate(v):
        out.append(tuple(float(_number(x, f"{label}[{i}]")) for x in p) if isinstance(p, list)
                   else float(_number(p, f"{label}[{i}]")))
    return tuple(out)


def _read_yaml(path: Path, what: str) -> dict:
    data = yamlfile.read(path, what, error=ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    return data


def _unknown(data: dict, known, where: str) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {short_repr(key)} (known: {', '.join(known)})")


def _load_map(kind, path: Union[str, Path], what: str):
    path = Path(path)
    try:
        return kind.from_dict(_read_yaml(path, what), where=str(path))
    except ControlsError as e:
        raise ConfigError(str(e)) from None


def load_midi_map(path: Union[str, Path]) -> MidiMap:
    return _load_map(MidiMap, path, "MIDI map")


def load_osc_map(path: Union[str, Path]) -> OscMap:
    return _load_map(OscMap, path, "OSC map")


def _section(data: dict, key: str, fields: dict, name: str) -> dict:
    section = data.get(key) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{name}: {key} must be a mapping")
    _unknown(section, fields, f"{name}: {key}")
    return {k: fields[k](v, f"{name}: {key}.{k}") for k, v in section.items()}


def load_live_config(path: Optional[Union[str, Path]] = None,
                     overrides: Optional[dict[str, tuple[Any, str]]] = None) -> LiveConfig:
    """``path`` (default configs/live.yaml), then ``overrides``: key -> (value, label), e.g.
    ``{"size": ("320x240", "--size")}``; keys are those of live.yaml, plus ``midi``,
    ``midi_device``, ``midi_map``, ``presets``-style control keys as ``controls.<key>``, the
    ``osc.<key>`` and ``web.<key>`` sections' keys and ``virtual_cam``."""
    path = Path(path) if path is not None else DEFAULT_LIVE
    data = _read_yaml(path, "live config")
    name = path.name
    _unknown(data, [*_LIVE_FIELDS, "controls", "midi", "osc", "web", "virtual_cam"], name)
    values: dict[str, Any] = {}
    for key, convert in _LIVE_FIELDS.items():
        if key in data:
            values[key] = convert(data[key], f"{name}: {key}")
    controls_data = data.get("controls") or {}
    if not isinstance(controls_data, dict):
        raise ConfigError(f"{name}: controls must be a mapping")
    _unknown(controls_data, _CONTROL_FIELDS, f"{name}: controls")
    controls = {k: _CONTROL_FIELDS[k](v, f"{name}: controls.{k}") for k, v in controls_data.items()}
    midi_data = data.get("midi") or {}
    if not isinstance(midi_data, dict):
        raise ConfigError(f"{name}: midi must be a mapping")
    _unknown(midi_data, _MIDI_FIELDS, f"{name}: midi")
    midi_enabled = _bool(midi_data.get("enabled", False), f"{name}: midi.enabled")
    midi_device = _str(midi_data.get("device") or "", f"{name}: midi.device")
    midi_map_path: Path = path.parent / str(midi_data["map"]) if midi_data.get("map") else DEFAULT_MIDI
    osc = _section(data, "osc", _OSC_FIELDS, name)
    web = _section(data, "web", _WEB_FIELDS, name)
    osc_map_path = path.parent / osc["map"] if osc.get("map") else DEFAULT_OSC
    virtual_cam = _bool(data.get("virtual_cam", False), f"{name}: virtual_cam")

    for key, (value, label) in (overrides or {}).items():
        if key == "midi":
            midi_enabled, midi_device = True, value
        elif key == "midi_map":
            midi_map_path = Path(value)
        elif key.startswith("controls."):
            controls[key[9:]] = _CONTROL_FIELDS[key[9:]](value, label)
        elif key == "osc.map":
            osc_map_path = Path(value)
        elif key.startswith(("osc.", "web.")):
            section, fields = (osc, _OSC_FIELDS) if key.startswith("osc.") else (web, _WEB_FIELDS)
            section[key[4:]] = fields[key[4:]](value, label)
        elif key == "virtual_cam":
            virtual_cam = _bool(value, label)
        else:
            values[key] = _LIVE_FIELDS[key](value, label)
            if key in ("size", "scale"):  # the command line's choice replaces the file's other one
                values["scale" if key == "size" else "size"] = None
    if values.get("size") is not None and values.get("scale") is not None:
        raise ConfigError("give a processing size or a scale, not both")
    if "model" in values:
        values["models"] = values.pop("model")
    try:
        controller = ControllerConfig(**controls)
    except ControlsError as e:
        raise ConfigError(f"{name}: {e}") from None
    packaged = midi_map_path.resolve() == DEFAULT_MIDI.resolve()
    if packaged and user_midi_map().is_file():
        midi_map_path = user_midi_map()   # what MIDI learn saved last time
    midi_map = load_midi_map(midi_map_path) if midi_enabled else MidiMap()
    stage = StageConfig(osc_port=osc.get("port"), osc_host=osc.get("host", "127.0.0.1"),
                        osc_map=load_osc_map(osc_map_path) if osc.get("port") is not None else OscMap(),
                        web_port=web.get("port"), web_host=web.get("host", "127.0.0.1"), web_token=web.get("token"),
                        virtual_cam=virtual_cam,
                        midi_learn_file=None if packaged else str(midi_map_path))
    return dataclasses.replace(LiveConfig(), **values, controls=controller, midi=midi_enabled,
                               midi_device=midi_device, midi_map=midi_map, stage=stage)
