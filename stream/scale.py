"""Render many videos, or long videos in parts, one after another here or as tasks on a Ray cluster.

::

    inputs (files, folders of videos) -> one job per file; with ``split_s`` one part per stretch of
        at least that many seconds, cut at the next keyframe (``plan_spans``)
    dispatch: here, one task after another (``Local``), or one Ray task each (``RayCluster``:
        ``num_gpus=1`` a task where the cluster has GPUs, else ``cpus_per_task`` CPUs)
    each task: ``stream.render.render`` on one file, or one span of it (``render_part``)
    a file in parts: the parts joined by stream copy, the input's audio added once (``join_parts``)

Everything but the dispatch is the same code on both paths. Every output appears atomically
(``stream.writer``); a task that raises anything but a user error (``DynastreamError``, which would
only fail again) is tried again up to ``retries`` times, and a file that fails every try is listed
with its one-sentence reason. Under Ray the driver and every worker must see the inputs, the
output folder and a model given as a path at the same paths (a shared file system); zoo names
resolve in each worker's own install.
"""

import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import av

from dynastream.nets.errors import DynastreamError
from dynastream.stream import signals
from dynastream.stream.render import IMAGE_EXTS, Progress, RenderConfig, RenderStats, load_style_model, render
from dynastream.stream.sources import Span
from dynastream.stream.tally import Tally
from dynastream.stream.writer import (
    VIDEO_EXTS,
    VideoWriter,
    check_output,
    keyframes_path,
    remove_stale_temps,
    temp_path,
)

PathLike = Union[str, os.PathLike]
# What a folder's videos are recognised by (render reads anything FFmpeg reads; these are the usual)
VIDEO_INPUT_EXTS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".flv", ".wmv", ".ogv", ".3gp")
JOIN = -1          # the part number of a file's join task
REPORT_EVERY_S = 0.5


class ScaleError(DynastreamError):
    pass


@dataclass(frozen=True)
class ManyConfig:
    render: RenderConfig = RenderConfig()   # its keyframes (or alpha): for inputs without NAME.keyframes.yaml
    ext: Optional[str] = None               # output container; None: the input's if one of VIDEO_EXTS, else .mp4
    split_s: Optional[float] = None         # render each video in parts of at least this many seconds
    retries: int = 2                        # tries after the first, for a task that raised (not a user error)
    cpus_per_task: float = 1.0              # Ray: CPUs a task takes where the cluster has no GPUs


@dataclass(frozen=True)
class FileJob:
    input: Path
    output: Path
    config: RenderConfig          # with this file's own keyframe track, where it has one
    track: str                    # where its α comes from, for the summary
    frames: int                   # frames to render: counted, or estimated from the duration (0: unknown)
    spans: tuple[Span, ...] = ()  # empty: rendered whole
    parts_dir: Optional[Path] = None

    def part_path(self, k: int) -> Path:
        return self.parts_dir / f"part{k:04d}{part_ext(self.output.suffix, self.config.video.codec)}"


@dataclass
class TaskResult:
    key: tuple[int, int]            # (file, part); part JOIN for a join, 0 for a file rendered whole
    stats: Optional[RenderStats] = None
    error: str = ""                 # one sentence, when it failed
    detail: str = ""                # the traceback of a failure that is not a user error (a bug)


@dataclass
class FileResult:
    job: FileJob
    stats: Optional[RenderStats] = None
    error: str = ""
    detail: str = ""
    parts: list = field(default_factory=list)   # RenderStats of each part, in order
    join_s: float = 0.0

    def summary(self) -> str:
        if not self.job.spans:
            return f"{self.stats.summary()}; alpha: {self.job.track}"
        s = self.stats
        render_s = sum(p.wall_s for p in self.parts)
        return (f"{s.output}: {s.frames} frames at {s.size_wh[0]}x{s.size_wh[1]} in {len(self.parts)} parts "
                f"({render_s:.1f} s of rendering in all, {s.frames / render_s if render_s else 0:.1f} fps a part), "
                f"joined in {self.join_s:.2f} s; audio: {', '.join(s.audio) or 'none'}; alpha: {self.job.track}")


@dataclass
class ManyResult:
    files: list[FileResult]
    wall_s: float
    where: str

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.error]

    @property
    def frames(self) -> int:
        return sum(f.stats.frames for f in self.files if not f.error)

    def summary(self) -> str:
        n, bad = len(self.files), len(self.failed)
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        per_min = (n - bad) * 60 / self.wall_s if self.wall_s > 0 else 0.0
        return (f"{n} file{'' if n == 1 else 's'}: {n - bad} rendered, {bad} failed; {self.frames} frames in "
                f"{self.wall_s:.1f} s ({fps:.1f} fps, {per_min:.1f} files/min) on {self.where}")


# -- planning ------------------------------------------------------------------------------------

def list_inputs(inputs: Sequence[PathLike]) -> list[Path]:
    """Files as given and the videos of folders (by extension, in name order), each once."""
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_INPUT_EXTS
                            and not p.name.startswith("."))
            if not videos:
                raise ScaleError(f"the folder {path} holds no videos ({', '.join(VIDEO_INPUT_EXTS[:4])}, ...)")
            found += videos
        elif not path.exists():
            raise ScaleError(f"input {path} does not exist")
        elif path.suffix.lower() in IMAGE_EXTS:
            raise ScaleError(f"render-many renders videos, and {path} is an image: use dynastream render")
        else:
            found.append(path)
    unique, seen = [], set()
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p.absolute())
    return unique


def output_ext(ext: Optional[str], input_path: Path) -> str:
    if ext is None:
        return input_path.suffix.lower() if input_path.suffix.lower() in VIDEO_EXTS else ".mp4"
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if ext not in VIDEO_EXTS:
        raise ScaleError(f"videos are written as {', '.join(VIDEO_EXTS)} files, not {ext}")
    return ext


# Encoders whose packets come out of decode order (B-frames), which only their dts put back in order
REORDERING = ("libx264", "libx264rgb", "h264", "h264_nvenc", "libx265", "hevc", "hevc_nvenc")


def part_ext(output_suffix: str, codec: Optional[str]) -> str:
    """The container of a split file's parts: the output's, except that Matroska (and WebM) store no
    decode timestamps, which H.264/H.265 packets need to be copied again: their parts are MP4."""
    if output_suffix in (".mkv", ".webm") and (codec or "libx264") in REORDERING:
        return ".mp4"
    return output_suffix


def count_frames(path: Path) -> int:
    """The frames the file says it holds, else an estimate from its duration; 0 if it cannot say
    (a file that cannot be opened fails in its task, with the reason the render gives)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            stream = container.streams.video[0]
            if stream.frames:
                return stream.frames
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration is not None and rate:
                return round(float(stream.duration * stream.time_base * rate))
            if container.duration is not None and rate:
                return round(container.duration / av.time_base * float(rate))
    except (av.error.FFmpegError, OSError, ValueError):
        pass
    return 0


def plan_spans(path: Path, split_s: float) -> tuple[Span, ...]:
    """Parts of at least ``split_s`` seconds (the last may be shorter), each starting at a keyframe
    (read from the packets; no frame is decoded). Empty where the file is one part, or cannot be
    cut (it cannot be opened, a packet has no timestamp): it is rendered whole. Each packet is a
    frame: the frame indices are counted by timestamp."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return ()
            stream = container.streams.video[0]
            pts, keys = [], []
            for packet in container.demux(stream):
                if packet.size == 0:       # the demuxer's flush packet
                    continue
                if packet.pts is None:
                    return ()
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
            time_base = stream.time_base
    except (av.error.FFmpegError, OSError, ValueError):
        return ()
    if not pts:
        return ()
    pts.sort()
    starts = [pts[0]]
    for key in sorted(set(keys)):
        if float((key - starts[-1]) * time_base) >= split_s:
            starts.append(key)
    if len(starts) == 1:
        return ()
    spans, i = [], 0
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else None
        first = i
        while i < len(pts) and (end is None or pts[i] < end):
            i += 1
        spans.append(Span(start, end, first, i - first))
    return tuple(spans)


def plan(inputs: Sequence[PathLike], out_dir: PathLike, config: ManyConfig,
         notice: Optional[Callable[[str], None]] = None) -> list[FileJob]:
    """One job per input, refusing before any work what would fail for every file: a bad output
    folder, two inputs with one output name, an output that is an input, a model that does not load."""
    if config.split_s is not None and not config.split_s > 0:
        raise ScaleError(f"--split must be a number of seconds above 0, not {config.split_s:g}")
    if config.split_s is not None and config.render.stabilize > 0:
        raise ScaleError("--stabilize blends each frame with the one before it, so parts rendered apart would "
                         "differ at each cut: render those files without --split")
    if config.split_s is not None and config.render.skip_damaged:
        raise ScaleError("--split does not take --skip-damaged yet: render damaged files without --split")
    if config.retries < 0:
        raise ScaleError(f"--retries must be 0 or more, not {config.retries}")
    paths = list_inputs(inputs)
    load_style_model(config.render.model)    # a bad model name fails here, once, not in every task
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ScaleError(f"the output {out_dir} is a file; render-many writes into a folder")
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise ScaleError(f"the output folder's parent {out_dir.parent} does not exist")
        try:
            out_dir.mkdir()
        except OSError as e:
            raise ScaleError(f"cannot create the output folder {out_dir} ({e.strerror or e})") from None
    render_config = replace(config.render, model=_absolute(config.render.model),
                            keyframes=_absolute(config.render.keyframes), alpha_map=_absolute(config.render.alpha_map))
    jobs, by_output = [], {}
    for path in paths:
        output = out_dir / (path.stem + output_ext(config.ext, path))
        if output in by_output:
            raise ScaleError(f"{by_output[output].name} and {path} would both be written to {output}: "
                             "rename one, or render them into different folders")
        by_output[output] = path
        check_output(output, [path], notice=notice)
        own = keyframes_path(path)
        if own.is_file():    # a file's own track wins over --keyframes and --alpha
            cfg, track = replace(render_config, keyframes=str(own), alpha=None, audio=None), own.name
        else:
            cfg = render_config
            track = (Path(cfg.keyframes).name if cfg.keyframes is not None else "from its audio"
                     if cfg.audio is not None else f"{cfg.alpha:g}" if cfg.alpha is not None else "mid-range")
        spans = plan_spans(path, config.split_s) if config.split_s is not None else ()
        frames = sum(s.frames for s in spans) if spans else count_frames(path)
        jobs.append(FileJob(path, output, cfg, track, frames, spans))
    return jobs


def _absolute(name: Optional[str]) -> Optional[str]:
    """A file given by a relative path, made absolute: a worker need not run in this folder. Other
    values (a zoo name, an α map spec) stay as they are."""
    return str(Path(name).absolute()) if name is not None and Path(name).is_file() else name


# -- the tasks (run by a worker, or here) ----------------------------------------------------------

def render_part(input_path: Path, output_path: Path, config: RenderConfig, span: Optional[Span],
                key: tuple[int, int], report: Callable[[tuple[int, int], int], None],
                threads: Optional[int] = None) -> TaskResult:
    """Render one file, or one span of it; ``report`` hears the frames done so far (at most every
    half second). A user error is a result (it would fail every try); anything else raises, so
    that the dispatch tries again."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    done, last = 0, time.monotonic()

    def frames_done(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last >= REPORT_EVERY_S:
            report(key, done)
            last = time.monotonic()

    try:
        stats = render(input_path, output_path, config, span=span, frames_done=frames_done)
    except DynastreamError as e:
        return TaskResult(key, error=str(e))
    report(key, stats.frames)
    return TaskResult(key, stats=stats)


def join_parts(parts: Sequence[Path], audio_from: Path, target: Path, key: tuple[int, int]) -> TaskResult:
    """The parts' video packets, copied in order into ``target`` with ``audio_from``'s audio
    (``VideoWriter.remux``: atomic, the audio as a whole render copies it)."""
    t0 = time.perf_counter()
    try:
        with av.open(str(parts[0])) as first:
            writer = VideoWriter.remux(target, first.streams.video[0], audio_from=audio_from)
        try:
            for part in parts:
                with av.open(str(part)) as container:
                    for packet in container.demux(container.streams.video[0]):
                        if packet.size:     # not the demuxer's flush packet
                            writer.write_packet(packet)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    except DynastreamError as e:
        return TaskResult(key, error=str(e))
    stats = RenderStats(target, frames=writer.frames, wall_s=time.perf_counter() - t0, size_wh=writer.encoded_wh,
                        audio=writer.audio_mode, audio_left_out=writer.audio_left_out)
    return TaskResult(key, stats=stats)


def _failure(e: BaseException) -> TaskResult:
    """A task that raised every try: one sentence, and what is known of why (a bug's traceback)."""
    cause = getattr(e, "cause", None)     # ray.exceptions.RayTaskError wraps the task's exception
    if isinstance(cause, BaseException):
        detail = str(e)                   # the worker's traceback, as Ray formats it
    else:
        cause = e
        remote = type(e).__module__.startswith("ray.")   # a worker lost, a task cancelled: no traceback here
        detail = "" if remote else "".join(traceback.format_exception(type(e), e, e.__traceback__))
    text = str(cause).strip().split("\n")[0] or "no message"
    return TaskResult((-1, -1), error=f"{type(cause).__name__}: {text}", detail=detail)


# -- dispatch ----------------------------------------------------------------------------------------

class Local:
    """Here, one task after another, each tried up to ``1 + retries`` times."""

    where = "this machine, one task after another"

    def __init__(self, retries: int):
        self.retries = retries
        self.bar: Optional[Progress] = None
        self.tally = Tally()
        self._shown = 0
        self._done: list[TaskResult] = []

    def _report(self, key: tuple[int, int], frames: int) -> None:
        self.tally.report(key, frames)
        self._shown = _show(self.bar, self._shown, self.tally.total())

    def submit(self, key: tuple[int, int], fn, *args) -> None:
        args = (*args, key, self._report) if fn is render_part else (*args, key)
        for _ in range(self.retries + 1):
            try:
                result = fn(*args)
                break
            except Exception as e:     # a bug or a passing failure: try again (Ctrl-C is not caught)
                result = _failure(e)
        result.key = key
        self._done.append(result)

    def pending(self) -> int:
        return len(self._done)

    def wait(self, block: bool) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class RayCluster:
    """One Ray task each: ``num_gpus=1`` where the cluster has GPUs, else ``cpus_per_task`` CPUs;
    Ray tries a task that raised (or whose worker died) again, up to ``retries`` times."""

    def __init__(self, address: Optional[str], retries: int, cpus_per_task: float):
        try:
            import ray
        except ImportError:
            raise ScaleError("--ray needs Ray, which is not installed: pip install 'dynastream[scale]'") from None
        self.ray = ray
        self.bar: Optional[Progress] = None
        self.started = False
        if not ray.is_initialized():
            try:
                ray.init(address=None if address in (None, "local") else address, log_to_driver=False,
                         include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as e:
                reason = str(e).strip().split("\n")[0].split(". ")[0].rstrip(".")   # Ray's first sentence
                raise ScaleError(f"cannot reach the Ray cluster at {address} ({reason}); start one with "
                                 "`ray start --head`, or leave out --ray to render here") from None
            self.started = True
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 0)
        if gpus:
            per_task, self.threads = {"num_gpus": 1, "num_cpus": 1}, None
            self.where = f"Ray: {gpus} GPU{'' if gpus == 1 else 's'}, a task on each"
        else:
            per_task, self.threads = {"num_cpus": cpus_per_task}, max(1, int(cpus_per_task))
            slots = int(cpus // cpus_per_task)
            self.where = f"Ray: {cpus:g} CPU{'' if cpus == 1 else 's'}, {slots} task{'' if slots == 1 else 's'} at a time"
        retry = dict(max_retries=retries, retry_exceptions=True)
        self._render = ray.remote(render_part).options(**per_task, **retry)
        self._join = ray.remote(join_parts).options(num_cpus=0, **retry)   # a stream copy: I/O, not compute
        self._tally = ray.remote(Tally).options(num_cpus=0).remote()
        self._shown = 0
        self._pending: dict = {}

    def submit(self, key: tuple[int, int], fn, *args) -> None:
        if fn is render_part:
            ref = self._render.remote(*args, key, _ActorReport(self._tally), self.threads)
        else:
            ref = self._join.remote(*args, key)
        self._pending[ref] = key

    def pending(self) -> int:
        return len(self._pending)

    def wait(self, block: bool) -> list[TaskResult]:
        ray = self.ray
        if not self._pending:
            return []
        ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0.25 if block else 0)
        done = []
        for ref in ready:
            key = self._pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                result = _failure(e)
            result.key = key
            done.append(result)
            if result.stats is not None and key[1] != JOIN:   # a render's last reports may still be on their way
                self._tally.report.remote(key, result.stats.frames)
        self._shown = _show(self.bar, self._shown, ray.get(self._tally.total.remote()))   # after those, in order
        return done

    def cancel(self) -> None:
        refs = list(self._pending)
        for ref in refs:
            self.ray.cancel(ref)     # KeyboardInterrupt in the task: its render removes its temporary file
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=10)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


class _ActorReport:
    """``report(key, frames)`` for a task under Ray: to the driver's Tally actor, not waited for."""

    def __init__(self, actor):
        self.actor = actor

    def __call__(self, key: tuple[int, int], frames: int) -> None:
        self.actor.report.remote(key, frames)


def _show(bar: Progress, shown: int, total: int) -> int:
    if total > shown:
        bar.update(total - shown)
    return max(shown, total)


# -- the driver ----------------------------------------------------------------------------------------

def render_many(inputs: Sequence[PathLike], out_dir: PathLike, config: ManyConfig = ManyConfig(),
                ray: Optional[str] = None, progress: bool = False,
                notice: Optional[Callable[[str], None]] = None) -> ManyResult:
    """Render every input video into ``out_dir``: here one after another (``ray`` None), or as Ray
    tasks (``ray``: "local" starts a cluster on this machine, "auto" joins the running one, or an
    address; a Ray already initialised in this process is used as it is)."""
    jobs = plan(inputs, out_dir, config, notice)
    results = [FileResult(job) for job in jobs]
    dispatch, bar = None, None
    try:
        dispatch = Local(config.retries) if ray is None else RayCluster(ray, config.retries, config.cpus_per_task)
        signals.graceful()          # from here a stop signal raises: tasks are cancelled, parts removed
        dispatch.bar = bar = Progress(sum(j.frames for j in jobs) or None, "frame", Path(out_dir).name, progress)
        start = time.perf_counter()
        parts_left: dict[int, int] = {}
        for i, job in enumerate(jobs):
            if job.spans:
                jobs[i] = results[i].job = job = replace(job, parts_dir=temp_path(job.output, "-parts"))
                shutil.rmtree(job.parts_dir, ignore_errors=True)
                job.parts_dir.mkdir()
                results[i].parts = [None] * len(job.spans)
                parts_left[i] = len(job.spans)
                for k, span in enumerate(job.spans):
                    dispatch.submit((i, k), render_part, job.input, job.part_path(k), job.config, span)
            else:
                dispatch.submit((i, 0), render_part, job.input, job.output, job.config, None)
            _collect(dispatch, jobs, results, parts_left, block=False)
        _collect(dispatch, jobs, results, parts_left, block=True)
        if not any(r.error for r in results):   # a failed file's frames stay missing from the bar
            bar.complete()
        wall_s = time.perf_counter() - start
    except BaseException:
        if dispatch is not None:
            dispatch.cancel()
        raise
    finally:
        for job in jobs:
            if job.parts_dir is not None:
                shutil.rmtree(job.parts_dir, ignore_errors=True)
            remove_stale_temps(job.output)   # of a worker killed on its last try (here: a local cluster)
        if bar is not None:
            bar.close()
        if dispatch is not None:
            dispatch.close()
    return ManyResult(results, wall_s, dispatch.where)


def _collect(dispatch, jobs: list[FileJob], results: list[FileResult], parts_left: dict, block: bool) -> None:
    """Take in finished tasks until none is ready (``block``: until none is left); a file whose
    parts are all done is given its join task, or with a failed part its parts are removed."""
    while True:
        done = dispatch.wait(block)
        for r in done:
            i, k = r.key
            result, job = results[i], jobs[i]
            if r.error and not result.error:
                result.error, result.detail = r.error, r.detail
            if not job.spans:
                result.stats = r.stats
            elif k == JOIN:
                result.stats, result.join_s = r.stats, r.stats.wall_s if r.stats else 0.0
                shutil.rmtree(job.parts_dir, ignore_errors=True)
            else:
                result.parts[k] = r.stats
                parts_left[i] -= 1
                if parts_left[i] == 0 and result.error:
                    shutil.rmtree(job.parts_dir, ignore_errors=True)
                elif parts_left[i] == 0:
                    dispatch.submit((i, JOIN), join_parts, [job.part_path(n) for n in range(len(job.spans))],
                                    job.input, job.output)
        if (not block and not done) or not dispatch.pending():
            return
