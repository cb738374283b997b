import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.nets.errors import DynastreamError
from dynastream.stream.engine import Engine, EngineConfig, pick_device
from tests.media import pattern_frame


def reference(net, frames, alpha_bs, out_hw=None):
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    if out_hw is not None:
        x = torch.nn.functional.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        y = net(x, torch.from_numpy(alpha_bs))
    return (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("channels_last", [True, False])
def test_engine_matches_the_net_per_frame_alpha(channels_last):
    net = nets.load("untrained:lite")
    frames = [pattern_frame(i, 40, 56) for i in range(3)]
    alpha = np.array([[0, 0, 0], [1, 1, 1], [0.2, 0.9, 0.5]], np.float32)
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", max_batch=4,
                                                              channels_last=channels_last), (40, 56))
    out = engine.run(frames, alpha)
    assert out.shape == (3, 40, 56, 3) and out.dtype == np.uint8
    ref = reference(net, frames, alpha)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    one = engine.run(frames[2:], alpha[2:]).copy()
    assert np.abs(one.astype(int) - ref[2:].astype(int)).max() <= 1


def test_engine_processing_size_differs_from_source_size():
    net = nets.load("untrained:lite")
    frames = [pattern_frame(0, 60, 80)]
    alpha = np.full((1, 3), 0.5, np.float32)
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", size_wh=(40, 32)), (60, 80))
    out = engine.run(frames, alpha)
    assert out.shape == (1, 32, 40, 3)
    assert np.abs(out.astype(int) - reference(net, frames, alpha, (32, 40)).astype(int)).max() <= 1


def test_engine_reuses_its_output_buffer():
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu"), (16, 16))
    a = engine.run([pattern_frame(0, 16, 16)], np.zeros((1, 3), np.float32))
    b = engine.run([pattern_frame(1, 16, 16)], np.ones((1, 3), np.float32))
    assert np.shares_memory(a, b)


def test_device_and_precision_errors():
    if not torch.cuda.is_available():
        with pytest.raises(DynastreamError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(DynastreamError, match="unknown device"):
        pick_device("tpu7")
    with pytest.raises(DynastreamError, match="on the CPU use fp32"):
        Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", precision="fp16"), (16, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_fp32_within_tolerance():
    frames = [pattern_frame(i, 64, 96) for i in range(2)]
    alpha = np.array([[0.0] * 3, [1.0] * 3], np.float32)
    fp32 = Engine(nets.load("untrained:paper"), EngineConfig(device="cuda", precision="fp32", max_batch=2), (64, 96))
    fp16 = Engine(nets.load("untrained:paper"), EngineConfig(device="cuda", precision="fp16", max_batch=2), (64, 96))
    a, b = fp32.run(frames, alpha).copy(), fp16.run(frames, alpha).copy()
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 8


# --- backends and fast paths ----------------------------------------------------------------------

import sys  # noqa: E402
import warnings  # noqa: E402

from torch import nn  # noqa: E402

from dynastream.stream import engine as engine_mod  # noqa: E402
from dynastream.stream.engine import BackendWarning, RowSplitConv, split_convs  # noqa: E402

ALPHAS = np.array([[0, 0, 0], [1, 1, 1], [0.2, 0.9, 0.5]], np.float32)


def test_row_split_conv_is_the_same_convolution():
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(12, 3, 9)
    x = torch.rand(2, 12, 30, 41, generator=g)
    assert RowSplitConv.applies_to(conv)
    assert torch.allclose(RowSplitConv(conv)(x), conv(x), atol=1e-5)
    assert not RowSplitConv.applies_to(nn.Conv2d(12, 16, 9)) and not RowSplitConv.applies_to(nn.Conv2d(12, 3, 3))
    net = nets.load("untrained:lite")
    ref = net(torch.rand(1, 3, 32, 40, generator=g), 0.7)
    assert split_convs(net) == 1 and isinstance(net.main.out.conv, RowSplitConv)   # only the 9x9 conv to RGB
    g = torch.Generator().manual_seed(0)
    torch.rand(2, 12, 30, 41, generator=g)
    assert torch.allclose(net(torch.rand(1, 3, 32, 40, generator=g), 0.7), ref, atol=1e-5)


def test_prepare_leaves_the_callers_net_alone():
    net = nets.load("untrained:lite")
    engine = Engine(net, EngineConfig(device="cpu"), (16, 16))
    assert type(net.main.out.conv) is nn.Conv2d and isinstance(engine.net.main.out.conv, RowSplitConv)
    assert net.main.conv1.conv.weight.is_contiguous()


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_backends_match_the_net(backend):
    pytest.importorskip("onnxruntime") if backend == "onnxruntime" else None
    net = nets.load("untrained:lite")
    frames = [pattern_frame(i, 40, 56) for i in range(3)]
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", max_batch=4, backend=backend), (40, 56))
    assert engine.info()["backend"] == backend
    ref = reference(net, frames, ALPHAS)
    assert np.abs(engine.run(frames, ALPHAS).astype(int) - ref.astype(int)).max() <= 1
    assert np.abs(engine.run(frames[1:2], ALPHAS[1:2]).astype(int) - ref[1:2].astype(int)).max() <= 1


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
@pytest.mark.parametrize("out_wh", [(1, 1), (2, 2), (4, 3), (64, 4)])
def test_frames_below_the_nets_smallest_size_are_padded_and_cropped_back(backend, out_wh):
    pytest.importorskip("onnxruntime") if backend == "onnxruntime" else None
    net = nets.load("untrained:lite")
    w, h = out_wh
    frames = [pattern_frame(i, 40, 56) for i in range(2)]
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", size_wh=out_wh, max_batch=2,
                                                              backend=backend), (40, 56))
    out = engine.run(frames, ALPHAS[:2])
    assert out.shape == (2, h, w, 3)
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    x = torch.nn.functional.pad(x, (0, max(0, 5 - w), 0, max(0, 5 - h)), mode="replicate")
    with torch.no_grad():
        y = net(x, torch.from_numpy(ALPHAS[:2]))[..., :h, :w]
    ref = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_compiled_engine_matches_and_never_recompiles_for_alpha():
    from torch._dynamo.utils import counters

    net = nets.load("untrained:lite")
    frames = [pattern_frame(i, 24, 32) for i in range(3)]
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", max_batch=3, backend="compile"), (24, 32))
    assert engine.info()["backend"] == "compile"
    graphs = counters["stats"]["unique_graphs"]
    ref = reference(net, frames, ALPHAS)
    assert np.abs(engine.run(frames, ALPHAS).astype(int) - ref.astype(int)).max() <= 1
    for a in np.linspace(0, 1, 7, dtype=np.float32):          # a new α every call, and a smaller batch
        alpha = np.full((3, 3), a, np.float32)
        out = engine.run(frames[:2], alpha[:2])
        assert np.abs(out.astype(int) - reference(net, frames[:2], alpha[:2]).astype(int)).max() <= 1
    assert counters["stats"]["unique_graphs"] == graphs          # nothing was compiled again


def test_missing_onnxruntime_falls_back_to_torch_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)       # makes `import onnxruntime` fail
    with pytest.warns(BackendWarning, match=r"onnxruntime is not installed \(pip install 'dynastream\[onnx\]'\)"):
        engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", backend="onnxruntime"), (16, 24))
    assert engine.info()["backend"] == "eager" and "onnxruntime is not installed" in engine.info()["notes"][0]
    out = engine.run([pattern_frame(0, 16, 24)], ALPHAS[2:])
    ref = reference(nets.load("untrained:lite"), [pattern_frame(0, 16, 24)], ALPHAS[2:])
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_compile_without_a_cxx_compiler_falls_back(monkeypatch):
    monkeypatch.setattr(engine_mod.shutil, "which", lambda name: None)
    with pytest.warns(BackendWarning, match="needs a C\\+\\+ compiler"):
        engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", backend="compile"), (16, 16))
    assert engine.info()["backend"] == "eager"
    assert engine_mod.resolve_backend("auto", torch.device("cpu"), 10**6) == ("eager", None)


def test_auto_backend_compiles_only_frames_worth_it():
    cpu = torch.device("cpu")
    assert engine_mod.resolve_backend("auto", cpu, 64 * 48) == ("eager", None)
    expected = "compile" if engine_mod.has_cxx_compiler() else "eager"
    assert engine_mod.resolve_backend("auto", cpu, 320 * 240) == (expected, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # auto never warns
        assert Engine(nets.load("untrained:lite"), EngineConfig(device="cpu"), (48, 64)).info()["backend"] == "eager"
    with pytest.raises(DynastreamError, match="unknown backend"):
        Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", backend="tensorrt"), (16, 16))


def test_submit_collect_on_cpu_and_misuse():
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", max_batch=2), (16, 16))
    engine.submit([pattern_frame(0, 16, 16)], ALPHAS[:1])
    with pytest.raises(RuntimeError, match="collect"):
        engine.submit([pattern_frame(1, 16, 16)], ALPHAS[:1])
    assert engine.collect().shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match="1..2 frames"):
        engine.run([pattern_frame(0, 16, 16)] * 3, ALPHAS)


@pytest.mark.skipif(not engine_mod._cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_cpu_bf16_stays_close_to_fp32():
    frames = [pattern_frame(i, 48, 64) for i in range(2)]
    alpha = np.array([[0.3] * 3, [1.0] * 3], np.float32)
    fp32 = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", max_batch=2), (48, 64))
    bf16 = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", precision="bf16", max_batch=2), (48, 64))
    d = np.abs(fp32.run(frames, alpha).astype(int) - bf16.run(frames, alpha).astype(int))
    assert d.mean() < 3.0      # measured about 1.5 levels of 255 on the untrained lite net


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_match_eager_and_alpha_never_recaptures():
    frames = [pattern_frame(i, 64, 96) for i in range(2)]
    plain = Engine(nets.load("untrained:lite"), EngineConfig(device="cuda", max_batch=2, cuda_graphs=False), (64, 96))
    graphed = Engine(nets.load("untrained:lite"), EngineConfig(device="cuda", max_batch=2), (64, 96))
    graphs = list(graphed.prepared.run.graphs)
    assert len(graphs) == 2
    for a in (0.0, 0.4, 1.0):
        alpha = np.full((2, 3), a, np.float32)
        assert np.array_equal(plain.run(frames, alpha), graphed.run(frames, alpha))
        assert np.array_equal(plain.run(frames[:1], alpha[:1]), graphed.run(frames[:1], alpha[:1]))
    assert graphed.prepared.run.graphs == graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_submit_two_then_collect_keeps_order():
    engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cuda"), (32, 48))
    frames = [pattern_frame(i, 32, 48) for i in range(4)]
    alphas = [np.full((1, 3), a, np.float32) for a in (0.0, 0.3, 0.6, 1.0)]
    expected = [engine.run([f], a).copy() for f, a in zip(frames, alphas)]
    got = []
    engine.submit([frames[0]], alphas[0])
    for f, a in zip(frames[1:], alphas[1:]):
        engine.submit([f], a)                 # frame k+1 uploads while frame k computes
        got.append(engine.collect().copy())
    got.append(engine.collect().copy())
    for e, g in zip(expected, got):
        assert np.array_equal(e, g)


def test_start_eager_runs_at_once_and_switches_to_the_compiled_net_prepared_on_another_thread():
    import threading

    net = nets.load("untrained:lite")
    frames = [pattern_frame(2, 24, 32)]
    alpha = np.full((1, 3), 0.6, np.float32)
    engine = Engine(net, EngineConfig(device="cpu", backend="compile"), (24, 32), start_eager=True)
    assert engine.compile_pending and engine.info()["backend"] == "eager"
    ref = reference(net, frames, alpha)
    assert np.array_equal(engine.run(frames, alpha), ref)
    prepared = []
    worker = threading.Thread(target=lambda: prepared.append(engine.prepare(net)))
    worker.start()
    while worker.is_alive():                      # frames keep coming while the compile runs
        assert np.array_equal(engine.run(frames, alpha), ref)
        worker.join(timeout=0.05)
    engine.use(prepared[0])
    assert not engine.compile_pending and engine.info()["backend"] == "compile"
    assert np.abs(engine.run(frames, alpha).astype(int) - ref.astype(int)).max() <= 1
    with pytest.raises(DynastreamError, match="prepares nets for it or eager"):
        engine.prepare(net, backend="onnxruntime")


def test_each_backend_is_one_class_and_the_slots_are_told_apart_by_index():
    """A CUDA graph is replayed per slot; finding the slot with list.index compared the slots'
    tensors (RuntimeError on the second of CUDA's two slots), so a slot carries its index."""
    from dynastream.stream.engine import CompiledRun, EagerRun, OrtRun, _Slot, has_onnxruntime

    frames = [pattern_frame(i, 24, 32) for i in range(2)]
    alpha = np.array([[0.2] * 3, [0.9] * 3], np.float32)
    outs = {}
    for backend, kind in (("eager", EagerRun), ("onnxruntime", OrtRun), ("compile", CompiledRun)):
        if backend == "onnxruntime" and not has_onnxruntime():
            continue
        engine = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", backend=backend, max_batch=2), (24, 32))
        if backend == "compile" and engine.runs != "compile":
            continue   # no C++ compiler here: covered by the fallback test
        assert isinstance(engine.prepared.run, kind) and engine.runs == backend
        outs[backend] = engine.run(frames, alpha).copy()
    t = torch.zeros(2, 3)
    slots = [_Slot(i, t, t, t, t.numpy(), t, t, t) for i in range(2)]
    assert [slots.index(s) for s in slots] == [0, 1]      # identity, not a field-wise == of tensors
    for backend, out in outs.items():
        assert np.abs(out.astype(int) - outs["eager"].astype(int)).max() <= 2, backend
