"""α maps: where on the picture α applies, per frame (``render --alpha-map``, ``live --alpha-map``).

A map is uint8 at the processing size: 255 keeps the α the controls give, 0 turns it to 0 (the
main net), values between scale it. The engine feeds it to the net, which averages it over each
tuning site's cells (``nets.tuning``). Sources (``SPEC``):

* an image file (any image; converted to grayscale, resized by area averaging);
* a video file: its frame k is the map of frame k (``at_end``: hold the last frame, or loop);
* ``radial[:cx=X,cy=Y,radius=R,width=W,invert=I]``: 1 inside ``radius`` of the centre (cx, cy),
  0 outside, a linear edge ``width`` wide. cx, cy are fractions of the width and height; radius and
  width are in units of the picture's shorter side. Defaults cx=0.5, cy=0.5, radius=0.3, width=0.2.
* ``linear:ANGLE[,cx=X,cy=Y,width=W,invert=I]``: a ramp rising towards ANGLE degrees (0 = to the
  right, 90 = up), 0.5 at (cx, cy); width 1 (the default) spans the picture's extent along it.

``invert=1`` swaps 0 and 1 (values between blend). Any parameter, ANGLE too, may be a keyframe
track (``radius=r.yaml``): an ordinary track file (``stream.keyframes``) whose ``alpha`` values are
that parameter's values over time, so the shape moves.

A source writes frame ``index`` (at ``t`` seconds) into a caller's buffer with ``map_into``; a
shape whose parameters are all numbers is computed once, an animated one per frame into
preallocated arrays.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Protocol, Union

import numpy as np

from dynastream.nets.errors import DynastreamError, short_repr
from dynastream.stream.keyframes import Track, load_track
from dynastream.stream.sources import IMAGE_SUFFIXES

AtEnd = Literal["hold", "loop"]
TRACK_EXTS = (".yaml", ".yml", ".csv")
Param = Union[float, Track]

# name -> (default, lowest, highest)
_SHAPE_PARAMS: dict[str, dict[str, tuple[float, float, float]]] = {
    "radial": {"cx": (0.5, -10.0, 10.0), "cy": (0.5, -10.0, 10.0), "radius": (0.3, 0.0, 100.0),
               "width": (0.2, 1e-3, 100.0), "invert": (0.0, 0.0, 1.0)},
    "linear": {"angle": (0.0, -1e6, 1e6), "cx": (0.5, -10.0, 10.0), "cy": (0.5, -10.0, 10.0),
               "width": (1.0, 1e-3, 100.0), "invert": (0.0, 0.0, 1.0)},
}
SHAPES = tuple(_SHAPE_PARAMS)
SPEC_HELP = ("an image, a video, radial[:cx=X,cy=Y,radius=R,width=W,invert=I] or "
             "linear:ANGLE[,cx=X,cy=Y,width=W,invert=I]")


class AlphaMapError(DynastreamError):
    pass


@dataclass(frozen=True)
class MapSpec:
    kind: Literal["image", "video", "radial", "linear"]
    path: Optional[Path] = None
    params: dict = field(default_factory=dict)    # shape parameter -> float, keyframe file path or Track
    text: str = ""


def parse_spec(text: str) -> MapSpec:
    """Check a map spec's form and that its files exist (nothing is decoded yet)."""
    text = str(text).strip()
    if not text:
        raise AlphaMapError(f"--alpha-map needs {SPEC_HELP}")
    name, _, rest = text.partition(":")
    if name in SHAPES and not Path(text).is_file():
        return MapSpec(name, params=_shape_params(name, rest, text), text=text)
    path = Path(text)
    if not path.exists():
        raise AlphaMapError(f"alpha map {short_repr(text)} is neither a file nor a shape ({SPEC_HELP})")
    if not path.is_file():
        raise AlphaMapError(f"alpha map {path} is a folder, not an image or a video")
    kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    return MapSpec(kind, path=path, text=text)


def _shape_params(name: str, rest: str, text: str) -> dict:
    known = _SHAPE_PARAMS[name]
    params: dict = {}
    items = [p.strip() for p in rest.split(",")] if rest.strip() else []
    if name == "linear":
        if not items or "=" in items[0]:
            raise AlphaMapError(f"alpha map {short_repr(text)}: linear needs an angle in degrees, "
                                "as in linear:45 (or linear:angle.yaml)")
        items[0] = f"angle={items[0]}"
    for item in items:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise AlphaMapError(f"alpha map {short_repr(text)}: {short_repr(item)} is not NAME=VALUE")
        if key not in known:
            raise AlphaMapError(f"alpha map {short_repr(text)}: {name} has no parameter {short_repr(key)} "
                                f"(it has {', '.join(known)})")
        if key in params:
            raise AlphaMapError(f"alpha map {short_repr(text)}: {key} is given twice")
        params[key] = _param_value(name, key, value, text)
    return params


def _param_value(shape: str, key: str, value: str, text: str) -> Union[float, Path]:
    _, lo, hi = _SHAPE_PARAMS[shape][key]
    if Path(value).suffix.lower() in TRACK_EXTS:
        if not Path(value).is_file():
            raise AlphaMapError(f"alpha map {short_repr(text)}: keyframe file {value} for {key} does not exist")
        return Path(value)
    try:
        number = float(value)
    except ValueError:
        raise AlphaMapError(f"alpha map {short_repr(text)}: {key} must be a number or a keyframe file "
                            f"(.yaml, .yml, .csv), not {short_repr(value)}") from None
    if not (math.isfinite(number) and lo <= number <= hi):
        raise AlphaMapError(f"alpha map {short_repr(text)}: {key} must be from {lo:g} to {hi:g}, not {value}")
    return number


class MapSource(Protocol):
    name: str

    def map_into(self, out_hw_u8: np.ndarray, t: float, index: int) -> np.ndarray: ...

    def close(self) -> None: ...


def open_map(spec: Union[str, MapSpec], size_wh: tuple[int, int], fps: float, at_end: AtEnd = "hold") -> MapSource:
    """A map source making ``size_wh`` maps; ``fps`` converts frame keys of parameter tracks."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "image":
        return ImageMap(spec.path, size_wh)
    if spec.kind == "video":
        return VideoMap(spec.path, size_wh, at_end)
    return ShapeMap(spec, size_wh, fps)


def _to_gray(rgb_or_gray: np.ndarray, size_wh: tuple[int, int], out_hw_u8: np.ndarray) -> None:
    """Grayscale (luma) and resized into ``out_hw_u8``: area averaging down, bilinear up."""
    import cv2

    gray = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    if (w, h) == tuple(size_wh):
        np.copyto(out_hw_u8, gray)
        return
    shrink = w >= size_wh[0] and h >= size_wh[1]
    cv2.resize(gray, tuple(size_wh), dst=out_hw_u8, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class ImageMap:
    def __init__(self, path: Path, size_wh: tuple[int, int]):
        import cv2

        from dynastream.stream.sources import decode_image_file

        self.name = str(path)
        gray = decode_image_file(path, cv2.IMREAD_GRAYSCALE, AlphaMapError, "alpha map ")
        self.map_hw_u8 = np.empty((size_wh[1], size_wh[0]), np.uint8)
        _to_gray(gray, size_wh, self.map_hw_u8)

    def map_into(self, out_hw_u8: np.ndarray, t: float, index: int) -> np.ndarray:
        np.copyto(out_hw_u8, self.map_hw_u8)
        return out_hw_u8

    def close(self) -> None:
        pass


class VideoMap:
    """Frame k of the map video is the map of frame k. Frames are decoded in order; a smaller
    index than the last (a looping source) starts the map video again."""

    def __init__(self, path: Path, size_wh: tuple[int, int], at_end: AtEnd = "hold"):
        from dynastream.stream.ring import Frame
        from dynastream.stream.sources import SourceError, VideoFileSource

        self.name, self.size_wh, self.at_end = str(path), size_wh, at_end
        try:
            self._source = VideoFileSource(str(path))
        except SourceError as e:
            raise AlphaMapError(f"alpha map: {e}") from None
        self._path = path
        self._frame = Frame(np.empty(self._source.shape_hwc, np.uint8))
        self.map_hw_u8 = np.full((size_wh[1], size_wh[0]), 255, np.uint8)
        self._next = 0            # index of the next map frame to decode
        self._length: Optional[int] = None

    def _restart(self) -> None:
        from dynastream.stream.sources import VideoFileSource

        self._source.close()
        self._source = VideoFileSource(str(self._path))
        self._next = 0

    def _decode_next(self) -> bool:
        from dynastream.stream.sources import SourceError

        try:
            ok = self._source.read_into(self._frame)
        except SourceError as e:
            raise AlphaMapError(f"alpha map: {e}") from None
        if ok:
            _to_gray(self._frame.rgb_hwc_u8, self.size_wh, self.map_hw_u8)
            self._next += 1
        elif self._next == 0:
            raise AlphaMapError(f"alpha map {self.name} has no frames")
        else:
            self._length = self._next
        return ok

    def map_into(self, out_hw_u8: np.ndarray, t: float, index: int) -> np.ndarray:
        if self.at_end == "loop" and self._length:
            index %= self._length
        if index < self._next - 1:
            self._restart()
        while self._next <= index:
            if not self._decode_next():
                if self.at_end == "hold":
                    break
                self._restart()
                index %= self._length
        np.copyto(out_hw_u8, self.map_hw_u8)
        return out_hw_u8

    def close(self) -> None:
        self._source.close()


class ShapeMap:
    """``radial`` or ``linear``, computed in float32 into preallocated arrays."""

    def __init__(self, spec: MapSpec, size_wh: tuple[int, int], fps: float):
        self.name, self.kind, self.fps = spec.text, spec.kind, fps
        w, h = size_wh
        self.size_wh = size_wh
        defaults = _SHAPE_PARAMS[spec.kind]
        self.names = tuple(defaults)
        self.constant = np.array([d for d, _, _ in defaults.values()], np.float64)
        self.tracks: dict[int, Track] = {}
        for key, value in spec.params.items():
            i = self.names.index(key)
            if isinstance(value, Path):
                self.tracks[i] = _param_track(value, key, *defaults[key][1:])
            elif isinstance(value, Track):    # made in code (bench, tests)
                self.tracks[i] = value
            else:
                self.constant[i] = value
        self._value = np.zeros(1, np.float32)
        self._p = self.constant.copy()
        # Pixel centres in pixels, as a row (1, W) and a column (H, 1): broadcast to (H, W).
        self._x = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
        self._y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
        self._bx = np.empty_like(self._x)
        self._by = np.empty_like(self._y)
        self._f = np.empty((h, w), np.float32)
        self.map_hw_u8 = np.empty((h, w), np.uint8)
        if not self.tracks:
            self._compute(self.constant)

    def params_at(self, t: float, index: int) -> np.ndarray:
        p = self._p
        for i, track in self.tracks.items():
            p[i] = track.alpha_into(self._value, t=t, frame=index, fps=self.fps)[0]
        return p

    def _compute(self, p: np.ndarray) -> None:
        w, h = self.size_wh
        f, bx, by = self._f, self._bx, self._by
        if self.kind == "radial":
            cx, cy, radius, width, invert = p
            side = float(min(w, h))
            np.subtract(self._x, cx * w, out=bx)
            np.multiply(bx, bx, out=bx)
            np.subtract(self._y, cy * h, out=by)
            np.multiply(by, by, out=by)
            np.add(bx, by, out=f)
            np.sqrt(f, out=f)                                     # distance in pixels
            # 1 up to radius - width/2, 0 from radius + width/2
            np.multiply(f, -1.0 / (width * side), out=f)
            f += (radius + width / 2) / width
        else:
            angle, cx, cy, width, invert = p
            theta = math.radians(angle)
            c, s = math.cos(theta), -math.sin(theta)              # image rows grow downwards
            extent = abs(c) * w + abs(s) * h
            np.subtract(self._x, cx * w, out=bx)
            np.multiply(bx, c / (extent * width), out=bx)
            np.subtract(self._y, cy * h, out=by)
            np.multiply(by, s / (extent * width), out=by)
            np.add(bx, by, out=f)
            f += 0.5
        np.clip(f, 0.0, 1.0, out=f)
        if invert:
            np.multiply(f, 1.0 - 2.0 * invert, out=f)
            f += invert
        np.multiply(f, 255.0, out=f)
        np.rint(f, out=f)
        self.map_hw_u8[...] = f

    def map_into(self, out_hw_u8: np.ndarray, t: float, index: int) -> np.ndarray:
        if self.tracks:
            self._compute(self.params_at(t, index))
        np.copyto(out_hw_u8, self.map_hw_u8)
        return out_hw_u8

    def close(self) -> None:
        pass


def _param_track(path: Path, key: str, lo: float, hi: float) -> Track:
    track = load_track(path, (key,), (lo, hi), allow_extrapolation=True)
    values = track.arrays.alpha_ns[:, 0]
    bad = np.flatnonzero((values < lo) | (values > hi))
    if len(bad):
        i = int(bad[0])
        raise AlphaMapError(f"{path}: {track.arrays.where(i)}: {key} {float(values[i]):g} is outside "
                            f"{lo:g} to {hi:g}")
    return track
