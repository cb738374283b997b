"""Config files <-> frozen dataclasses: the one loader that training and live share.

A config is a tree of dataclasses whose fields are its keys. ``from_dict`` builds one from a
mapping (read from YAML), rejecting unknown keys and ill-typed values; every message starts with
where the value came from: the file and the key (``live.yaml: size``), or the command-line flag
that set it (``--size``). Types come from the field annotations (``int``, ``float``, ``bool``,
``str``, ``Literal``, ``Optional``, tuples, lists, ``dict[str, X]``, nested dataclasses, and unions
of dataclasses told apart by a ``UNION_KEY`` ClassVar: a mapping holding that key is that member,
else it is the member without one). What a type cannot say is said per field with ``option``:
a range or a special parse (``parse``), a YAML key that differs from the field name (``key``), a
path read relative to the config file (``relative``), or a value the loader fills in from the
others and no file may give (``derived``).

This module lives beside the YAML it describes: ``nets`` stays torch only, and both ``stream``
and ``train`` already depend on ``configs``.
"""

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, TypeVar, Union

from dynastream.nets import yamlfile
from dynastream.nets.atomic import atomic_open
from dynastream.nets.errors import DynastreamError, short_repr

T = TypeVar("T")
Parse = Callable[[Any, str], Any]   # (value as written, label such as "live.yaml: size") -> value


class ConfigError(DynastreamError):
    pass


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           parse: Optional[Parse] = None, key: Optional[str] = None, relative: bool = False,
           derived: bool = False) -> Any:
    """A dataclass field with what its type cannot say. ``parse(value, label)`` replaces the
    type check (None still means None for an Optional field) and raises ``ConfigError`` naming
    ``label``; ``key``: the name in the file; ``relative``: a path, taken relative to the config
    file's folder when the file gives it; ``derived``: filled in by the loader, never read."""
    metadata = {"parse": parse, "key": key, "relative": relative, "derived": derived}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


# --- checks shared by many fields (``option(parse=...)``) ---------------------------------------

def whole_number(low: int, high: Optional[int] = None) -> Parse:
    """An integer (or its digits as text) from ``low`` to ``high`` (None: no upper bound)."""
    bounds = f">= {low}" if high is None else f"from {low} to {high}"

    def parse(v, label):
        if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).strip().lstrip("-").isdigit() \
                or int(v) < low or (high is not None and int(v) > high):
            raise ConfigError(f"{label} must be a whole number {bounds}, not {short_repr(v)}")
        return int(v)
    return parse


def positive(high: float = math.inf) -> Parse:
    """A finite number above 0 and at most ``high``; text a float() reads is taken too."""
    up_to = f" and at most {high:g}" if high < math.inf else ""

    def parse(v, label):
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{label} must be a number, not {short_repr(v)}") from None
        if isinstance(v, bool) or not (math.isfinite(f) and 0 < f <= high):
            raise ConfigError(f"{label} must be a finite number > 0{up_to}, not {short_repr(v)}")
        return f
    return parse


def finite_number(v, label) -> float:
    """A number as YAML writes it (not text), and finite."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= 1e300:   # NaN fails the comparison
        raise ConfigError(f"{label} must be a finite number, not {short_repr(v)}")
    return float(v)


def text(v, label) -> str:
    """Text; a number is taken as its digits (a camera index, a port)."""
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ConfigError(f"{label} must be a text, not {short_repr(v)}")
    return str(v)


def file_or(default: str) -> Parse:
    """A file name; null: ``default``."""
    return lambda v, label: default if v is None else text(v, label)


def size_wh(max_side: int) -> Parse:
    """'320x240' -> (320, 240), both from 1 to ``max_side``."""
    def parse(v, label):
        parts = str(v).strip().lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() and 0 < int(p) <= max_side for p in parts):
            raise ConfigError(f"bad {label} {short_repr(v)}: use WIDTHxHEIGHT with numbers from 1 to {max_side}, "
                              "such as 320x240")
        return int(parts[0]), int(parts[1])
    return parse


# --- files ------------------------------------------------------------------------------------

def read_mapping(path: Path, what: str = "config") -> dict:
    """A YAML file that holds a mapping (an empty file: an empty one)."""
    data = yamlfile.read(path, what, error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of keys to values, not a {type(data).__name__}")
    return data


def write_yaml(obj: Any, path: Path) -> None:
    """Write a config (dataclass or mapping) to ``path`` atomically."""
    import yaml

    text = yaml.safe_dump(to_dict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=False)
    with atomic_open(path, "w") as f:
        f.write(text)


def load_config(cls: type[T], path: Path, sets: Sequence[str] = ()) -> T:
    """A config file with ``--set key.sub=value`` overrides."""
    raw = read_mapping(path)
    return from_dict(cls, apply_sets(raw, cls, sets), f"config {path}")


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain dicts/lists under its file keys, fit for YAML, JSON and
    checkpoints; derived fields are left out."""
    if dataclasses.is_dataclass(obj):
        return {f.metadata.get("key") or f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.metadata.get("derived")}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# --- building a config ------------------------------------------------------------------------

def from_dict(cls: type[T], data: Any, source: str = "config",
              overrides: Optional[Mapping[str, tuple[Any, str]]] = None, folder: Optional[Path] = None) -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and ill-typed values.

    ``source`` starts error messages (e.g. "config x.yaml"). ``overrides``: dotted key ->
    (value, label), e.g. ``{"osc.port": ("9000", "--osc")}``, replace the file's values and are
    checked the same way, a bad one named by its label. ``folder``: where relative paths given by
    the file start (the file's folder)."""
    labels = {}
    if overrides:
        data = _deep_copy(data)
        for key, (value, label) in overrides.items():
            if _put(data, key.split("."), value):
                labels[key] = label
    return _coerce(cls, data, _Where(source, labels, folder), "")


def apply_sets(data: dict, cls: type, sets: Sequence[str]) -> dict:
    """``data`` (a raw config mapping) with each ``key.sub=value`` of ``sets`` applied. The key
    must name a field of ``cls``; the value is parsed as YAML and checked against the field type."""
    data = _deep_copy(data)
    for item in sets:
        key, sep, value_text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. schedule.main.steps=100), got {short_repr(item)}")
        try:
            value = yamlfile.parse(value_text, f"--set {item}", error=ConfigError) if value_text.strip() else ""
        except ConfigError:
            value = value_text
        tp: Any = cls
        field: Optional[dataclasses.Field] = None
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            tp = _pick_dataclass(_unwrap_optional(tp), node, part)
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"--set {item}: {'.'.join(parts[:i])} is a value, not a section with key {short_repr(part)}")
            fields = _file_fields(tp)
            if part not in fields:
                raise ConfigError(f"--set {item}: no config key {short_repr('.'.join(parts[:i + 1]))} "
                                  f"(known here: {', '.join(fields)})")
            field = fields[part]
            tp = typing.get_type_hints(tp)[field.name]
            if i < len(parts) - 1:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
        _coerce_field(field, tp, value, _Where(f"--set {item}"), key)  # type check now, so the error names the --set
        node[parts[-1]] = value
    return data


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where values come from: a file (``source``), except the keys a flag set (``labels``)."""

    source: str
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    folder: Optional[Path] = None

    def label(self, key: str) -> str:
        for set_key, flag in self.labels.items():
            if key == set_key or key.startswith((set_key + ".", set_key + "[")):
                return flag + key[len(set_key):]
        return f"{self.source}: {key or 'the config'}"

    def from_file(self, key: str) -> bool:
        return key not in self.labels


def _file_fields(cls: type) -> dict[str, dataclasses.Field]:
    """A config class's fields under their file keys; derived fields are not among them."""
    return {f.metadata.get("key") or f.name: f for f in dataclasses.fields(cls)
            if f.init and not f.metadata.get("derived")}


def _put(data: dict, parts: list[str], value: Any) -> bool:
    """Set a dotted key in raw config data; False where the file gave a section a non-mapping
    (the file's error is then the one to report)."""
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return False
        node = child
    node[parts[-1]] = value
    return True


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _pick_dataclass(tp: Any, value: Any, key: Optional[str] = None) -> Any:
    """For a union of dataclasses, the one a mapping means: the member whose ``UNION_KEY`` (a
    ClassVar) the mapping holds (or ``key`` names), else the member without one; ``tp`` otherwise."""
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return tp
    classes = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
    if len(classes) < 2 or not isinstance(value, dict):
        return tp
    for c in classes:
        tag = getattr(c, "UNION_KEY", None)
        if tag is not None and (tag in value or tag == key):
            return c
    untagged = [c for c in classes if getattr(c, "UNION_KEY", None) is None]
    return untagged[0] if untagged else tp


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (list, tuple, Sequence):
        return "a list"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) if a is not type(None) else "null" for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _bad(tp: Any, value: Any, where: _Where, key: str) -> ConfigError:
    return ConfigError(f"{where.label(key)} must be {_describe(tp)}, not {short_repr(value)}")


def _coerce(tp: Any, value: Any, where: _Where, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _coerce_dataclass(tp, value, where, key)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        picked = _pick_dataclass(tp, value)
        if picked is not tp:
            return _coerce(picked, value, where, key)
        for a in args:
            try:
                return _coerce(a, value, where, key)
            except ConfigError:
                if len(args) == 1:
                    raise
        raise _bad(tp, value, where, key)
    if origin is Literal:
        if not isinstance(value, bool) and value in typing.get_args(tp):
            return value
        raise _bad(tp, value, where, key)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(tp, value, where, key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (float, str)):
            try:
                f = float(value)
            except ValueError:
                raise _bad(tp, value, where, key) from None
            if f.is_integer():
                return int(f)
        raise _bad(tp, value, where, key)
    if tp is float:
        # YAML 1.1 reads ``1e5`` (no dot) as a string: accept any text float() understands
        number = None
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except (ValueError, OverflowError):
                pass
        if number is None or not math.isfinite(number):   # .nan or .inf would train a NaN net
            raise ConfigError(f"{where.label(key)} must be a finite number, not {short_repr(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad(tp, value, where, key)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise _bad(tp, value, where, key)
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{where.label(key)} must be a list of {len(args)} values, not {short_repr(value)}")
            return tuple(_coerce(a, v, where, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise _bad(tp, value, where, key)
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_coerce(kt, k, where, key): _coerce(vt, v, where, _join(key, k)) for k, v in value.items()}
    raise TypeError(f"config field type {tp!r} is not supported")  # a bug in a config class


def _coerce_field(f: dataclasses.Field, tp: Any, value: Any, where: _Where, key: str) -> Any:
    parse = f.metadata.get("parse")
    if parse is None:
        value = _coerce(tp, value, where, key)
    elif not (value is None and _unwrap_optional(tp) is not tp):
        value = parse(value, where.label(key))
    if f.metadata.get("relative") and value is not None and where.folder is not None and where.from_file(key):
        value = str(where.folder / value)
    return value


def _join(key: str, name: Any) -> str:
    return f"{key}.{name}" if key else str(name)


def _coerce_dataclass(cls: type, value: Any, where: _Where, key: str) -> Any:
    if value is None and key:
        value = {}   # a section whose keys are all commented out: its defaults
    if not isinstance(value, dict):
        raise _bad(cls, value, where, key)
    hints = typing.get_type_hints(cls)
    fields = _file_fields(cls)
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise ConfigError(f"{where.source}: unknown key {short_repr(_join(key, unknown[0]))} "
                          f"(known here: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[f.name] = _coerce_field(f, hints[f.name], value[name], where, _join(key, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where.source}: missing required key {_join(key, name)!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where.source}: {key + ': ' if key else ''}{e}") from None
