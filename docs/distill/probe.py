"""The loss probe of docs/distill.md (issue 13): a lite32 student trained with `dynastream train`
against the arbitrary teacher (strength 1, the Elephants painting) for a fixed wall time per loss
variant, then measured on the held-out photos against the teacher.

    PYTHONPATH=. python docs/distill/probe.py VARIANT [--minutes 9]   # one torch / onnxruntime thread

Writes docs/distill/VARIANT.json (numbers) and docs/distill/VARIANT.jpg (rows: held-out photos;
columns: input | teacher | student). Training runs until the time is up, then stops as a Ctrl-C
would (resumable checkpoint runs/probe-VARIANT/last.pt), which is what is measured.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from dynastream import nets  # noqa: E402
from dynastream.configs.schema import load_config  # noqa: E402
from dynastream.train import style  # noqa: E402
from dynastream.train.data import center_box, find_images, open_rgb, to_tensor  # noqa: E402
from dynastream.train.distill import TeacherTarget  # noqa: E402
from dynastream.train.evaluate import load_heldout  # noqa: E402
from dynastream.train.imagemetrics import psnr, sharpness, ssim  # noqa: E402
from dynastream.train.session import Distributed, Interrupted, save_sheet  # noqa: E402

HERE = Path(__file__).resolve().parent
BASE = ["objectives.main.strength=1.0", "objectives.higher.strength=1.0", "schedule.main.steps=1000000",
        "schedule.blocks.steps=0", "schedule.preview_every=0", "schedule.checkpoint_every=500",
        "schedule.log_every=25", "data.teacher_cache=runs/teacher-cache"]
ZERO = {f"objectives.{p}.{t}_weight": 0 for p in ("main", "higher")
        for t in ("perceptual", "texture", "color", "gradient", "tv")}
VARIANTS = {   # weights on top of pixel L1 (weight 1), for both objectives (only main trains here)
    "l1-stats-grad": {"color": 1.0, "gradient": 1.0},
    "l1-vgg": {"perceptual": 0.1},
    "l1-stats-grad-gram64": {"color": 1.0, "gradient": 1.0, "texture": 1.0},   # Gram at relu1_2, 64 px window
    "l1-stats-grad-long": {"color": 1.0, "gradient": 1.0},                      # the first, for a longer run
    "l1-stats-grad-gram01": {"color": 1.0, "gradient": 1.0, "texture": 0.1},    # Gram weight 0.1
}
EXTRA = {"l1-stats-grad-gram64": {"perceptual_layers": "[relu1_2]", "perceptual_size": 64},
         "l1-stats-grad-gram01": {"perceptual_layers": "[relu1_2]", "perceptual_size": 64}}
HELDOUT = Path("data/demo/heldout")


def config(variant: str):
    sets = dict(ZERO)
    for p in ("main", "higher"):
        for term, w in VARIANTS[variant].items():
            sets[f"objectives.{p}.{term}_weight"] = w
        for key, value in EXTRA.get(variant, {}).items():
            sets[f"objectives.{p}.{key}"] = value
    return load_config(style.StyleTrainConfig, Path("configs/train/distill-strength.yaml"),
                       BASE + [f"{k}={v}" for k, v in sets.items()] + [f"name=probe-{variant}"])


def measure(net, target: TeacherTarget) -> dict:
    rows = []
    with torch.no_grad():
        for name, x in load_heldout(HELDOUT, 384):
            t = target(x)
            s = net(x, 0.0).clamp(0, 1)
            rows.append({"image": name, "psnr": psnr(s, t), "ssim": ssim(s, t), "sharpness_teacher": sharpness(t, x),
                         "sharpness_student": sharpness(s, x)})
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "image"}
    mean["sharpness_ratio"] = mean["sharpness_student"] / mean["sharpness_teacher"]
    return {"per_image": rows, "mean": mean}


def sheet(net, target: TeacherTarget, path: Path) -> None:
    tiles = []
    with torch.no_grad():
        for p in find_images(HELDOUT):
            img = open_rgb(p)
            x = to_tensor(img.crop(center_box(img.width, img.height)).resize((384, 384)))[None]
            tiles += [x, target(x), net(x, 0.0).clamp(0, 1)]
    save_sheet(torch.cat(tiles), 3, path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("variant", choices=sorted(VARIANTS))
    ap.add_argument("--minutes", type=float, default=9.0)
    args = ap.parse_args()
    cfg = config(args.variant)
    out = Path(f"runs/probe-{args.variant}")
    plan = style.phases_of(cfg)
    t0 = time.perf_counter()
    caches = style._fill_caches(cfg, Distributed(), out, style._teacher_targets(cfg, plan))
    cache_s = time.perf_counter() - t0
    load_before = os.getloadavg()
    signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    signal.setitimer(signal.ITIMER_REAL, args.minutes * 60)
    t1 = time.perf_counter()
    try:
        style.train(cfg, out)
        raise SystemExit("training ended before the time was up")
    except Interrupted as e:
        steps = e.step
    train_s = time.perf_counter() - t1
    load_after = os.getloadavg()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    net = nets.load(out / "last.pt")
    target = TeacherTarget(cfg.objectives.main)
    t2 = time.perf_counter()
    result = {"variant": args.variant, "weights": {"pixel": 1.0, **VARIANTS[args.variant]},
              "options": EXTRA.get(args.variant, {}), "steps": steps,
              "train_seconds": round(train_s, 1), "sec_per_step": round(train_s / max(steps, 1), 3),
              "cache_seconds": round(cache_s, 1), "cache": {p: {k: c[k] for k in ("computed", "reused", "seconds")}
                                                            for p, c in caches.items()},
              "loadavg_before": load_before, "loadavg_after": load_after,
              "last_losses": records[-1], **measure(net, target)}
    result["eval_seconds"] = round(time.perf_counter() - t2, 1)
    sheet(net, target, HERE / f"{args.variant}.jpg")
    (HERE / f"{args.variant}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("variant", "steps", "train_seconds", "sec_per_step", "mean",
                                             "loadavg_before", "loadavg_after")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
