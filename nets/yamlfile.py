"""The one YAML reader: keyframe tracks, live configs, MIDI maps, training configs and the zoo index
all go through ``read`` (a file) or ``parse`` (a string).

PyYAML's safe loader runs no code but is not safe against hostile files: it resolves aliases into
shared objects, so a "billion laughs" file of a few hundred bytes becomes a structure that every
validator walks as gigabytes, and its composer recurses once per nesting level, so a few thousand
``[`` overflow the stack. This reader refuses aliases (nothing dynastream reads needs them), caps
the nesting depth and caps the file size, each with one sentence. Torch-free; PyYAML is imported
lazily, so ``nets`` stays importable without it.
"""

import functools
import os
from pathlib import Path
from typing import Any, Union

from dynastream.nets.errors import DynastreamError, short_repr

MAX_DEPTH = 32                  # nested mappings/lists; the deepest shipped file (zoo.yaml) uses 6
MAX_BYTES = 1_000_000           # configs, MIDI maps and the zoo index are a few KB


class YamlError(DynastreamError):
    pass


def read(path: Union[str, os.PathLike], what: str, *, max_bytes: int = MAX_BYTES,
         error: type[DynastreamError] = YamlError) -> Any:
    """The YAML document in file ``path`` (``what`` names it in messages: "live config"); errors
    are raised as ``error``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    size_bytes = path.stat().st_size
    if size_bytes > max_bytes:
        raise error(f"{what} {path} is {_mb(size_bytes)}, more than the {_mb(max_bytes)} this reader accepts")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    return parse(text, str(path), error=error)


def parse(text: str, source: str, *, max_depth: int = MAX_DEPTH,
          error: type[DynastreamError] = YamlError) -> Any:
    """The one YAML document in ``text``; ``source`` starts error messages."""
    return parse_with_node(text, source, max_depth=max_depth, error=error)[0]


def parse_with_node(text: str, source: str, *, max_depth: int = MAX_DEPTH,
                    error: type[DynastreamError] = YamlError) -> tuple[Any, Any]:
    """``parse``, and the document's root node (None for an empty document): its ``start_mark``
    gives line numbers for messages."""
    import yaml

    loader = _loader_class()(text)
    loader.max_depth = max_depth
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except _Refused as e:
        raise error(f"{source}: line {e.line}: {e.reason}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise error(f"{source}: {where}not valid YAML ({problem})") from None
    finally:
        loader.dispose()


class _Refused(Exception):
    def __init__(self, mark, reason: str):
        super().__init__(reason)
        self.line, self.reason = mark.line + 1, reason


@functools.lru_cache(maxsize=None)
def _loader_class(libyaml: bool = True) -> type:
    """A safe loader whose composer refuses aliases and deep nesting. libyaml's event parser is
    used when PyYAML has it (twice as fast as the pure-Python one, and not recursive); the
    composer and the safe constructor are PyYAML's Python ones in either case."""
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    try:
        if not libyaml:
            raise ImportError
        from yaml._yaml import CParser as Parser
    except ImportError:
        Parser = _python_parser()

    class Loader(Composer, SafeConstructor, Resolver, Parser):
        max_depth = MAX_DEPTH

        def __init__(self, stream):
            Parser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self.depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(event.start_mark, f"YAML aliases (*{short_repr(event.anchor, 20)}) are not accepted; "
                                                 "write the value out")
            if not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                return super().compose_node(parent, index)
            self.depth += 1
            if self.depth > self.max_depth:
                raise _Refused(event.start_mark, f"nesting deeper than {self.max_depth} levels is not accepted")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def _python_parser() -> type:
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class PythonParser(Reader, Scanner, Parser):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

    return PythonParser


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.1f} KB"

