"""Small real checkpoints for tests."""

from pathlib import Path

import torch
from torch import nn

import nets
from nets import DCGANConfig, DynamicNet


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
        bns = [m for m in net.main.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None          # a cumulative average over the calibration batches
        net.main.train()
        with torch.no_grad():
            for _ in range(4):
                net.main(torch.randn(64, nz))
        for bn in bns:
            bn.momentum = 0.1
    nets.save(net.eval(), path)
    return path
