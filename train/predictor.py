"""A frame-conditioned net's style predictor, distilled from the arbitrary teacher's.

The arbitrary teacher (Ghiasi et al. 2017) reads a photo's style vector with a large network and
mixes it with the painting's; at strength 0 it restyles each photo by its own vector. A
``frame_style`` StyleNet carries the teacher's transformer whole (``train.transplant``) and a
small ``FrameStylePredictor`` in place of the teacher's predictor. This fits that predictor to the
teacher's vectors of photo crops, in other light (``train.data.jitter_colors``) so that two dozen
photos give thousands of different palettes.

The loss is the squared error of the vectors, not a picture loss: a picture loss against the
teacher at another scale than the teacher saw (its strokes differ) is lowest for a blurred
picture, and it pulled both the predictor and the transformer towards one (tried: 1000 steps of
pixel, colour and gradient L1 through the whole main net gave each photo its palette but lost the
teacher's texture). Fitting the vector keeps the transformer exactly the teacher's.
"""

import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from dynastream.nets.stylenet import FrameStylePredictor
from dynastream.train.data import CropDataset
from dynastream.train.teachers import ArbitraryTeacher

CROP_SIZE = 256       # the teacher's predictor sees 256 px; ours a 64 px thumbnail of the same crop
BATCH = 64
LR = 2e-3
HELD_OUT_EVERY = 10   # every 10th crop is kept out of the fit to measure it


def fit_frame_predictor(predictor: FrameStylePredictor, teacher: ArbitraryTeacher, folder: str, *, crops: int,
                        steps: int, seed: int, crop_scale: tuple[float, float], color_jitter: float,
                        progress: bool = True) -> dict:
    """Fit ``predictor`` in place; returns what the checkpoint's provenance records: the mean
    squared vector error on the fitted and the held-out crops, next to that of always answering
    the fitted crops' mean vector (what a fixed net's conditioning amounts to)."""
    t0 = time.perf_counter()
    dataset = CropDataset(folder, CROP_SIZE, crop_scale, color_jitter)
    thumbs, vectors = [], []
    with torch.no_grad():
        for i in tqdm(range(crops), desc="teacher style vectors", unit="crop", disable=not progress):
            x, _ = dataset[(i % len(dataset), seed * 1_000_003 + i)]
            thumbs.append(predictor.thumbnail(x[None]))
            vectors.append(torch.from_numpy(np.asarray(teacher.style_vector(x[None]), np.float32)).reshape(1, -1))
    thumbs_t, vectors_t = torch.cat(thumbs), torch.cat(vectors)
    held = torch.arange(crops) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    if int((~held).sum()) == 0:
        held = torch.zeros(crops, dtype=torch.bool)
    fit_x, fit_v = thumbs_t[~held], vectors_t[~held]
    mean = fit_v.mean(0)
    with torch.no_grad():
        predictor.fc2.bias.copy_(mean)   # start from the mean vector (the transplant zeroed fc2's weight)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(predictor.parameters(), LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    predictor.train()
    bar = tqdm(range(steps), desc="style predictor", unit="step", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(fit_x), (min(BATCH, len(fit_x)),), generator=g)
        x = fit_x[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)   # a mirrored photo has the same style
        loss = (predictor.from_thumbnail(x) - fit_v[idx]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    predictor.eval()
    return {"crops": crops, "held_out": int(held.sum()), "steps": steps, "crop_size": CROP_SIZE,
            "color_jitter": color_jitter, "fit_mse": _mse(predictor, fit_x, fit_v),
            "held_out_mse": _mse(predictor, thumbs_t[held], vectors_t[held]),
            "mean_vector_held_out_mse": _mse(None, thumbs_t[held], vectors_t[held], mean),
            "seconds": round(time.perf_counter() - t0, 1)}


def _mse(predictor: Optional[FrameStylePredictor], x: torch.Tensor, v: torch.Tensor,
         constant: Optional[torch.Tensor] = None) -> Optional[float]:
    if len(x) == 0:
        return None
    with torch.no_grad():
        guess = constant.expand_as(v) if predictor is None else torch.cat(
            [predictor.from_thumbnail(part) for part in x.split(256)])
        return round(float((guess - v).pow(2).mean()), 5)
