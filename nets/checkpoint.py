"""The one checkpoint format, its loader and saver, and the model zoo index.

A checkpoint is a ``torch.save``d dict, read with ``torch.load(weights_only=True)`` so a file from
the internet cannot run code::

    {"format": "dynastream/1", "kind": "style" | "dcgan", "arch": {...}, "mode": "normal" | "dual",
     "sites": [...], "alpha_range": [lo, hi], "objectives": {...}, "provenance": {...},
     "state_dict": {...}}                        # optional: "train_state" for resuming training
"""

import os
import pickle
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

import torch

from nets import yamlfile
from nets.dcgan import DCGANConfig, DCGANGenerator
from nets.errors import DynastreamError
from nets.stylenet import PRESETS, StyleNet, StyleNetConfig
from nets.tuning import MODES, DynamicNet

FORMAT_NAME = "dynastream"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("kind", "arch", "mode", "sites", "alpha_range", "objectives", "provenance", "state_dict")
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
UNTRAINED_PREFIX = "untrained:"
DEFAULT_MODEL = "lite-elephants-strength"   # the zoo model live and render use unless told otherwise
UNTRAINED = {  # name -> (kind, preset, mode); random weights, seeded, for tests, benchmarks and demos
    "untrained:lite": ("style", "lite", "normal"),
    "untrained:lite-dual": ("style", "lite", "dual"),
    "untrained:paper": ("style", "paper", "normal"),
    "untrained:paper-dual": ("style", "paper", "dual"),
    "untrained:dcgan": ("dcgan", None, "normal"),
}

PathLike = Union[str, os.PathLike]


class CheckpointError(DynastreamError):
    pass


def arch_of(net: DynamicNet) -> dict:
    if isinstance(net.main, StyleNet):
        preset = next((name for name, c in PRESETS.items() if c == net.main.config), "custom")
        return {"net": "stylenet", "preset": preset, **net.main.config.to_dict()}
    return {"net": "dcgan", **net.main.config.to_dict()}


def build(kind: str, arch: dict, mode: str, sites, alpha_range=None) -> DynamicNet:
    """An untrained DynamicNet for a checkpoint's architecture fields."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if kind == "style" and arch.get("net") == "stylenet":
        main = StyleNet(StyleNetConfig.from_dict(arch))
    elif kind == "dcgan" and arch.get("net") == "dcgan":
        main = DCGANGenerator(DCGANConfig.from_dict(arch))
    else:
        raise ValueError(f"unknown kind/net {kind!r}/{arch.get('net')!r}")
    return DynamicNet(main, list(sites), mode, tuple(alpha_range) if alpha_range else None)


def save(net: DynamicNet, path: PathLike, *, objectives: Optional[dict] = None,
         provenance: Optional[dict] = None, alpha_range: Optional[tuple[float, float]] = None,
         half: bool = False, train_state: Optional[dict] = None) -> Path:
    """Write ``net`` atomically (temporary file, then rename). ``half`` stores float weights as
    fp16 (loading restores the model's fp32)."""
    path = Path(path)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             for k, v in net.state_dict().items()}
    ckpt: dict[str, Any] = {
        "format": f"{FORMAT_NAME}/{FORMAT_VERSION}",
        "kind": net.kind,
        "arch": arch_of(net),
        "mode": net.mode,
        "sites": list(net.sites),
        "alpha_range": [float(x) for x in (alpha_range or net.alpha_range)],
        "objectives": objectives or {},
        "provenance": provenance or {},
        "state_dict": state,
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary shareable file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: PathLike) -> dict:
    """The validated checkpoint dict at ``path`` (the only place that unpickles a checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise CheckpointError(f"refused to load {path}: it holds Python objects beyond tensors and plain "
                                  "data, which could run code, so it is not a dynastream checkpoint") from None
        raise CheckpointError(f"{path} is not a dynastream checkpoint (unreadable torch file)") from None
    except Exception:  # torch raises many types for a file that is not a torch zip/pickle
        raise CheckpointError(f"{path} is not a dynastream checkpoint (not a torch file)") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(f"{FORMAT_NAME}/"):
        raise CheckpointError(f"{path} is not a dynastream checkpoint (no '{FORMAT_NAME}/N' format tag)")
    try:
        version = int(fmt.split("/", 1)[1])
    except ValueError:
        raise CheckpointError(f"{path} has an unreadable format tag {fmt!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {version}, newer than the format "
                              f"{FORMAT_VERSION} this dynastream reads; upgrade dynastream")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is an incomplete dynastream checkpoint (missing {', '.join(missing)})")
    return ckpt


def from_dict(ckpt: dict, source: str = "") -> DynamicNet:
    """Build the net a validated checkpoint dict describes and load its weights."""
    try:
        net = build(ckpt["kind"], ckpt["arch"], ckpt["mode"], ckpt["sites"], ckpt["alpha_range"])
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{source or 'checkpoint'}: the weights do not fit the declared "
                              f"architecture ({first.rstrip('.:')})") from None
    net.meta = {"objectives": ckpt["objectives"], "provenance": ckpt["provenance"], "source": source}
    return net


def load(name_or_path: PathLike, device: Union[str, torch.device] = "cpu") -> DynamicNet:
    """A zoo name, an ``untrained:*`` name or a checkpoint path -> a DynamicNet in eval mode."""
    name = str(name_or_path)
    if name in UNTRAINED:
        net = untrained(name)
    else:
        path = resolve(name_or_path)
        net = from_dict(read(path), str(path))
        net.meta["name"] = name if name in {e.name for e in zoo_entries()} else path.stem
    return net.to(device).eval()


def untrained(name: str) -> DynamicNet:
    kind, preset, mode = UNTRAINED[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DynamicNet.for_style(preset, mode) if kind == "style" else DynamicNet.for_dcgan(mode=mode)
    net.meta = {"name": name, "objectives": {}, "provenance": {"untrained": True, "seed": 0}, "source": name}
    return net


def resolve(name_or_path: PathLike) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    entries = {e.name: e for e in zoo_entries()}
    if str(name_or_path) in entries:
        return ZOO_DIR / entries[str(name_or_path)].file
    if path.suffix or os.sep in str(name_or_path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    known = ", ".join(list(entries) + list(UNTRAINED))
    raise CheckpointError(f"no model named {name_or_path!r}: not a file and not in the zoo (known: {known})")


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
