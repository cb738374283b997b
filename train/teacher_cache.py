"""Teacher outputs for a fixed set of photo crops, computed once and kept on disk.

A cache folder ``ROOT/KEY/`` holds ``meta.json`` (what the key describes: the teacher's files and
parameters, the photos, the crops) and one ``NNNNN.npz`` per crop with its input and the teacher's
output as uint8 HWC. Each file is written to a temporary name and renamed, so an interrupted fill
leaves only complete crops, and the next run computes just the missing ones. Training then draws
random sub-crops of ``image_size`` from these pairs (``CachedCrops``), aligned in input and target.
"""

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from dynastream.nets.atomic import atomic_open
from dynastream.train.data import MAX_SKIPS_REPORTED, CropDataset
from dynastream.train.teachers import TeacherError

CACHE_VERSION = 1


def cache_key(description: dict) -> str:
    """A digest of what the outputs depend on: file contents, not where the files lie (a moved
    venv or data folder keeps its cache)."""
    text = json.dumps({"version": CACHE_VERSION, **_portable(description)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _portable(d):
    if isinstance(d, dict):
        drop = {"path", "folder"} | ({"style_image"} if "style_image_sha256" in d else set())
        return {k: _portable(v) for k, v in d.items() if k not in drop}
    if isinstance(d, list):
        return [_portable(v) for v in d]
    return d


def photos_description(dataset: CropDataset) -> dict:
    """The photos as the key sees them: names and byte sizes (cheap for any folder size)."""
    if dataset.generated:
        return {"generated": dataset.folder}
    root = Path(dataset.folder)
    files = [[str(p.resolve().relative_to(root)) if p.resolve().is_relative_to(root) else str(p), p.stat().st_size]
             for p in dataset.paths]
    return {"folder": dataset.folder, "files_sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest(),
            "count": len(files)}


def crop(dataset: CropDataset, index: int, seed: int) -> torch.Tensor:
    """Crop ``index`` of a cache: photo ``index mod n``, a random resized crop seeded by (seed, index);
    (3, S, S) uint8."""
    x, _ = dataset[(index % len(dataset), (seed << 40) + (1 << 39) + index)]
    return x.mul(255).round_().to(torch.uint8)


def fill(folder: Path, description: dict, count: int, dataset: CropDataset, seed: int,
         target: Callable[[torch.Tensor], torch.Tensor], *, progress: bool = True, desc: str = "teacher") -> dict:
    """Compute the missing crops of ``folder``; returns ``{"computed": n, "reused": m, "seconds": t}``.
    ``target`` maps (1, 3, S, S) in [0, 1] to the teacher's output of the same shape."""
    from tqdm import tqdm

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file or a dangling link in the way, no permission, a full disk
        raise TeacherError(f"cannot create the teacher cache folder {folder} ({e.strerror or type(e).__name__})") from None
    meta = folder / "meta.json"
    if not meta.is_file():
        with atomic_open(meta, "w") as f:
            json.dump({"version": CACHE_VERSION, **description}, f, indent=1, sort_keys=True, default=str)
    missing = [i for i in range(count) if not crop_path(folder, i).is_file()]
    t0 = time.perf_counter()
    bar = tqdm(total=count, initial=count - len(missing), desc=desc, unit="crop", disable=not progress or not missing,
               dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
    try:
        for i in missing:
            x_chw_u8 = crop(dataset, i, seed)
            with torch.no_grad():
                y = target(x_chw_u8[None].float().div(255))[0]
            y_chw_u8 = y.clamp(0, 1).mul(255).round_().to(torch.uint8)
            with atomic_open(crop_path(folder, i)) as f:
                np.savez_compressed(f, x_hwc_u8=x_chw_u8.permute(1, 2, 0).numpy(),
                                    y_hwc_u8=y_chw_u8.permute(1, 2, 0).numpy())
            bar.update(1)
    finally:
        bar.close()
    return {"computed": len(missing), "reused": count - len(missing), "seconds": round(time.perf_counter() - t0, 1)}


def crop_path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.npz"


def load(folder: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached pairs as two (count, 3, S, S) uint8 tensors: inputs, teacher outputs."""
    xs, ys = [], []
    for i in range(count):
        with np.load(crop_path(folder, i)) as z:
            xs.append(torch.from_numpy(z["x_hwc_u8"]).permute(2, 0, 1))
            ys.append(torch.from_numpy(z["y_hwc_u8"]).permute(2, 0, 1))
    return torch.stack(xs), torch.stack(ys)


class CachedCrops(Dataset):
    """Aligned random sub-crops of ``size`` from cached (input, teacher output) pairs, indexed by
    ``(crop index, seed)`` like ``CropDataset`` so ``train.data.batches`` serves it and a resumed run
    sees the same batches. Items: (x, target, skipped) with x and target (3, size, size) in [0, 1]."""

    def __init__(self, x_u8: torch.Tensor, y_u8: torch.Tensor, size: int):
        if x_u8.shape != y_u8.shape or x_u8.shape[-1] < size or x_u8.shape[-2] < size:
            raise ValueError(f"cached crops of shape {tuple(x_u8.shape)} cannot give {size} px sub-crops")
        self.x_u8, self.y_u8, self.size = x_u8, y_u8, size
        self.folder = "teacher cache"

    def __len__(self) -> int:
        return len(self.x_u8)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        h, w = self.x_u8.shape[-2:]
        g = torch.Generator().manual_seed(seed)
        top = int(torch.randint(h - self.size + 1, (1,), generator=g))
        left = int(torch.randint(w - self.size + 1, (1,), generator=g))
        box = (slice(None), slice(top, top + self.size), slice(left, left + self.size))
        skipped = torch.full((MAX_SKIPS_REPORTED,), -1, dtype=torch.int64)
        return self.x_u8[index][box].float().div(255), self.y_u8[index][box].float().div(255), skipped
