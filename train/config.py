"""Which file a training ``--config`` names. Reading and checking it is ``configs.schema``'s job,
the loader live uses too (``load_config``, ``from_dict``, ``apply_sets``)."""

from pathlib import Path

from dynastream import configs
from dynastream.configs.schema import ConfigError


def resolve_config_path(spec: str) -> Path:
    """A config given as a path; else a shipped one: ``configs/train/x.yaml`` relative to the
    package, or a bare name ``x`` for ``configs/train/x.yaml``."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    candidates = []
    parts = Path(spec).parts
    if parts and parts[0] == "configs":
        candidates.append(configs.path(str(Path(*parts[1:]))))
    if len(parts) == 1 and not path.suffix:
        candidates.append(configs.path(f"train/{spec}.yaml"))
    for c in candidates:
        if c.is_file():
            return c
    shipped = ", ".join(sorted(p.stem for p in configs.path("train").glob("*.yaml")))
    raise ConfigError(f"config {spec} does not exist (shipped training configs: {shipped})")
