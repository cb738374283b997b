from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from dynastream import configs
from dynastream.configs.schema import ConfigError, apply_sets, diff_keys, from_dict, load_config, read_mapping, to_dict
from dynastream.nets.errors import DynastreamError
from dynastream.train.config import resolve_config_path
from dynastream.train.gan import DCGANTrainConfig
from dynastream.train.style import StyleTrainConfig, check_resume_config


@dataclass(frozen=True)
class Inner:
    rate: float = 1.0
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    count: int = 1
    inner: Inner = field(default_factory=Inner)
    size: Optional[int] = None
    pair: tuple[float, float] = (0.0, 1.0)
    flag: bool = False


def test_nested_dataclass_from_dict_with_types():
    cfg = from_dict(Outer, {"name": "x", "count": 3, "inner": {"rate": "1e5", "kind": "b"}, "size": None,
                            "pair": [0.5, 2], "flag": True})
    assert cfg == Outer("x", 3, Inner(1e5, "b"), None, (0.5, 2.0), True)
    assert to_dict(cfg) == {"name": "x", "count": 3, "inner": {"rate": 1e5, "kind": "b"}, "size": None,
                            "pair": [0.5, 2.0], "flag": True}


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "cuont": 2}, "unknown key 'cuont'"),
    ({"name": "x", "inner": {"rte": 2}}, "unknown key 'inner.rte'"),
    ({}, "missing required key 'name'"),
    ({"name": "x", "count": "many"}, "count must be an integer, not 'many'"),
    ({"name": "x", "count": 2.5}, "count must be an integer"),
    ({"name": "x", "flag": "yes"}, "flag must be true or false"),
    ({"name": "x", "inner": {"kind": "c"}}, "inner.kind must be one of a, b, not 'c'"),
    ({"name": "x", "pair": [1]}, "pair must be a list of 2 values"),
    ({"name": "x", "inner": 3}, "inner must be a mapping"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        from_dict(Outer, data, "config t.yaml")
    assert str(e.value).startswith("config t.yaml: ") and "\n" not in str(e.value)


def test_set_overrides_with_type_checking():
    raw = {"name": "x", "inner": {"rate": 2.0}}
    out = apply_sets(raw, Outer, ["inner.kind=b", "count=7", "size=null", "pair=[1, 2]", "inner.rate=3e-4"])
    cfg = from_dict(Outer, out)
    assert cfg.inner == Inner(3e-4, "b") and cfg.count == 7 and cfg.size is None and cfg.pair == (1.0, 2.0)
    assert raw == {"name": "x", "inner": {"rate": 2.0}}, "the input mapping is not modified"
    with pytest.raises(ConfigError, match=r"--set inner\.rat=1: no config key 'inner\.rat' \(known here: rate, kind\)"):
        apply_sets(raw, Outer, ["inner.rat=1"])
    with pytest.raises(ConfigError, match=r"--set count=abc: count must be an integer, not 'abc'"):
        apply_sets(raw, Outer, ["count=abc"])
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        apply_sets(raw, Outer, ["count"])
    with pytest.raises(ConfigError, match="count is a value, not a section"):
        apply_sets(raw, Outer, ["count.sub=1"])


def test_shipped_configs_load_and_are_findable():
    names = sorted(p.stem for p in configs.path("train").glob("*.yaml"))
    assert {"smoke", "strength", "style-a-to-b", "dual", "dcgan_smoke", "dcgan_celeba"} <= set(names)
    for name in names:
        by_name = resolve_config_path(name)
        assert by_name.resolve() == resolve_config_path(f"configs/train/{name}.yaml").resolve()
        task = read_mapping(by_name).get("task", "style")
        cfg = load_config(DCGANTrainConfig if task == "dcgan" else StyleTrainConfig, by_name)
        assert cfg.name == name and cfg.task == task
    strength = load_config(StyleTrainConfig, resolve_config_path("strength"))
    assert (strength.objectives.main.style_weight, strength.objectives.higher.style_weight) == (1e5, 1e7)
    assert (strength.schedule.main.lr, strength.schedule.blocks.lr) == (1e-3, 1e-4)
    dual = load_config(StyleTrainConfig, resolve_config_path("dual"))
    assert dual.net.mode == "dual" and dual.objectives.lower is not None


def test_unknown_config_names_the_shipped_ones(tmp_path):
    with pytest.raises(ConfigError, match="config nope does not exist .*smoke"):
        resolve_config_path("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 2: not valid YAML \("):
        load_config(StyleTrainConfig, bad)


def test_resume_may_change_only_schedule_and_housekeeping():
    cfg = load_config(StyleTrainConfig, resolve_config_path("smoke"))
    stored = to_dict(cfg)
    longer = load_config(StyleTrainConfig, resolve_config_path("smoke"),
                         ["schedule.main.steps=99", "data.workers=3", "out=elsewhere"])
    check_resume_config(longer, stored)
    assert sorted(diff_keys(stored, to_dict(longer))) == ["data.workers", "out", "schedule.main.steps"]
    other = load_config(StyleTrainConfig, resolve_config_path("smoke"), ["objectives.higher.style_weight=3"])
    with pytest.raises(DynastreamError, match="objectives.higher.style_weight differs"):
        check_resume_config(other, stored)
