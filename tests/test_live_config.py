"""configs/live.yaml -> LiveConfig, flags over the file, and bad input through the CLI's main()."""

import pytest

from dynastream.nets.errors import DynastreamError
from dynastream.stream.alpha import ControllerConfig
from dynastream.stream.cli import main
from dynastream.stream.config import DEFAULT_LIVE, load_live_config, load_midi_map
from dynastream.stream.live import LiveConfig, parse_size
from dynastream.stream.midi import MidiMap
from dynastream.stream.session import processing_size


def test_shipped_live_yaml_gives_the_dataclass_defaults():
    assert DEFAULT_LIVE.is_file()
    assert load_live_config() == LiveConfig()


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "live.yaml"
    path.write_text("source: demo\nmodel: [untrained:lite, untrained:lite-dual]\nsize: 320x240\n"
                    "controls: {slew: 0, presets: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, [1, 0, 1]]}\n")
    config = load_live_config(path)
    assert config.source == "demo" and config.models == ("untrained:lite", "untrained:lite-dual")
    assert config.size == (320, 240) and config.controls.slew == 0.0
    assert config.controls.presets[9] == (1.0, 0.0, 1.0)
    config = load_live_config(path, {"scale": (0.5, "--scale"), "model": ("a,b", "--model"),
                                     "frames": (7, "--frames"),
                                     "midi.enabled": (True, "--midi"), "midi.device": ("", "--midi")})
    assert config.scale == 0.5 and config.size is None      # the flag's scale replaces the file's size
    assert config.models == ("a", "b") and config.frames == 7
    assert config.midi.enabled and config.midi.midi_map.cc[1] == "alpha"  # the shipped midi.yaml


@pytest.mark.parametrize("text, message", [
    ("frams: 3\n", "live.yaml: unknown key 'frams'"),
    ("controls: {slew: 1, swing: 2}\n", "live.yaml: unknown key 'controls.swing'"),
    ("midi: {port: 1}\n", "live.yaml: unknown key 'midi.port'"),
    ("size: 100x-75\n", "bad live.yaml: size '100x-75'"),
    ("frames: -1\n", "frames must be a whole number >= 0"),
    ("headless: yes please\n", "headless must be true or false"),
    ("controls: {presets: [1, 2]}\n", "presets must be a list of 10"),
    ("size: 320x240\nscale: 0.5\n", "a processing size or a scale, not both"),
    ("source: [1\n", "live.yaml: line 2: not valid YAML"),
    ("midi: {enabled: true, map: nothere.yaml}\n", "MIDI map"),
])
def test_bad_config_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "live.yaml"
    path.write_text(text)
    with pytest.raises(DynastreamError, match=message.replace("(", r"\(")):
        load_live_config(path)


def test_sizes():
    assert parse_size("320x240", "--size") == (320, 240)
    assert parse_size(" 321X241 ", "--size") == (321, 241)
    for bad in ("320", "x240", "0x240", "-4x8", "3.5x2"):
        with pytest.raises(DynastreamError, match="bad --size"):
            parse_size(bad, "--size")
    assert processing_size((640, 480), None, None, "cpu") == (320, 240)    # CPU: about 320x240 pixels
    assert processing_size((1280, 720), None, None, "cpu") == (368, 208)
    assert processing_size((640, 480), None, None, "cuda") == (640, 480)
    assert processing_size((66, 50), None, None, "cpu") == (64, 48)       # automatic sizes: multiples of 4
    assert processing_size((640, 480), None, 0.25, "cuda") == (160, 120)
    assert processing_size((640, 480), (96, 64), None, "cpu") == (96, 64)


def test_controller_and_midi_map_defaults_are_valid():
    assert ControllerConfig().slew > 0
    assert MidiMap().cc == {}


@pytest.mark.parametrize("args, message", [
    (["--size", "big"], "bad --size 'big'"),
    (["--keyframes", "nope.csv"], "keyframe file nope.csv does not exist"),
    (["--frames", "-2"], "--frames must be a whole number >= 0"),
])
def test_cli_bad_input_exits_2_with_one_sentence(capsys, args, message):
    assert main(["live", "--source", "demo", "--headless", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynastream: error: ") and message in err and err.count("\n") == 1


def test_cli_size_and_scale_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["live", "--size", "320x240", "--scale", "0.5"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("controls: {initial: .nan}\n", "live.yaml: controls.initial must be a finite number, not nan"),
    ("controls: {initial: -.inf}\n", "controls.initial must be a finite number, not -inf"),
    ("controls: {initial: 1" + "0" * 400 + "}\n", "controls.initial must be a finite number, not 1000"),
    ("controls: {presets: [0, 0, 0, 0, 0, 0, 0, 0, 0, [1, .nan, 1]]}\n", "presets[9] must be a finite number"),
    ("controls: {slew: .inf}\n", "controls.slew must be a finite number > 0, not inf"),
    ("controls: {lfo_period: .nan}\n", "controls.lfo_period must be a finite number > 0"),
    ("scale: .inf\n", "live.yaml: scale must be a finite number > 0 and at most 8, not inf"),
    ("scale: 1000\n", "scale must be a finite number > 0 and at most 8, not 1000"),
    ("fps: .nan\n", "fps must be a finite number > 0 and at most 1000, not nan"),
    ("walk_seconds: .inf\n", "walk_seconds must be a finite number > 0"),
    ("size: 100000x100000\n", "bad live.yaml: size '100000x100000': use WIDTHxHEIGHT with numbers from 1 to 8192"),
    ("input_size: 99999x2\n", "input_size '99999x2'"),
    ("source: 1000000000\n", "live.yaml: source '1000000000' is not a camera index (0 to 255)"),
    ("ring_slots: 1000000000\n", "ring_slots must be a whole number from 2 to 64, not 1000000000"),
    ("threads: 100000\n", "threads must be a whole number from 0 to 256, not 100000"),
    ("walk_seed: " + "9" * 30 + "\n", "walk_seed must be a whole number from 0 to"),
    ("source: [" + ", ".join(["1"] * 10000) + "]\n", "source must be a text, not [1, 1, 1, 1, ...]"),
])
def test_non_finite_and_absurd_numbers_are_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "live.yaml"
    path.write_text(text)
    with pytest.raises(DynastreamError) as err:
        load_live_config(path)
    assert message in str(err.value) and len(str(err.value)) < 200, str(err.value)


@pytest.mark.parametrize("text, message", [
    ("channel: one\n", "midi.yaml: channel must be 1-16 or any, not 'one'"),
    ("channel: [1]\n", "channel must be 1-16 or any, not [1]"),
    ("channel: true\n", "channel must be 1-16 or any, not True"),
    ("cc: [1, 2]\n", "cc must be a mapping of numbers to actions, not [1, 2]"),
    ("cc: {1: [alpha]}\n", "CC 1 maps to ['alpha']"),
    ("cc: {alpha: 1}\n", "CC number 'alpha' is not 0-127"),
    ("notes: {60: {preset: 1}}\n", "note 60 maps to {'preset': 1}"),
    ("notes: 60\n", "notes must be a mapping of numbers to actions, not 60"),
    ("{1: x, b: y}\n", "unknown key '1'"),
])
def test_midi_maps_of_the_wrong_type_are_one_sentence(tmp_path, text, message):
    path = tmp_path / "midi.yaml"
    path.write_text(text)
    with pytest.raises(DynastreamError) as err:
        load_midi_map(path)
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--scale", "inf"], "--scale must be a finite number > 0 and at most 8, not inf"),
    (["--scale", "nan"], "--scale must be a finite number > 0"),
    (["--fps", "inf"], "--fps must be a finite number > 0 and at most 1000"),
    (["--size", "100000x100"], "bad --size '100000x100'"),
    (["--threads", "1000000000"], "--threads must be a whole number from 0 to 256"),
    (["--source", str(10 ** 9)], "--source '1000000000' is not a camera index"),
    (["--walk-seconds", "nan"], "--walk-seconds must be a finite number > 0"),
])
def test_cli_numbers_are_finite_and_bounded(capsys, args, message):
    assert main(["live", "--headless", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynastream: error: ") and message in err and err.count("\n") == 1, err
