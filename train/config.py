"""Training configs: frozen dataclasses <-> YAML, with `--set key.sub=value` overrides.

Any trainer (style, DCGAN) declares its config as nested dataclasses and loads it with
``load_config``. Unknown keys are rejected naming the key; values are type-checked against the
field annotations (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``Optional``, tuples, lists,
``dict[str, X]``, nested dataclasses, and unions of dataclasses told apart by a ``UNION_KEY`` ClassVar:
a mapping holding that key is that member, else it is the member without one). This is the only
module under train/ that reads YAML.
"""

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, TypeVar, Union

import yaml

import configs
from nets import yamlfile
from nets.atomic import atomic_open
from nets.errors import DynastreamError, short_repr

T = TypeVar("T")


class ConfigError(DynastreamError):
    pass


def resolve_config_path(spec: str) -> Path:
    """A config given as a path; else a shipped one: ``configs/train/x.yaml`` relative to the
    package, or a bare name ``x`` for ``configs/train/x.yaml``."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    candidates = []
    parts = Path(spec).parts
    if parts and parts[0] == "configs":
        candidates.append(configs.path(str(Path(*parts[1:]))))
    if len(parts) == 1 and not path.suffix:
        candidates.append(configs.path(f"train/{spec}.yaml"))
    for c in candidates:
        if c.is_file():
            return c
    shipped = ", ".join(sorted(p.stem for p in configs.path("train").glob("*.yaml")))
    raise ConfigError(f"config {spec} does not exist (shipped training configs: {shipped})")


def read_yaml(path: Path) -> dict:
    data = yamlfile.read(path, "config", error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values, not a {type(data).__name__}")
    return data


def write_yaml(obj: Any, path: Path) -> None:
    """Write a config (dataclass or mapping) to ``path`` atomically."""
    text = yaml.safe_dump(to_dict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=False)
    with atomic_open(path, "w") as f:
        f.write(text)


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain dicts/lists, fit for YAML, JSON and checkpoints."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and ill-typed values;
    ``source`` starts error messages (e.g. "config x.yaml")."""
    return _coerce(cls, data, source, "")


def apply_sets(data: dict, cls: type, sets: Sequence[str]) -> dict:
    """``data`` (a raw config mapping) with each ``key.sub=value`` of ``sets`` applied. The key
    must name a field of ``cls``; the value is parsed as YAML and checked against the field type."""
    data = _deep_copy(data)
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. schedule.main.steps=100), got {short_repr(item)}")
        try:
            value = yamlfile.parse(text, f"--set {item}", error=ConfigError) if text.strip() else ""
        except ConfigError:
            value = text
        tp: Any = cls
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            tp = _pick_dataclass(_unwrap_optional(tp), node, part)
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"--set {item}: {'.'.join(parts[:i])} is a value, not a section with key {short_repr(part)}")
            hints = typing.get_type_hints(tp)
            if part not in hints or part not in {f.name for f in dataclasses.fields(tp)}:
                raise ConfigError(f"--set {item}: no config key {short_repr('.'.join(parts[:i + 1]))} "
                                  f"(known here: {', '.join(f.name for f in dataclasses.fields(tp))})")
            tp = hints[part]
            if i < len(parts) - 1:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
        _coerce(tp, value, f"--set {item}", key)  # type check now, so the error names the --set
        node[parts[-1]] = value
    return data


def load_config(cls: type[T], path: Path, sets: Sequence[str] = ()) -> T:
    raw = read_yaml(path)
    return from_dict(cls, apply_sets(raw, cls, sets), f"config {path}")


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# --- coercion ---------------------------------------------------------------------------------

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


def _bad(tp: Any, value: Any, source: str, key: str) -> ConfigError:
    return ConfigError(f"{source}: {key or 'the config'} must be {_describe(tp)}, not {short_repr(value)}")


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _coerce_dataclass(tp, value, source, key)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        picked = _pick_dataclass(tp, value)
        if picked is not tp:
            return _coerce(picked, value, source, key)
        for a in args:
            try:
                return _coerce(a, value, source, key)
            except ConfigError:
                if len(args) == 1:
                    raise
        raise _bad(tp, value, source, key)
    if origin is Literal:
        if not isinstance(value, bool) and value in typing.get_args(tp):
            return value
        raise _bad(tp, value, source, key)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(tp, value, source, key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (float, str)):
            try:
                f = float(value)
            except ValueError:
                raise _bad(tp, value, source, key) from None
            if f.is_integer():
                return int(f)
        raise _bad(tp, value, source, key)
    if tp is float:
        # YAML 1.1 reads ``1e5`` (no dot) as a string: accept any text float() understands
        number = None
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                number = float(value)
            except (ValueError, OverflowError):
                pass
        if number is None or not math.isfinite(number):   # .nan or .inf would train a NaN net
            raise ConfigError(f"{source}: {key or 'the config'} must be a finite number, not {short_repr(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _bad(tp, value, source, key)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise _bad(tp, value, source, key)
        args = typing.get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{source}: {key} must be a list of {len(args)} values, not {short_repr(value)}")
            return tuple(_coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise _bad(tp, value, source, key)
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_coerce(kt, k, source, key): _coerce(vt, v, source, _join(key, k)) for k, v in value.items()}
    raise TypeError(f"config field type {tp!r} is not supported")  # a bug in a config class


def _join(key: str, name: Any) -> str:
    return f"{key}.{name}" if key else str(name)


def _coerce_dataclass(cls: type, value: Any, source: str, key: str) -> Any:
    if not isinstance(value, dict):
        raise _bad(cls, value, source, key)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ConfigError(f"{source}: unknown key {short_repr(_join(key, unknown[0]))} (known here: {', '.join(names)})")
    kwargs = {}
    for f in fields:
        if f.name in value:
            kwargs[f.name] = _coerce(hints[f.name], value[f.name], source, _join(key, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key {_join(key, f.name)!r}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {key + ': ' if key else ''}{e}") from None
