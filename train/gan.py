"""Two-phase Dynamic DCGAN training (Shoshan et al., ICCV 2019, "Dynamic DCGAN").

Phase ``main`` trains a DCGAN generator with its discriminator on subset A (α = 0 is exactly this
generator). Phase ``blocks`` freezes it (checked bit-identical afterwards) and trains the tuning
block at ``layer3_out`` with a second discriminator on subset B, at α = 1; between the two, α moves
one latent z from A's look to B's. Adam (2e-4, betas 0.5 / 0.999), BCE, z = 100, 64x64 images, as
in the seed's code and pytorch/examples/dcgan.

Between the phases the main generator's BatchNorm statistics are recomputed as exact averages over
random z (``recalibrate_batchnorm``): the momentum-0.1 running averages trail a generator that
changes every step, and the frozen generator (eval mode) would otherwise render with stale ones.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from dynastream import nets
from dynastream.configs import schema
from dynastream.nets import DynamicNet
from dynastream.nets.checkpoint import from_dict
from dynastream.nets.dcgan import DCGANConfig, DCGANDiscriminator
from dynastream.train.data import SubsetDataset, batches, celeba_split
from dynastream.train.loop import Phase as LoopPhase
from dynastream.train.loop import run_phase
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

IMAGE_SIZE = 64
PHASE_ALPHA: dict[str, float] = {"main": 0.0, "higher": 1.0}
PREVIEW_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
RECALIBRATION_BATCHES = 50
TRAIN_STATE_VERSION = 1
RESUME_MAY_CHANGE = ("name", "out", "device", "data.workers", "schedule.")
Phase = Literal["main", "higher"]


# --- config -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GanNetConfig:
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    # a dcgan checkpoint whose main generator starts this run; with schedule.main.steps 0 only the
    # tuning block trains (the seed's "only tuning blocks" scheme)
    main_from: Optional[str] = None

    def __post_init__(self):
        if min(self.nz, self.ngf, self.ndf) < 1:
            raise ValueError("nz, ngf and ndf must be >= 1")

    def dcgan(self) -> DCGANConfig:
        return DCGANConfig(nz=self.nz, ngf=self.ngf, ndf=self.ndf)


@dataclass(frozen=True)
class CelebAConfig:
    folder: str                           # holds list_attr_celeba.txt (and img_align_celeba/)
    attribute: str                        # e.g. Male, Blond_Hair
    value: int = 1                        # subset B (α = 1) is attribute == value; subset A the rest

    def __post_init__(self):
        if self.value not in (1, -1):
            raise ValueError("celeba.value must be 1 or -1")


@dataclass(frozen=True)
class GanDataConfig:
    a: Optional[str] = None               # subset A (α = 0): an image folder, or generated:circles|squares
    b: Optional[str] = None               # subset B (α = 1)
    celeba: Optional[CelebAConfig] = None  # instead of a and b: one CelebA-layout folder split by an attribute
    crop: Optional[int] = None            # centre crop (pixels) before resizing to 64; CelebA: 108
    flip: bool = True                     # random horizontal flips
    batch_size: int = 64
    workers: int = 0
    preview_samples: int = 8              # rows (latent vectors) of the preview sheets

    def __post_init__(self):
        if (self.celeba is None) == (self.a is None or self.b is None) or (self.celeba and (self.a or self.b)):
            raise ValueError("data needs either both a and b (two image folders) or celeba (one split folder)")
        if self.batch_size < 2 or self.workers < 0 or self.preview_samples < 1:
            raise ValueError("batch_size must be >= 2 (BatchNorm), workers >= 0, preview_samples >= 1")
        if self.crop is not None and self.crop < IMAGE_SIZE:
            raise ValueError(f"crop must be at least {IMAGE_SIZE} pixels")


@dataclass(frozen=True)
class GanPhaseConfig:
    steps: int = 5000
    lr: float = 2e-4                      # generator and discriminator


@dataclass(frozen=True)
class GanScheduleConfig:
    main: GanPhaseConfig = field(default_factory=GanPhaseConfig)
    blocks: GanPhaseConfig = field(default_factory=GanPhaseConfig)
    betas: tuple[float, float] = (0.5, 0.999)
    # the blocks phase's discriminator: a new one (the seed's default) or the main phase's, trained on
    blocks_discriminator: Literal["fresh", "continue"] = "fresh"
    log_every: int = 50
    preview_every: int = 500              # 0: only at the end
    checkpoint_every: int = 500           # 0: only at phase ends (and on Ctrl-C)

    def __post_init__(self):
        check_schedule(self)
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError("betas must be in [0, 1)")


@dataclass(frozen=True)
class DCGANTrainConfig:
    data: GanDataConfig
    task: Literal["dcgan"] = "dcgan"
    name: str = "dcgan"                   # the final checkpoint is OUT/NAME.pt
    out: Optional[str] = None             # default runs/NAME
    net: GanNetConfig = field(default_factory=GanNetConfig)
    schedule: GanScheduleConfig = field(default_factory=GanScheduleConfig)
    seed: int = 0
    device: str = "auto"
    amp: bool = True                      # mixed precision on CUDA

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError("name must be a plain file name")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")


def subsets_of(data: GanDataConfig) -> dict[Phase, SubsetDataset]:
    """The training images of each phase: A for ``main``, B for ``higher``."""
    if data.celeba is not None:
        a_paths, b_paths = celeba_split(Path(data.celeba.folder), data.celeba.attribute, data.celeba.value)
        a, b = SubsetDataset(a_paths, IMAGE_SIZE, data.crop, data.flip), SubsetDataset(b_paths, IMAGE_SIZE, data.crop, data.flip)
    else:
        a = SubsetDataset(data.a, IMAGE_SIZE, data.crop, data.flip)
        b = SubsetDataset(data.b, IMAGE_SIZE, data.crop, data.flip)
    return {"main": a, "higher": b}


def describe_subset(data: GanDataConfig, phase: Phase, dataset: SubsetDataset) -> str:
    if data.celeba is None:
        return dataset.folder
    c = data.celeba
    relation = "==" if phase == "higher" else "!="
    return f"{Path(c.folder).expanduser().resolve()} ({c.attribute} {relation} {c.value})"


# --- the GAN step -----------------------------------------------------------------------------

def recalibrate_batchnorm(generator: nn.Module, nz: int, batch: int, zgen: torch.Generator,
                          device: torch.device, batches_: int = RECALIBRATION_BATCHES) -> None:
    """Replace the generator's BatchNorm running statistics with their exact average over
    ``batches_`` batches of random z (momentum None = cumulative average)."""
    bns = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    was_training = generator.training
    generator.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for _ in range(batches_):
            generator(torch.randn(batch, nz, generator=zgen).to(device))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    generator.train(was_training)


def zero_last_convs(blocks: nn.ModuleDict) -> None:
    """Zero each tuning block's last convolution, so the blocks phase starts with α = 1 drawing
    exactly what α = 0 draws. A randomly initialised block pushes the frozen generator's features
    far from the statistics its BatchNorm layers (eval mode) were fitted to, the new discriminator
    wins at once and the phase collapses (seen on the emoji demo: uniform blue images)."""
    for block in blocks.values():
        nn.init.zeros_(block.conv3.conv.weight)
        nn.init.zeros_(block.conv3.conv.bias)


def gan_step(generate: Callable[[torch.Tensor], torch.Tensor], disc: nn.Module, opt_g: torch.optim.Optimizer,
             opt_d: torch.optim.Optimizer, real_nchw: torch.Tensor, z: torch.Tensor, amp: Amp,
             scalers: tuple["torch.amp.GradScaler", "torch.amp.GradScaler"]) -> dict[str, torch.Tensor]:
    """One DCGAN step: the discriminator on a real and a fake batch (BCE), then the generator
    against the updated discriminator. Returns detached terms (no device sync)."""
    scaler_g, scaler_d = scalers
    ones = torch.ones(real_nchw.shape[0], device=real_nchw.device)
    zeros = torch.zeros_like(ones)
    with amp.autocast():
        fake = generate(z)
        p_real = disc(real_nchw)
        p_fake = disc(fake.detach())
    with amp.fp32():   # BCE on probabilities is not autocast-safe
        loss_d = F.binary_cross_entropy(p_real.float(), ones) + F.binary_cross_entropy(p_fake.float(), zeros)
    opt_d.zero_grad(set_to_none=True)
    scaler_d.scale(loss_d).backward()
    scaler_d.step(opt_d)
    scaler_d.update()
    with amp.autocast():
        p_gen = disc(fake)
    with amp.fp32():
        loss_g = F.binary_cross_entropy(p_gen.float(), ones)
    opt_g.zero_grad(set_to_none=True)
    scaler_g.scale(loss_g).backward()
    scaler_g.step(opt_g)
    scaler_g.update()
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
            "d_real": p_real.detach().float().mean(), "d_fake": p_fake.detach().float().mean()}


def sweep(net: DynamicNet, z: torch.Tensor, alphas=PREVIEW_ALPHAS) -> torch.Tensor:
    """Tiles in [0, 1], one row per latent vector, one column per α: ``(len(z) * len(alphas), 3, 64, 64)``."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        z = z.to(next(net.parameters()).device)
        cols = [net(z, a).float().add(1).div(2).clamp(0, 1) for a in alphas]
    net.train(was_training)
    return torch.stack(cols, dim=1).flatten(0, 1)


# --- the run ----------------------------------------------------------------------------------

@dataclass
class _Progress:
    phase_index: int = 0
    phase_step: int = 0
    step: int = 0
    opt_g: Optional[dict] = None
    opt_d: Optional[dict] = None
    disc: Optional[dict] = None
    zgen: Optional[torch.Tensor] = None
    recalibrated: bool = False
    final_losses: dict = field(default_factory=dict)
    main_sha256: Optional[str] = None
    skipped: dict = field(default_factory=lambda: {"main": set(), "higher": set()})
    elapsed: float = 0.0


def train(cfg: DCGANTrainConfig, out: Optional[Path] = None, *, resume: bool = False,
          stop_at_step: Optional[int] = None) -> Path:
    """Run (or resume) a Dynamic DCGAN training; returns the final checkpoint's path.
    ``stop_at_step`` stops as a Ctrl-C would, after that global step (raises ``Interrupted``)."""
    out = Path(out) if out is not None else cfg.out_dir
    d = Distributed.from_env(cfg.device)
    if d.world > 1:
        raise RunError("Dynamic DCGAN training runs in one process; start it without torchrun")
    run = RunDir(out, cfg.name)
    run.check(resume)
    subsets = subsets_of(cfg.data)
    ckpt = nets.read(run.last) if resume else None
    if ckpt is not None:
        ts = ckpt.get("train_state")
        if not isinstance(ts, dict) or ts.get("trainer") != "dcgan":
            raise RunError(f"{run.last} is not a resumable Dynamic DCGAN training checkpoint")
        check_resume(schema.to_dict(cfg), ts["config"], RESUME_MAY_CHANGE)
    main_from = load_main_from(cfg.net) if cfg.net.main_from and ckpt is None else None
    return _run(cfg, d, run, subsets, ckpt, main_from, stop_at_step)


def load_main_from(net_cfg: GanNetConfig) -> DynamicNet:
    path = net_cfg.main_from
    net = from_dict(nets.read(path), path)
    if net.kind != "dcgan":
        raise RunError(f"net.main_from {path} is a {net.kind} model, not a Dynamic DCGAN")
    theirs, ours = net.main.config, net_cfg.dcgan()
    if (theirs.nz, theirs.ngf) != (ours.nz, ours.ngf):
        raise RunError(f"net.main_from {path} has nz {theirs.nz} and ngf {theirs.ngf}; this config asks for "
                       f"nz {ours.nz} and ngf {ours.ngf}")
    return net


def _run(cfg: DCGANTrainConfig, d: Distributed, run: RunDir, subsets: dict, ckpt: Optional[dict],
         main_from: Optional[DynamicNet], stop_at_step: Optional[int]) -> Path:
    t0 = time.perf_counter()
    amp = Amp.for_device(d.device, cfg.amp)
    if d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    dcgan = cfg.net.dcgan()
    if ckpt is None:
        net = DynamicNet.for_dcgan(dcgan)
        disc = DCGANDiscriminator(dcgan)
        state = _Progress()
        if main_from is not None:
            net.main.load_state_dict(main_from.main.state_dict())
    else:
        net = from_dict(ckpt, str(run.last))
        state = _restore(ckpt["train_state"])
        disc = DCGANDiscriminator(dcgan)
        disc.load_state_dict(state.disc)
    net.to(d.device).train()
    disc.to(d.device).train()
    zgen = torch.Generator().manual_seed(cfg.seed + 1)
    if state.zgen is not None:
        zgen.set_state(state.zgen)
    preview_z = torch.randn(cfg.data.preview_samples, cfg.net.nz, generator=torch.Generator().manual_seed(cfg.seed + 2))
    run.prepare()
    schema.write_yaml(cfg, run.config)
    if ckpt is not None:
        run.rewind_metrics(state.step)

    plan: list[tuple[Phase, GanPhaseConfig]] = [("main", cfg.schedule.main), ("higher", cfg.schedule.blocks)]
    with StopRequest() as stop:
        for index, (phase, phase_cfg) in enumerate(plan):
            if index < state.phase_index:
                continue
            resuming_here = index == state.phase_index and state.opt_g is not None
            if resuming_here and state.phase_step >= phase_cfg.steps:
                continue   # saved at this phase's end
            if phase == "higher":
                net.freeze_main()
                if state.main_sha256 is None:
                    state.main_sha256 = state_sha256(net.main)
                if not resuming_here:
                    zero_last_convs(net.higher)
                if not resuming_here and cfg.schedule.blocks_discriminator == "fresh":
                    with torch.random.fork_rng(devices=[]):   # the same weights whether resumed or not
                        torch.manual_seed(cfg.seed + 3)
                        disc = DCGANDiscriminator(dcgan).to(d.device).train()
            for g in net.groups():
                for p in net.group_parameters(g):
                    p.requires_grad_(g == phase)
            betas = cfg.schedule.betas
            opt_g = torch.optim.Adam(net.group_parameters(phase), lr=phase_cfg.lr, betas=betas)
            opt_d = torch.optim.Adam(disc.parameters(), lr=phase_cfg.lr, betas=betas)
            if resuming_here:
                opt_g.load_state_dict(state.opt_g)
                opt_d.load_state_dict(state.opt_d)
            start = state.phase_step if index == state.phase_index else 0
            state.phase_index, state.phase_step = index, start
            data = batches(subsets[phase], cfg.data.batch_size, cfg.seed + index, start_step=start,
                           workers=cfg.data.workers, pin_memory=d.device.type == "cuda")
            generate = net.main if phase == "main" else (lambda z: net(z, PHASE_ALPHA["higher"]))
            run_phase(_phase(cfg, d, run, net, disc, generate, phase, phase_cfg, opt_g, opt_d, amp, data, zgen,
                             subsets[phase], state, preview_z, t0), state, cfg.schedule, d, run, stop, stop_at_step)
            if phase == "higher" and state_sha256(net.main) != state.main_sha256:
                raise RuntimeError("the main generator changed during the blocks phase: it must stay frozen")
            if phase == "main" and phase_cfg.steps > 0 and not state.recalibrated:
                recalibrate_batchnorm(net.main, cfg.net.nz, cfg.data.batch_size, zgen, d.device)
                state.recalibrated = True
            _save_last(cfg, run, net, disc, opt_g, opt_d, zgen, state, subsets, t0)
    state.elapsed += time.perf_counter() - t0
    net.eval()
    save_sheet(sweep(net, preview_z), len(PREVIEW_ALPHAS), run.preview("final"))
    nets.save(net, run.final, objectives=_objectives_record(cfg, subsets),
              provenance=_provenance(cfg, d, amp, subsets, state))
    _report(run, subsets, state)
    return run.final


def _phase(cfg, d, run, net, disc, generate, phase, phase_cfg, opt_g, opt_d, amp, data, zgen, subset, state,
           preview_z, t0) -> LoopPhase:
    """One phase for ``train.loop.run_phase``: its step, checkpoint and preview."""
    scalers = (amp.scaler(), amp.scaler())

    def step() -> dict:
        real, skipped = next(data)
        if (skipped >= 0).any():
            state.skipped[phase].update(int(i) for i in skipped[skipped >= 0])
        real = real.to(d.device, non_blocking=True)
        z = torch.randn(real.shape[0], cfg.net.nz, generator=zgen).to(d.device, non_blocking=True)
        return gan_step(generate, disc, opt_g, opt_d, real, z, amp, scalers)

    return LoopPhase(name=phase, label="main" if phase == "main" else "blocks", alpha=PHASE_ALPHA[phase],
                     steps=phase_cfg.steps, step=step, lr=lambda: opt_g.param_groups[0]["lr"],
                     save=lambda: _save_last(cfg, run, net, disc, opt_g, opt_d, zgen, state, None, t0),
                     preview=lambda name: save_sheet(sweep(net, preview_z), len(PREVIEW_ALPHAS), run.preview(name)),
                     log_extra=lambda: {"epoch": round(state.phase_step * cfg.data.batch_size / len(subset), 3)})


def _save_last(cfg, run: RunDir, net: DynamicNet, disc: nn.Module, opt_g, opt_d, zgen: torch.Generator,
               state: _Progress, subsets, t0: float) -> None:
    train_state = {
        "trainer": "dcgan", "version": TRAIN_STATE_VERSION, "config": schema.to_dict(cfg),
        "phase_index": state.phase_index, "phase_step": state.phase_step, "step": state.step,
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
        "disc": {k: v.detach().cpu() for k, v in disc.state_dict().items()},
        "zgen": zgen.get_state(), "rng": rng_state(), "recalibrated": state.recalibrated,
        "final_losses": state.final_losses, "main_sha256": state.main_sha256,
        "skipped": {k: sorted(v) for k, v in state.skipped.items()},
        "elapsed": state.elapsed + time.perf_counter() - t0,
    }
    nets.save(net, run.last, provenance={"resumable": True, "step": state.step}, train_state=train_state)


def _restore(ts: dict) -> _Progress:
    if ts.get("version") != TRAIN_STATE_VERSION:
        raise RunError(f"the resumable checkpoint has train-state version {ts.get('version')}, "
                       f"this dynastream resumes version {TRAIN_STATE_VERSION}")
    set_rng_state(ts["rng"])
    return _Progress(phase_index=int(ts["phase_index"]), phase_step=int(ts["phase_step"]), step=int(ts["step"]),
                     opt_g=ts["opt_g"], opt_d=ts["opt_d"], disc=ts["disc"], zgen=ts["zgen"],
                     recalibrated=bool(ts["recalibrated"]), final_losses=dict(ts.get("final_losses") or {}),
                     main_sha256=ts.get("main_sha256"),
                     skipped={k: set(v) for k, v in (ts.get("skipped") or {}).items()} or {"main": set(), "higher": set()},
                     elapsed=float(ts.get("elapsed", 0.0)))


def _objectives_record(cfg: DCGANTrainConfig, subsets: dict) -> dict:
    rec: dict = {"kind": "dcgan"}
    for phase, dataset in subsets.items():
        rec[phase] = {"alpha": PHASE_ALPHA[phase], "subset": "A" if phase == "main" else "B",
                      "data": describe_subset(cfg.data, phase, dataset), "images": len(dataset)}
    return rec


def _provenance(cfg: DCGANTrainConfig, d: Distributed, amp: Amp, subsets: dict, state: _Progress) -> dict:
    return {
        "trainer": "dynastream train (dcgan)",
        "config": schema.to_dict(cfg),
        "main_from": _main_from_record(cfg.net.main_from),
        "data": {phase: {"data": describe_subset(cfg.data, phase, ds), "images": len(ds),
                         "unreadable_skipped": len(state.skipped.get(phase, ()))}
                 for phase, ds in subsets.items()},
        "batch_size": cfg.data.batch_size,
        "steps": {"main": cfg.schedule.main.steps, "higher": cfg.schedule.blocks.steps},
        "total_steps": state.step,
        "final_losses": state.final_losses,
        "processes": 1,
        "device": d.device.type,
        "amp": amp.describe(),
        "seconds": round(state.elapsed, 1),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _main_from_record(path: Optional[str]) -> Optional[dict]:
    """Where the main generator came from when the run started from another checkpoint."""
    if not path:
        return None
    ckpt = nets.read(path)
    prov, ts = ckpt["provenance"], ckpt.get("train_state") or {}
    cfg = prov.get("config") or ts.get("config") or {}
    return {"path": str(Path(path).expanduser().resolve()),
            "main_steps": ((cfg.get("schedule") or {}).get("main") or {}).get("steps"),
            "seconds": prov.get("seconds", ts.get("elapsed"))}


def _report(run: RunDir, subsets: dict, state: _Progress) -> None:
    print(f"wrote {run.final} ({state.step} steps in {state.elapsed:.1f} s; "
          f"preview {run.preview('final')}; metrics {run.metrics})")
    for phase, bad in state.skipped.items():
        if bad:
            shown = ", ".join(subsets[phase].describe(i) for i in sorted(bad)[:5])
            print(f"skipped {len(bad)} unreadable image file(s) of subset {'A' if phase == 'main' else 'B'}: {shown}")
