"""Plumbing every trainer shares (style now, DCGAN later): the process group under torchrun, the
output folder (resumable checkpoint, metrics, previews), stop requests (Ctrl-C / SIGTERM), RNG
state, loss averaging without per-step device syncs, image sheets and version records."""

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from dynastream.nets.atomic import atomic_open
from dynastream.nets.errors import DynastreamError, short_repr

CHECK_STOP_EVERY = 10  # steps between the all-reduces that agree on a stop request under DDP


class RunError(DynastreamError):
    pass


class Interrupted(Exception):
    """Training stopped on request after ``step`` steps; ``path`` is the resumable checkpoint."""

    def __init__(self, path: Path, step: int):
        super().__init__(f"stopped after step {step}; resumable checkpoint {path}")
        self.path, self.step = path, step


# --- devices and processes --------------------------------------------------------------------

def resolve_device(spec: str, local_rank: Optional[int] = None) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun a bare
    ``cuda``/``auto`` means this process's GPU (LOCAL_RANK)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise RunError(f"device {short_repr(spec)} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError(f"device {spec} was asked for but CUDA is not available here (use device: cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank or 0)
        if device.index >= torch.cuda.device_count():
            raise RunError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return device


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (world 1 without torchrun). Rank 0 writes files."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, device_spec: str) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(rank, world, local, resolve_device(device_spec, local if world > 1 else None))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"

    def start(self) -> None:
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(self.backend)

    def stop(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over processes (``t`` itself when alone)."""
        if self.world == 1:
            return t
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())  # sync point: called every CHECK_STOP_EVERY steps only

    def gather(self, obj: Any) -> list:
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when there is more than one process."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def first_then_rest(self):
        """Context: rank 0 runs the body first (e.g. a download into a shared cache), then the others."""
        return _FirstThenRest(self)


class _FirstThenRest:
    def __init__(self, d: Distributed):
        self.d = d

    def __enter__(self):
        if not self.d.is_main:
            self.d.barrier()

    def __exit__(self, exc_type, exc, tb):
        if self.d.is_main and exc_type is None:
            self.d.barrier()
        return False


@dataclass(frozen=True)
class Amp:
    """Mixed precision on CUDA: bf16 where supported (no loss scaling needed), else fp16 with a
    GradScaler. Off on other devices."""

    enabled: bool
    dtype: torch.dtype
    device_type: str

    @classmethod
    def for_device(cls, device: torch.device, wanted: bool) -> "Amp":
        if wanted and device.type == "cuda":
            return cls(True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16, "cuda")
        return cls(False, torch.float32, device.type)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.enabled else contextlib.nullcontext()

    def fp32(self):
        """Inside autocast: a region computed in fp32 (losses, Gram matrices)."""
        return torch.autocast(self.device_type, enabled=False) if self.enabled else contextlib.nullcontext()

    def scaler(self) -> "torch.amp.GradScaler":
        return torch.amp.GradScaler(self.device_type if self.enabled else "cuda",
                                    enabled=self.enabled and self.dtype == torch.float16)

    def describe(self) -> str:
        return str(self.dtype).replace("torch.", "") if self.enabled else "off"


# --- output folder ----------------------------------------------------------------------------

class RunDir:
    """``out/``: ``last.pt`` (resumable, nets format with train_state), ``NAME.pt`` (final),
    ``metrics.jsonl``, ``config.yaml``, ``previews/``."""

    def __init__(self, out: Path, final_name: str, is_main: bool = True):
        self.out = Path(out)
        self.final = self.out / f"{final_name}.pt"
        self.last = self.out / "last.pt"
        self.metrics = self.out / "metrics.jsonl"
        self.config = self.out / "config.yaml"
        self.previews = self.out / "previews"
        self.is_main = is_main

    def check(self, resume: bool) -> None:
        """Refuse to mix two runs in one folder. Call on every process before any writes."""
        if resume:
            if not self.last.is_file():
                raise RunError(f"nothing to resume: {self.last} does not exist")
            return
        if self.out.exists() and not self.out.is_dir():
            raise RunError(f"output folder {self.out} is a file")
        taken = [p for p in (self.last, self.final, self.metrics) if p.exists()]
        if taken:
            raise RunError(f"{self.out} already holds a training run ({taken[0].name}): pass --resume to "
                           "continue it, or choose another --out")

    def prepare(self) -> None:
        if self.is_main:
            self.previews.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict) -> None:
        if self.is_main:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(record) + "\n")

    def rewind_metrics(self, step: int) -> None:
        """Drop records logged after ``step`` (written after the checkpoint a run resumes from)."""
        if not self.is_main or not self.metrics.exists():
            return
        kept = [line for line in self.metrics.read_text().splitlines()
                if line.strip() and _record_step(line) <= step]
        atomic_write_text(self.metrics, "".join(line + "\n" for line in kept))

    def preview(self, tag: str) -> Path:
        return self.previews / f"{tag}.png"


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn line from a crash: drop it


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def check_resume(now: dict, stored: dict, may_change: tuple[str, ...]) -> None:
    """A resumed run may change only the ``may_change`` keys (a trailing dot: a whole section) of
    the config it was started with."""
    from dynastream.configs.schema import diff_keys

    for key in diff_keys(stored, now):
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in may_change):
            allowed = ", ".join(k.rstrip(".") + (".*" if k.endswith(".") else "") for k in may_change)
            raise RunError(f"--resume: config key {key} differs from the run being resumed; only {allowed} may change")


def check_schedule(schedule) -> None:
    """The checks every trainer's schedule shares (``main`` / ``blocks`` phases with steps and lr)."""
    if min(schedule.main.steps, schedule.blocks.steps, schedule.preview_every, schedule.checkpoint_every) < 0:
        raise ValueError("steps and intervals must be >= 0")
    if schedule.log_every < 1 or not (0 < schedule.main.lr < math.inf and 0 < schedule.blocks.lr < math.inf):
        raise ValueError("log_every must be >= 1 and learning rates finite numbers > 0")


# --- stop requests ----------------------------------------------------------------------------

class StopRequest:
    """Context manager: the first Ctrl-C (or SIGTERM) asks the loop to stop after the current step
    and save a resumable checkpoint; a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.requested = False
        self.announce = announce
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\ndynastream: stopping after this step to save a resumable checkpoint "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for s, h in self._previous.items():
            signal.signal(s, h)
        return False


# --- metrics ----------------------------------------------------------------------------------

class Meter:
    """Running sums of loss terms kept on the device; ``averages`` syncs once per log interval."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.since = time.perf_counter()

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def check_finite(self, d: Distributed, phase: str, step: int) -> None:
        """Before a checkpoint between log steps: the terms summed since the last log are finite
        (one sync, at checkpoint time only)."""
        if self.sums:
            keys = list(self.sums)
            values = d.mean(torch.stack([self.sums[k] for k in keys])).tolist()  # sync
            check_losses(dict(zip(keys, values)), phase, step)

    def averages(self, d: Distributed) -> tuple[dict[str, float], float]:
        """Mean of each term since the last call (over processes too) and seconds per step."""
        keys = list(self.sums)
        values = d.mean(torch.stack([self.sums[k] for k in keys]) / max(self.count, 1)).tolist()  # sync
        now = time.perf_counter()
        sec_per_step = (now - self.since) / max(self.count, 1)
        self.sums, self.count, self.since = {}, 0, now
        return dict(zip(keys, values)), sec_per_step


def check_losses(averages: dict[str, float], phase: str, step: int) -> None:
    """Stop a run whose loss is no longer finite, before it logs or saves anything from it."""
    bad = [(k, v) for k, v in averages.items() if not math.isfinite(v)]
    if bad:
        term, value = bad[0]
        raise RunError(f"training stopped at step {step} (phase {phase}): the {term} loss became {value}, so no "
                       "checkpoint was written from here on; lower the learning rate or the loss weights")


# --- state, records, images -------------------------------------------------------------------

def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state.get("python")
    if py is not None:
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_sha256(module: nn.Module) -> str:
    """A digest of a module's weights (bit-exact comparison across a checkpoint round trip)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": str(torch.__version__)}  # TorchVersion is not plain data
    for dist_name in ("dynastream", "torchvision", "pillow", "numpy", "onnxruntime"):
        try:
            out[dist_name] = metadata.version(dist_name)
        except metadata.PackageNotFoundError:
            out[dist_name] = "not installed"
    return out


def save_sheet(tiles_nchw: torch.Tensor, columns: int, path: Path) -> Path:
    """Tiles in [0, 1], row-major, saved as one PNG, or JPEG by the suffix, atomically."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(tiles_nchw.detach().float().clamp(0, 1).cpu(), nrow=columns, padding=2, pad_value=1.0)
    hwc_u8 = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    with atomic_open(path) as f:
        Image.fromarray(hwc_u8).save(f, format="JPEG" if jpeg else "PNG", **({"quality": 88} if jpeg else {}))
    return path
