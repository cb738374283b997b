"""The one YAML reader (nets.yamlfile): hostile files are refused by every reader that uses it,
fast and without building the structure they describe."""

import time
import tracemalloc

import pytest

from dynastream import configs
from dynastream.configs.schema import read_mapping
from dynastream.nets import yamlfile
from dynastream.nets.errors import DynastreamError
from dynastream.stream.config import load_live_config, load_midi_map
from dynastream.stream.keyframes import load_track

SITES = ("res3_in", "up1_in", "out_in")


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: 9 levels of 9 aliases, 9**9 (387 million) leaves once expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


READERS = {
    "keyframes": ("k.yaml", lambda p: load_track(p, SITES, (0.0, 1.0))),
    "live config": ("live.yaml", load_live_config),
    "MIDI map": ("midi.yaml", load_midi_map),
    "training config": ("train.yaml", read_mapping),
}


def refused_quickly(tmp_path, reader: str, text: str) -> str:
    """The message of the DynastreamError ``reader`` raises on ``text``, which must come within
    half a second and with under 20 MB of Python allocations."""
    name, read = READERS[reader]
    path = tmp_path / name
    path.write_text(text)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DynastreamError) as err:
            read(path)
        seconds = time.perf_counter() - t0
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 0.5 and peak_bytes < 20e6, (seconds, peak_bytes)
    message = str(err.value)
    assert "\n" not in message and len(message) < 300
    return message


@pytest.mark.parametrize("reader", READERS)
def test_billion_laughs_is_refused_by_every_reader(tmp_path, reader):
    message = refused_quickly(tmp_path, reader, billion_laughs())
    assert "line 2: YAML aliases (*'a0') are not accepted" in message


@pytest.mark.parametrize("reader", READERS)
def test_deep_nesting_is_refused_by_every_reader(tmp_path, reader):
    message = refused_quickly(tmp_path, reader, "keys: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nesting deeper than 32 levels" in message or "maximum nesting depth" in message


@pytest.mark.parametrize("reader", ["live config", "MIDI map", "training config"])
def test_absurd_file_size_is_refused_before_reading(tmp_path, reader):
    message = refused_quickly(tmp_path, reader, "# padding\n" * 200_000)
    assert "is 2.0 MB, more than the 1.0 MB this reader accepts" in message


def test_merge_keys_are_aliases_too():
    with pytest.raises(yamlfile.YamlError, match="line 2: YAML aliases"):
        yamlfile.parse("base: &b {x: 1}\nmore: {<<: *b, y: 2}\n", "m.yaml")


def test_every_shipped_yaml_reads_and_nesting_up_to_the_limit_is_fine():
    for path in sorted(configs.CONFIG_DIR.rglob("*.yaml")):
        assert isinstance(yamlfile.read(path, "config"), dict), path
    deep = "[" * yamlfile.MAX_DEPTH + "1" + "]" * yamlfile.MAX_DEPTH
    assert yamlfile.parse(deep, "deep.yaml") is not None
    with pytest.raises(yamlfile.YamlError, match="deep.yaml: line 1: nesting deeper than 32"):
        yamlfile.parse("[" + deep + "]", "deep.yaml")


def test_pure_python_parser_reads_the_same_and_refuses_the_same(monkeypatch):
    """PyYAML built without libyaml: the same composer checks on the pure-Python parser."""
    text = (configs.CONFIG_DIR / "live.yaml").read_text()
    with_libyaml = yamlfile.parse(text, "live.yaml")
    loader_class = yamlfile._loader_class
    monkeypatch.setattr(yamlfile, "_loader_class", lambda: loader_class(False))
    assert "CParser" not in str(yamlfile._loader_class().__mro__)
    assert yamlfile.parse(text, "live.yaml") == with_libyaml
    with pytest.raises(yamlfile.YamlError, match="line 2: YAML aliases"):
        yamlfile.parse(billion_laughs(), "b.yaml")
    with pytest.raises(yamlfile.YamlError, match="line 1: nesting deeper than 32 levels"):
        yamlfile.parse("[" * 50_000 + "]" * 50_000, "d.yaml")
