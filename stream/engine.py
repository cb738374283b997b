"""The only place that touches the compute device: upload frames, run the net with α, download.

Per call: frames (uint8 HWC on the host) are copied into a preallocated (pinned, on CUDA) input
buffer, uploaded with a non-blocking copy, converted and resized on the device, run through the net
with α taken from a device tensor that is updated in place, converted back to uint8 on the device
and downloaded into a preallocated host buffer. The download is the one host<->device sync per call.
"""

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nets import DynamicNet
from nets.errors import DynastreamError

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class EngineError(DynastreamError):
    pass


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"                          # auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps
    precision: Precision = "auto"                 # auto = fp16 on CUDA, fp32 elsewhere
    size_wh: Optional[tuple[int, int]] = None     # processing size; None = the source's size
    channels_last: bool = True
    max_batch: int = 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EngineError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {name!r} was asked for but this torch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EngineError(f"device {name!r} was asked for but MPS is not available here; use --device cpu")
    return device


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and precision != "fp32":
        raise EngineError(f"precision {precision} is for GPUs; on the CPU use fp32")
    return _DTYPES[precision]


class Engine:
    """Runs ``net`` on batches of frames of one source size ``in_hw``."""

    def __init__(self, net: DynamicNet, config: EngineConfig, in_hw: tuple[int, int]):
        self.config = config
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.precision, self.device)
        self.in_hw = tuple(in_hw)
        self.out_hw = (config.size_wh[1], config.size_wh[0]) if config.size_wh else self.in_hw
        self.n_sites = len(net.sites)
        self.net = self.prepare(net)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        b, (h, w), (oh, ow) = config.max_batch, self.in_hw, self.out_hw
        self._cuda = self.device.type == "cuda"
        pin = self._cuda
        self._in_host = torch.empty((b, h, w, 3), dtype=torch.uint8, pin_memory=pin)
        self._alpha_host = torch.zeros((b, self.n_sites), dtype=torch.float32, pin_memory=pin)
        self._out_host = torch.empty((b, oh, ow, 3), dtype=torch.uint8, pin_memory=pin)
        self._out_host_np = self._out_host.numpy()
        if self._cuda:
            self._in_dev = torch.empty((b, h, w, 3), dtype=torch.uint8, device=self.device)
            self._alpha_dev = torch.zeros((b, self.n_sites), dtype=self.dtype, device=self.device)
            self._out_dev = torch.empty((b, oh, ow, 3), dtype=torch.uint8, device=self.device)
            self._done = torch.cuda.Event()
        else:  # on the CPU the "device" buffers are the host buffers: no copies at all
            self._in_dev, self._out_dev = self._in_host, self._out_host
            self._alpha_dev = self._alpha_host if self.dtype == torch.float32 else self._alpha_host.to(self.dtype)

    def prepare(self, net: DynamicNet) -> DynamicNet:
        """Move a net to this engine's device, dtype and memory format (callable from a loader
        thread, so a model switch does not stall the feed)."""
        if len(net.sites) != self.n_sites:
            raise EngineError(f"model {net.meta.get('name', '?')} has {len(net.sites)} tuning sites, "
                              f"the running one has {self.n_sites}")
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        return net.to(self.device, self.dtype, memory_format=fmt).eval()

    def use(self, prepared: DynamicNet) -> None:
        self.net = prepared

    @torch.inference_mode()
    def run(self, frames_hwc_u8: Sequence[np.ndarray], alpha_bs: np.ndarray) -> np.ndarray:
        """Stylize ``len(frames)`` frames; ``alpha_bs[i]`` is frame i's α per site.

        Returns a (n, H_out, W_out, 3) uint8 view of an internal buffer, valid until the next call.
        """
        n = len(frames_hwc_u8)
        for i, frame in enumerate(frames_hwc_u8):
            self._in_host[i].numpy()[...] = frame
        self._alpha_host[:n].numpy()[...] = alpha_bs[:n]
        if self._cuda:
            self._in_dev[:n].copy_(self._in_host[:n], non_blocking=True)
            self._alpha_dev[:n].copy_(self._alpha_host[:n], non_blocking=True)
        elif self._alpha_dev is not self._alpha_host:
            self._alpha_dev[:n].copy_(self._alpha_host[:n])
        x = self._in_dev[:n].permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        if self.out_hw != self.in_hw:
            x = F.interpolate(x, size=self.out_hw, mode="bilinear", align_corners=False, antialias=True)
        x = x.contiguous(memory_format=self.memory_format)
        y = self.net(x, self._alpha_dev[:n])
        y_u8 = y.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
        if self._cuda:
            self._out_dev[:n].copy_(y_u8)
            self._out_host[:n].copy_(self._out_dev[:n], non_blocking=True)
            self._done.record()
            self._done.synchronize()  # the one sync per call: the host needs the pixels
        else:
            self._out_host[:n].copy_(y_u8)
        return self._out_host_np[:n]
