"""Pure-torch Dynamic-Net models and the one checkpoint format.

The names below are imported on first use (PEP 562), so ``import nets`` and the torch-free
modules ``nets.errors`` and ``nets.zoo_index`` do not import torch; ``nets.load`` and the model
classes do.
"""

import importlib

_WHERE = {  # name -> the module that defines it
    "DynastreamError": "nets.errors", "CheckpointError": "nets.errors",
    "UNTRAINED": "nets.zoo_index", "ZooEntry": "nets.zoo_index", "zoo_entries": "nets.zoo_index",
    "load": "nets.checkpoint", "read": "nets.checkpoint", "save": "nets.checkpoint",
    "DCGANConfig": "nets.dcgan", "DCGANDiscriminator": "nets.dcgan", "DCGANGenerator": "nets.dcgan",
    "PRESETS": "nets.stylenet", "STYLE_SITES": "nets.stylenet", "StyleNet": "nets.stylenet",
    "StyleNetConfig": "nets.stylenet",
    "DynamicNet": "nets.tuning", "TuningBlock": "nets.tuning",
}
_SUBMODULES = ("atomic", "checkpoint", "dcgan", "errors", "layers", "stylenet", "tuning", "zoo_index")

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    elif name in _SUBMODULES:   # `import nets; nets.checkpoint.X` keeps working
        value = importlib.import_module(f"nets.{name}")
    else:
        raise AttributeError(f"module 'nets' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE) | set(_SUBMODULES))
