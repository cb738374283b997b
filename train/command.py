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


def run_distill(style_image: str, steps: Optional[int] = None, out: Optional[str] = None, resume: bool = False,
                sets: Sequence[str] = (), to: Optional[str] = None) -> int:
    """A model of any picture in the ``arbitrary-frame`` net: the arbitrary teacher's transformer,
    and a tuning block on its style vector that starts as the teacher's own path (exact, so the
    default is no training step). Alone: a strength model (α = 0 the teacher at strength 0, each
    photo in its own palette; α = 1 the picture's full style). With ``to``: a morph (α = 0 the
    picture as the teacher renders it; α = 1 the teacher given ``to``). ``steps`` > 0 then trains
    that block against the teacher."""
    pictures = [Path(style_image).expanduser()] + ([Path(to).expanduser()] if to is not None else [])
    for given, path in zip((style_image, to), pictures):
        if not path.is_file():
            raise ConfigError(f"style image {given} does not exist")
    raw = read_mapping(resolve_config_path(DISTILL_CONFIG))
    name = f"distill-{pictures[0].stem}" + (f"-to-{pictures[1].stem}" if to is not None else "")
    raw.update(name=name, out=f"runs/{name}")
    if to is None:
        raw["objectives"]["main"]["style_image"] = raw["objectives"]["higher"]["style_image"] = str(pictures[0])
    else:
        raw["objectives"]["main"] = {"teacher": "arbitrary", "style_image": str(pictures[0]), "strength": 1.0}
        raw["objectives"]["higher"]["style_image"] = str(pictures[1])
    if steps is not None:
        if steps < 0:
            raise ConfigError(f"--steps must be 0 or more, not {steps}")
        raw["schedule"]["blocks"]["steps"] = steps
    again = f"{style_image} " + (f"--to {to} " if to is not None else "")
    return _train(raw, f"dynastream distill {style_image}", sets, out, resume, again=again, command="distill")


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
