"""α tracks: keyframes from YAML or CSV, evaluated per frame.

YAML::

    interpolation: linear        # step | linear | smooth (default linear)
    keys:
      - {t: 0.0, alpha: 0.0}     # t in seconds, or frame: N
      - {t: 2.5, alpha: 1.0}
      - {frame: 150, alpha: {res3_in: 0.2, up1_in: 1.0, out_in: 0.5}}   # per site

CSV: a header ``t,alpha`` or ``frame,alpha`` (or ``t,<site>,<site>,...`` for per-site columns),
then one key per row. ``smooth`` eases in and out between keys (smoothstep), so it never leaves
the range of its two keys. Two keys at the same position make a cut. Before the first key and
after the last the track holds the end value.
"""

import bisect
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np

from nets.errors import DynastreamError

Interpolation = Literal["step", "linear", "smooth"]
INTERPOLATIONS: tuple[str, ...] = ("step", "linear", "smooth")
Axis = Literal["t", "frame"]


class KeyframeError(DynastreamError):
    pass


@dataclass(frozen=True)
class Key:
    axis: Axis            # "t": position in seconds, "frame": position as a frame index
    position: float
    alpha: np.ndarray     # (n_sites,) float32
    where: str            # "line 7" or "key #3", for error messages


class Track:
    """A validated α track for a model's sites. Evaluation is pure: ``alpha_at`` returns the α
    per site at a time and/or frame; ``alpha_into`` writes it into a preallocated array."""

    def __init__(self, keys: Sequence[Key], sites: Sequence[str], interpolation: Interpolation = "linear",
                 name: str = "track"):
        if not keys:
            raise KeyframeError(f"{name}: the track has no keys")
        if interpolation not in INTERPOLATIONS:
            raise KeyframeError(f"{name}: interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                                f"not {interpolation!r}")
        self.keys = list(keys)
        self.sites = tuple(sites)
        self.interpolation: Interpolation = interpolation
        self.name = name
        self.axes = {k.axis for k in self.keys}
        self._cache: dict = {}

    # -- evaluation ----------------------------------------------------------------------------

    def alpha_at(self, t: Optional[float] = None, frame: Optional[int] = None,
                 fps: Optional[float] = None) -> np.ndarray:
        out = np.empty(len(self.sites), np.float32)
        self.alpha_into(out, t=t, frame=frame, fps=fps)
        return out

    def alpha_into(self, out: np.ndarray, t: Optional[float] = None, frame: Optional[int] = None,
                   fps: Optional[float] = None) -> np.ndarray:
        """A frame-keyed track is evaluated on frame indices when ``frame`` is given, a time-keyed
        track on seconds when ``t`` is given; otherwise (or for a mixed track) on seconds, with
        frame positions converted at ``fps``."""
        if self.axes == {"frame"} and frame is not None:
            axis, x = "frame", float(frame)
        elif self.axes == {"t"} and t is not None:
            axis, x = "t", float(t)
        else:
            if fps is None or fps <= 0:
                raise ValueError(f"{self.name}: evaluating this track needs fps (keys use {sorted(self.axes)})")
            axis, x = "t", float(t) if t is not None else float(frame) / fps
        positions, values = self._axis(axis, fps)
        i = bisect.bisect_right(positions, x)
        if i == 0:
            out[:] = values[0]
        elif i == len(positions) or self.interpolation == "step":
            out[:] = values[i - 1]
        else:
            x0, x1 = positions[i - 1], positions[i]
            u = (x - x0) / (x1 - x0)
            if self.interpolation == "smooth":
                u = u * u * (3.0 - 2.0 * u)
            np.multiply(values[i - 1], 1.0 - u, out=out)
            out += u * values[i]
        return out

    def _axis(self, axis: Axis, fps: Optional[float]) -> tuple[list[float], np.ndarray]:
        cache_key = (axis, fps)
        if cache_key not in self._cache:
            def pos(k: Key) -> float:
                if k.axis == axis:
                    return k.position
                return k.position / fps if axis == "t" else k.position * fps
            ordered = sorted(self.keys, key=pos)   # stable: keys at the same position stay in file order
            self._cache[cache_key] = ([pos(k) for k in ordered], np.stack([k.alpha for k in ordered]))
        return self._cache[cache_key]

    # -- validation and saving -------------------------------------------------------------------

    def check_range(self, alpha_range: tuple[float, float], allow_extrapolation: bool = False) -> None:
        lo, hi = alpha_range
        if allow_extrapolation:
            return
        for k in self.keys:
            bad = [(s, float(a)) for s, a in zip(self.sites, k.alpha) if not lo <= a <= hi]
            if bad:
                site, value = bad[0]
                raise KeyframeError(f"{self.name}: {k.where}: alpha {value:g} for {site} is outside the model's "
                                    f"range [{lo:g}, {hi:g}] (use --allow-extrapolation to go beyond it)")

    def save(self, path: Union[str, Path]) -> Path:
        """Write the track as YAML (``.yaml``/``.yml``) or CSV (``.csv``)."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            if len(self.axes) > 1:
                raise KeyframeError(f"{path}: a track mixing t and frame keys can only be saved as YAML")
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["t" if k.axis == "t" else "frame" for k in self.keys[:1]] + list(self.sites))
            for k in self.keys:
                writer.writerow([_num(k.position)] + [repr(float(a)) for a in k.alpha])
            text = buf.getvalue()
        else:
            lines = [f"interpolation: {self.interpolation}", "keys:"]
            for k in self.keys:
                if len(set(k.alpha.tolist())) == 1:
                    value = repr(float(k.alpha[0]))
                else:
                    value = "{" + ", ".join(f"{s}: {float(a)!r}" for s, a in zip(self.sites, k.alpha)) + "}"
                lines.append(f"  - {{{k.axis}: {_num(k.position)}, alpha: {value}}}")
            text = "\n".join(lines) + "\n"
        path.write_text(text)
        return path

    @classmethod
    def from_samples(cls, times_s: Sequence[float], alphas: np.ndarray, sites: Sequence[str],
                     name: str = "recording") -> "Track":
        """A time-keyed linear track through recorded (time, α per site) samples."""
        keys = [Key("t", float(t), np.asarray(a, np.float32).reshape(len(sites)), f"sample #{i + 1}")
                for i, (t, a) in enumerate(zip(times_s, alphas))]
        return cls(keys, sites, "linear", name)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# -- loading ----------------------------------------------------------------------------------

def load_track(path: Union[str, Path], sites: Sequence[str], alpha_range: tuple[float, float],
               allow_extrapolation: bool = False) -> Track:
    """Read a YAML or CSV track for a model with ``sites`` and check it against ``alpha_range``."""
    path = Path(path)
    if not path.is_file():
        raise KeyframeError(f"keyframe file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise KeyframeError(f"cannot read keyframe file {path} ({e.__class__.__name__})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        track = parse_csv(text, sites, str(path))
    elif suffix in (".yaml", ".yml"):
        track = parse_yaml(text, sites, str(path))
    else:
        raise KeyframeError(f"{path}: keyframe files must end in .yaml, .yml or .csv")
    track.check_range(alpha_range, allow_extrapolation)
    return track


def _alpha_value(raw, sites: Sequence[str], name: str, where: str) -> np.ndarray:
    if isinstance(raw, dict):
        unknown = [s for s in raw if s not in sites]
        missing = [s for s in sites if s not in raw]
        if unknown:
            raise KeyframeError(f"{name}: {where}: unknown site {unknown[0]!r} (the model's sites: {', '.join(sites)})")
        if missing:
            raise KeyframeError(f"{name}: {where}: per-site alpha misses site(s) {', '.join(missing)}")
        values = [raw[s] for s in sites]
    else:
        values = [raw] * len(sites)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise KeyframeError(f"{name}: {where}: alpha must be a finite number, not {v!r}")
        out.append(float(v))
    return np.array(out, np.float32)


def _position(raw: dict, name: str, where: str) -> tuple[Axis, float]:
    has_t, has_frame = "t" in raw, "frame" in raw
    if has_t == has_frame:
        raise KeyframeError(f"{name}: {where}: a key needs exactly one of 't' (seconds) or 'frame'")
    value = raw["t"] if has_t else raw["frame"]
    if has_frame and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise KeyframeError(f"{name}: {where}: frame must be a whole number >= 0, not {value!r}")
    if has_t and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
        raise KeyframeError(f"{name}: {where}: t must be a number of seconds >= 0, not {value!r}")
    return ("t" if has_t else "frame"), float(value)


def parse_yaml(text: str, sites: Sequence[str], name: str = "track") -> Track:
    import yaml

    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise KeyframeError(f"{name}: {where}not valid YAML ({getattr(e, 'problem', None) or 'syntax error'})") from None
    if not isinstance(data, dict):
        raise KeyframeError(f"{name}: expected a mapping with 'keys' (and optionally 'interpolation')")
    unknown = set(data) - {"interpolation", "keys"}
    if unknown:
        raise KeyframeError(f"{name}: unknown top-level key {sorted(unknown)[0]!r} (allowed: interpolation, keys)")
    raw_keys = data.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise KeyframeError(f"{name}: 'keys' must be a non-empty list of {{t or frame, alpha}} entries")
    key_nodes = next(v for k, v in root.value if k.value == "keys").value
    keys = []
    for i, (raw, node) in enumerate(zip(raw_keys, key_nodes)):
        where = f"line {node.start_mark.line + 1} (key #{i + 1})"
        if not isinstance(raw, dict):
            raise KeyframeError(f"{name}: {where}: a key must be a mapping like {{t: 1.5, alpha: 0.5}}")
        extra = set(raw) - {"t", "frame", "alpha"}
        if extra:
            raise KeyframeError(f"{name}: {where}: unknown field {sorted(extra)[0]!r} (allowed: t, frame, alpha)")
        if "alpha" not in raw:
            raise KeyframeError(f"{name}: {where}: the key has no alpha")
        axis, position = _position(raw, name, where)
        keys.append(Key(axis, position, _alpha_value(raw["alpha"], sites, name, where), where))
    return Track(keys, sites, data.get("interpolation", "linear"), name)


def parse_csv(text: str, sites: Sequence[str], name: str = "track") -> Track:
    rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if row and not row[0].lstrip().startswith("#") and any(c.strip() for c in row)]
    if not rows:
        raise KeyframeError(f"{name}: the file is empty")
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    if header[0] not in ("t", "frame") or len(header) < 2:
        raise KeyframeError(f"{name}: line {header_line}: the header must be 't,alpha' or 'frame,alpha' "
                            f"(or per-site columns), not {','.join(header)!r}")
    columns = header[1:]
    if columns != ["alpha"]:
        unknown = [c for c in columns if c not in sites]
        if unknown:
            raise KeyframeError(f"{name}: line {header_line}: unknown column {unknown[0]!r} "
                                f"(use alpha or the model's sites: {', '.join(sites)})")
    keys = []
    for line, row in rows[1:]:
        where = f"line {line}"
        if len(row) != len(header):
            raise KeyframeError(f"{name}: {where}: expected {len(header)} values, found {len(row)}")
        try:
            numbers = [float(c) for c in row]
        except ValueError:
            raise KeyframeError(f"{name}: {where}: values must be numbers, found {','.join(row)!r}") from None
        pos = int(numbers[0]) if header[0] == "frame" and numbers[0].is_integer() else numbers[0]
        axis, position = _position({header[0]: pos}, name, where)
        raw_alpha = numbers[1] if columns == ["alpha"] else dict(zip(columns, numbers[1:]))
        keys.append(Key(axis, position, _alpha_value(raw_alpha, sites, name, where), where))
    if not keys:
        raise KeyframeError(f"{name}: the file has a header but no keys")
    return Track(keys, sites, "linear", name)
