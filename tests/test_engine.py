import numpy as np
import pytest
import torch

import nets
from nets.errors import DynastreamError
from stream.engine import Engine, EngineConfig, pick_device
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
