"""`dynastream generate`: a Dynamic DCGAN's pictures as a grid, one row per latent sample z and one
column per α. Every column uses the same z, so a row shows one picture moving from the main
generator's look (the low end of α) to the look its tuning blocks were trained on."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from dynastream import nets
from dynastream.nets.errors import DynastreamError, short_repr
from dynastream.stream.engine import pick_device
from dynastream.stream.latent import latent_keys, pixels_u8
from dynastream.stream.limits import MAX_SEED, MAX_SIDE

GRID_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_N = 8          # rows: 8 samples x 3 alphas keep the sheet readable at 64 px a tile
PADDING = 2            # white pixels between tiles and around the grid (torchvision's make_grid)


class GenerateError(DynastreamError):
    pass


@dataclass(frozen=True)
class GenerateConfig:
    alphas: Optional[tuple[float, ...]] = None    # None: the model's range ends and its midpoint
    n: int = DEFAULT_N                            # latent samples (rows)
    seed: int = 0
    device: str = "auto"
    scale: int = 1                                # tiles upsampled K x, nearest neighbour
    allow_extrapolation: bool = False


@dataclass
class GenerateResult:
    path: Path
    model: str
    n: int
    alphas: tuple[float, ...]
    size_wh: tuple[int, int]

    def summary(self) -> str:
        return (f"wrote {self.path}: {self.n} samples x {len(self.alphas)} alphas "
                f"({', '.join(f'{a:g}' for a in self.alphas)}) of {self.model}, {self.size_wh[0]}x{self.size_wh[1]} px")


def default_alphas(alpha_range: tuple[float, float]) -> tuple[float, ...]:
    lo, hi = alpha_range
    return (lo, (lo + hi) / 2, hi)


def grid_u8(tiles_nahwc_u8: np.ndarray) -> np.ndarray:
    """(rows, columns, H, W, 3) uint8 tiles -> one HWC image with PADDING white pixels between and
    around them (also for a single tile, which make_grid would leave unpadded)."""
    rows, cols, h, w, _ = tiles_nahwc_u8.shape
    p = PADDING
    padded = np.pad(tiles_nahwc_u8, ((0, 0), (0, 0), (0, p), (0, p), (0, 0)), constant_values=255)
    sheet = padded.transpose(0, 2, 1, 3, 4).reshape(rows * (h + p), cols * (w + p), 3)
    return np.pad(sheet, ((p, 0), (p, 0), (0, 0)), constant_values=255)


def sweep_tiles(net, z: torch.Tensor, alphas: Sequence[float], scale: int = 1) -> np.ndarray:
    """net(z, α) for each α as uint8 tiles (n, len(alphas), 64·scale, 64·scale, 3)."""
    with torch.inference_mode():
        columns = [pixels_u8(net(z, float(a))) for a in alphas]   # each (n, 3, 64, 64)
    tiles = torch.stack(columns, 1).permute(0, 1, 3, 4, 2)
    if scale > 1:
        tiles = tiles.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    return tiles.cpu().numpy()


def generate(model: str, output: Union[str, Path], config: GenerateConfig = GenerateConfig()) -> GenerateResult:
    from dynastream.stream.render import write_image
    from dynastream.stream.writer import check_output

    output = Path(output)
    if config.n < 1:
        raise GenerateError(f"--n must be at least 1, not {config.n}")
    if config.scale < 1:
        raise GenerateError(f"--scale must be a whole number of at least 1, not {config.scale}")
    if config.alphas is not None and not config.alphas:
        raise GenerateError("--alpha names no value; give one or more, such as 0,0.5,1")
    if config.alphas is not None and not all(math.isfinite(a) for a in config.alphas):
        raise GenerateError(f"alpha values must be finite numbers, not {short_repr(', '.join(map(str, config.alphas)))}")
    if not 0 <= config.seed <= MAX_SEED:
        raise GenerateError(f"--seed must be a whole number from 0 to {MAX_SEED}, not {short_repr(config.seed)}")
    tile = 64 * config.scale
    columns = len(config.alphas) if config.alphas is not None else 3
    if config.n * tile > MAX_SIDE or columns * tile > MAX_SIDE:
        raise GenerateError(f"a grid of {config.n} rows and {columns} columns of {tile} px tiles would be more than "
                            f"{MAX_SIDE} px a side: use a smaller --n, fewer --alpha values or a smaller --scale")
    if output.suffix.lower() not in GRID_SUFFIXES:
        raise GenerateError(f"cannot tell the image type of {output.name}: name it .png, .jpg or .jpeg")
    check_output(output)
    net = nets.load(model)
    if net.kind != "dcgan":
        raise GenerateError(f"{model} is a {net.kind} model; generate needs a dcgan model (see dynastream models)")
    alphas = tuple(config.alphas) if config.alphas is not None else default_alphas(net.alpha_range)
    lo, hi = net.alpha_range
    outside = [a for a in alphas if not lo <= a <= hi]
    if outside and not config.allow_extrapolation:
        raise GenerateError(f"alpha {outside[0]:g} is outside the model's range [{lo:g}, {hi:g}] "
                            "(use --allow-extrapolation to go beyond it)")
    device = pick_device(config.device)
    net = net.to(device).eval()
    z = latent_keys(config.n, net.main.config.nz, config.seed).to(device)
    sheet = grid_u8(sweep_tiles(net, z, alphas, config.scale))
    write_image(output, sheet)
    return GenerateResult(output, net.meta.get("name", model), config.n, alphas, (sheet.shape[1], sheet.shape[0]))
