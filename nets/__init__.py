"""Pure-torch Dynamic-Net models and the one checkpoint format."""

from nets.checkpoint import UNTRAINED, CheckpointError, ZooEntry, load, read, save, zoo_entries
from nets.dcgan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from nets.errors import DynastreamError
from nets.stylenet import PRESETS, STYLE_SITES, StyleNet, StyleNetConfig
from nets.tuning import DynamicNet, TuningBlock

__all__ = [
    "UNTRAINED", "CheckpointError", "ZooEntry", "load", "read", "save", "zoo_entries",
    "DCGANConfig", "DCGANDiscriminator", "DCGANGenerator", "DynastreamError",
    "PRESETS", "STYLE_SITES", "StyleNet", "StyleNetConfig", "DynamicNet", "TuningBlock",
]
