"""The Dynamic DCGAN's live picture: a slow walk through the generator's latent space.

z(t) moves from one seeded Gaussian key point to the next every ``key_s`` seconds along the great
circle between them (slerp: Gaussian latents lie near a sphere, and a straight line between two of
them passes through unlikely low-norm points; White 2016, "Sampling Generative Networks"), eased
with smoothstep so the walk lingers at each key. The keys form a closed loop of ``WALK_KEYS``.

``GeneratorEngine`` offers what the live pipeline uses of ``stream.engine.Engine`` (``run``,
``prepare`` / ``use``, ``n_sites``, ``in_hw``, ``device``, ``net``, ``info``), plus ``seek(time_s)``:
the walk time whose z the next ``run`` generates. The frames ``run`` is given carry no pixels.
"""

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dynastream.nets import DynamicNet
from dynastream.stream.engine import (
    BackendWarning,
    EngineConfig,
    EngineError,
    _copy_net,
    device_name,
    pick_device,
    pick_dtype,
)

WALK_KEYS = 64          # key points in the loop; at 4 s a key the walk repeats after about 4 minutes
WALK_SIZE = 512         # default side of the live picture (the generator makes 64x64)
CLOCK_HW = (1, 1)       # the pixel-less frames of stream.sources.ClockSource


def pixels_u8(y_nchw: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> uint8 NCHW: (y + 1) / 2 clamped to [0, 1], times 255, rounded."""
    return ((y_nchw + 1.0) / 2.0).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def latent_keys(n: int, nz: int, seed: int) -> torch.Tensor:
    """``n`` standard-normal latents (n, nz), float32, from a CPU generator: the same on every device."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn((n, nz), generator=generator)


class LatentWalk:
    def __init__(self, nz: int, seed: int = 0, key_s: float = 4.0, n_keys: int = WALK_KEYS):
        if not key_s > 0:
            raise ValueError(f"key_s must be above 0, not {key_s}")
        self.nz, self.seed, self.key_s, self.n_keys = nz, seed, float(key_s), n_keys
        self.keys = latent_keys(n_keys, nz, seed).numpy()
        following = np.roll(self.keys, -1, axis=0)
        cos = (self.keys * following).sum(1) / (np.linalg.norm(self.keys, axis=1) * np.linalg.norm(following, axis=1))
        self._omega = np.arccos(np.clip(cos, -1.0, 1.0)).astype(np.float64)
        self._sin_omega = np.sin(self._omega)
        self._scratch = np.empty(nz, np.float32)

    def z_into(self, out: np.ndarray, time_s: float) -> None:
        """Write z(time_s) into ``out`` (nz,) float32 without allocating."""
        position = time_s / self.key_s
        j = math.floor(position)
        u = position - j
        u = u * u * (3.0 - 2.0 * u)
        j %= self.n_keys
        omega, sin_omega = self._omega[j], self._sin_omega[j]
        if sin_omega < 1e-6:   # (anti)parallel keys: slerp's weights are 0/0
            wa, wb = 1.0 - u, u
        else:
            wa, wb = math.sin((1.0 - u) * omega) / sin_omega, math.sin(u * omega) / sin_omega
        np.multiply(self.keys[j], wa, out=out)
        np.multiply(self.keys[(j + 1) % self.n_keys], wb, out=self._scratch)
        out += self._scratch

    def z_at(self, time_s: float) -> np.ndarray:
        z = np.empty(self.nz, np.float32)
        self.z_into(z, time_s)
        return z


@dataclass
class PreparedGenerator:
    """A dcgan net made ready for one GeneratorEngine, with its own walk and z buffers (its nz)."""

    net: DynamicNet
    walk: LatentWalk
    z_host: torch.Tensor        # (1, nz) float32, pinned on CUDA
    z_host_np: np.ndarray       # (nz,) view of z_host
    z_dev: torch.Tensor         # (1, nz) in the engine's dtype on the device (z_host itself on a CPU in fp32)
    setup_s: float = 0.0


class GeneratorEngine:
    """Runs a dcgan DynamicNet on z(t) of a latent walk: G(z, α) -> bilinear upsample from 64x64 to
    ``config.size_wh`` -> uint8, downloaded into a preallocated host buffer (the one sync per call).
    Eager torch on every device: the generator is small (about 0.2 GFLOP a picture with its
    tuning block), so the compile backends would buy little."""

    def __init__(self, net: DynamicNet, config: EngineConfig, walk_seed: int = 0, walk_key_s: float = 4.0):
        if config.size_wh is None:
            raise EngineError("a GeneratorEngine needs the picture size (EngineConfig.size_wh)")
        self.config = config
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.precision, self.device)
        self.in_hw = CLOCK_HW
        self.out_hw = (config.size_wh[1], config.size_wh[0])
        self.walk_seed, self.walk_key_s = walk_seed, walk_key_s
        self.notes: list[str] = []
        if config.backend not in ("auto", "eager"):
            note = f"the {config.backend} backend is for style models; the latent walk runs eager torch"
            warnings.warn(note, BackendWarning, stacklevel=2)
            self.notes.append(note)
        if config.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(config.threads)
        self.n_sites = len(net.sites)
        self.compile_pending = False   # the generator always runs eager (the Engine contract)
        self._cuda = self.device.type == "cuda"
        oh, ow = self.out_hw
        self._alpha_host = torch.zeros((1, self.n_sites), dtype=torch.float32, pin_memory=self._cuda)
        self._alpha_host_np = self._alpha_host.numpy()
        self._alpha_dev = self._alpha_host.to(self.device, self.dtype)
        self._out_host = torch.zeros((1, oh, ow, 3), dtype=torch.uint8, pin_memory=self._cuda)
        self._out_host_np = self._out_host.numpy()
        self._out_dev = self._out_host if self.device.type == "cpu" else torch.zeros_like(self._out_host, device=self.device)
        self.time_s = 0.0
        self.prepared = self.prepare(net)
        self.net = self.prepared.net

    @property
    def runs(self) -> str:
        return "eager"

    def prepare(self, net: DynamicNet) -> PreparedGenerator:
        """A private copy of ``net`` on the device, and a walk for its nz (callable from a loader
        thread: it touches no buffer the running picture uses)."""
        if net.kind != "dcgan":
            raise EngineError(f"model {net.meta.get('name', '?')} is a {net.kind} model, not a dcgan generator")
        if len(net.sites) != self.n_sites:
            raise EngineError(f"model {net.meta.get('name', '?')} has {len(net.sites)} tuning sites, "
                              f"the running one has {self.n_sites}")
        started = time.perf_counter()
        net = _copy_net(net).to(self.device, self.dtype).eval()   # eval: BatchNorm uses its running statistics
        for p in net.parameters():
            p.requires_grad_(False)
        walk = LatentWalk(net.main.config.nz, self.walk_seed, self.walk_key_s)
        z_host = torch.zeros((1, walk.nz), dtype=torch.float32, pin_memory=self._cuda)
        z_dev = z_host if self.device.type == "cpu" and self.dtype == torch.float32 else \
            torch.zeros_like(z_host, device=self.device, dtype=self.dtype)
        return PreparedGenerator(net, walk, z_host, z_host.numpy()[0], z_dev, time.perf_counter() - started)

    def use(self, prepared: PreparedGenerator) -> None:
        if not isinstance(prepared, PreparedGenerator):
            raise TypeError("GeneratorEngine.use takes what GeneratorEngine.prepare returned")
        self.prepared, self.net = prepared, prepared.net

    def seek(self, time_s: float) -> None:
        self.time_s = time_s

    def info(self) -> dict:
        walk = self.prepared.walk
        return {"device": str(self.device), "device_name": device_name(self.device),
                "dtype": str(self.dtype).replace("torch.", ""), "backend": "eager",
                "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                "in_hw": list(self.in_hw), "out_hw": list(self.out_hw), "setup_s": round(self.prepared.setup_s, 3),
                "walk": {"nz": walk.nz, "seed": walk.seed, "key_s": walk.key_s, "keys": walk.n_keys},
                "notes": list(self.notes)}

    @torch.inference_mode()
    def run(self, frames_hwc_u8, alpha_bs: np.ndarray) -> np.ndarray:
        """One picture at z(``time_s`` of the last ``seek``) with α ``alpha_bs[0]``; ``frames`` is one
        pixel-less clock frame. Returns a (1, H, W, 3) uint8 view valid until the next call."""
        if len(frames_hwc_u8) != 1:
            raise ValueError(f"a latent-walk call makes 1 picture, got {len(frames_hwc_u8)} frames")
        p = self.prepared
        p.walk.z_into(p.z_host_np, self.time_s)
        self._alpha_host_np[...] = alpha_bs[:1]
        if p.z_dev is not p.z_host:
            p.z_dev.copy_(p.z_host, non_blocking=self._cuda)
        if self._alpha_dev is not self._alpha_host:
            self._alpha_dev.copy_(self._alpha_host, non_blocking=self._cuda)
        y = F.interpolate(p.net(p.z_dev, self._alpha_dev), size=self.out_hw, mode="bilinear", align_corners=False)
        self._out_dev.copy_(pixels_u8(y).permute(0, 2, 3, 1))
        if self._out_dev is not self._out_host:
            self._out_host.copy_(self._out_dev)   # the one sync per call: the host needs the pixels
        return self._out_host_np
