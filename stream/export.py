"""ONNX export of a Dynamic-Net with α as a graph input.

Style nets: inputs ``x`` (B, 3, H, W) float RGB in [0, 1] and ``alpha`` (B, S) float (one α per
frame and tuning site, sites in ``net.sites`` order); output ``y`` (B, 3, H, W), not clamped.
Batch, height and width are dynamic. With ``alpha_map=True`` a third input ``alpha_map``
(B, 1, H, W) float in [0, 1] multiplies α per pixel (``nets.tuning``; for a DCGAN at its 64x64
output size). DCGAN generators: inputs ``z`` (B, nz) and ``alpha`` (B, S);
output ``y`` (B, nc, 64, 64). The site names, mode and α range travel in the model's metadata.

Uses torch's TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs the extra
package onnxscript, and this graph (convolutions, instance norm, reflection padding, nearest
upsampling) is plain for the older one.
"""

import io
import json
import os
import warnings
from pathlib import Path
from typing import Union

import torch

from dynastream.nets import DynamicNet
from dynastream.nets.atomic import atomic_open
from dynastream.nets.errors import DynastreamError

OPSET = 17


class ExportError(DynastreamError):
    pass


def _example(net: DynamicNet, hw: tuple[int, int], batch: int, alpha_map: bool = False) -> tuple[tuple, list, dict]:
    alpha = torch.full((batch, len(net.sites)), 0.5)
    if net.kind == "dcgan":
        z = torch.randn(batch, net.main.config.nz)
        args, names, axes = (z, alpha), ["z", "alpha"], {"z": {0: "batch"}, "alpha": {0: "batch"}, "y": {0: "batch"}}
        map_hw, map_axes = (64, 64), {0: "batch"}
    else:
        x = torch.rand(batch, 3, *hw)
        args, names = (x, alpha), ["x", "alpha"]
        axes = {"x": {0: "batch", 2: "height", 3: "width"}, "alpha": {0: "batch"},
                "y": {0: "batch", 2: "height", 3: "width"}}
        map_hw, map_axes = hw, {0: "batch", 2: "height", 3: "width"}
    if alpha_map:
        args, names, axes = (*args, torch.rand(batch, 1, *map_hw)), [*names, "alpha_map"], {**axes, "alpha_map": map_axes}
    return args, names, axes


def onnx_bytes(net: DynamicNet, hw: tuple[int, int] = (64, 64), opset: int = OPSET, alpha_map: bool = False) -> bytes:
    """The serialized ONNX model of ``net`` (traced at ``hw``; the graph accepts any size), with
    an ``alpha_map`` input when asked."""
    param = next(net.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ExportError("export takes an fp32 net on the CPU")
    args, names, axes = _example(net, hw, batch=2, alpha_map=alpha_map)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(net.eval(), args, buf, input_names=names, output_names=["y"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    return _with_metadata(buf.getvalue(), net)


def _with_metadata(model_bytes: bytes, net: DynamicNet) -> bytes:
    try:
        import onnx
    except ImportError:   # the model is complete without the metadata
        return model_bytes
    model = onnx.load_from_string(model_bytes)
    meta = {"dynastream.sites": json.dumps(list(net.sites)), "dynastream.mode": net.mode,
            "dynastream.kind": net.kind, "dynastream.alpha_range": json.dumps(list(net.alpha_range)),
            "dynastream.name": str(net.meta.get("name", ""))}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def export_onnx(net: DynamicNet, path: Union[str, os.PathLike], opset: int = OPSET, alpha_map: bool = False) -> Path:
    """Write ``net`` as ONNX to ``path`` atomically (temporary file in the same folder, renamed)."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"output {path} is a directory; give a file name such as {path / 'model.onnx'}")
    folder = path.parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ExportError(f"cannot write {path}: folder {folder} is not writable")
    data = onnx_bytes(net.to("cpu", torch.float32), opset=opset, alpha_map=alpha_map)
    try:
        with atomic_open(path) as f:   # mode 0666 less the umask, not mkstemp's 0600
            f.write(data)
    except OSError as e:
        raise ExportError(f"cannot write {path} ({e.strerror or e})") from None
    return path
