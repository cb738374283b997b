"""Building blocks of the Johnson et al. transformer net, as in pytorch/examples fast_neural_style."""

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

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


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
