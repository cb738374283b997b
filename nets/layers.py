"""Building blocks of the Johnson et al. transformer net, as in pytorch/examples fast_neural_style."""

from typing import Callable, Optional

import torch
from torch import nn


class ConvLayer(nn.Module):
    """Reflection padding + convolution, so borders do not darken the way zero padding does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    """conv3x3-IN-ReLU-conv3x3-IN plus identity (He et al. 2016, as used by Johnson et al. 2016)."""

    def __init__(self, channels: int, affine: bool = True):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=affine)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=affine)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, scale: Optional[Callable[[torch.Tensor, int], torch.Tensor]] = None) -> torch.Tensor:
        """``scale(y, j)``: the scale and shift of norm j (1 or 2) for norms made without their own
        (a conditional instance norm, Dumoulin et al. 2017)."""
        y = self.in1(self.conv1(x))
        if scale is not None:
            y = scale(y, 1)
        y = self.in2(self.conv2(self.relu(y)))
        if scale is not None:
            y = scale(y, 2)
        return x + y


class UpsampleConv(nn.Module):
    """Nearest-neighbour upsampling then a convolution: avoids the checkerboard of transposed
    convolutions (Odena et al., Distill 2016)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, upsample: int = 2,
                 mode: str = "nearest"):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=upsample, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
        self.conv = ConvLayer(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(x))
