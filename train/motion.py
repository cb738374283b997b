"""A temporal term without video: small random motions of still crops (Wang et al., AAAI 2020,
"Consistent Video Style Transfer via Compound Regularization").

A crop x is moved by a random small motion W (an affine map: shift, rotation, zoom; plus a smooth
elastic displacement) and given a little noise Δ, standing in for the next frame of a video. A
temporally stable net commutes with the motion: F(W(x) + Δ) = W(F(x)). The term is the mean squared
difference of the two over the pixels that W keeps inside the crop. Both are computed in one forward
pass of a batch twice as large (the crops and their moved copies), so DistributedDataParallel sees
one forward per step.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MotionConfig:
    """The distribution of the random motions (per crop, uniform in ±each bound)."""

    shift: float = 0.03           # translation, as a fraction of the crop's side
    rotate: float = 2.0           # degrees
    zoom: float = 0.03            # relative scale change
    elastic: float = 1.0          # pixels: amplitude of a smooth random displacement (8x8 control grid)
    noise: float = 0.01           # standard deviation of Gaussian noise added to the moved crop, [0, 1] units

    def __post_init__(self):
        if min(self.shift, self.rotate, self.zoom, self.elastic, self.noise) < 0:
            raise ValueError("motion bounds must be >= 0")
        if self.shift > 0.5 or self.rotate > 45 or self.zoom > 0.5 or self.noise > 0.5:
            raise ValueError("motion bounds must be small (shift and zoom at most 0.5, rotate at most 45 degrees, "
                             "noise at most 0.5)")


def random_grid(n: int, h: int, w: int, cfg: MotionConfig, device: torch.device) -> torch.Tensor:
    """(n, h, w, 2) sampling grids for ``grid_sample`` (normalised coordinates, align_corners False)
    of random small motions; uses torch's global generator (seeded and resumed with the run)."""
    def uniform(*shape):
        return (torch.rand(*shape, device=device) * 2 - 1)

    angle = uniform(n) * math.radians(cfg.rotate)
    scale = 1 + uniform(n) * cfg.zoom
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    aspect = h / w   # rotate in pixels, not in normalised units
    theta = torch.stack([torch.stack([cos, -sin * aspect, uniform(n) * 2 * cfg.shift], -1),
                         torch.stack([sin / aspect, cos, uniform(n) * 2 * cfg.shift], -1)], 1)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if cfg.elastic > 0:
        control = uniform(n, 2, 8, 8) * cfg.elastic
        field = F.interpolate(control, size=(h, w), mode="bicubic", align_corners=False)
        field = torch.stack([field[:, 0] * 2 / w, field[:, 1] * 2 / h], -1)   # pixels -> normalised
        grid = grid + field
    return grid


def warp(x_nchw: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x_nchw, grid.to(x_nchw.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def inside(grid: torch.Tensor) -> torch.Tensor:
    """(n, 1, h, w) float mask of the pixels whose source lies inside the crop (one pixel of margin
    for bilinear sampling)."""
    h, w = grid.shape[1:3]
    gx, gy = grid[..., 0], grid[..., 1]
    ok = (gx.abs() <= 1 - 2 / w) & (gy.abs() <= 1 - 2 / h)
    return ok[:, None].float()


def moved_copies(x_nchw: torch.Tensor, cfg: MotionConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W(x) + Δ clamped to [0, 1], the grids, the inside mask)."""
    n, _, h, w = x_nchw.shape
    grid = random_grid(n, h, w, cfg, x_nchw.device)
    moved = warp(x_nchw, grid)
    if cfg.noise > 0:
        moved = moved + cfg.noise * torch.randn_like(moved)
    return moved.clamp(0, 1), grid, inside(grid)


def temporal_loss(y_moved_nchw: torch.Tensor, y_nchw: torch.Tensor, grid: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """Mean over the mask (and channels) of (F(W(x) + Δ) - W(F(x)))², in fp32."""
    target = warp(y_nchw.float(), grid.float())
    diff = (y_moved_nchw.float() - target) ** 2 * mask
    return diff.sum() / (mask.sum() * y_nchw.shape[1]).clamp(min=1.0)
