"""`dynastream train` (also `torchrun ... -m dynastream.stream train`): reads the YAML config and `--set` overrides (the only
place in train/ that sees argv-level input), then runs the trainer the config's ``task`` names."""

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from dynastream import nets
from dynastream.configs.schema import ConfigError, apply_sets, from_dict, read_mapping
from dynastream.nets.errors import short_repr
from dynastream.train.config import resolve_config_path
from dynastream.train.session import Interrupted

TASKS = ("style", "dcgan")


def run(config: Optional[str], sets: Sequence[str] = (), out: Optional[str] = None, resume: bool = False) -> int:
    if config is not None:
        path = resolve_config_path(config)
        raw, source = read_mapping(path), f"config {path}"
    elif resume and out is not None:
        last = Path(out) / "last.pt"
        if not last.is_file():
            raise ConfigError(f"nothing to resume: {last} does not exist")
        state = nets.read(last).get("train_state")
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise ConfigError(f"{last} is not a resumable training checkpoint")
        raw, source = state["config"], f"the config stored in {last}"
    else:
        raise ConfigError("train needs --config FILE (e.g. configs/train/smoke.yaml), "
                          "or --resume --out DIR to continue a run")
    return _train(raw, source, sets, out, resume, again=f"--config {config} " if config is not None else "")


DISTILL_CONFIG = "distill-strength"   # the shipped config `dynastream distill` fills in
DISTILL_STEPS = 1500                  # per phase: about 20 minutes on one core of the 2-core machine here


def run_distill(style_image: str, steps: Optional[int] = None, out: Optional[str] = None, resume: bool = False,
                sets: Sequence[str] = ()) -> int:
    """A strength model of any picture: the shipped distillation config with the picture as the
    arbitrary teacher's style at both objectives (strength 0.3 at α = 0, 1 at α = 1)."""
    path = Path(style_image).expanduser()
    if not path.is_file():
        raise ConfigError(f"style image {style_image} does not exist")
    raw = read_mapping(resolve_config_path(DISTILL_CONFIG))
    name = f"distill-{path.stem}"
    raw.update(name=name, out=f"runs/{name}")
    for phase in ("main", "higher"):
        raw["objectives"][phase]["style_image"] = str(path)
    steps = DISTILL_STEPS if steps is None else steps
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, not {steps}")
    raw["schedule"]["main"]["steps"] = raw["schedule"]["blocks"]["steps"] = steps
    return _train(raw, f"dynastream distill {style_image}", sets, out, resume, again=f"{style_image} ",
                  command="distill")


def _train(raw: dict, source: str, sets: Sequence[str], out: Optional[str], resume: bool, again: str,
           command: str = "train") -> int:
    task = raw.get("task", "style")
    if task == "style":
        from dynastream.train import style as trainer

        cls = trainer.StyleTrainConfig
    elif task == "dcgan":
        from dynastream.train import gan as trainer

        cls = trainer.DCGANTrainConfig
    else:
        raise ConfigError(f"{source}: task must be one of {', '.join(TASKS)}, not {short_repr(task)}")
    cfg = from_dict(cls, apply_sets(raw, cls, sets), source)
    out_dir = Path(out) if out is not None else cfg.out_dir
    try:
        trainer.train(cfg, out_dir, resume=resume)
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"dynastream: interrupted after step {e.step}; continue with: "
                  f"dynastream {command} {again}--out {out_dir} --resume", file=sys.stderr)
        return 130
    return 0
