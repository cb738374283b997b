"""CUDA paths besides the engine's graphs and copy streams (tests/test_engine.py): the engine without
graphs, resizing in fp16, AMP style training, the Dynamic DCGAN generator in fp16, NVENC encoding. Skipped without a
CUDA GPU; scripts/gpu-check runs them on the device machine (pytest -k cuda)."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from dynastream import configs, nets
from dynastream.stream.engine import EngineConfig
from tests.media import pattern_frame

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_eager_engine_without_graphs_matches_the_cpu_net():
    from dynastream.stream.engine import Engine

    net = nets.load("untrained:paper")
    frames = [pattern_frame(i, 64, 96) for i in range(2)]
    alpha = np.array([[0.0] * 3, [0.7] * 3], np.float32)
    cpu = Engine(net, EngineConfig(device="cpu", max_batch=2), (64, 96)).run(frames, alpha).copy()
    gpu = Engine(net, EngineConfig(device="cuda", precision="fp32", max_batch=2, cuda_graphs=False), (64, 96))
    assert not gpu.info()["cuda_graphs"]
    d = np.abs(cpu.astype(int) - gpu.run(frames, alpha).astype(int))
    assert d.mean() < 1.0 and d.max() <= 8       # cuDNN runs fp32 convolutions in TF32 by default


def test_cuda_fp16_graphed_engine_resizes_like_the_cpu():
    from dynastream.stream.engine import Engine

    net = nets.load("untrained:lite")
    frames = [pattern_frame(i, 96, 128) for i in range(2)]
    alpha = np.full((2, 3), 0.5, np.float32)
    config = dict(max_batch=2, size_wh=(80, 60))              # antialiased bilinear, in fp16 on the GPU
    cpu = Engine(net, EngineConfig(device="cpu", **config), (96, 128)).run(frames, alpha).copy()
    gpu = Engine(net, EngineConfig(device="cuda", **config), (96, 128))
    assert gpu.info()["cuda_graphs"] and gpu.info()["dtype"] == "float16"
    d = np.abs(cpu.astype(int) - gpu.run(frames, alpha).astype(int))
    assert cpu.shape == (2, 60, 80, 3) and d.mean() < 1.5 and d.max() <= 12


def test_cuda_amp_style_training_records_its_precision_and_stays_finite(tmp_path):
    from dynastream.configs.schema import load_config
    from dynastream.train.style import StyleTrainConfig, train

    cfg = load_config(StyleTrainConfig, configs.path("train/smoke.yaml"),
                      ["device=cuda", "data.image_size=64", "schedule.main.steps=4", "schedule.blocks.steps=4",
                       "schedule.log_every=2", "schedule.checkpoint_every=0"])
    net = nets.load(train(cfg, tmp_path / "run"))
    assert net.meta["provenance"]["amp"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    assert net.meta["provenance"]["device"] == "cuda"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in records} == {"main", "higher"}
    assert all(math.isfinite(r["loss"]) for r in records)


def test_cuda_dcgan_generator_engine_fp16_matches_the_cpu(tmp_path):
    from dynastream.stream.latent import GeneratorEngine
    from tests.models import make_dcgan

    net = nets.load(make_dcgan(tmp_path / "faces.pt"))
    alpha = np.full((1, len(net.sites)), 0.5, np.float32)
    pictures = {}
    for device in ("cpu", "cuda"):
        engine = GeneratorEngine(net, EngineConfig(device=device, size_wh=(64, 64)))
        assert engine.info()["dtype"] == ("float16" if device == "cuda" else "float32")
        engine.seek(1.5)
        pictures[device] = engine.run([np.zeros((*engine.in_hw, 3), np.uint8)], alpha).copy()
    d = np.abs(pictures["cpu"].astype(int) - pictures["cuda"].astype(int))
    assert d.mean() < 2.0 and pictures["cuda"].std() > 5


def _nvenc_encodes() -> bool:
    import av

    if "h264_nvenc" not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 144, "yuv420p", Fraction(1, 30)
        frame = av.VideoFrame.from_ndarray(pattern_frame(0, 144, 256), format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        return len(ctx.encode(frame)) + len(ctx.encode(None)) > 0
    except Exception:  # no NVENC driver library, no device: FFmpeg says so in many ways
        return False


def test_cuda_nvenc_writer_round_trip(tmp_path):
    import av

    from dynastream.stream.writer import VideoOptions, VideoWriter

    if not _nvenc_encodes():
        pytest.skip("h264_nvenc cannot encode here (absent from PyAV's FFmpeg, or no NVENC driver library)")
    path = tmp_path / "nvenc.mp4"
    writer = VideoWriter(path, 256, 144, rate=Fraction(30), time_base=Fraction(1, 30),
                         options=VideoOptions(codec="h264_nvenc"))
    for i in range(24):
        writer.write(pattern_frame(i, 144, 256), i)
    writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264"
    assert len(frames) == 24
    assert np.abs(frames[5].astype(int) - pattern_frame(5, 144, 256).astype(int)).mean() < 12
