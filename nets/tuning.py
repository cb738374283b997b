"""Dynamic-Net tuning blocks (Shoshan et al., ICCV 2019).

A frozen main net θ is trained on objective O0; residual tuning blocks ψ at named sites are trained
on O1. At inference each site computes ``x + α·ψ(x)`` (normal mode) or
``x + relu(α)·ψ_higher(x) + relu(-α)·ψ_lower(x)`` (dual mode). The same graph runs for every α:
no Python branch looks at α's value, so one compiled / exported graph serves all α, and each sample
of a batch may carry its own α.
"""

from typing import Iterator, Literal, Optional, Sequence, Union

import torch
from torch import nn

from nets.dcgan import DCGANConfig, DCGANGenerator
from nets.layers import ConvLayer
from nets.stylenet import PRESETS, STYLE_SITES, StyleNet, StyleNetConfig

Mode = Literal["normal", "dual"]
Group = Literal["main", "higher", "lower"]
Kind = Literal["style", "dcgan"]
Alpha = Union[float, torch.Tensor]

MODES: tuple[str, ...] = ("normal", "dual")
DEFAULT_ALPHA_RANGE = {"normal": (0.0, 1.0), "dual": (-1.0, 1.0)}


class TuningBlock(nn.Module):
    """conv3x3-ReLU-conv3x3-ReLU-conv3x3 with reflection padding; keeps the channel count."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.conv3 = ConvLayer(channels, channels, 3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))


class DynamicNet(nn.Module):
    """A main net plus tuning blocks at named sites.

    ``higher`` holds the blocks trained towards O1 (α > 0); dual mode adds ``lower`` (α < 0).
    """

    def __init__(self, main: Union[StyleNet, DCGANGenerator], sites: Optional[Sequence[str]] = None,
                 mode: Mode = "normal", alpha_range: Optional[tuple[float, float]] = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        channels = main.site_channels
        sites = tuple(channels) if sites is None else tuple(sites)
        unknown = [s for s in sites if s not in channels]
        if unknown or not sites or len(set(sites)) != len(sites):
            raise ValueError(f"sites must be distinct names among {tuple(channels)}, got {sites}")
        self.main = main
        self.kind: Kind = "style" if isinstance(main, StyleNet) else "dcgan"
        self.mode: Mode = mode
        self.sites: tuple[str, ...] = sites
        self.alpha_range: tuple[float, float] = tuple(alpha_range or DEFAULT_ALPHA_RANGE[mode])
        self.higher = nn.ModuleDict({s: TuningBlock(channels[s]) for s in sites})
        self.lower = nn.ModuleDict({s: TuningBlock(channels[s]) for s in sites}) if mode == "dual" else None
        self._site_index = {s: i for i, s in enumerate(sites)}
        self._main_frozen = False
        self.meta: dict = {}  # filled by nets.load: name, objectives, provenance, source path

    @classmethod
    def for_style(cls, preset: Union[str, StyleNetConfig] = "lite", mode: Mode = "normal",
                  sites: Sequence[str] = STYLE_SITES) -> "DynamicNet":
        config = PRESETS[preset] if isinstance(preset, str) else preset
        return cls(StyleNet(config), sites, mode)

    @classmethod
    def for_dcgan(cls, config: DCGANConfig = DCGANConfig(), mode: Mode = "normal") -> "DynamicNet":
        return cls(DCGANGenerator(config), None, mode)

    def alpha_matrix(self, alpha: Alpha, batch: int, like: torch.Tensor) -> torch.Tensor:
        """α as a (batch, n_sites) tensor on ``like``'s device and dtype.

        Accepts a float, a 0-d tensor, ``(S,)`` per site, ``(B,)`` per sample, ``(B, 1)`` or
        ``(B, S)``. A 1-d α whose length equals both S and B (> 1) is ambiguous and rejected:
        pass ``(B, S)`` or ``(B, 1)`` then. Only shapes are inspected, never values.
        """
        n_sites = len(self.sites)
        a = torch.as_tensor(alpha, dtype=like.dtype, device=like.device)
        if a.dim() == 0:
            return a.expand(batch, n_sites)
        if a.dim() == 1:
            n = a.shape[0]
            if n == n_sites and n == batch and n > 1:
                raise ValueError(f"1-d alpha of length {n} is ambiguous with {n} sites and batch {batch}: "
                                 "pass shape (B, S) or (B, 1)")
            if n == n_sites:
                return a.expand(batch, n_sites)
            if n == batch:
                return a[:, None].expand(batch, n_sites)
        if a.dim() == 2 and a.shape[0] == batch and a.shape[1] in (1, n_sites):
            return a.expand(batch, n_sites)
        raise ValueError(f"alpha of shape {tuple(a.shape)} fits neither {n_sites} sites nor batch {batch}")

    def forward(self, x: torch.Tensor, alpha: Alpha = 0.0) -> torch.Tensor:
        a = self.alpha_matrix(alpha, x.shape[0], x)

        def inject(site: str, y: torch.Tensor) -> torch.Tensor:
            a_site = a[:, self._site_index[site]].reshape(-1, 1, 1, 1)
            if self.mode == "dual":
                return (y + torch.relu(a_site) * self.higher[site](y)
                        + torch.relu(-a_site) * self.lower[site](y))
            return y + a_site * self.higher[site](y)

        return self.main(x, inject)

    def groups(self) -> tuple[Group, ...]:
        return ("main", "higher", "lower") if self.mode == "dual" else ("main", "higher")

    def group_parameters(self, group: Group) -> Iterator[nn.Parameter]:
        if group not in self.groups():
            raise ValueError(f"a {self.mode} net has parameter groups {self.groups()}, not {group!r}")
        module = {"main": self.main, "higher": self.higher, "lower": self.lower}[group]
        return module.parameters()

    def freeze_main(self) -> None:
        """Stop gradients into the main net and keep it in eval mode (BatchNorm statistics of a
        DCGAN generator must not drift while the blocks train)."""
        self._main_frozen = True
        for p in self.main.parameters():
            p.requires_grad_(False)
        self.main.eval()

    def train(self, mode: bool = True) -> "DynamicNet":
        super().train(mode)
        if self._main_frozen:
            self.main.eval()
        return self
