"""The one exception type for errors caused by what the user gave us.

Every layer raises a subclass of ``DynastreamError`` for bad input (a missing file, a broken
checkpoint, a bad config value). The CLI prints its message as one sentence and exits 2; anything
else is a bug and keeps its traceback.
"""


class DynastreamError(Exception):
    """Bad input from the user; ``str(err)`` is one sentence fit to print."""


class CheckpointError(DynastreamError):
    """A checkpoint or the zoo index that cannot be used (here so that the zoo index needs no torch)."""
