"""The only place that touches the compute device: upload frames, run the net with α, download.

One call (``run``, or ``submit`` + ``collect``) takes uint8 HWC frames on the host and α per frame
and site. Frames are copied into a preallocated input slot (pinned on CUDA), uploaded with a
non-blocking copy, converted and resized on the device, run through the net with α read from a
device tensor that is updated in place, converted back to uint8 on the device and downloaded into
a preallocated host buffer. Waiting for that download is the one host<->device sync per call.

With ``EngineConfig.alpha_map`` each frame also carries an α map: uint8 (H_out, W_out), 255 = the
frame's α, 0 = α 0 (the main net), at the processing size. It travels like the frames (a slot
buffer, uploaded with them) and is a graph input of every backend, so it changes every frame
without a recompile or a recapture. Without it the graph is exactly the one without maps.

Backends (``EngineConfig.backend``; docs/benchmarks.md has the measurements behind the defaults):

* ``eager``: plain torch. On CUDA the whole step (uint8 -> net -> uint8) is captured once per
  slot as a CUDA graph; α lives in the captured α tensor, so changing it never recaptures.
* ``compile``: ``torch.compile`` (inductor) of the whole step, static shapes, weights frozen on the
  CPU. Compiled once when the model is prepared; α is a tensor input, so it never recompiles.
* ``onnxruntime``: the net exported to ONNX with α as a graph input (CPU only; optional extra
  ``dynastream[onnx]``).
* ``auto``: on the CPU ``compile`` when a call processes at least 320x240 pixels and a C++
  compiler is present, else ``eager``; ``eager`` with CUDA graphs on CUDA; ``eager`` elsewhere.

On the CPU, convolutions with a wide kernel and at most 4 output channels (the net's last 9x9 conv
to RGB) run as a row convolution plus shifted sums (``RowSplitConv``): the same sums in another
order, but oneDNN pads output channels to the SIMD width, so a 3-channel 9x9 conv costs as much as
a 16-channel one; 27 row outputs waste far less.
"""

import shutil
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynastream.nets import DynamicNet
from dynastream.nets.errors import DynastreamError, short_repr

Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
Backend = Literal["auto", "eager", "compile", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("auto", "eager", "compile", "onnxruntime")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class EngineError(DynastreamError):
    pass


class BackendWarning(UserWarning):
    """A requested backend could not be used; the engine fell back to another one."""


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"                          # auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps
    precision: Precision = "auto"                 # auto = fp16 on CUDA, fp32 elsewhere (bf16: opt-in on CPU)
    size_wh: Optional[tuple[int, int]] = None     # processing size; None = the source's size
    channels_last: bool = True
    max_batch: int = 1
    backend: Backend = "auto"
    threads: Optional[int] = None                 # CPU intra-op threads (process-wide); None = leave as is
    cuda_graphs: bool = True                      # CUDA: replay the step as a graph, one per slot
    split_convs: bool = True                      # CPU: RowSplitConv for wide kernels with <= 4 outputs
    alpha_map: bool = False                       # each frame carries an α map (uint8 at the processing size)


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
        raise EngineError(f"unknown device {short_repr(name)}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {short_repr(name)} was asked for but this torch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EngineError(f"device {short_repr(name)} was asked for but MPS is not available here; use --device cpu")
    return device


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {short_repr(precision)}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and precision == "fp16":
        raise EngineError("precision fp16 is for GPUs; on the CPU use fp32 (or bf16 on CPUs with bf16 support)")
    if device.type == "cpu" and precision == "bf16" and not _cpu_has_bf16():
        raise EngineError("precision bf16 needs a CPU with bf16 instructions (AVX512-BF16 or AMX); use fp32")
    return _DTYPES[precision]


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def has_cxx_compiler() -> bool:
    """torch.compile's CPU code generator (inductor) needs a C++ compiler on PATH."""
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# auto compiles on the CPU only from this many processed pixels per call: compiling takes seconds
# (tens of seconds the first time for a shape), which pays back within a few hundred frames at
# 320x240 but not for thumbnails and tests.
COMPILE_MIN_PIXELS = 320 * 240
# ... and a render compiles only a job of at least this many frames (``render_backend``): a photo or a
# short clip is done in eager torch before a compile would have finished.
COMPILE_MIN_FRAMES = 200


def render_backend(frames: Optional[int]) -> Backend:
    """The backend of a render of ``frames`` frames (None: not known, as for a stream)."""
    return "eager" if frames is not None and frames < COMPILE_MIN_FRAMES else "auto"


# Freezing lets inductor treat weights as constants and prepack them for oneDNN; measured faster on
# the CPU, but it bypasses inductor's on-disk graph cache, so every start compiles from scratch.
COMPILE_FREEZING = True


def resolve_backend(backend: str, device: torch.device, pixels: int = COMPILE_MIN_PIXELS) -> tuple[str, Optional[str]]:
    """The backend that will run and, when it differs from the request, why (one sentence)."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {short_repr(backend)}: use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if device.type == "cpu" and pixels >= COMPILE_MIN_PIXELS and has_cxx_compiler():
            return "compile", None
        return "eager", None
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise EngineError("the onnxruntime backend runs on the CPU only; use --device cpu or another backend")
        if not has_onnxruntime():
            return "eager", ("onnxruntime is not installed (pip install 'dynastream[onnx]'), "
                             "so the eager torch backend runs instead")
    if backend == "compile" and device.type == "cpu" and not has_cxx_compiler():
        return "eager", ("torch.compile needs a C++ compiler (g++ or clang++) on the CPU and none was found, "
                         "so the eager torch backend runs instead")
    return backend, None


class RowSplitConv(nn.Module):
    """A stride-1, unpadded KxK convolution computed as K row convolutions (1xK) fused into one
    conv with K*C_out outputs, then the K output rows shifted and summed. Same result as ``conv``
    up to float rounding."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        c_out, c_in, kh, kw = conv.weight.shape
        self.c_out, self.kh = c_out, kh
        w_rows = conv.weight.detach().permute(2, 0, 1, 3).reshape(kh * c_out, c_in, 1, kw)
        self.weight_rows = nn.Parameter(w_rows.contiguous(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(c_out, dtype=conv.weight.dtype)
        self.bias = nn.Parameter(bias.reshape(1, c_out, 1, 1).clone(), requires_grad=False)

    @staticmethod
    def applies_to(module: nn.Module) -> bool:
        return (type(module) is nn.Conv2d and module.out_channels <= 4 and module.kernel_size[0] >= 5
                and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
                and module.padding == (0, 0) and module.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = F.conv2d(x, self.weight_rows)            # (B, K*C_out, H_in, W_out)
        h, c = rows.shape[2] - self.kh + 1, self.c_out
        y = rows[:, 0:c, 0:h] + self.bias
        for dy in range(1, self.kh):
            y = y + rows[:, dy * c:(dy + 1) * c, dy:dy + h]
        return y


def split_convs(net: nn.Module) -> int:
    """Replace every conv RowSplitConv applies to, in place; the number replaced."""
    targets = [(name, m) for name, m in net.named_modules() if RowSplitConv.applies_to(m)]
    for name, conv in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, attr, RowSplitConv(conv))
    return len(targets)


def net_size(out_hw: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The size the net runs at: ``out_hw``, each side raised to the net's smallest."""
    return max(out_hw[0], min_side), max(out_hw[1], min_side)


class Step(nn.Module):
    """One engine call on the device: uint8 BHWC frames and α (B, S) float32 -> uint8 BHWC.

    A frame smaller than the net takes (``net_hw`` > ``out_hw``) is padded by repeating its last
    row/column and the output cropped back, so even a 1x1 frame comes back at 1x1."""

    def __init__(self, net: DynamicNet, dtype: torch.dtype, in_hw: tuple[int, int], out_hw: tuple[int, int],
                 memory_format: torch.memory_format, net_hw: Optional[tuple[int, int]] = None):
        super().__init__()
        self.net, self.dtype, self.in_hw, self.out_hw, self.memory_format = net, dtype, in_hw, out_hw, memory_format
        self.net_hw = net_hw or out_hw

    def pre_map(self, map_bhw_u8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H_out, W_out) -> (B, 1, H_net, W_net) in [0, 1], padded like the frames."""
        m = (map_bhw_u8.to(self.dtype) / 255.0)[:, None]
        if self.net_hw != self.out_hw:
            m = F.pad(m, (0, self.net_hw[1] - self.out_hw[1], 0, self.net_hw[0] - self.out_hw[0]), mode="replicate")
        return m

    def pre(self, frames_bhwc_u8: torch.Tensor) -> torch.Tensor:
        x = frames_bhwc_u8.permute(0, 3, 1, 2).to(self.dtype) / 255.0
        if self.out_hw != self.in_hw:
            x = F.interpolate(x, size=self.out_hw, mode="bilinear", align_corners=False, antialias=True)
        if self.net_hw != self.out_hw:
            x = F.pad(x, (0, self.net_hw[1] - self.out_hw[1], 0, self.net_hw[0] - self.out_hw[0]), mode="replicate")
        return x.contiguous(memory_format=self.memory_format)

    def post(self, y_nchw: torch.Tensor) -> torch.Tensor:
        if self.net_hw != self.out_hw:
            y_nchw = y_nchw[..., :self.out_hw[0], :self.out_hw[1]]
        return (y_nchw.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)

    def forward(self, frames_bhwc_u8: torch.Tensor, alpha_bs: torch.Tensor,
                map_bhw_u8: Optional[torch.Tensor] = None) -> torch.Tensor:
        alpha_map = None if map_bhw_u8 is None else self.pre_map(map_bhw_u8)
        return self.post(self.net(self.pre(frames_bhwc_u8), alpha_bs.to(self.dtype), alpha_map))


# --- one class per backend: how a prepared net computes a slot's frames on the device ----------
#
# ``run(slot_index, inputs, out_dev, n)`` writes the first ``n`` frames' output (uint8 NHWC) into
# ``out_dev`` from the slot's device ``inputs`` (frames, α and, with maps, the α map). A backend
# with ``full_batch`` has the static max_batch shape and computes every row (the rows past ``n``
# are never read).

class EagerRun:
    """Eager torch: the engine's Step on the first n frames."""

    full_batch = False

    def __init__(self, step: "Step"):
        self.step = step

    def __call__(self, slot_index: int, inputs: tuple, out_dev: torch.Tensor, n: int) -> None:
        out_dev[:n].copy_(self.step(*(t[:n] for t in inputs)))


class CompiledRun:
    """``torch.compile`` of the Step for the engine's static shapes (weights frozen in on the CPU)."""

    full_batch = True

    def __init__(self, compiled: Any):
        self.compiled = compiled

    def __call__(self, slot_index: int, inputs: tuple, out_dev: torch.Tensor, n: int) -> None:
        out_dev.copy_(self.compiled(*inputs))


class OrtRun:
    """ONNX Runtime on the CPU: the net exported at the engine's size, one I/O binding per batch
    size (made once: no allocation per call); the Step's pre/post conversions stay in torch."""

    full_batch = False

    def __init__(self, step: "Step", session: Any, bindings: dict, x: torch.Tensor, y: torch.Tensor,
                 alpha_map: Optional[torch.Tensor]):
        self.step, self.session, self.bindings = step, session, bindings
        self.x, self.y, self.alpha_map = x, y, alpha_map

    def __call__(self, slot_index: int, inputs: tuple, out_dev: torch.Tensor, n: int) -> None:
        self.x[:n].copy_(self.step.pre(inputs[0][:n]))       # α is bound to the slot's host buffer
        if self.alpha_map is not None:
            self.alpha_map[:n].copy_(self.step.pre_map(inputs[2][:n]))
        self.session.run_with_iobinding(self.bindings[n])
        out_dev[:n].copy_(self.step.post(self.y[:n]))


class CudaGraphRun:
    """A CUDA graph per slot, captured from an eager or compiled run (``inner``) reading that
    slot's tensors: one launch a call."""

    full_batch = True

    def __init__(self, graphs: list, inner: Any):
        self.graphs, self.inner = graphs, inner

    def __call__(self, slot_index: int, inputs: tuple, out_dev: torch.Tensor, n: int) -> None:
        self.graphs[slot_index].replay()


@dataclass
class Prepared:
    """A net made ready for one engine: moved, converted, compiled / exported / captured."""

    net: DynamicNet
    step: Step
    backend: str                                  # what runs (eager when a compile failed)
    requested: str = ""                           # what prepare was asked for
    run: Any = None                               # EagerRun, CompiledRun, OrtRun or CudaGraphRun
    setup_s: float = 0.0
    notes: list = field(default_factory=list)


@dataclass(eq=False)   # compared by identity: a field-wise == of tensors raises
class _Slot:
    index: int                  # in Engine._slots (a CUDA graph per slot)
    in_host: torch.Tensor
    alpha_host: torch.Tensor
    out_host: torch.Tensor
    out_host_np: np.ndarray
    in_dev: torch.Tensor
    alpha_dev: torch.Tensor
    out_dev: torch.Tensor
    map_host: Optional[torch.Tensor] = None     # (B, H_out, W_out) uint8 with EngineConfig.alpha_map
    map_dev: Optional[torch.Tensor] = None
    uploaded: Any = None        # CUDA events
    computed: Any = None
    downloaded: Any = None


@runtime_checkable
class FrameEngine(Protocol):
    """What the live loop asks of an engine, and all it may touch: ``Engine`` (style nets, every
    backend) and ``stream.latent.GeneratorEngine`` (a dcgan's latent walk) both provide it.

    ``prepare`` may run on a loader thread (it touches nothing the running net uses); ``use`` and
    ``run`` run on the inference thread."""

    device: torch.device
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    n_sites: int
    net: DynamicNet                  # the engine's own copy, as it runs
    compile_pending: bool            # a compiled net is still to come (``prepare`` on another thread)
    notes: list[str]                 # what the engine chose differently from what was asked

    @property
    def runs(self) -> str: ...       # the backend running now: eager, compile or onnxruntime

    def prepare(self, net: DynamicNet) -> Any: ...

    def use(self, prepared: Any) -> None: ...

    def run(self, frames_hwc_u8: Sequence[np.ndarray], alpha_bs: np.ndarray) -> np.ndarray: ...

    def info(self) -> dict: ...


class Engine:
    """Runs ``net`` on batches of frames of one source size ``in_hw`` (a ``FrameEngine``).

    ``run`` is ``submit`` then ``collect``. On CUDA two slots let a caller ``submit`` frame k+1
    before ``collect``-ing frame k, so upload, compute and download of neighbouring calls overlap
    (each on its own stream). On the CPU there is one slot and ``submit`` computes.
    """

    def __init__(self, net: DynamicNet, config: EngineConfig, in_hw: tuple[int, int], start_eager: bool = False):
        """``start_eager``: when the backend is ``compile``, the engine starts with the eager net at
        once (no compile wait); ``prepare(net)`` on another thread then compiles, and ``use`` of its
        result switches (``compile_pending`` says whether that is still to come)."""
        if config.max_batch < 1:
            raise EngineError(f"max_batch must be at least 1, not {config.max_batch}")
        if config.threads is not None and config.threads < 1:
            raise EngineError(f"threads must be at least 1, not {config.threads}")
        self.config = config
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.precision, self.device)
        self.in_hw = tuple(in_hw)
        self.out_hw = (config.size_wh[1], config.size_wh[0]) if config.size_wh else self.in_hw
        self.net_hw = net_size(self.out_hw, getattr(net.main, "min_side", 1))
        pixels = config.max_batch * self.out_hw[0] * self.out_hw[1]
        self.backend, note = resolve_backend(config.backend, self.device, pixels)
        if self.backend == "onnxruntime" and self.dtype != torch.float32:
            raise EngineError("the onnxruntime backend runs fp32 only; use --precision fp32 or another backend")
        self.notes: list[str] = []
        if note:
            warnings.warn(note, BackendWarning, stacklevel=2)
            self.notes.append(note)
        if config.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(config.threads)
        self.n_sites = len(net.sites)
        self.alpha_map = config.alpha_map
        self.map_hw = self.out_hw              # the size of the α maps a call takes
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self._cuda = self.device.type == "cuda"
        self._copies = self.device.type != "cpu"
        self._slots = [self._make_slot(i) for i in range(2 if self._cuda else 1)]
        self._pending: deque[tuple[_Slot, int]] = deque()
        self._next_slot = 0
        if self._cuda:
            self._h2d = torch.cuda.Stream(self.device)
            self._compute = torch.cuda.Stream(self.device)
            self._d2h = torch.cuda.Stream(self.device)
            torch.backends.cudnn.benchmark = True     # one input size per engine: pick the fastest kernels
        deferred = start_eager and self.backend == "compile"
        self.prepared = self.prepare(net, backend="eager" if deferred else None)
        self.compile_pending = deferred
        self.net = self.prepared.net
        self.notes += self.prepared.notes

    @property
    def runs(self) -> str:
        return self.prepared.backend

    def _make_slot(self, index: int) -> _Slot:
        b, (h, w), (oh, ow) = self.config.max_batch, self.in_hw, self.out_hw
        pin = self._cuda
        in_host = torch.zeros((b, h, w, 3), dtype=torch.uint8, pin_memory=pin)
        alpha_host = torch.zeros((b, self.n_sites), dtype=torch.float32, pin_memory=pin)
        out_host = torch.zeros((b, oh, ow, 3), dtype=torch.uint8, pin_memory=pin)
        slot = _Slot(index, in_host, alpha_host, out_host, out_host.numpy(), in_host, alpha_host, out_host)
        if self.alpha_map:
            slot.map_host = slot.map_dev = torch.full((b, oh, ow), 255, dtype=torch.uint8, pin_memory=pin)
        if self._copies:
            slot.in_dev = torch.zeros_like(in_host, device=self.device)
            slot.alpha_dev = torch.zeros_like(alpha_host, device=self.device)
            slot.out_dev = torch.zeros_like(out_host, device=self.device)
            if self.alpha_map:
                slot.map_dev = slot.map_host.to(self.device)
        if self._cuda:
            slot.uploaded, slot.computed, slot.downloaded = torch.cuda.Event(), torch.cuda.Event(), torch.cuda.Event()
        return slot

    # --- preparing a net (callable from a loader thread: it touches no slot the feed uses) ----

    def prepare(self, net: DynamicNet, backend: Optional[str] = None) -> Prepared:
        """Make a net ready for this engine: a private copy on the device in the engine's dtype and
        memory format, then compiled / exported / captured for the engine's shapes. Slow for the
        compile backend (seconds; the first time for a shape, tens of seconds), so a model switch
        should call it off the inference thread and then ``use`` the result. ``backend``: eager
        instead of the engine's backend (a stand-in while the compiled net is prepared)."""
        if backend not in (None, "eager", self.backend):
            raise EngineError(f"an engine for the {self.backend} backend prepares nets for it or eager, not {backend}")
        if len(net.sites) != self.n_sites:
            raise EngineError(f"model {net.meta.get('name', '?')} has {len(net.sites)} tuning sites, "
                              f"the running one has {self.n_sites}")
        started = time.perf_counter()
        net = _copy_net(net)
        if self.device.type == "cpu" and self.config.split_convs:
            split_convs(net)
        net = net.to(self.device, self.dtype, memory_format=self.memory_format).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        step = Step(net, self.dtype, self.in_hw, self.out_hw, self.memory_format, self.net_hw).eval()
        prepared = Prepared(net, step, backend or self.backend, requested=backend or self.backend, run=EagerRun(step))
        slot0 = self._slots[0]
        scratch = (torch.zeros_like(slot0.in_dev), torch.zeros_like(slot0.alpha_dev),
                   *((torch.full_like(slot0.map_dev, 255),) if self.alpha_map else ()))
        if prepared.backend == "compile":
            self._compile(prepared, scratch)
        elif prepared.backend == "onnxruntime":
            self._build_ort(prepared)
        if self._cuda and self.config.cuda_graphs:
            self._capture(prepared, scratch)
        elif self._cuda:
            # The weights were converted (dtype, channels_last) and the slots zeroed by kernels on
            # this thread's current stream; the engine's own streams do not wait for that stream.
            torch.cuda.current_stream(self.device).synchronize()
        prepared.setup_s = time.perf_counter() - started
        return prepared

    def _inputs(self, slot: _Slot) -> tuple:
        """The device tensors a step reads for ``slot``: frames, α and, with maps, the α map."""
        return (slot.in_dev, slot.alpha_dev, slot.map_dev) if self.alpha_map else (slot.in_dev, slot.alpha_dev)

    def _compile(self, prepared: Prepared, scratch: tuple) -> None:
        import torch._inductor.config as inductor_config

        # Every prepared net is a new graph for the one Step.forward code object (weights are
        # frozen in); dynamo's default limit of 8 graphs per code object would silently fall
        # back to eager after a few model switches.
        for limit in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 256))
                break
        import logging
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU hosts
        try:
            compiled = torch.compile(prepared.step, dynamic=False, fullgraph=True)
            with torch.inference_mode(), inductor_config.patch(freezing=COMPILE_FREEZING and self.device.type == "cpu"):
                for _ in range(2):      # the first call compiles; the second checks nothing recompiles
                    compiled(*scratch)
        except Exception as e:  # inductor raises many types (missing compiler headers, lowering gaps)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            note = f"torch.compile failed ({first}), so the eager torch backend runs instead"
            warnings.warn(note, BackendWarning, stacklevel=3)
            prepared.notes.append(note)
            prepared.backend = "eager"
            return
        prepared.run = CompiledRun(compiled)

    def _build_ort(self, prepared: Prepared) -> None:
        import onnxruntime as ort

        from dynastream.stream.export import onnx_bytes

        model = onnx_bytes(prepared.net, self.net_hw, alpha_map=self.alpha_map)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        b, (oh, ow) = self.config.max_batch, self.net_hw
        x_np = np.zeros((b, 3, oh, ow), np.float32)
        y_np = np.zeros((b, 3, oh, ow), np.float32)
        m_np = np.ones((b, 1, oh, ow), np.float32) if self.alpha_map else None
        alpha_np = self._slots[0].alpha_host.numpy()
        bindings = {}
        for n in range(1, b + 1):   # one binding per batch size, made once: no per-call allocation
            io = session.io_binding()
            io.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(x_np[:n]))
            io.bind_ortvalue_input("alpha", ort.OrtValue.ortvalue_from_numpy(alpha_np[:n]))
            if m_np is not None:
                io.bind_ortvalue_input("alpha_map", ort.OrtValue.ortvalue_from_numpy(m_np[:n]))
            io.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(y_np[:n]))
            bindings[n] = io
        prepared.run = OrtRun(prepared.step, session, bindings, torch.from_numpy(x_np), torch.from_numpy(y_np),
                              None if m_np is None else torch.from_numpy(m_np))

    def _capture(self, prepared: Prepared, scratch: tuple) -> None:
        """Warm up on scratch buffers on a side stream (cuDNN picks its algorithms, compile
        compiles), then capture one graph per slot reading that slot's input, α (and α map)
        tensors."""
        fn = prepared.run.compiled if isinstance(prepared.run, CompiledRun) else prepared.step
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):
                fn(*scratch)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graphs = []
        pool = torch.cuda.graph_pool_handle()   # per prepared net: a model being captured never
        with torch.inference_mode():             # shares scratch memory with the one still running
            for slot in self._slots:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                    slot.out_dev.copy_(fn(*self._inputs(slot)))
                graphs.append(graph)
        torch.cuda.synchronize(self.device)
        prepared.run = CudaGraphRun(graphs, prepared.run)

    def use(self, prepared: Prepared) -> None:
        if not isinstance(prepared, Prepared):
            raise TypeError("Engine.use takes what Engine.prepare returned")
        self.prepared, self.net = prepared, prepared.net
        if prepared.requested == self.backend:
            self.compile_pending = False   # compiled, or the compile failed and its note says why

    def info(self) -> dict:
        return {"device": str(self.device), "device_name": device_name(self.device),
                "dtype": str(self.dtype).replace("torch.", ""), "backend": self.prepared.backend,
                "cuda_graphs": isinstance(self.prepared.run, CudaGraphRun), "channels_last": self.config.channels_last,
                "split_convs": self.device.type == "cpu" and self.config.split_convs,
                "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
                "max_batch": self.config.max_batch, "in_hw": list(self.in_hw), "out_hw": list(self.out_hw),
                "setup_s": round(self.prepared.setup_s, 3), "notes": list(self.notes)}

    # --- the hot path --------------------------------------------------------------------------

    def run(self, frames_hwc_u8: Sequence[np.ndarray], alpha_bs: np.ndarray,
            maps_hw_u8: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
        """Stylize ``len(frames)`` frames; ``alpha_bs[i]`` is frame i's α per site and, on an
        engine with ``alpha_map``, ``maps_hw_u8[i]`` its α map (uint8 ``map_hw``; None: all 255,
        the α as given).

        Returns a (n, H_out, W_out, 3) uint8 view of an internal buffer, valid until the next call.
        """
        self.submit(frames_hwc_u8, alpha_bs, maps_hw_u8)
        return self.collect()

    @torch.inference_mode()
    def submit(self, frames_hwc_u8: Sequence[np.ndarray], alpha_bs: np.ndarray,
               maps_hw_u8: Optional[Sequence[np.ndarray]] = None) -> None:
        """Start a call; at most one call (two on CUDA) may be pending before ``collect``."""
        n = len(frames_hwc_u8)
        if not 1 <= n <= self.config.max_batch:
            raise ValueError(f"a call takes 1..{self.config.max_batch} frames, got {n}")
        if len(self._pending) == len(self._slots):
            raise RuntimeError("collect the pending result(s) before submitting more frames")
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if self._cuda:
            slot.uploaded.synchronize()   # the DMA from this pinned slot's last upload is done long ago
        for i, frame in enumerate(frames_hwc_u8):
            slot.in_host[i].numpy()[...] = frame
        slot.alpha_host[:n].numpy()[...] = alpha_bs[:n]
        if self.alpha_map:
            if maps_hw_u8 is None:
                slot.map_host[:n].fill_(255)
            else:
                for i in range(n):
                    slot.map_host[i].numpy()[...] = maps_hw_u8[i]
        elif maps_hw_u8 is not None:
            raise ValueError("this engine takes no alpha maps: make it with EngineConfig(alpha_map=True)")
        if self._cuda:
            self._submit_cuda(slot, n)
        else:
            if self._copies:
                slot.in_dev[:n].copy_(slot.in_host[:n])
                slot.alpha_dev[:n].copy_(slot.alpha_host[:n])
                if self.alpha_map:
                    slot.map_dev[:n].copy_(slot.map_host[:n])
            self._compute_on(slot, n)
            if self._copies:
                slot.out_host[:n].copy_(slot.out_dev[:n])
        self._pending.append((slot, n))

    def collect(self) -> np.ndarray:
        """The oldest pending call's frames (a view valid until that slot is submitted again)."""
        slot, n = self._pending.popleft()
        if self._cuda:
            slot.downloaded.synchronize()   # the one sync per call: the host needs the pixels
        return slot.out_host_np[:n]

    def _submit_cuda(self, slot: _Slot, n: int) -> None:
        m = self.config.max_batch if self.prepared.run.full_batch else n
        with torch.cuda.stream(self._h2d):
            self._h2d.wait_event(slot.computed)        # the previous compute on this slot has read it
            slot.in_dev[:n].copy_(slot.in_host[:n], non_blocking=True)
            slot.alpha_dev[:n].copy_(slot.alpha_host[:n], non_blocking=True)
            if self.alpha_map:
                slot.map_dev[:n].copy_(slot.map_host[:n], non_blocking=True)
            slot.uploaded.record(self._h2d)
        with torch.cuda.stream(self._compute):
            self._compute.wait_event(slot.uploaded)
            self._compute.wait_event(slot.downloaded)  # the previous download of out_dev is done
            self._compute_on(slot, m)
            slot.computed.record(self._compute)
        with torch.cuda.stream(self._d2h):
            self._d2h.wait_event(slot.computed)
            slot.out_host[:n].copy_(slot.out_dev[:n], non_blocking=True)
            slot.downloaded.record(self._d2h)

    def _compute_on(self, slot: _Slot, n: int) -> None:
        self.prepared.run(slot.index, self._inputs(slot), slot.out_dev, n)


def _copy_net(net: DynamicNet) -> DynamicNet:
    """A private copy, so preparing never changes the caller's net (device, dtype, modules)."""
    import copy

    meta, net.meta = net.meta, {}
    try:
        clone = copy.deepcopy(net)
    finally:
        net.meta = meta
    clone.meta = dict(meta)
    return clone


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type


def cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
