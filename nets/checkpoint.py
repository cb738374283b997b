"""The one checkpoint format, its loader and saver, and the model zoo index
(kept torch-free in ``nets.zoo_index``, re-exported here).

A checkpoint is a ``torch.save``d dict, read with ``torch.load(weights_only=True)`` so a file from
the internet cannot run code::

    {"format": "dynastream/1", "kind": "style" | "dcgan", "arch": {...}, "mode": "normal" | "dual",
     "sites": [...], "alpha_range": [lo, hi], "objectives": {...}, "provenance": {...},
     "state_dict": {...}, "weights_sha256": "..."}   # optional: "train_state" for resuming training

``weights_sha256`` (written since December 2026; older checkpoints have none and still load) is a
digest of the state dict that the loader verifies, so a damaged file is refused instead of
running with NaN weights. Every metadata field is checked for type and range, and the architecture
is bounded and compared with the weights' shapes before any net is built, so a hostile file can
neither crash the loader nor make it allocate gigabytes.
"""

import hashlib
import math
import os
import pickle
from pathlib import Path
from typing import Any, Optional, Union

import torch

from dynastream.nets.atomic import atomic_open
from dynastream.nets.dcgan import DCGANConfig, DCGANGenerator
from dynastream.nets.errors import CheckpointError, short_repr
from dynastream.nets.stylenet import OUTPUTS as STYLENET_OUTPUTS
from dynastream.nets.stylenet import PRESETS, UPSAMPLES, StyleNet, StyleNetConfig
from dynastream.nets.tuning import MODES, DynamicNet
from dynastream.nets.zoo_index import DEFAULT_MODEL, UNTRAINED, UNTRAINED_PREFIX, ZOO_DIR, ZooEntry, zoo_entries  # noqa: F401  (re-exported)

FORMAT_NAME = "dynastream"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("kind", "arch", "mode", "sites", "alpha_range", "objectives", "provenance", "state_dict")
DIGEST_KEY = "weights_sha256"
KIND_NETS = {"style": "stylenet", "dcgan": "dcgan"}   # checkpoint kind -> arch["net"]
MAX_WEIGHT_MAGNITUDE = 1e6      # trained weights and norm statistics stay within a few units
MAX_ALPHA_MAGNITUDE = 100.0
MAX_TENSORS = 10_000
ARCH_LIMITS = {  # arch field -> (lowest, highest): the paper net has widths 128 and 5 blocks
    "encoder_widths": (1, 1024), "decoder_widths": (1, 1024), "n_res": (3, 64),
    "nz": (1, 4096), "ngf": (1, 512), "ndf": (1, 512), "nc": (1, 4), "frame_style": (0, 4096),
}
ARCH_FIELDS = {"stylenet": {"encoder_widths": 3, "decoder_widths": 2, "n_res": None},
               "dcgan": {"nz": None, "ngf": None, "ndf": None, "nc": None}}   # field -> list length (None: one int)

PathLike = Union[str, os.PathLike]


def arch_of(net: DynamicNet) -> dict:
    if isinstance(net.main, StyleNet):
        preset = next((name for name, c in PRESETS.items() if c == net.main.config), "custom")
        return {"net": "stylenet", "preset": preset, **net.main.config.to_dict()}
    return {"net": "dcgan", **net.main.config.to_dict()}


def build(kind: str, arch: dict, mode: str, sites, alpha_range=None) -> DynamicNet:
    """An untrained DynamicNet for a checkpoint's architecture fields."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {short_repr(mode)}")
    if kind == "style" and arch.get("net") == "stylenet":
        main = StyleNet(StyleNetConfig.from_dict(arch))
    elif kind == "dcgan" and arch.get("net") == "dcgan":
        main = DCGANGenerator(DCGANConfig.from_dict(arch))
    else:
        raise ValueError(f"unknown kind/net {short_repr(kind)}/{short_repr(arch.get('net'))}")
    return DynamicNet(main, list(sites), mode, tuple(alpha_range) if alpha_range else None)


def save(net: DynamicNet, path: PathLike, *, objectives: Optional[dict] = None,
         provenance: Optional[dict] = None, alpha_range: Optional[tuple[float, float]] = None,
         half: bool = False, train_state: Optional[dict] = None) -> Path:
    """Write ``net`` atomically (temporary file, then rename). ``half`` stores float weights as
    fp16 (loading restores the model's fp32)."""
    path = Path(path)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             for k, v in net.state_dict().items()}
    bad = _first_bad_weight(state)
    if bad is not None:
        raise CheckpointError(f"refused to save {path}: weight {bad[0]} {bad[1]}")
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
        DIGEST_KEY: weights_digest(state),
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    check_metadata(ckpt, f"refused to save {path}")   # nothing is written that load would refuse
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:   # mode 0666 less the umask, like any file we write
        torch.save(ckpt, f)
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
        raise CheckpointError(f"{path} is not a dynastream checkpoint (not a torch file, or a damaged one)") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(f"{FORMAT_NAME}/"):
        raise CheckpointError(f"{path} is not a dynastream checkpoint (no '{FORMAT_NAME}/N' format tag)")
    try:
        version = int(fmt.split("/", 1)[1])
    except ValueError:
        raise CheckpointError(f"{path} has an unreadable format tag {short_repr(fmt)}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {version}, newer than the format "
                              f"{FORMAT_VERSION} this dynastream reads; upgrade dynastream")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is an incomplete dynastream checkpoint (missing {', '.join(missing)})")
    check_metadata(ckpt, str(path))
    digest = ckpt.get(DIGEST_KEY)
    if digest is not None and digest != weights_digest(ckpt["state_dict"]):
        raise CheckpointError(f"checkpoint {path} is damaged: its weights do not match their recorded digest")
    bad = _first_bad_weight(ckpt["state_dict"])
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: weight {bad[0]} {bad[1]}")
    return ckpt


def weights_digest(state: dict) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _first_bad_weight(state: dict) -> Optional[tuple[str, str]]:
    """(name, what is wrong) for the first tensor that no trained net holds: non-finite values,
    absurd magnitudes, or a dtype that is neither floating point nor integer."""
    for name, t in state.items():
        if t.is_floating_point():
            if not bool(torch.isfinite(t).all()):
                return name, f"holds {int((~torch.isfinite(t)).sum())} non-finite value(s) (NaN or infinity)"
            largest = float(t.abs().max()) if t.numel() else 0.0
            if largest > MAX_WEIGHT_MAGNITUDE:
                return name, f"holds values as large as {largest:.3g}, beyond any trained net's"
        elif t.is_complex() or t.dtype == torch.bool:
            return name, f"has dtype {str(t.dtype).replace('torch.', '')}, not a floating-point or integer type"
    return None


def check_metadata(ckpt: dict, where: str) -> None:
    """Type and range of every field a net is built from, before anything is built."""
    kind, mode, sites, alpha_range = ckpt["kind"], ckpt["mode"], ckpt["sites"], ckpt["alpha_range"]
    if kind not in KIND_NETS:
        raise CheckpointError(f"{where}: kind must be style or dcgan, not {short_repr(kind)}")
    if mode not in MODES:
        raise CheckpointError(f"{where}: mode must be {' or '.join(MODES)}, not {short_repr(mode)}")
    if not isinstance(sites, (list, tuple)) or not sites or len(sites) > 16 \
            or not all(isinstance(x, str) for x in sites) or len(set(sites)) != len(sites):
        raise CheckpointError(f"{where}: sites must be a list of distinct site names, not {short_repr(sites)}")
    if not (isinstance(alpha_range, (list, tuple)) and len(alpha_range) == 2 and all(_is_real(x) for x in alpha_range)
            and all(math.isfinite(x) and abs(x) <= MAX_ALPHA_MAGNITUDE for x in alpha_range)
            and alpha_range[0] < alpha_range[1]):
        raise CheckpointError(f"{where}: alpha_range must be two finite numbers [low, high] with low < high, "
                              f"not {short_repr(alpha_range)}")
    for key in ("objectives", "provenance"):
        if not isinstance(ckpt[key], dict):
            raise CheckpointError(f"{where}: {key} must be a mapping, not {short_repr(ckpt[key])}")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or len(state) > MAX_TENSORS \
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{where}: state_dict must map weight names to tensors")
    if DIGEST_KEY in ckpt and not isinstance(ckpt[DIGEST_KEY], str):
        raise CheckpointError(f"{where}: {DIGEST_KEY} must be a text, not {short_repr(ckpt[DIGEST_KEY])}")
    check_arch(kind, ckpt["arch"], where)


def check_arch(kind: str, arch: Any, where: str) -> None:
    """The architecture fields are of the right type and within ARCH_LIMITS."""
    if not isinstance(arch, dict):
        raise CheckpointError(f"{where}: arch must be a mapping, not {short_repr(arch)}")
    net = arch.get("net")
    if net != KIND_NETS[kind]:
        raise CheckpointError(f"{where}: a {kind} checkpoint needs arch.net {KIND_NETS[kind]}, not {short_repr(net)}")
    if not isinstance(arch.get("preset", ""), str):
        raise CheckpointError(f"{where}: arch.preset must be a text, not {short_repr(arch['preset'])}")
    for key, length in ARCH_FIELDS[net].items():
        value = arch.get(key)
        values = value if length is not None and isinstance(value, (list, tuple)) and len(value) == length else \
            [value] if length is None else None
        lo, hi = ARCH_LIMITS[key]
        if values is None or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values):
            shape = f"a list of {length} whole numbers" if length else "a whole number"
            raise CheckpointError(f"{where}: arch.{key} must be {shape} from {lo} to {hi}, not {short_repr(value)}")
    if net == "stylenet":
        for flag in ("output_norm", "encoder_norm"):
            if flag in arch and not isinstance(arch[flag], bool):
                raise CheckpointError(f"{where}: arch.{flag} must be true or false, not {short_repr(arch[flag])}")
        size, (lo, hi) = arch.get("frame_style", 0), ARCH_LIMITS["frame_style"]
        if not isinstance(size, int) or isinstance(size, bool) or not lo <= size <= hi:
            raise CheckpointError(f"{where}: arch.frame_style must be a whole number from {lo} to {hi}, "
                                  f"not {short_repr(size)}")
        if size and not arch.get("output_norm", False):
            raise CheckpointError(f"{where}: arch.frame_style needs arch.output_norm true")
        if arch.get("output", "linear") not in STYLENET_OUTPUTS:
            raise CheckpointError(f"{where}: arch.output must be one of {', '.join(STYLENET_OUTPUTS)}, "
                                  f"not {short_repr(arch['output'])}")
        if arch.get("upsample", "nearest") not in UPSAMPLES:
            raise CheckpointError(f"{where}: arch.upsample must be one of {', '.join(UPSAMPLES)}, "
                                  f"not {short_repr(arch['upsample'])}")


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def from_dict(ckpt: dict, source: str = "") -> DynamicNet:
    """Build the net a validated checkpoint dict describes and load its weights."""
    where = source or "checkpoint"
    check_metadata(ckpt, where)
    args = ckpt["kind"], ckpt["arch"], ckpt["mode"], ckpt["sites"], ckpt["alpha_range"]
    try:
        with torch.device("meta"):   # shapes and dtypes only: nothing is allocated
            expected = build(*args).state_dict()
        _check_fits(expected, ckpt["state_dict"])
        net = build(*args)
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{where}: the weights do not fit the declared "
                              f"architecture ({first[:200].rstrip('.:')})") from None
    net.meta = {"objectives": ckpt["objectives"], "provenance": ckpt["provenance"], "source": source}
    return net


def _check_fits(expected: dict, state: dict) -> None:
    """Raise ValueError naming the first weight whose name, shape or kind of dtype differs."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'}")
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(f"{name} has shape {tuple(got.shape)}, the architecture needs {tuple(want.shape)}")
        if got.is_floating_point() != want.is_floating_point():
            raise ValueError(f"{name} has dtype {str(got.dtype).replace('torch.', '')}, the architecture needs "
                             f"{str(want.dtype).replace('torch.', '')}")


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
    raise CheckpointError(f"no model named {short_repr(str(name_or_path))}: not a file and not in the zoo (known: {known})")

