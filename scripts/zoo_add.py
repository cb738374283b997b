"""Put a trained teacher-objective style model into the zoo, with its card measured here.

    python scripts/zoo_add.py runs/fast-blue-to-red/fast-blue-to-red.pt \\
        --description "..." --license "..." --style "A: ..." --style "B: ..."
    python scripts/zoo_add.py flicker NAME docs/flicker/CLIP-NAME.json ...   # `eval --video` numbers into the card

Writes the checkpoint to nets/zoo/NAME.pt with fp16 weights (as every zoo file), runs ``dynastream eval`` against its teacher on the
held-out photos (docs/zoo/NAME.eval.json and the preview sheet docs/zoo/NAME.jpg: each row of the
model under the teacher's row at the same objectives) and writes the NAME entry of
nets/zoo/zoo.yaml (replacing one of that name) with a card built from the checkpoint's provenance
and the eval. Every number in the card comes from the checkpoint or from this run.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dynastream import nets  # noqa: E402
from dynastream.nets.atomic import atomic_open  # noqa: E402
from dynastream.nets.checkpoint import ZOO_DIR  # noqa: E402
from dynastream.train.evaluate import evaluate_teacher, sweep_sheet  # noqa: E402

HEADER = """# The model zoo: each entry names a checkpoint file in this folder (nets.load("<name>")).
# Keys: name, file, kind, mode, preset, alpha_range, size_bytes, description, license, card.
# Built by configs/train/zoo/*.yaml; credits in CREDITS.md; preview sheets and eval in docs/zoo/.
# Teacher-objective models are added by scripts/zoo_add.py, which measures their cards.
"""


def rounded(values, digits=3):
    return [None if v is None else round(float(v), digits) for v in values]


def card_of(net, name: str, styles: list[str], device: str, eval_json: dict, eval_s: float) -> dict:
    prov = net.meta["provenance"]
    cfg = prov["config"]
    objectives = {}
    for phase in ("main", "higher", "lower"):
        rec = (net.meta.get("objectives") or {}).get(phase)
        if not rec:
            continue
        weights = {k: v for k, v in (rec.get("loss_weights") or {}).items() if v}
        style = cfg["objectives"][phase]
        objectives[phase] = {"teacher": rec.get("teacher"), "alpha": rec.get("alpha"),
                             **{k: style[k] for k in ("style", "style_weights", "style_image")
                                if style.get(k) is not None},
                             **({"strength": style["strength"]} if rec.get("teacher") == "arbitrary" else {}),
                             **({"loss_weights": weights, "interpolate": bool(rec.get("interpolate"))}
                                if prov["steps"].get(phase) else {"trained": False})}
    cache = {phase: {"computed": c["computed"], "reused": c["reused"], "seconds": c["seconds"]}
             for phase, c in (prov.get("teacher_cache") or {}).items()}
    return {
        "styles": styles,
        "training_steps": prov["steps"],
        "image_size": cfg["data"]["image_size"],
        "batch_size": cfg["data"]["batch_size"],
        "training_images": f"{prov['data']['images']} photos from `python -m dynastream.train.datasets fetch-demo` (data/demo/photos)",
        "loss_network": "none: teacher objectives (pixel L1, colour statistics, image gradients against the "
                        "teacher's cached outputs)" if any(prov["steps"].values()) else
                        "none: no training step (the teacher's transformer, predictor and strength path are copied in)",
        "main_init": f"the {cfg['objectives']['main']['teacher']} teacher's weights at the main objective "
                     "(net.init: teacher)" if cfg["net"].get("init") == "teacher" else "random",
        **{k: prov[k] for k in ("predictor_fit", "style_blocks") if prov.get(k)},
        "objectives": objectives,
        "teacher_cache": cache,
        "wall_time_s": prov["seconds"],
        "device": device,
        "final_losses": prov.get("final_losses") or {},
        "config": f"configs/train/zoo/{name}.yaml",
        "preview": f"docs/zoo/{name}.jpg",
        "eval": {"against": f"the teacher at the matching objective, {len(eval_json['images'])} held-out photos, "
                            f"longer side {eval_json['longer_side']}",
                 "alphas": eval_json["alphas"],
                 "psnr_net": rounded(eval_json["student"]["psnr"], 2), "psnr_blend": rounded(eval_json["blend"]["psnr"], 2),
                 "ssim_net": rounded(eval_json["student"]["ssim"]), "ssim_blend": rounded(eval_json["blend"]["ssim"]),
                 "sharpness_net": rounded(eval_json["sharpness"]["student"]),
                 "sharpness_teacher": rounded(eval_json["sharpness"]["teacher"]),
                 "net_beats_blend": eval_json["student_beats_blend"], "seconds": round(eval_s, 1),
                 **({"psnr_to_photo_net": rounded(eval_json["photo_psnr"]["student"], 2),
                     "psnr_to_photo_teacher": rounded(eval_json["photo_psnr"]["teacher"], 2)}
                    if eval_json.get("photo_psnr") else {}),
                 "images": eval_json["images"]},
    }


def flicker_of(paths: list[Path]) -> dict:
    """The card's flicker block from ``dynastream eval --video ... --json`` files (docs/flicker/)."""
    out = {}
    for path in paths:
        r = json.loads(path.read_text())
        row = {"alphas": r["alphas"], "frames": r["frames"], "size": "x".join(map(str, r["size_wh"])),
               "flow": r["flow"], "warp_error_input": round(r["input"]["warp_error"], 7),
               "per_detail_x_input": rounded([o["per_detail_vs_input"] for o in r["outputs"]["net"]], 2),
               "sharpness": rounded([o["sharpness"] for o in r["outputs"]["net"]], 2),
               "json": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)}
        if r["outputs"].get("stabilized"):
            row.update(stabilizer=r["stabilizer"],
                       stabilized_per_detail_x_input=rounded([o["per_detail_vs_input"] for o in r["outputs"]["stabilized"]], 2),
                       stabilized_sharpness=rounded([o["sharpness"] for o in r["outputs"]["stabilized"]], 2))
        out[Path(r["clip"]).stem] = row
    return out


def write_index(models: list) -> Path:
    index = ZOO_DIR / "zoo.yaml"
    with atomic_open(index, "w") as f:
        f.write(HEADER + yaml.safe_dump({"models": models}, sort_keys=False, allow_unicode=True, width=110))
    return index


def add_flicker(argv) -> int:
    """``zoo_add.py flicker NAME JSON...``: put the flicker numbers into NAME's card."""
    p = argparse.ArgumentParser(prog="zoo_add.py flicker")
    p.add_argument("name")
    p.add_argument("jsons", nargs="+", type=Path)
    args = p.parse_args(argv)
    models = (yaml.safe_load((ZOO_DIR / "zoo.yaml").read_text()) or {}).get("models", [])
    entry = next(m for m in models if m["name"] == args.name)
    entry["card"]["flicker"] = flicker_of([j.resolve() for j in args.jsons])
    print(f"wrote {write_index(models)} ({args.name}: flicker on {', '.join(entry['card']['flicker'])})")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["flicker"]:
        return add_flicker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--description", required=True)
    p.add_argument("--license", required=True)
    p.add_argument("--style", action="append", default=[], help="one line per style, for the card")
    p.add_argument("--device", default="cpu (2-core machine, 1 torch thread; helpers' tests on the other core)")
    p.add_argument("--images", type=Path, default=REPO / "data/demo/heldout")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    net = nets.load(str(args.checkpoint))
    name = net.meta["provenance"]["config"]["name"]
    target = ZOO_DIR / f"{name}.pt"
    nets.save(net, target, objectives=net.meta["objectives"], provenance=net.meta["provenance"],
              alpha_range=tuple(net.alpha_range), half=True)   # the zoo stores fp16 weights
    net = nets.load(str(target))
    t0 = time.perf_counter()
    alphas = [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0] if net.mode == "dual" else [0.0, 0.25, 0.5, 0.75, 1.0]
    result = evaluate_teacher(net, args.images, alphas=alphas)
    eval_s = time.perf_counter() - t0
    print(result.table())
    docs = REPO / "docs" / "zoo"
    eval_json = result.to_dict()
    with atomic_open(docs / f"{name}.eval.json", "w") as f:
        f.write(json.dumps(eval_json, indent=2) + "\n")
    sweep_sheet(net, args.images, docs / f"{name}.jpg")
    preset = next((k for k, v in nets.PRESETS.items() if v == net.main.config), "custom")
    entry = {"name": name, "file": target.name, "kind": net.kind, "mode": net.mode,
             "preset": preset, "alpha_range": list(net.alpha_range),
             "size_bytes": os.path.getsize(target), "description": args.description, "license": args.license,
             "card": card_of(net, name, args.style, args.device, eval_json, eval_s)}
    models = (yaml.safe_load((ZOO_DIR / "zoo.yaml").read_text()) or {}).get("models", [])
    at = next((i for i, m in enumerate(models) if m["name"] == name), None)
    if at is None:
        models.insert(0, entry)   # a new model comes first (`dynastream models` lists the index in order)
    else:
        entry["card"].update({k: v for k, v in models[at]["card"].items() if k == "flicker"})
        models[at] = entry
    index = write_index(models)
    print(f"wrote {target}, {index} ({name}), docs/zoo/{name}.eval.json and docs/zoo/{name}.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
