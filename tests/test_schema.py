"""dynastream.configs.schema's per-field options, and live's flags and file as one schema (LiveConfig)."""

from dataclasses import dataclass, field
from typing import Optional

import pytest

from dynastream.configs.schema import ConfigError, from_dict, option, read_mapping, to_dict, whole_number
from dynastream.stream.cli import LIVE_FLAGS, build_parser, live_overrides
from dynastream.stream.config import DEFAULT_LIVE, load_live_config
from dynastream.stream.live import LiveConfig


@dataclass(frozen=True)
class Section:
    port: Optional[int] = option(None, parse=whole_number(0, 65535))
    file: str = option("default.yaml", relative=True)
    loaded: str = option("", derived=True)


@dataclass(frozen=True)
class Top:
    names: tuple[str, ...] = option((), key="name")
    section: Section = field(default_factory=Section)


def test_options_key_parse_relative_and_derived(tmp_path):
    cfg = from_dict(Top, {"name": ["a"], "section": {"port": "80", "file": "x.yaml"}}, "t.yaml", folder=tmp_path)
    assert cfg.names == ("a",) and cfg.section.port == 80 and cfg.section.file == str(tmp_path / "x.yaml")
    assert to_dict(cfg) == {"name": ["a"], "section": {"port": 80, "file": str(tmp_path / "x.yaml")}}
    assert from_dict(Top, {"section": None}) == Top(), "a section with every key commented out: its defaults"
    with pytest.raises(ConfigError, match=r"^t.yaml: unknown key 'section.loaded' \(known here: port, file\)$"):
        from_dict(Top, {"section": {"loaded": "x"}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"^t.yaml: unknown key 'names'"):
        from_dict(Top, {"names": ["a"]}, "t.yaml")
    with pytest.raises(ConfigError, match=r"^t.yaml: section.port must be a whole number from 0 to 65535, not 70000$"):
        from_dict(Top, {"section": {"port": 70000}}, "t.yaml")


def test_overrides_replace_the_file_and_are_named_by_their_flag(tmp_path):
    data = {"section": {"port": 1, "file": "x.yaml"}}
    cfg = from_dict(Top, data, "t.yaml", {"section.port": ("2", "--port"), "section.file": ("y.yaml", "--file")},
                    folder=tmp_path)
    assert cfg.section == Section(port=2, file="y.yaml"), "a flag's path is the user's, not relative to the file"
    assert data == {"section": {"port": 1, "file": "x.yaml"}}, "the file's data is not modified"
    with pytest.raises(ConfigError, match=r"^--port must be a whole number from 0 to 65535, not '-3'$"):
        from_dict(Top, data, "t.yaml", {"section.port": ("-3", "--port")})
    with pytest.raises(ConfigError, match=r"^--name\[0\] must be a string, not \[1\]$"):
        from_dict(Top, {}, "t.yaml", {"name": ([[1]], "--name")})


def _keys(data: dict, prefix: str = "") -> set[str]:
    return {k for key, value in data.items()
            for k in (_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"})}


def test_live_yaml_holds_exactly_the_keys_of_live_config():
    assert _keys(read_mapping(DEFAULT_LIVE)) == _keys(to_dict(LiveConfig()))


def test_every_live_flag_overrides_a_live_yaml_key():
    keys = _keys(to_dict(LiveConfig()))
    for flag in LIVE_FLAGS:
        assert flag.key in keys and all(key in keys for key, _ in flag.also), flag.flag
    args = build_parser().parse_args(["live", "--midi", "nano", "--osc", "9000", "--no-hud", "--scale", "0.5"])
    overrides = live_overrides(args)
    assert overrides == {"midi.device": ("nano", "--midi"), "midi.enabled": (True, "--midi"),
                         "osc.port": ("9000", "--osc"), "hud": (False, "--no-hud"), "scale": (0.5, "--scale")}
    config = load_live_config(overrides=overrides)
    assert config.midi.enabled and config.midi.device == "nano" and config.osc.port == 9000
    assert not config.hud and config.scale == 0.5
