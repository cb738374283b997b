"""The one exception type for errors caused by what the user gave us.

Every layer raises a subclass of ``DynastreamError`` for bad input (a missing file, a broken
checkpoint, a bad config value). The CLI prints its message as one sentence and exits 2; anything
else is a bug and keeps its traceback.
"""

import reprlib
from typing import Any


class DynastreamError(Exception):
    """Bad input from the user; ``str(err)`` is one sentence fit to print."""


class CheckpointError(DynastreamError):
    """A checkpoint or the zoo index that cannot be used (here so that the zoo index needs no torch)."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 80, 80, 40
_REPR.maxtuple = _REPR.maxlist = _REPR.maxarray = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def short_repr(value: Any, limit: int = 60) -> str:
    """``value`` as error messages show what the user gave: its repr, cut to ``limit`` characters
    with an ellipsis (a bad value may be a 500 KB line or a huge structure; reprlib never formats
    more than a few elements of it)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
