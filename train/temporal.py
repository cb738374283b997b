"""Temporal stability of a video: the warping error of Lai et al. (ECCV 2018, "Learning Blind Video
Temporal Consistency", section 5).

Optical flow is computed on the *input* frames (OpenCV's Farneback or DIS); for each pair (t, t+1)
the output frame t+1 is warped back to t along that flow and compared with output frame t over the
pixels that the forward-backward check finds visible in both (Sundaram et al. 2010, as in Ruder et
al. 2016 and Lai et al.):

    E = mean over pairs of  sum_p M_t(p) · mean_c (O_t(p) - W(O_{t+1})(p))² / sum_p M_t(p)

with images in [0, 1] (so E is a mean squared difference per channel). The input scored against
itself is the floor that flow errors set. A blur scores low, so E is also given per unit of
detail, divided by the output's mean gradient (``mean_gradient``), and the output's sharpness is
its mean gradient over the input's. Frames are RGB (H, W, 3) uint8 numpy arrays.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

FlowMethod = Literal["farneback", "dis"]
FLOW_METHODS: tuple[FlowMethod, ...] = ("farneback", "dis")
FLOW_NAMES = {"farneback": "OpenCV Farneback (pyr 0.5, 3 levels, window 15, 3 iterations, poly 5/1.2)",
              "dis": "OpenCV DIS optical flow (preset medium)"}
# A pair is a cut, not motion (and is left out), where less than MIN_VISIBLE of the input is visible in
# both frames or the input's own error over the visible pixels is above CUT_ERROR (RMS 0.1, 25 grey
# levels; on real clips pairs across a cut score 0.02-0.15, pairs within a shot below 0.005).
MIN_VISIBLE = 0.2
CUT_ERROR = 0.01


def gray(rgb_hwc_u8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb_hwc_u8, cv2.COLOR_RGB2GRAY)


def flow(a_gray_u8: np.ndarray, b_gray_u8: np.ndarray, method: FlowMethod) -> np.ndarray:
    """Dense flow from a to b, (H, W, 2) float32 in pixels: a(p) matches b(p + flow(p))."""
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a_gray_u8, b_gray_u8, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a_gray_u8, b_gray_u8, None)
    raise ValueError(f"flow method must be one of {', '.join(FLOW_METHODS)}, not {method!r}")


def sample_grid(flow_hw2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The remap coordinates p + flow(p) as two (H, W) float32 maps."""
    h, w = flow_hw2.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + flow_hw2[..., 0], ys + flow_hw2[..., 1]


def warp(image: np.ndarray, flow_hw2: np.ndarray) -> np.ndarray:
    """``image`` sampled at p + flow(p) (bilinear, borders replicated): with the flow from a to b,
    this brings frame b back onto frame a."""
    mx, my = sample_grid(flow_hw2)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def visible_mask(fwd_hw2: np.ndarray, bwd_hw2: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of frame a whose forward flow lands inside b and comes back
    (|f + b(p + f)|² < 0.01 (|f|² + |b(p + f)|²) + 0.5, the check of Sundaram et al. 2010)."""
    h, w = fwd_hw2.shape[:2]
    back = warp(bwd_hw2, fwd_hw2)
    err = ((fwd_hw2 + back) ** 2).sum(-1)
    ok = err < 0.01 * ((fwd_hw2 ** 2).sum(-1) + (back ** 2).sum(-1)) + 0.5
    mx, my = sample_grid(fwd_hw2)
    return ok & (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)


def mean_gradient(frames: Sequence[np.ndarray]) -> float:
    """Mean |neighbour difference| (horizontal and vertical, in [0, 1] units) over frames, pixels
    and channels: the same measure as ``train.imagemetrics.mean_gradient``."""
    total = 0.0
    for f in frames:
        x = f.astype(np.float32) / 255.0
        total += 0.5 * (np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=0)).mean())
    return float(total / max(1, len(frames)))


@dataclass
class FlowPairs:
    """The flow between consecutive input frames and the visible masks, computed once and reused for
    every output of the same clip. ``used`` lists the pairs scored (cuts are left out)."""

    method: FlowMethod
    shape_hw: tuple[int, int]
    flows: list[np.ndarray]          # pair t: flow from frame t to t+1
    masks: list[np.ndarray]          # pair t: visible in both
    used: list[int]

    @property
    def cuts(self) -> int:
        return len(self.flows) - len(self.used)

    @classmethod
    def compute(cls, frames: Sequence[np.ndarray], method: FlowMethod = "farneback") -> "FlowPairs":
        if len(frames) < 2:
            raise ValueError("the warping error needs at least two frames")
        grays = [gray(f) for f in frames]
        flows, masks, used = [], [], []
        for t in range(len(frames) - 1):
            fwd = flow(grays[t], grays[t + 1], method)
            bwd = flow(grays[t + 1], grays[t], method)
            mask = visible_mask(fwd, bwd)
            flows.append(fwd)
            masks.append(mask)
            if mask.mean() >= MIN_VISIBLE and pair_error(frames[t], frames[t + 1], fwd, mask) <= CUT_ERROR:
                used.append(t)
        return cls(method, grays[0].shape[:2], flows, masks, used)

    @property
    def visible(self) -> float:
        """Mean share of pixels scored over the pairs used."""
        return float(np.mean([self.masks[t].mean() for t in self.used])) if self.used else 0.0


def pair_error(a_u8: np.ndarray, b_u8: np.ndarray, flow_ab: np.ndarray, mask: np.ndarray) -> float:
    """Mean over visible pixels and channels of (a - b warped back to a)², in [0, 1] units."""
    a = a_u8.astype(np.float32) / 255.0
    b = warp(b_u8, flow_ab).astype(np.float32) / 255.0
    return float(((a - b) ** 2).mean(-1)[mask].mean()) if mask.any() else float("inf")


def residual_image(a_u8: np.ndarray, b_u8: np.ndarray, flow_ab: np.ndarray, mask: np.ndarray,
                   gain: float = 8.0) -> np.ndarray:
    """What the warping error sees, as a picture: |a - b warped back to a| times ``gain``, grey,
    RGB uint8; pixels left out (occluded) are dark red."""
    diff = np.abs(a_u8.astype(np.float32) - warp(b_u8, flow_ab).astype(np.float32)).mean(-1) * gain
    out = np.repeat(np.clip(diff, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    out[~mask] = (96, 0, 0)
    return out


def warping_error(frames: Sequence[np.ndarray], pairs: FlowPairs) -> float:
    """Lai et al.'s E of ``frames`` (the input or an output of it, same size) along ``pairs``."""
    if len(frames) != len(pairs.flows) + 1:
        raise ValueError(f"{len(frames)} frames for {len(pairs.flows)} flow pairs")
    if not pairs.used:
        return float("nan")
    return sum(pair_error(frames[t], frames[t + 1], pairs.flows[t], pairs.masks[t]) for t in pairs.used) / len(pairs.used)


@dataclass(frozen=True)
class Stability:
    """One clip's warping error ``warp``, the mean gradient ``gradient``, and both relative to the input."""

    warp: float
    gradient: float
    input_gradient: float

    @property
    def per_detail(self) -> float:
        """E / mean gradient."""
        return self.warp / self.gradient if self.gradient > 0 else float("inf")

    @property
    def sharpness(self) -> float:
        return self.gradient / self.input_gradient if self.input_gradient > 0 else float("nan")

    def to_dict(self) -> dict:
        return {"warp_error": self.warp, "mean_gradient": self.gradient, "per_detail": self.per_detail,
                "sharpness": self.sharpness}


def stability(frames: Sequence[np.ndarray], pairs: FlowPairs, input_gradient: float) -> Stability:
    return Stability(warping_error(frames, pairs), mean_gradient(frames), input_gradient)
