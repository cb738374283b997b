"""Training images: a recursive image folder (or images generated on the fly), random resized crops,
a step-indexed batch order that resumes exactly and shards across processes, and style images.

A folder of ``generated:shapes`` needs no files (smoke runs, tests); style images may be
``generated:stripes`` / ``generated:checks`` / ``generated:waves``. For GAN training,
``SubsetDataset`` serves whole images of one subset (a folder, a list of files from a CelebA
attribute split, or ``generated:circles`` / ``generated:squares``).
"""

import math
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, Sampler

from dynastream.nets.errors import DynastreamError, short_repr

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
GENERATED = "generated:"
CONTENT_PATTERNS = ("shapes",)
STYLE_PATTERNS = ("stripes", "checks", "waves")
SUBSET_PATTERNS = ("circles", "squares")
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
GENERATED_IMAGES = 512          # virtual images in a generated folder
MAX_SKIPS_REPORTED = 8          # per sample: indices of unreadable files tried before a good one
ASPECT_RANGE = (3 / 4, 4 / 3)


class DataError(DynastreamError):
    pass


# --- reading images ---------------------------------------------------------------------------

def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted so every process sees the same order."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"data folder {folder} holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return files


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited over white, CMYK and grey converted."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        a = a / 257.0 if img.mode.startswith("I;16") or a.max() > 255 else a
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def open_rgb(path: Path, min_side: Optional[int] = None) -> Image.Image:
    """Decode ``path`` to RGB; a JPEG is decoded at a reduced scale (DCT scaling, much faster for
    large photos) as long as both sides stay >= ``min_side``."""
    with Image.open(path) as img:
        if min_side and img.format == "JPEG":
            img.draft("RGB", (min_side, min_side))
        img.load()
        return to_rgb(img)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)


def random_box(width: int, height: int, scale: tuple[float, float], g: torch.Generator) -> tuple[int, int, int, int]:
    """A random crop box covering ``scale`` of the image's area with aspect in ASPECT_RANGE
    (the RandomResizedCrop recipe); falls back to the largest centred square."""
    area = width * height
    log_lo, log_hi = math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1])
    for _ in range(10):
        u = torch.rand(4, generator=g).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x0 = int(u[2] * (width - w + 1))
            y0 = int(u[3] * (height - h + 1))
            return x0, y0, x0 + w, y0 + h
    return center_box(width, height)


def center_box(width: int, height: int) -> tuple[int, int, int, int]:
    s = min(width, height)
    x0, y0 = (width - s) // 2, (height - s) // 2
    return x0, y0, x0 + s, y0 + s


# --- generated images -------------------------------------------------------------------------

def generated_content(index: int, size: int) -> Image.Image:
    """A deterministic 'photo' for index: a colour gradient with random shapes on it."""
    g = np.random.default_rng(index)
    c0, c1 = g.integers(0, 256, 3), g.integers(0, 256, 3)
    t = np.linspace(0, 1, size)
    t = t[None, :, None] if g.random() < 0.5 else t[:, None, None]
    img = Image.fromarray(np.broadcast_to(c0 * (1 - t) + c1 * t, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(g.integers(4, 10))):
        x0, y0 = g.integers(-size // 4, size, 2)
        w, h = g.integers(size // 8, size // 2, 2)
        colour = tuple(int(v) for v in g.integers(0, 256, 3))
        kind = g.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.polygon([(int(x0), int(y0)), (int(x0 + w), int(y0 + h // 3)), (int(x0 + w // 3), int(y0 + h))], fill=colour)
    return img


def generated_style(pattern: str, size: int) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    palette = np.array([[230, 60, 40], [250, 200, 60], [40, 90, 200], [20, 20, 30]], dtype=np.float64)
    if pattern == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * 6 * (xx + yy))
        rgb = palette[0] * t[..., None] + palette[2] * (1 - t[..., None])
    elif pattern == "checks":
        k = (np.floor(xx * 8) + np.floor(yy * 8)).astype(int) % 2
        rgb = np.where(k[..., None] == 1, palette[1], palette[3])
    elif pattern == "waves":
        r = np.hypot(xx - 0.5, yy - 0.5)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * 10 * r + 4 * np.sin(2 * np.pi * xx))
        rgb = palette[1] * t[..., None] + palette[2] * (1 - t[..., None])
    else:
        raise DataError(f"unknown generated style {short_repr(pattern)} (known: {', '.join(STYLE_PATTERNS)})")
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def generated_subset(pattern: str, index: int, size: int) -> Image.Image:
    """A deterministic image of a two-subset toy data set: one coloured disc or square on white."""
    g = np.random.default_rng(index)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    r = int(g.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in g.integers(r, size - r, 2))
    colour = tuple(int(v) for v in g.integers(0, 200, 3))
    box = (cx - r, cy - r, cx + r, cy + r)
    draw = ImageDraw.Draw(img)
    if pattern == "circles":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return img


def _generated_name(spec: str, known: Sequence[str], what: str) -> str:
    name = spec[len(GENERATED):]
    if name not in known:
        raise DataError(f"unknown generated {what} {short_repr(spec)} (known: {', '.join(GENERATED + k for k in known)})")
    return name


# --- datasets ---------------------------------------------------------------------------------

def jitter_colors(x_chw: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """A photo in other light: each channel's gain in 1 ± amount, a gamma in e^(± amount) and the
    saturation times 1 - 2·amount .. 1 + amount, drawn from ``g``. More kinds of photo from the
    same few files, for a net that reads the photo's own style (a frame-conditioned net's predictor)."""
    u = torch.rand(5, generator=g, dtype=torch.float64).tolist()
    gain = torch.tensor([1 + amount * (2 * v - 1) for v in u[:3]], dtype=x_chw.dtype).view(3, 1, 1)
    gamma = float(torch.tensor(amount * (2 * u[3] - 1)).exp())
    saturation = max(0.0, 1 - 2 * amount) + u[4] * (min(1.0, 2 * amount) + amount)
    y = (x_chw * gain).clamp(0, 1) ** gamma
    grey = y.mean(0, keepdim=True)
    return (grey + (y - grey) * saturation).clamp(0, 1)


class CropDataset(Dataset):
    """Random resized crops of ``image_size``; indexed by ``(image index, crop seed)`` so a batch is
    a pure function of its position in the run. An unreadable file is skipped (the next file is
    used) and its index reported in the sample's ``skipped`` vector (-1 padded)."""

    def __init__(self, folder: str, image_size: int, crop_scale: tuple[float, float] = (0.5, 1.0),
                 color_jitter: float = 0.0):
        self.image_size = image_size
        self.crop_scale = crop_scale
        self.color_jitter = color_jitter
        self.generated = folder.startswith(GENERATED)
        if self.generated:
            _generated_name(folder, CONTENT_PATTERNS, "data folder")
            self.paths: list[Path] = []
            self.folder = folder
        else:
            self.paths = find_images(Path(folder))
            self.folder = str(Path(folder).expanduser().resolve())

    def __len__(self) -> int:
        return GENERATED_IMAGES if self.generated else len(self.paths)

    def read(self, index: int) -> Image.Image:
        if self.generated:
            return generated_content(index, int(self.image_size * 1.5))
        return open_rgb(self.paths[index], min_side=2 * self.image_size)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        img, skipped = read_first_readable(self, index, self.read)
        g = torch.Generator().manual_seed(seed)
        box = random_box(img.width, img.height, self.crop_scale, g)
        crop = to_tensor(img.resize((self.image_size, self.image_size), Image.BILINEAR, box=box, reducing_gap=2.0))
        if self.color_jitter:
            crop = jitter_colors(crop, self.color_jitter, g)
        return crop, skipped

    def preview_batch(self, count: int) -> tuple[torch.Tensor, list[int]]:
        """The first ``count`` readable images, centre-cropped to image_size: fixed validation
        images for preview sheets. Also returns the indices of unreadable files met on the way."""
        images, bad = [], []
        for i in range(len(self)):
            if len(images) == count:
                break
            try:
                img = self.read(i)
            except Exception:
                bad.append(i)
                continue
            box = center_box(img.width, img.height)
            images.append(to_tensor(img.resize((self.image_size, self.image_size), Image.BILINEAR, box=box)))
        if not images:
            raise DataError(f"none of the {len(self)} images under {self.folder} could be read")
        return torch.stack(images), bad

    def describe(self, index: int) -> str:
        return f"{self.folder}#{index}" if self.generated else str(self.paths[index])


def read_first_readable(dataset, index: int, read) -> tuple[Image.Image, torch.Tensor]:
    """``read(i)`` for the first readable image from ``index`` on (wrapping around), and the indices
    of the unreadable files tried before it (-1 padded, at most MAX_SKIPS_REPORTED)."""
    n = len(dataset)
    skipped = torch.full((MAX_SKIPS_REPORTED,), -1, dtype=torch.int64)
    for tries in range(n):
        i = (index + tries) % n
        try:
            return read(i), skipped
        except Exception:  # any decoder error: truncated, not an image, decompression bomb...
            if tries < MAX_SKIPS_REPORTED:
                skipped[tries] = i
    raise DataError(f"none of the {n} images of {dataset.folder} could be read")


class StepBatchSampler(Sampler):
    """Infinite batches of ``(index, crop_seed)``, starting at ``start_step``.

    Sample ``p = (step · world + rank) · batch + j`` of the run reads image ``perm_e[p mod n]`` where
    ``e = p div n`` is the epoch and ``perm_e`` a permutation seeded by (seed, e): every process sees
    its own shard, and a resumed run sees exactly the batches an uninterrupted one would have.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            batch = []
            for j in range(self.batch_size):
                p = (step * self.world + self.rank) * self.batch_size + j
                epoch, pos = divmod(p, self.n)
                batch.append((int(self._permutation(epoch)[pos]), (self.seed << 40) + p))
            yield batch
            step += 1


def batches(dataset: CropDataset, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
            world: int = 1, workers: int = 0, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Infinite iterator of ``(x_nchw, skipped)`` batches from ``start_step`` on."""
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, rank, world)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    return iter(loader)


class SubsetDataset(Dataset):
    """Whole images of one GAN training subset at ``size`` x ``size``: an optional centre crop of
    ``crop`` pixels (CelebA's aligned faces: 108), the shorter side resized to ``size``, a centre
    crop, a random horizontal flip; values in [-1, 1]. Indexed by ``(image index, seed)`` like
    ``CropDataset`` so ``batches`` serves both, and an unreadable file is skipped the same way."""

    def __init__(self, source: Union[str, Sequence[Path]], size: int = 64, crop: Optional[int] = None,
                 flip: bool = True):
        self.size, self.crop, self.flip = size, crop, flip
        self.generated = isinstance(source, str) and source.startswith(GENERATED)
        if self.generated:
            self.pattern = _generated_name(source, SUBSET_PATTERNS, "subset")
            self.paths: list[Path] = []
            self.folder = source
        elif isinstance(source, str):
            self.paths = find_images(Path(source))
            self.folder = str(Path(source).expanduser().resolve())
        else:
            self.paths = list(source)
            self.folder = str(Path(os.path.commonpath([str(p) for p in self.paths])).resolve()) if self.paths else ""
            if not self.paths:
                raise DataError("a training subset holds no images")

    def __len__(self) -> int:
        return GENERATED_IMAGES if self.generated else len(self.paths)

    def read(self, index: int) -> Image.Image:
        if self.generated:
            return generated_subset(self.pattern, index, self.size)
        img = open_rgb(self.paths[index], min_side=self.crop or self.size)
        if self.crop:
            s = min(self.crop, img.width, img.height)
            x0, y0 = (img.width - s) // 2, (img.height - s) // 2
            img = img.crop((x0, y0, x0 + s, y0 + s))
        return img

    def _square(self, img: Image.Image) -> Image.Image:
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR, box=center_box(img.width, img.height),
                             reducing_gap=2.0)
        return img

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        img, skipped = read_first_readable(self, index, lambda i: self._square(self.read(i)))
        if self.flip and (seed * 2654435761 >> 7) & 1:   # a hash of the sample's seed: resumable, no RNG state
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(img).mul_(2).sub_(1), skipped

    def describe(self, index: int) -> str:
        return f"{self.folder}#{index}" if self.generated else str(self.paths[index])


def celeba_split(folder: Path, attribute: str, value: int) -> tuple[list[Path], list[Path]]:
    """A CelebA-layout folder split by one attribute: ``(others, matching)`` image paths, where
    ``matching`` have ``attribute == value`` (+1 or -1) in ``list_attr_celeba.txt`` (its first
    line the count, its second the attribute names, then ``file v1 v2 ...``). Images are looked
    up in ``img_align_celeba/`` if that folder exists, else next to the attribute file."""
    folder = Path(folder).expanduser()
    table = folder / CELEBA_ATTRIBUTES
    if not table.is_file():
        raise DataError(f"{folder} is not a CelebA-layout folder: {CELEBA_ATTRIBUTES} is missing")
    lines = table.read_text().splitlines()
    if len(lines) < 3:
        raise DataError(f"{table} holds no image rows")
    names = lines[1].split()
    if attribute not in names:
        raise DataError(f"{table} has no attribute {short_repr(attribute)} (it has: {', '.join(names)})")
    column = names.index(attribute)
    images = folder / "img_align_celeba" if (folder / "img_align_celeba").is_dir() else folder
    others, matching = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or fields[column + 1] not in ("1", "-1"):
            raise DataError(f"{table} line {number} does not hold a file name and {len(names)} values of 1 or -1")
        (matching if int(fields[column + 1]) == value else others).append(images / fields[0])
    for which, paths in (("without", others), ("with", matching)):
        if not paths:
            raise DataError(f"{table}: no image {which} {attribute} = {value}, so that subset would be empty")
    return others, matching


def load_style_image(spec: str, size: Optional[int]) -> torch.Tensor:
    """A style image as (1, 3, H, W) in [0, 1], its shorter side resized to ``size`` (None keeps
    the file's size); ``generated:NAME`` draws one of STYLE_PATTERNS."""
    if spec.startswith(GENERATED):
        return to_tensor(generated_style(_generated_name(spec, STYLE_PATTERNS, "style"), size or 256))[None]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"style image {spec} does not exist")
    try:
        img = open_rgb(path)
    except Exception:
        raise DataError(f"style image {spec} is not a readable image") from None
    if size:
        scale = size / min(img.width, img.height)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return to_tensor(img)[None]
