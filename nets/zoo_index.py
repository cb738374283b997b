"""The model zoo index (nets/zoo/zoo.yaml) and the model names, without torch.

The command line lists models and shows its defaults from here, so ``dynastream --help`` and
``dynastream models`` never import torch; ``nets.checkpoint`` re-exports every name.
"""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from dynastream.nets import yamlfile
from dynastream.nets.errors import CheckpointError

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
UNTRAINED_PREFIX = "untrained:"
DEFAULT_MODEL = "arbitrary-elephants-to-firstgeneration"   # the zoo model live and render use unless told otherwise
UNTRAINED = {  # name -> (kind, preset, mode); random weights, seeded, for tests, benchmarks and demos
    "untrained:lite": ("style", "lite", "normal"),
    "untrained:lite-dual": ("style", "lite", "dual"),
    "untrained:fast": ("style", "fast", "normal"),
    "untrained:paper": ("style", "paper", "normal"),
    "untrained:paper-dual": ("style", "paper", "dual"),
    "untrained:dcgan": ("dcgan", None, "normal"),
}


@dataclass(frozen=True)
class ZooEntry:
    """One model in nets/zoo/zoo.yaml; ``card`` is the free-form model card."""

    name: str
    file: str
    kind: str
    mode: str
    preset: str
    alpha_range: tuple[float, float]
    size_bytes: int
    description: str
    license: str = ""
    card: dict = field(default_factory=dict)


def zoo_entries(index: Optional[Path] = None) -> list[ZooEntry]:
    """The zoo index. It is YAML so model cards stay readable; nets.yamlfile imports PyYAML
    lazily, the only non-torch import under nets/."""
    index = index or ZOO_DIR / "zoo.yaml"
    data = yamlfile.read(index, "zoo index", error=CheckpointError) or {}
    allowed = {f.name for f in fields(ZooEntry)}
    entries = []
    for i, raw in enumerate(data.get("models") or []):
        unknown = set(raw) - allowed
        if unknown:
            raise CheckpointError(f"{index}: model #{i + 1} has unknown key(s) {', '.join(sorted(unknown))}")
        raw = dict(raw, alpha_range=tuple(raw["alpha_range"]))
        entries.append(ZooEntry(**raw))
    return entries
