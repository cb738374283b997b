"""Small real checkpoints for tests."""

from pathlib import Path

import torch
from torch import nn

from dynastream import nets
from dynastream.nets import DCGANConfig, DynamicNet
from dynastream.train.gan import recalibrate_batchnorm


def make_dcgan(path: Path, nz: int = 16, ngf: int = 8, mode: str = "normal", seed: int = 0) -> Path:
    """A tiny Dynamic DCGAN saved in the checkpoint format, with pictures that show: its BatchNorm
    statistics are measured on seeded z and its last conv is strong (an untrained DCGAN's defaults
    leave the output flat grey), and its tuning blocks' weights are large enough for α to show."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DynamicNet.for_dcgan(DCGANConfig(nz=nz, ngf=ngf, ndf=ngf), mode)
        nn.init.normal_(net.main.layer5[0].weight, 0.0, 0.3)   # the conv to RGB, before tanh
        for block in [*net.higher.values(), *(net.lower.values() if net.lower is not None else [])]:
            for p in block.parameters():
                nn.init.normal_(p, 0.0, 0.1)
        recalibrate_batchnorm(net.main, nz, 64, torch.Generator().manual_seed(seed), torch.device("cpu"), batches_=4)
    nets.save(net.eval(), path)
    return path
