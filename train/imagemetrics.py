"""Image distances and statistics for evaluating a student against its teacher, on (B, 3, H, W)
tensors in [0, 1]: PSNR, SSIM (Wang et al. 2004: 11x11 Gaussian window, σ 1.5, K1 0.01, K2 0.03,
on each channel, then averaged) and sharpness (mean |pixel difference| of neighbours)."""

import torch
import torch.nn.functional as F


def psnr(a_nchw: torch.Tensor, b_nchw: torch.Tensor) -> float:
    mse = F.mse_loss(a_nchw.float(), b_nchw.float()).item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(1.0 / mse)).item()


def ssim(a_nchw: torch.Tensor, b_nchw: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    a, b = a_nchw.float(), b_nchw.float()
    c = a.shape[1]
    t = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(x):
        return F.conv2d(x, kernel, groups=c)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


def mean_gradient(x_nchw: torch.Tensor) -> float:
    """Mean |horizontal and vertical neighbour difference| over pixels and channels."""
    x = x_nchw.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return (0.5 * (dx + dy)).item()


def sharpness(y_nchw: torch.Tensor, x_nchw: torch.Tensor) -> float:
    """How much sharper an output is than its input: mean gradient of ``y`` over that of ``x``."""
    return mean_gradient(y_nchw) / max(mean_gradient(x_nchw), 1e-12)
