"""Dynamic-Net tuning blocks (Shoshan et al., ICCV 2019).

A frozen main net θ is trained on objective O0; residual tuning blocks ψ at named sites are trained
on O1. At inference each site computes ``x + α·ψ(x)`` (normal mode) or
``x + relu(α)·ψ_higher(x) + relu(-α)·ψ_lower(x)`` (dual mode). The same graph runs for every α:
no Python branch looks at α's value, so one compiled / exported graph serves all α, and each sample
of a batch may carry its own α.

α may also vary over the picture: an optional α map ``(B or 1, 1, H, W)`` (at the input's size for a
style net, at the output's for a DCGAN) multiplies α per pixel. Each site sees the map averaged over
the cells its features cover (``site_strides``), so a site at 1/4 resolution gets the 4x4 area mean.
A map of ones gives exactly the output without a map (up to float rounding where a frame-conditioned
style net's ``style`` site is tuned: that one vector per picture is tuned per pixel through the norms
it conditions, ``StyleNet._affine``).
"""

from typing import Iterator, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from dynastream.nets.dcgan import DCGANConfig, DCGANGenerator
from dynastream.nets.layers import ConvLayer
from dynastream.nets.stylenet import PRESETS, STYLE_SITES, VECTOR_SITES, StyleNet, StyleNetConfig

Mode = Literal["normal", "dual"]
Group = Literal["main", "higher", "lower"]
Kind = Literal["style", "dcgan"]
Alpha = Union[float, torch.Tensor]

MODES: tuple[str, ...] = ("normal", "dual")
DEFAULT_ALPHA_RANGE = {"normal": (0.0, 1.0), "dual": (-1.0, 1.0)}


class TuningBlock(nn.Module):
    """conv3x3-ReLU-conv3x3-ReLU-conv3x3 with reflection padding; keeps the channel count
    (``hidden`` channels inside, by default as many)."""

    def __init__(self, channels: int, hidden: Optional[int] = None):
        super().__init__()
        hidden = hidden or channels
        self.conv1 = ConvLayer(channels, hidden, 3)
        self.conv2 = ConvLayer(hidden, hidden, 3)
        self.conv3 = ConvLayer(hidden, channels, 3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))


class VectorTuningBlock(nn.Module):
    """The tuning block of a vector site: a linear map plus a one-hidden-layer perceptron. The
    linear part alone can carry a frame's own style vector to a fixed one (ψ(v) = s - v), which is
    what the arbitrary teacher's strength does."""

    def __init__(self, channels: int, hidden: Optional[int] = None):
        super().__init__()
        hidden = hidden or channels
        self.linear = nn.Linear(channels, channels)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.relu = nn.ReLU()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.linear(v) + self.fc2(self.relu(self.fc1(v)))


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
        hidden = getattr(main, "site_hidden", {})

        def blocks() -> nn.ModuleDict:
            return nn.ModuleDict({s: (VectorTuningBlock if s in VECTOR_SITES else TuningBlock)(channels[s], hidden.get(s))
                                  for s in sites})

        self.higher = blocks()
        self.lower = blocks() if mode == "dual" else None
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

    def site_maps(self, alpha_map: torch.Tensor, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """The α map area-averaged for each site stride: stride -> (B or 1, 1, h', w'), at least as
        large as that site's features (crop to them). Only shapes are inspected, never values."""
        m = alpha_map
        if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"an alpha map must have shape (B, 1, H, W) or (1, 1, H, W) for batch {x.shape[0]}, "
                             f"not {tuple(m.shape)}")
        if self.kind == "style" and tuple(m.shape[-2:]) != tuple(x.shape[-2:]):
            raise ValueError(f"an alpha map of {m.shape[-1]}x{m.shape[-2]} does not fit a "
                             f"{x.shape[-1]}x{x.shape[-2]} input: give it the input's size")
        m = m.to(x.dtype if x.is_floating_point() else torch.float32)
        pad = self.main.map_pad
        if pad:
            m = F.pad(m, (0, pad, 0, pad), mode="replicate")
        strides = {self.main.site_strides[s] for s in self.sites}
        if strides & {0}:   # a vector site: the strides of the norms it conditions
            strides = (strides - {0}) | {self.main.norm_stride(n) for n in self.main.norm_channels}
        return {k: m if k == 1 else F.avg_pool2d(m, k, k) for k in sorted(strides)}

    def forward(self, x: torch.Tensor, alpha: Alpha = 0.0, alpha_map: Optional[torch.Tensor] = None) -> torch.Tensor:
        a = self.alpha_matrix(alpha, x.shape[0], x)
        maps = None if alpha_map is None else self.site_maps(alpha_map, x)

        def inject(site: str, y: torch.Tensor) -> torch.Tensor:
            if site not in self._site_index:   # a site of the main net that this net does not tune
                return y
            if y.dim() == 2:   # a vector site: one vector per picture; the main net applies the map
                return self._tuned(site, y, a[:, self._site_index[site]].reshape(-1, 1))
            a_site = a[:, self._site_index[site]].reshape(-1, 1, 1, 1)
            if maps is not None:
                m = maps[self.main.site_strides[site]]
                if m.shape[-2] < y.shape[-2] or m.shape[-1] < y.shape[-1]:
                    raise ValueError(f"an alpha map of {m.shape[-1]}x{m.shape[-2]} at site {site} is smaller "
                                     f"than its {y.shape[-1]}x{y.shape[-2]} features")
                a_site = a_site * m[..., :y.shape[-2], :y.shape[-1]]     # (B, 1, h, w)
            return self._tuned(site, y, a_site)

        if maps is not None and any(s in VECTOR_SITES for s in self.sites):
            return self.main(x, inject, maps)
        return self.main(x, inject)

    def _tuned(self, site: str, y: torch.Tensor, a_site: torch.Tensor) -> torch.Tensor:
        if self.mode == "dual":
            return (y + torch.relu(a_site) * self.higher[site](y)
                    + torch.relu(-a_site) * self.lower[site](y))
        return y + a_site * self.higher[site](y)

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
