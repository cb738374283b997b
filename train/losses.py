"""Perceptual losses of fast style transfer (Johnson et al. 2016; pytorch/examples fast_neural_style),
as pure functions of feature tensors. Call them in fp32 (outside autocast): Gram sums overflow fp16."""

from typing import Mapping

import torch
import torch.nn.functional as F


def gram(f_nchw: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix divided by C·H·W, as in the seed."""
    b, c, h, w = f_nchw.shape
    f = f_nchw.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(f_nchw: torch.Tensor, target_nchw: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(f_nchw, target_nchw)


def style_loss(features: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
               layer_weights: Mapping[str, float]) -> torch.Tensor:
    """Σ_l w_l · MSE(gram(F_l), G_l); ``target_grams[l]`` is (1, C, C) and is broadcast over the batch.
    Layers of weight 0 are skipped."""
    total = None
    for layer, w in layer_weights.items():
        if w == 0:
            continue
        g = gram(features[layer])
        term = w * F.mse_loss(g, target_grams[layer].expand_as(g))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("style_loss needs at least one layer of non-zero weight")
    return total


def tv_loss(y_nchw: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic total variation)."""
    return ((y_nchw[:, :, 1:, :] - y_nchw[:, :, :-1, :]).abs().mean()
            + (y_nchw[:, :, :, 1:] - y_nchw[:, :, :, :-1]).abs().mean())
