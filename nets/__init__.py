"""Pure-torch Dynamic-Net models and the one checkpoint format.

The names below are imported on first use (PEP 562), so ``import nets`` and the torch-free
modules ``nets.errors`` and ``nets.zoo_index`` do not import torch; ``nets.load`` and the model
classes do.
"""

import importlib

_WHERE = {  # name -> the module of this package that defines it
    "DynastreamError": ".errors", "CheckpointError": ".errors",
    "UNTRAINED": ".zoo_index", "ZooEntry": ".zoo_index", "zoo_entries": ".zoo_index",
    "load": ".checkpoint", "read": ".checkpoint", "save": ".checkpoint",
    "DCGANConfig": ".dcgan", "DCGANDiscriminator": ".dcgan", "DCGANGenerator": ".dcgan",
    "PRESETS": ".stylenet", "STYLE_SITES": ".stylenet", "StyleNet": ".stylenet",
    "StyleNetConfig": ".stylenet",
    "DynamicNet": ".tuning", "TuningBlock": ".tuning",
}
_SUBMODULES = ("atomic", "checkpoint", "dcgan", "errors", "layers", "stylenet", "tuning", "zoo_index")

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    elif name in _SUBMODULES:   # `import nets; nets.checkpoint.X` keeps working
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'dynastream.nets' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE) | set(_SUBMODULES))
