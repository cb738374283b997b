"""`dynastream` command line. The only layer that reads argv (and, through the config modules it
calls, YAML); heavy modules are imported inside each command so `--help` stays fast."""

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from nets.errors import DynastreamError

Runner = Callable[[argparse.Namespace], Optional[int]]


def _not_landed(issue: str) -> Runner:
    def run(args: argparse.Namespace) -> int:
        raise DynastreamError(f"`dynastream {args.command}` is not available yet: it lands with the {issue} issue")
    return run


def _stub(sub, name: str, help_text: str, issue: str) -> None:
    p = sub.add_parser(name, help=help_text, description=f"{help_text} (not available yet: {issue} issue)")
    p.set_defaults(run=_not_landed(issue), accepts_any_arguments=True)


# --- live -------------------------------------------------------------------------------------

def add_live(sub) -> None:
    _stub(sub, "live", "stylize a camera, file or the demo clip in a window, alpha on keys/MIDI", "Live pipeline")


# --- render -----------------------------------------------------------------------------------

def add_render(sub) -> None:
    _stub(sub, "render", "stylize a video file offline with alpha keyframes, keeping audio", "Batch render")


# --- train ------------------------------------------------------------------------------------

def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a Dynamic-Net style model from a YAML config",
        description="Train a Dynamic-Net: the main net on objective O0, then tuning blocks on O1 "
                    "(docs/training.md). Also runs under `torchrun --nproc_per_node N -m train`.")
    p.add_argument("--config", "-c", metavar="YAML",
                   help="training config: a path, or a shipped name (smoke, strength, style-a-to-b, dual)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set schedule.main.steps=2000 (repeatable)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the config's out, else runs/NAME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its last checkpoint")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from train.command import run

    return run(args.config, args.sets, args.out, args.resume)


# --- bench ------------------------------------------------------------------------------------

def add_bench(sub) -> None:
    _stub(sub, "bench", "measure model and pipeline speed against a baseline", "Performance")


# --- export -----------------------------------------------------------------------------------

def add_export(sub) -> None:
    _stub(sub, "export", "export a model to ONNX with alpha as an input", "Performance")


# --- generate ---------------------------------------------------------------------------------

def add_generate(sub) -> None:
    _stub(sub, "generate", "generate an image grid from a Dynamic DCGAN over an alpha sweep", "Dynamic DCGAN")


# --- eval -------------------------------------------------------------------------------------

def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="content and style losses of a style model over an alpha sweep",
                       description="Measure a style model on held-out images: content loss and the style loss "
                                   "against each objective's style image, at each alpha.")
    p.add_argument("model", help="zoo name or checkpoint path")
    p.add_argument("--images", type=Path, default=Path("data/demo/heldout"),
                   help="folder of held-out images (default: data/demo/heldout from fetch-demo)")
    p.add_argument("--styles", type=Path, help="folder holding the style images, if not at their recorded paths")
    p.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma-separated alpha values")
    p.add_argument("--loss-net", help="loss network source (default: the one the model was trained with)")
    p.add_argument("--size", type=int, default=256, help="shorter side of the images, in pixels")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--sheet", type=Path, help="also write an alpha-sweep preview sheet (PNG) of the first 3 images")
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    import json

    import nets
    from train.evaluate import evaluate, sweep_sheet

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise DynastreamError(f"--alphas must be comma-separated numbers, not {args.alphas!r}") from None
    net = nets.load(args.model)
    result = evaluate(net, args.images, alphas=alphas, styles_dir=args.styles,
                      loss_net=args.loss_net, size=args.size)
    print(result.table())
    if "higher" in result.style:
        mono = result.monotonic()
        print(f"O1 style loss falls monotonically: {'yes' if mono['style_falls'] else 'no'}; "
              f"content loss rises monotonically: {'yes' if mono['content_rises'] else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if args.sheet:
        print(f"wrote {sweep_sheet(net, args.images, args.sheet)}")
    return 0


# --- models -----------------------------------------------------------------------------------

def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models in the zoo",
                       description="List the shipped models (nets/zoo/zoo.yaml).")
    p.set_defaults(run=run_models)


def run_models(args: argparse.Namespace) -> int:
    import nets

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

COMMANDS = (add_live, add_render, add_train, add_bench, add_export, add_models, add_generate, add_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynastream",
        description="Real-time Dynamic-Net style transfer: the stylization strength alpha, live on every frame.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args) or 0
    except DynastreamError as e:
        print(f"dynastream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dynastream: interrupted", file=sys.stderr)
        return 130
