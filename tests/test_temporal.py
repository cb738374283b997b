"""The warping error (train/temporal.py) on synthetic motion whose answer is known."""

import numpy as np
import pytest

from dynastream.train import temporal
from tests.media import panning_frames, texture


def flicker(frames, amplitude=20, seed=0):
    """Each frame with its own random noise: what a frame-by-frame stylizer's shimmer looks like."""
    rng = np.random.default_rng(seed)
    return [np.clip(f.astype(np.int16) + rng.integers(-amplitude, amplitude + 1, f.shape), 0, 255).astype(np.uint8)
            for f in frames]


@pytest.mark.parametrize("method", temporal.FLOW_METHODS)
def test_a_translated_texture_has_almost_no_warping_error(method):
    frames = panning_frames(6, step_xy=(3, 1))
    pairs = temporal.FlowPairs.compute(frames, method)
    assert pairs.used == [0, 1, 2, 3, 4] and pairs.cuts == 0
    assert pairs.visible > 0.85                  # all but the strip that leaves the frame
    fwd = pairs.flows[2][20:-20, 20:-20]
    assert abs(np.median(fwd[..., 0]) + 3) < 0.1 and abs(np.median(fwd[..., 1]) + 1) < 0.1   # the view pans by (3, 1)
    assert temporal.warping_error(frames, pairs) < 2e-4


def test_frame_wise_flicker_scores_high_and_a_blur_shows_in_sharpness():
    import cv2

    frames = panning_frames(6)
    pairs = temporal.FlowPairs.compute(frames)
    g_in = temporal.mean_gradient(frames)
    floor = temporal.stability(frames, pairs, g_in)
    noisy = temporal.stability(flicker(frames), pairs, g_in)
    assert noisy.warp > 20 * floor.warp and noisy.per_detail > 5 * floor.per_detail
    assert 0.0035 < noisy.warp < 0.005           # two draws of uniform noise of ±20 levels: 2·(41²-1)/12/255² = 0.0043
    blur = temporal.stability([cv2.GaussianBlur(f, (0, 0), 3) for f in flicker(frames)], pairs, g_in)
    assert blur.warp < noisy.warp / 10           # blurring the shimmer away scores "steady"...
    assert blur.sharpness < 0.4                  # ...which its sharpness gives away
    assert floor.sharpness == pytest.approx(1.0)


def test_a_scene_cut_is_left_out():
    frames = panning_frames(4) + panning_frames(4, seed=7)
    pairs = temporal.FlowPairs.compute(frames)
    assert 3 not in pairs.used and pairs.cuts == 1 and len(pairs.used) == 6
    assert temporal.warping_error(frames, pairs) < 2e-4


def test_the_mask_hides_what_a_moving_object_uncovers():
    """A square moving over a still background: the pixels it uncovers have no match in the next
    frame, and the forward-backward check leaves them out."""
    background = texture(96, 128, seed=1)
    square = texture(24, 24, seed=2)
    frames = []
    for t in range(3):
        f = background.copy()
        f[36:60, 30 + 6 * t:54 + 6 * t] = square
        frames.append(f)
    dis = temporal.FlowPairs.compute(frames, "dis")
    assert dis.masks[0][38:58, 54:60].mean() < 0.3   # background that the square covers in the next frame
    assert dis.masks[0][:30].mean() > 0.95           # still background
    farneback = temporal.FlowPairs.compute(frames, "farneback")   # smooths the flow: the hidden band lies wider
    assert farneback.masks[0][38:58, 54:72].mean() < 0.7 and farneback.masks[0][:30].mean() > 0.95
    for pairs in (dis, farneback):
        assert temporal.warping_error(frames, pairs) < 2e-3


def test_bad_inputs_are_refused():
    frames = panning_frames(3)
    with pytest.raises(ValueError, match="at least two"):
        temporal.FlowPairs.compute(frames[:1])
    with pytest.raises(ValueError, match="flow method"):
        temporal.flow(temporal.gray(frames[0]), temporal.gray(frames[1]), "lucas")
    with pytest.raises(ValueError, match="frames for"):
        temporal.warping_error(frames[:2], temporal.FlowPairs.compute(frames))
