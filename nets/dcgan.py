"""DCGAN generator and discriminator (Radford et al. 2016) as in pytorch/examples/dcgan, which the
seed's Dynamic DCGAN borrows: z = 100, 64x64 RGB output in [-1, 1]."""

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from dynastream.nets.stylenet import Inject

DCGAN_SITES = ("layer3_out",)


@dataclass(frozen=True)
class DCGANConfig:
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    nc: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DCGANConfig":
        return cls(**{k: int(d[k]) for k in ("nz", "ngf", "ndf", "nc")})


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class DCGANGenerator(nn.Module):
    def __init__(self, config: DCGANConfig = DCGANConfig()):
        super().__init__()
        self.config = config
        nz, ngf = config.nz, config.ngf
        self.layer1 = nn.Sequential(nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
                                    nn.BatchNorm2d(ngf * 8), nn.ReLU(True))   # 4x4
        self.layer2 = _up(ngf * 8, ngf * 4)                                    # 8x8
        self.layer3 = _up(ngf * 4, ngf * 2)                                    # 16x16
        self.layer4 = _up(ngf * 2, ngf)                                        # 32x32
        self.layer5 = nn.Sequential(nn.ConvTranspose2d(ngf, config.nc, 4, 2, 1, bias=False), nn.Tanh())  # 64x64
        self.apply(dcgan_init)

    @property
    def site_channels(self) -> dict[str, int]:
        return {"layer3_out": self.config.ngf * 2}

    # An α map is given at the output's 64x64; the site's 16x16 features average 4x4 cells of it.
    site_strides = {"layer3_out": 4}
    map_pad = 0

    def forward(self, z: torch.Tensor, inject: Optional[Inject] = None) -> torch.Tensor:
        """z: (B, nz) or (B, nz, 1, 1); returns (B, nc, 64, 64) in [-1, 1]."""
        y = self.layer3(self.layer2(self.layer1(z.reshape(z.shape[0], -1, 1, 1))))
        if inject is not None:
            y = inject("layer3_out", y)
        return self.layer5(self.layer4(y))


class DCGANDiscriminator(nn.Module):
    def __init__(self, config: DCGANConfig = DCGANConfig()):
        super().__init__()
        ndf, nc = config.ndf, config.nc
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, nc, 64, 64); returns (B,) probabilities of being real."""
        return self.main(x).reshape(-1)


def dcgan_init(m: nn.Module) -> None:
    """N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales, as in the DCGAN paper."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
