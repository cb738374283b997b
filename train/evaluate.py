"""``dynastream eval``: how a Dynamic-Net moves through objective space as α sweeps.

For held-out images, the content loss (against the input) and the style loss against each
objective's style image are measured on the net's output at each α, with the loss network the
model was trained with. For a well-trained "strength" or "A -> B" net the O1 style loss falls and
the content loss rises as α goes from 0 to 1.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from nets import DynamicNet
from nets.errors import DynastreamError
from train.data import find_images, load_style_image, open_rgb, to_tensor
from train.losses import content_loss, gram, style_loss
from train.lossnet import load_lossnet

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
        c, s = self.content, self.style[objective]
        return {"content_rises": all(b >= a for a, b in zip(c, c[1:])),
                "style_falls": all(b <= a for a, b in zip(s, s[1:]))}

    def to_dict(self) -> dict:
        return {"model": self.model, "loss_net": self.loss_net, "images": self.images, "alphas": self.alphas,
                "content": self.content, "style": self.style, "style_images": self.style_images,
                "monotonic": self.monotonic() if "higher" in self.style else {}}

    def table(self) -> str:
        names = list(self.style)
        header = ["alpha", "content"] + [f"style vs {n} ({Path(self.style_images[n]).name})" for n in names]
        rows = [[f"{a:g}", f"{c:.4g}"] + [f"{self.style[n][i]:.4g}" for n in names]
                for i, (a, c) in enumerate(zip(self.alphas, self.content))]
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header] + rows)


def style_image_path(recorded: str, styles_dir: Optional[Path], objective: str) -> str:
    if styles_dir is not None and (styles_dir / Path(recorded).name).is_file():
        return str(styles_dir / Path(recorded).name)
    if Path(recorded).is_file() or recorded.startswith("generated:"):
        return recorded
    raise EvalError(f"the style image {recorded} of objective {objective} is not on this machine: pass --styles DIR "
                    "(python -m train.datasets fetch-demo data/demo puts the demo styles in data/demo/styles)")


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


def sweep_sheet(net: DynamicNet, images_dir: Path, path: Path, count: int = 3, size: int = 256) -> Path:
    """A preview sheet: one row per held-out image (centre square crop), the input then the net at
    α = 0, .25, .5, .75, 1 (dual nets: -1 .. 1), as the trainer's previews."""
    from train.data import center_box
    from train.style import preview

    paths = find_images(Path(images_dir))[:count]
    tiles = []
    for p in paths:
        img = open_rgb(p)
        tiles.append(to_tensor(img.crop(center_box(img.width, img.height)).resize((size, size)))[None])
    return preview(net.eval(), torch.cat(tiles), Path(path))
