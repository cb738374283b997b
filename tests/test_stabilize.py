"""The inference-time stabilizer (stream/stabilize.py) and `dynastream eval --video`."""

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from dynastream import nets
from dynastream.stream.stabilize import Stabilizer
from dynastream.train import temporal
from tests.media import panning_frames, texture, write_frames
from tests.test_temporal import flicker


def stabilized(frames, outputs, strength=0.6):
    stab = Stabilizer(strength)
    out = [o.copy() for o in outputs]
    for x, y in zip(frames, out):
        stab.apply(x, y)
    return out


def test_it_takes_the_shimmer_out_of_a_panning_clip():
    frames = panning_frames(10, height=120, width=160)
    noisy = flicker(frames)
    pairs = temporal.FlowPairs.compute(frames)
    g_in = temporal.mean_gradient(frames)
    before = temporal.stability(noisy, pairs, g_in)
    after = temporal.stability(stabilized(frames, noisy), pairs, g_in)
    assert after.warp < before.warp / 3
    assert after.per_detail < before.per_detail / 2
    clean = temporal.stability(stabilized(frames, frames), pairs, g_in)   # a steady output stays as sharp
    assert clean.sharpness > 0.93


def test_a_moving_edge_leaves_no_ghost():
    """A square moves fast across a flat background; the output is the input. Where the square was a
    frame ago the stabilized frame must show the background, not a trail of the square."""
    frames = []
    square = texture(30, 30, seed=3)
    for t in range(8):
        f = np.full((120, 160, 3), 90, np.uint8)
        f[45:75, 10 + 12 * t:40 + 12 * t] = square
        frames.append(f)
    out = stabilized(frames, frames, strength=0.9)
    for t in range(1, 8):
        diff = np.abs(out[t].astype(np.int16) - frames[t]).max(-1)
        trail = diff[45:75, 10 + 12 * (t - 1):10 + 12 * t]   # uncovered by the square this frame
        assert np.percentile(trail, 95) <= 12, t
        assert np.percentile(diff, 99) <= 30, t


def test_a_frame_costs_no_allocation_and_buffers_are_kept():
    frames = panning_frames(4, height=240, width=320)
    stab = Stabilizer()
    out = frames[0].copy()
    stab.apply(frames[0], out)
    stab.apply(frames[1], out)
    kept = stab._previous.ctypes.data, stab._flow_back.ctypes.data
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[1]
        for t in (2, 3, 2, 3):
            stab.apply(frames[t], out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 4096                      # a few Python objects, no frame-sized array
    assert (stab._previous.ctypes.data, stab._flow_back.ctypes.data) == kept
    small = np.zeros((60, 80, 3), np.uint8)           # a new size allocates once, then works
    stab.apply(small, small.copy())


def test_strength_is_checked():
    with pytest.raises(ValueError, match="strength"):
        Stabilizer(1.0)


def test_eval_video_writes_table_json_and_strip(tmp_path):
    clip = write_frames(tmp_path / "pan.mp4", panning_frames(8, height=64, width=96))
    out, strip = tmp_path / "t.json", tmp_path / "strip.jpg"
    proc = subprocess.run([sys.executable, "-m", "dynastream.stream", "eval", "untrained:lite", "--video", str(clip),
                           "--frames", "6", "--size", "96", "--alphas", "0,1", "--flow", "dis", "--stabilize",
                           "--json", str(out), "--strip", str(strip)], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "input (floor)" in proc.stdout and "stabilized" in proc.stdout and "DIS" in proc.stdout
    result = json.loads(out.read_text())
    assert result["frames"] == 6 and result["size_wh"] == [96, 64] and result["pairs_scored"] == 5
    assert result["input"]["warp_error"] < 1e-3 and result["input"]["sharpness"] == pytest.approx(1.0)
    assert set(result["outputs"]) == {"net", "stabilized"} and len(result["outputs"]["net"]) == 2
    net1, stab1 = result["outputs"]["net"][1], result["outputs"]["stabilized"][1]
    assert net1["warp_error"] > 0 and stab1["warp_error"] <= net1["warp_error"]
    assert result["stabilizer"]["strength"] == 0.6
    assert Image.open(strip).format == "JPEG" and Image.open(strip).size == (4 * 96 + 5 * 2, 5 * 64 + 6 * 2)


@pytest.mark.parametrize("args, says", [
    (["--video", "missing.mp4"], "does not exist"),
    (["--video", "CLIP", "--stabilize", "1.5"], "--stabilize must be from 0 to 0.95"),
    (["--video", "CLIP", "--start", "100"], "fewer than two"),
])
def test_eval_video_bad_input_is_one_sentence(tmp_path, run_cli, args, says):
    clip = write_frames(tmp_path / "pan.mp4", panning_frames(4, height=32, width=48))
    args = [str(clip) if a == "CLIP" else a for a in args]
    proc = run_cli("eval", "untrained:lite", *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_render_stabilize_steadies_a_flickering_net(tmp_path, run_cli):
    """A real render, twice, of a clip whose net output flickers (an untrained net on a clip with
    per-frame noise): with --stabilize the rendered file's warping error along the clean clip's
    flow is lower."""
    from tests.media import read_frames

    clean = panning_frames(10, height=64, width=96)
    clip = write_frames(tmp_path / "noisy.mp4", flicker(clean, amplitude=12))
    errors = {}
    for name, extra in (("plain", []), ("steady", ["--stabilize", "0.7"])):
        out = tmp_path / f"{name}.mkv"
        proc = run_cli("render", clip, "-o", out, "--model", "untrained:lite", "--alpha", "0", "--codec", "ffv1",
                       "-q", *extra)
        assert proc.returncode == 0, proc.stderr
        frames, _ = read_frames(out)
        assert len(frames) == 10
        errors[name] = temporal.warping_error(frames, temporal.FlowPairs.compute(clean))
    assert errors["steady"] < 0.7 * errors["plain"]
    Image.fromarray(clean[0]).save(tmp_path / "x.png")
    proc = run_cli("render", tmp_path / "x.png", "-o", tmp_path / "y.png", "--stabilize")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no motion" in proc.stderr


def test_live_stabilize_runs_headless(tmp_path):
    from dynastream.stream.live import LiveConfig, LivePipeline

    clip = write_frames(tmp_path / "noisy.mp4", flicker(panning_frames(12, height=48, width=64)))
    shown = []
    pipeline = LivePipeline(LiveConfig(source=str(clip), models=("untrained:lite",), headless=True, frames=12,
                                       backend="eager", stabilize=0.6),
                            on_shown=lambda f: shown.append(f.rgb_hwc_u8.copy()), report=lambda m: None)
    pipeline.run()
    assert pipeline.stabilizer is not None and pipeline.stabilizer._have_previous
    assert len(shown) >= 2


def test_a_model_switch_starts_the_stabilizer_afresh_and_the_compiled_net_does_not(tmp_path):
    """Blending the old model's last picture into the new model's first would smear one style into
    the other for a few frames; the compiled copy of the same net is the same picture."""
    from dynastream.stream.live import LiveConfig, LivePipeline

    clip = write_frames(tmp_path / "pan.mp4", panning_frames(4, height=48, width=64))
    pipeline = LivePipeline(LiveConfig(source=str(clip), models=("untrained:lite",), headless=True, frames=4,
                                       backend="eager", stabilize=0.6), report=lambda m: None)
    pipeline.run()
    assert pipeline.stabilizer._have_previous
    models = pipeline.session.models
    for net, kept in ((models.net, True), (nets.load("untrained:lite"), False)):   # its compiled copy; another
        previous = models.net
        models._pending = (None, models.engine.prepare(net), net, "untrained:lite")
        swapped = models.swap()
        pipeline._model_swapped(swapped, another_model=swapped is not previous)
        assert pipeline.stabilizer._have_previous is kept
