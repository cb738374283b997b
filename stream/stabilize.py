"""An optional stage after inference that steadies a stylized video (``--stabilize [STRENGTH]``).

Each stylized frame is blended with the previous *result* warped onto it along the optical flow of
the *input* frames, so what a frame-by-frame net invents anew on every frame (shimmering texture)
is averaged along the motion, a recursive filter in the spirit of blind temporal consistency (Lai
et al. 2018, Bonneel et al. 2015) without its training. The flow is OpenCV's DIS at a low
resolution (medium preset, 160 px on the longer side by default: 2.3 ms for the two flows of a
frame on one core here; the ultrafast preset takes 0.2 ms but is too coarse on a panning camera:
1.55x against 1.42x the input's warping-error floor on docs/flicker.md's bikes clip).
Where the previous frame cannot be trusted the new frame is kept as it is: pixels that the
forward-backward flow check finds occluded or uncovered, that land outside the frame, or whose input
changed colour beyond what the motion explains (moving edges, lighting, cuts). The mask is eroded
by a pixel and softened, so a moving edge leaves no ghost.

All buffers are allocated at the first frame (and again only if the frame size changes); a frame
costs no allocation.
"""


import cv2
import numpy as np

from dynastream.stream.limits import DEFAULT_STABILIZE as DEFAULT_STRENGTH
from dynastream.stream.limits import MAX_STABILIZE as MAX_STRENGTH

FLOW_LONGER_SIDE = 160
COLOUR_TOLERANCE = 24     # grey levels (0..255) of input change along the flow still counted as the same surface


class Stabilizer:
    """``apply(input, output)`` replaces ``output`` (the net's frame for ``input``) in place by
    ``(1 - w)·output + w·previous result warped along the input's flow``, w = strength where the
    flow is trusted, 0 elsewhere. Frames must come in order; ``reset`` forgets the previous one."""

    def __init__(self, strength: float = DEFAULT_STRENGTH, flow_longer_side: int = FLOW_LONGER_SIDE):
        if not 0.0 <= strength <= MAX_STRENGTH:
            raise ValueError(f"stabilizer strength must be from 0 to {MAX_STRENGTH}, not {strength}")
        if flow_longer_side < 16:
            raise ValueError("flow_longer_side must be at least 16 pixels")
        self.strength = float(strength)
        self.flow_longer_side = int(flow_longer_side)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._in_hw: tuple[int, int] | None = None
        self._out_hw: tuple[int, int] | None = None
        self._have_previous = False

    def reset(self) -> None:
        self._have_previous = False

    def _allocate(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        h, w = in_hw
        s = min(1.0, self.flow_longer_side / max(h, w))
        lw, lh = max(8, round(w * s)), max(8, round(h * s))
        oh, ow = out_hw
        self._low_wh = (lw, lh)
        self._small = [np.empty((lh, lw, 3), np.uint8), np.empty((lh, lw, 3), np.uint8)]   # current, previous
        self._gray = [np.empty((lh, lw), np.uint8), np.empty((lh, lw), np.uint8)]
        self._small_warped = np.empty((lh, lw, 3), np.uint8)
        self._change = np.empty((lh, lw), np.uint8)
        self._flow_back = np.empty((lh, lw, 2), np.float32)     # current -> previous
        self._flow_fwd = np.empty((lh, lw, 2), np.float32)      # previous -> current
        self._flow_fwd_at = np.empty((lh, lw, 2), np.float32)   # forward flow sampled where the back flow lands
        gx, gy = np.meshgrid(np.arange(lw, dtype=np.float32), np.arange(lh, dtype=np.float32))
        self._grid_lo = (gx, gy)
        self._map_lo = (np.empty((lh, lw), np.float32), np.empty((lh, lw), np.float32))
        self._check = np.empty((lh, lw), np.float32)
        self._bound = np.empty((lh, lw), np.float32)
        self._tmp_lo = np.empty((lh, lw), np.float32)
        self._ok = np.empty((lh, lw), bool)
        self._ok_also = np.empty((lh, lw), bool)
        self._weight_lo = np.empty((lh, lw), np.float32)
        self._weight_soft = np.empty((lh, lw), np.float32)
        self._kernel = np.ones((3, 3), np.uint8)
        gx, gy = np.meshgrid(np.arange(ow, dtype=np.float32), np.arange(oh, dtype=np.float32))
        self._grid_hi = (gx, gy)
        self._scale_hi = (ow / lw, oh / lh)
        self._flow_hi = np.empty((oh, ow, 2), np.float32)
        self._map_hi = (np.empty((oh, ow), np.float32), np.empty((oh, ow), np.float32))
        self._weight_hi = np.empty((oh, ow), np.float32)
        self._keep_hi = np.empty((oh, ow), np.float32)
        self._warped = np.empty((oh, ow, 3), np.uint8)
        self._previous = np.empty((oh, ow, 3), np.uint8)
        self._in_hw, self._out_hw = in_hw, out_hw
        self._have_previous = False

    def apply(self, in_rgb_hwc_u8: np.ndarray, out_rgb_hwc_u8: np.ndarray) -> None:
        in_hw, out_hw = in_rgb_hwc_u8.shape[:2], out_rgb_hwc_u8.shape[:2]
        if in_hw != self._in_hw or out_hw != self._out_hw:
            self._allocate(in_hw, out_hw)
        cur, prev = self._gray
        cv2.resize(in_rgb_hwc_u8, self._low_wh, dst=self._small[0], interpolation=cv2.INTER_AREA)
        cv2.cvtColor(self._small[0], cv2.COLOR_RGB2GRAY, dst=cur)
        if self._have_previous and self.strength > 0:
            self._blend(cur, prev, out_rgb_hwc_u8)
        np.copyto(self._previous, out_rgb_hwc_u8)
        self._gray.reverse()
        self._small.reverse()
        self._have_previous = True

    def _blend(self, cur: np.ndarray, prev: np.ndarray, out: np.ndarray) -> None:
        lw, lh = self._low_wh
        gx, gy = self._grid_lo
        mx, my = self._map_lo
        fb, ff, ffa = self._flow_back, self._flow_fwd, self._flow_fwd_at
        # DIS reads what the flow buffer holds even without an initial flow: start from zero. The clip
        # keeps remap's coordinates finite and small whatever the flow does on featureless frames.
        fb.fill(0)
        ff.fill(0)
        self._dis.calc(cur, prev, fb)
        self._dis.calc(prev, cur, ff)
        np.clip(fb, -lw, lw, out=fb)
        np.clip(ff, -lw, lw, out=ff)
        np.add(gx, fb[..., 0], out=mx)
        np.add(gy, fb[..., 1], out=my)
        # visible in both: the forward flow where the backward flow lands brings the pixel back
        cv2.remap(ff, mx, my, cv2.INTER_LINEAR, dst=ffa, borderMode=cv2.BORDER_REPLICATE)
        np.add(fb, ffa, out=ffa)
        np.multiply(ffa[..., 0], ffa[..., 0], out=self._check)
        np.multiply(ffa[..., 1], ffa[..., 1], out=self._tmp_lo)
        np.add(self._check, self._tmp_lo, out=self._check)
        np.multiply(fb[..., 0], fb[..., 0], out=self._bound)
        np.multiply(fb[..., 1], fb[..., 1], out=self._tmp_lo)
        np.add(self._bound, self._tmp_lo, out=self._bound)
        np.multiply(self._bound, 0.01, out=self._bound)
        np.add(self._bound, 0.5, out=self._bound)
        np.less(self._check, self._bound, out=self._ok)
        # inside the previous frame
        np.greater_equal(mx, 0, out=self._ok_also)
        np.logical_and(self._ok, self._ok_also, out=self._ok)
        np.less_equal(mx, lw - 1, out=self._ok_also)
        np.logical_and(self._ok, self._ok_also, out=self._ok)
        np.greater_equal(my, 0, out=self._ok_also)
        np.logical_and(self._ok, self._ok_also, out=self._ok)
        np.less_equal(my, lh - 1, out=self._ok_also)
        np.logical_and(self._ok, self._ok_also, out=self._ok)
        # the same surface: the input's colour (every channel) moved with the flow
        cv2.remap(self._small[1], mx, my, cv2.INTER_LINEAR, dst=self._small_warped, borderMode=cv2.BORDER_REPLICATE)
        cv2.absdiff(self._small[0], self._small_warped, dst=self._small_warped)
        np.max(self._small_warped, axis=2, out=self._change)
        np.less_equal(self._change, COLOUR_TOLERANCE, out=self._ok_also)
        np.logical_and(self._ok, self._ok_also, out=self._ok)
        # erode by one low-res pixel, then soften, so the blend fades out before an occlusion edge
        np.copyto(self._weight_lo, self._ok)
        np.multiply(self._weight_lo, self.strength, out=self._weight_lo)
        cv2.erode(self._weight_lo, self._kernel, dst=self._weight_soft)
        cv2.blur(self._weight_soft, (3, 3), dst=self._weight_lo)
        # to the output's size: flow (in output pixels) and weights
        oh, ow = self._out_hw
        cv2.resize(fb, (ow, oh), dst=self._flow_hi, interpolation=cv2.INTER_LINEAR)
        hx, hy = self._map_hi
        sx, sy = self._scale_hi
        np.multiply(self._flow_hi[..., 0], sx, out=hx)
        np.add(hx, self._grid_hi[0], out=hx)
        np.multiply(self._flow_hi[..., 1], sy, out=hy)
        np.add(hy, self._grid_hi[1], out=hy)
        cv2.remap(self._previous, hx, hy, cv2.INTER_CUBIC, dst=self._warped, borderMode=cv2.BORDER_REPLICATE)
        cv2.resize(self._weight_lo, (ow, oh), dst=self._weight_hi, interpolation=cv2.INTER_LINEAR)
        np.subtract(1.0, self._weight_hi, out=self._keep_hi)
        cv2.blendLinear(out, self._warped, self._keep_hi, self._weight_hi, dst=out)
