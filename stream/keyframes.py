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

Loading is linear in the number of keys: a recorded hour (~200k keys) loads in about a second.
CSV is the natural form for long takes; YAML in the one-key-per-line form ``Track.save`` writes is
read as fast, and other (hand-written) YAML goes through the one YAML reader, up to 1 MB.
"""

import bisect
import csv
import io
import itertools
import math
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, Union

import numpy as np

from dynastream.nets import yamlfile
from dynastream.nets.errors import DynastreamError, short_repr

Interpolation = Literal["step", "linear", "smooth"]
INTERPOLATIONS: tuple[str, ...] = ("step", "linear", "smooth")
Axis = Literal["t", "frame"]

MAX_TRACK_BYTES = 64_000_000        # hours of per-site keys at 60 fps
MAX_KEYS = 1_000_000                # 4.6 hours at 60 fps
MAX_FREEFORM_YAML_BYTES = yamlfile.MAX_BYTES   # YAML not in Track.save's one-key-per-line form
_CSV_CHUNK_ROWS = 65536             # rows converted to numbers at a time (bounds the memory of str cells)


class KeyframeError(DynastreamError):
    pass


@dataclass(frozen=True)
class Key:
    axis: Axis            # "t": position in seconds, "frame": position as a frame index
    position: float
    alpha: np.ndarray     # (n_sites,) float32
    where: str            # "line 7" or "key #3", for error messages


@dataclass(frozen=True)
class KeyArrays:
    """n keys as arrays, the way a track holds them (a long take has ~200k keys)."""

    frame_axis: np.ndarray         # (n,) bool: the position is a frame index, else seconds
    position: np.ndarray           # (n,) float64
    alpha_ns: np.ndarray           # (n, n_sites) float32
    where: Callable[[int], str]    # key index -> "line 7 (key #3)", for error messages

    @classmethod
    def of(cls, keys: Sequence[Key], n_sites: int) -> "KeyArrays":
        alpha_ns = np.zeros((len(keys), n_sites), np.float32)
        for i, k in enumerate(keys):
            alpha_ns[i] = np.asarray(k.alpha, np.float32).reshape(n_sites)
        return cls(np.array([k.axis == "frame" for k in keys], bool),
                   np.array([k.position for k in keys], np.float64), alpha_ns, [k.where for k in keys].__getitem__)

    def __len__(self) -> int:
        return len(self.position)


class Track:
    """A validated α track for a model's sites. Evaluation is pure: ``alpha_at`` returns the α
    per site at a time and/or frame; ``alpha_into`` writes it into a preallocated array."""

    def __init__(self, keys: Union[Sequence[Key], KeyArrays], sites: Sequence[str],
                 interpolation: Interpolation = "linear", name: str = "track"):
        self.sites = tuple(sites)
        arrays = keys if isinstance(keys, KeyArrays) else KeyArrays.of(keys, len(self.sites))
        if not len(arrays):
            raise KeyframeError(f"{name}: the track has no keys")
        if len(arrays) > MAX_KEYS:
            raise KeyframeError(f"{name}: {len(arrays)} keys are more than the {MAX_KEYS} a track may have")
        if interpolation not in INTERPOLATIONS:
            raise KeyframeError(f"{name}: interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                                f"not {short_repr(interpolation)}")
        _check_values(arrays, name)
        self.arrays = arrays
        self.interpolation: Interpolation = interpolation
        self.name = name
        self.axes = {"frame", "t"} if 0 < arrays.frame_axis.sum() < len(arrays) else \
            {"frame" if arrays.frame_axis[0] else "t"}
        self._cache: dict = {}

    @property
    def keys(self) -> list[Key]:
        a = self.arrays
        return [Key("frame" if a.frame_axis[i] else "t", float(a.position[i]), a.alpha_ns[i], a.where(i))
                for i in range(len(a))]

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
            a = self.arrays
            position = a.position.copy()
            other = a.frame_axis != (axis == "frame")
            if other.any():
                position[other] = position[other] / fps if axis == "t" else position[other] * fps
            order = np.argsort(position, kind="stable")   # keys at the same position stay in file order
            self._cache[cache_key] = (position[order].tolist(), a.alpha_ns[order])
        return self._cache[cache_key]

    # -- validation and saving -------------------------------------------------------------------

    def check_range(self, alpha_range: tuple[float, float], allow_extrapolation: bool = False) -> None:
        lo, hi = alpha_range
        if allow_extrapolation:
            return
        alpha_ns = self.arrays.alpha_ns
        outside = (alpha_ns < lo) | (alpha_ns > hi)
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise KeyframeError(f"{self.name}: {self.arrays.where(int(i))}: alpha {float(alpha_ns[i, j]):g} for "
                                f"{self.sites[j]} is outside the model's range [{lo:g}, {hi:g}] "
                                "(use --allow-extrapolation to go beyond it)")

    def save(self, path: Union[str, Path]) -> Path:
        """Write the track as YAML (``.yaml``/``.yml``) or CSV (``.csv``)."""
        path = Path(path)
        path.write_text(self.text(path))
        return path

    def text(self, path: Union[str, Path]) -> str:
        """The file ``save`` writes to ``path`` (its suffix picks CSV or YAML)."""
        path = Path(path)
        a = self.arrays
        positions = [_num(p) for p in a.position.tolist()]
        if path.suffix.lower() == ".csv":
            if len(self.axes) > 1:
                raise KeyframeError(f"{path}: a track mixing t and frame keys can only be saved as YAML")
            lines = [",".join(["frame" if a.frame_axis[0] else "t", *self.sites])]
            lines += [f"{p},{','.join(map(_float, row))}" for p, row in zip(positions, a.alpha_ns.tolist())]
        else:
            lines = [f"interpolation: {self.interpolation}", "keys:"]
            axes = ["frame" if f else "t" for f in a.frame_axis.tolist()]
            for axis, p, row in zip(axes, positions, a.alpha_ns.tolist()):
                if row.count(row[0]) == len(row):
                    value = _float(row[0])
                else:
                    value = "{" + ", ".join(f"{s}: {_float(x)}" for s, x in zip(self.sites, row)) + "}"
                lines.append(f"  - {{{axis}: {p}, alpha: {value}}}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_samples(cls, times_s: Sequence[float], alphas: np.ndarray, sites: Sequence[str],
                     name: str = "recording") -> "Track":
        """A time-keyed linear track through recorded (time, α per site) samples."""
        position = np.asarray(times_s, np.float64).reshape(-1)
        alpha_ns = np.asarray(alphas, np.float32).reshape(len(position), len(sites))
        arrays = KeyArrays(np.zeros(len(position), bool), position, alpha_ns, lambda i: f"sample #{i + 1}")
        return cls(arrays, sites, "linear", name)


def _float(x: float) -> str:
    """A float as YAML 1.1 reads it back as a float: PyYAML takes ``1e-05`` (no dot) for a string."""
    text = repr(float(x))
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else _float(x)


def _check_values(a: KeyArrays, name: str) -> None:
    """Every track, whatever its source, has finite α, positions >= 0 and whole frame numbers."""
    bad_alpha = ~np.isfinite(a.alpha_ns).all(axis=1)
    bad_t = ~a.frame_axis & ~(np.isfinite(a.position) & (a.position >= 0))
    bad_frame = a.frame_axis & ~(np.isfinite(a.position) & (a.position >= 0) & (a.position == np.round(a.position)))
    first = {what: np.flatnonzero(bad) for what, bad in (("alpha", bad_alpha), ("t", bad_t), ("frame", bad_frame))}
    first = {what: int(i[0]) for what, i in first.items() if len(i)}
    if not first:
        return
    what, i = min(first.items(), key=lambda item: item[1])
    where = f"{name}: {a.where(i)}"
    if what == "alpha":
        value = a.alpha_ns[i][~np.isfinite(a.alpha_ns[i])][0]
        raise KeyframeError(f"{where}: alpha must be a finite number, not {float(value)}")
    if what == "t":
        raise KeyframeError(f"{where}: t must be a number of seconds >= 0, not {float(a.position[i]):g}")
    raise KeyframeError(f"{where}: frame must be a whole number >= 0, not {float(a.position[i]):g}")


# -- loading ----------------------------------------------------------------------------------

def load_track(path: Union[str, Path], sites: Sequence[str], alpha_range: tuple[float, float],
               allow_extrapolation: bool = False) -> Track:
    """Read a YAML or CSV track for a model with ``sites`` and check it against ``alpha_range``."""
    path = Path(path)
    if not path.is_file():
        raise KeyframeError(f"keyframe file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise KeyframeError(f"{path}: keyframe files must end in .yaml, .yml or .csv")
    size_bytes = path.stat().st_size
    if size_bytes > MAX_TRACK_BYTES:
        raise KeyframeError(f"keyframe file {path} is {size_bytes / 1e6:.0f} MB, more than the "
                            f"{MAX_TRACK_BYTES / 1e6:.0f} MB a track may have")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise KeyframeError(f"cannot read keyframe file {path} ({e.__class__.__name__})") from None
    n_lines = text.count("\n")
    if n_lines > MAX_KEYS + 1000:
        raise KeyframeError(f"keyframe file {path} has {n_lines} lines, more than a track of at most "
                            f"{MAX_KEYS} keys needs")
    track = parse_csv(text, sites, str(path)) if suffix == ".csv" else parse_yaml(text, sites, str(path))
    track.check_range(alpha_range, allow_extrapolation)
    return track


def _alpha_value(raw, sites: Sequence[str], name: str, where: str) -> np.ndarray:
    if isinstance(raw, dict):
        unknown = [s for s in raw if s not in sites]
        missing = [s for s in sites if s not in raw]
        if unknown:
            raise KeyframeError(f"{name}: {where}: unknown site {short_repr(unknown[0])} "
                                f"(the model's sites: {', '.join(sites)})")
        if missing:
            raise KeyframeError(f"{name}: {where}: per-site alpha misses site(s) {', '.join(missing)}")
        values = [raw[s] for s in sites]
    else:
        values = [raw] * len(sites)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise KeyframeError(f"{name}: {where}: alpha must be a finite number, not {short_repr(v)}")
        out.append(float(v))
    return np.array(out, np.float32)


def _position(raw: dict, name: str, where: str) -> tuple[Axis, float]:
    has_t, has_frame = "t" in raw, "frame" in raw
    if has_t == has_frame:
        raise KeyframeError(f"{name}: {where}: a key needs exactly one of 't' (seconds) or 'frame'")
    value = raw["t"] if has_t else raw["frame"]
    if has_frame and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise KeyframeError(f"{name}: {where}: frame must be a whole number >= 0, not {short_repr(value)}")
    if has_t and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
        raise KeyframeError(f"{name}: {where}: t must be a number of seconds >= 0, not {short_repr(value)}")
    return ("t" if has_t else "frame"), float(value)


def parse_yaml(text: str, sites: Sequence[str], name: str = "track") -> Track:
    recorded = _parse_recorded_yaml(text, sites, name)
    if recorded is not None:
        return recorded
    size_bytes = len(text.encode())
    if size_bytes > MAX_FREEFORM_YAML_BYTES:
        raise KeyframeError(f"{name}: {size_bytes / 1e6:.1f} MB of YAML is too much to read key by key (at most "
                            f"{MAX_FREEFORM_YAML_BYTES / 1e6:.0f} MB): write a long track as CSV (t,alpha), or with "
                            "one {t: ..., alpha: ...} key per line as dynastream records them")
    data, root = yamlfile.parse_with_node(text, name, error=KeyframeError)
    if not isinstance(data, dict):
        raise KeyframeError(f"{name}: expected a mapping with 'keys' (and optionally 'interpolation')")
    unknown = set(data) - {"interpolation", "keys"}
    if unknown:
        raise KeyframeError(f"{name}: unknown top-level key {short_repr(sorted(map(str, unknown))[0])} "
                            "(allowed: interpolation, keys)")
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
            raise KeyframeError(f"{name}: {where}: unknown field {short_repr(sorted(map(str, extra))[0])} "
                                "(allowed: t, frame, alpha)")
        if "alpha" not in raw:
            raise KeyframeError(f"{name}: {where}: the key has no alpha")
        axis, position = _position(raw, name, where)
        keys.append(Key(axis, position, _alpha_value(raw["alpha"], sites, name, where), where))
    return Track(keys, sites, data.get("interpolation", "linear"), name)


# YAML 1.1 numbers whose meaning is the same for PyYAML and Python's float(): a plain integer
# (no leading zero: 017 is octal in YAML 1.1) or digits with a dot and an optional signed exponent.
_NUMBER = r"-?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?|0|-?[1-9][0-9]*"
_KEY_LINE = re.compile(rf"( *)- \{{(?:t: ({_NUMBER})|frame: (0|[1-9][0-9]*)), "
                       rf"alpha: (?:({_NUMBER})|\{{([^{{}}]*)\}})\}} *\r?")
_SITE_VALUE = re.compile(rf"([A-Za-z_][A-Za-z0-9_]*): ({_NUMBER})")
_INTERPOLATION_LINE = re.compile(r"interpolation: (step|linear|smooth) *\r?")


def _parse_recorded_yaml(text: str, sites: Sequence[str], name: str) -> Optional[Track]:
    """The track in ``text`` if it has exactly the form ``Track.save`` writes (an optional
    ``interpolation:`` line, ``keys:``, then one flow mapping of plain numbers per line), read
    line by line in linear time; None for any other YAML, which the YAML reader then reads.
    Every value accepted here means the same to PyYAML, so both paths give the same track."""
    lines = text.split("\n")
    interpolation, i = "linear", 0
    while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
        i += 1
    if i < len(lines) and (m := _INTERPOLATION_LINE.fullmatch(lines[i])):
        interpolation, i = m.group(1), i + 1
    if i >= len(lines) or lines[i].rstrip() != "keys:":
        return None
    n_sites, indent = len(sites), None
    frame_axis, position, alpha, line_no = array("b"), array("d"), array("d"), array("q")
    for n, line in enumerate(itertools.islice(lines, i + 1, None), start=i + 2):
        m = _KEY_LINE.fullmatch(line)
        if m is None:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            return None
        spaces, t, frame, uniform, per_site = m.groups()
        if indent is None:
            indent = spaces
        elif spaces != indent:
            return None
        frame_axis.append(t is None)
        position.append(float(frame if t is None else t))
        if uniform is not None:
            alpha.extend([float(uniform)] * n_sites)
        else:
            values = _site_values(per_site, sites)
            if values is None:
                return None
            alpha.extend(values)
        line_no.append(n)
    if not line_no:
        return None
    alpha_ns = np.frombuffer(alpha, np.float64).reshape(-1, n_sites).astype(np.float32)
    lines_k = np.frombuffer(line_no, np.int64)
    arrays = KeyArrays(np.frombuffer(frame_axis, np.int8).astype(bool), np.frombuffer(position, np.float64),
                       alpha_ns, lambda k: f"line {int(lines_k[k])} (key #{k + 1})")
    return Track(arrays, sites, interpolation, name)


def _site_values(text: str, sites: Sequence[str]) -> Optional[list[float]]:
    """``res3_in: 0.2, up1_in: 1.0, out_in: 0.5`` -> the values in ``sites`` order; None unless
    it names each site exactly once."""
    values = {}
    for item in text.split(", "):
        m = _SITE_VALUE.fullmatch(item)
        if m is None or m.group(1) in values:
            return None
        values[m.group(1)] = float(m.group(2))
    if sorted(values) != sorted(sites):
        return None
    return [values[s] for s in sites]


def parse_csv(text: str, sites: Sequence[str], name: str = "track") -> Track:
    reader = csv.reader(io.StringIO(text))
    header_line, header = next(((n, row) for n, row in enumerate(reader, start=1) if _is_key_row(row)), (0, None))
    if header is None:
        raise KeyframeError(f"{name}: the file is empty")
    header = [h.strip() for h in header]
    if header[0] not in ("t", "frame") or len(header) < 2:
        raise KeyframeError(f"{name}: line {header_line}: the header must be 't,alpha' or 'frame,alpha' "
                            f"(or per-site columns), not {short_repr(','.join(header))}")
    site_columns = _csv_site_columns(header[1:], sites, name, header_line)
    tables, line_numbers, line = [], [], header_line
    while chunk := list(itertools.islice(reader, _CSV_CHUNK_ROWS)):
        table, lines = _csv_chunk(chunk, line + 1, len(header), name)
        tables.append(table)
        line_numbers.append(lines)
        line += len(chunk)
    table, lines_k = np.concatenate(tables or [np.zeros((0, len(header)))]), np.concatenate(line_numbers or [[]])
    if not len(table):
        raise KeyframeError(f"{name}: the file has a header but no keys")
    alpha_ns = table[:, 1:][:, site_columns].astype(np.float32)
    frame_axis = np.full(len(table), header[0] == "frame")
    arrays = KeyArrays(frame_axis, table[:, 0].copy(), alpha_ns, lambda k: f"line {int(lines_k[k])}")
    return Track(arrays, sites, "linear", name)


def _is_key_row(row: list[str]) -> bool:
    """Not a blank line nor a ``#`` comment."""
    return bool(row) and not row[0].lstrip().startswith("#") and bool("".join(row).strip())


def _csv_chunk(chunk: list[list[str]], first_line: int, width: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """CSV rows -> ((n, width) float64, (n,) line numbers). The common case (numbers only, no
    blank or comment line) is converted in one call; otherwise row by row, naming the bad line."""
    try:
        table = np.array(chunk, np.float64)
        if table.ndim == 2 and table.shape[1] == width:
            return table, np.arange(first_line, first_line + len(chunk))
    except ValueError:
        pass
    numbered = [(n, row) for n, row in enumerate(chunk, start=first_line) if _is_key_row(row)]
    for n, row in numbered:
        if len(row) != width:
            raise KeyframeError(f"{name}: line {n}: expected {width} values, found {len(row)}")
        try:
            [float(c) for c in row]
        except ValueError:
            raise KeyframeError(f"{name}: line {n}: values must be numbers, found {short_repr(','.join(row))}") from None
    table = np.array([row for _, row in numbered], np.float64).reshape(len(numbered), width)
    return table, np.array([n for n, _ in numbered], np.int64)


def _csv_site_columns(columns: list[str], sites: Sequence[str], name: str, line: int) -> list[int]:
    """For each site, the index of its value among the columns after the first."""
    if columns == ["alpha"]:
        return [0] * len(sites)
    unknown = [c for c in columns if c not in sites]
    if unknown:
        raise KeyframeError(f"{name}: line {line}: unknown column {short_repr(unknown[0])} "
                            f"(use alpha or the model's sites: {', '.join(sites)})")
    twice = [c for c in columns if columns.count(c) > 1]
    if twice:
        raise KeyframeError(f"{name}: line {line}: column {twice[0]} appears twice")
    missing = [s for s in sites if s not in columns]
    if missing:
        raise KeyframeError(f"{name}: line {line}: per-site columns miss site(s) {', '.join(missing)}")
    return [columns.index(s) for s in sites]
