"""A frame-conditioned style net (``frame_style``, preset ``arbitrary-frame``): its norms take their
scale and shift from a style vector predicted from each frame, and its ``style`` site tunes that
vector. The teacher's side (the transplant, training) is in test_transplant.py."""

import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.configs.schema import ConfigError, from_dict
from dynastream.nets import DynamicNet
from dynastream.nets.checkpoint import CheckpointError, check_arch
from dynastream.nets.stylenet import PRESETS, StyleNet, StyleNetConfig
from dynastream.train.style import NetConfig

SITES = ["res3_in", "up1_norm", "act_in", "style"]


def frame_net(sites=SITES, seed: int = 0) -> DynamicNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DynamicNet.for_style("arbitrary-frame", sites=sites)
        for p in net.higher["style"].parameters():   # a vector block strong enough to change the palette
            torch.nn.init.normal_(p, 0.0, 0.2)
    return net.eval()


def pictures(batch: int = 2, h: int = 36, w: int = 44) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(4))


def test_each_frame_gets_its_own_conditioning():
    """The same net gives a dark frame and a bright one different norm parameters (the fixed
    arbitrary net has one set for every frame), and each frame of a batch gets its own."""
    net = frame_net()
    dark, bright = pictures(1) * 0.3, pictures(1) * 0.3 + 0.7
    with torch.no_grad():
        v_dark, v_bright = net.main.predictor(dark), net.main.predictor(bright)
        assert v_dark.shape == (1, 100) and not torch.allclose(v_dark, v_bright)
        both = net.main._affine(torch.cat([dark, bright]), None, None)
        alone = net.main._affine(bright, None, None)
    fixed = StyleNet(PRESETS["arbitrary"]).eval()
    assert isinstance(net.main.in4, torch.nn.InstanceNorm2d) and not net.main.in4.affine and fixed.in4.affine
    gamma, beta = both["out_norm"]
    assert gamma.shape == (2, 3, 1, 1) and not torch.allclose(gamma[0], gamma[1]) and not torch.allclose(beta[0], beta[1])
    torch.testing.assert_close(gamma[1:], alone["out_norm"][0])


def test_alpha_zero_is_the_main_net_and_the_style_site_alone_changes_the_picture():
    net = frame_net()
    x = pictures()
    with torch.no_grad():
        main = net.main(x)
        assert torch.equal(net(x, 0.0), main)
        style_only = net(x, torch.tensor([0.0, 0.0, 0.0, 1.0]))
        assert (style_only - main).abs().mean() > 1e-3
        for p in net.higher["style"].parameters():
            p.zero_()
        assert torch.equal(net(x, torch.tensor([0.0, 0.0, 0.0, 0.8])), main)


def test_per_sample_alpha_equals_each_sample_alone_and_a_map_tunes_the_vector_per_pixel():
    """The style vector is one per picture, but the norm parameters are affine in it, so an α map
    tunes it per pixel: with only the style site tuned, the left half under a half map is the
    picture at α and the right half the picture at 0, up to what the convolutions carry across."""
    net = frame_net(sites=["style"])
    x = pictures(2, 64, 96)
    with torch.no_grad():
        batched = net(x, torch.tensor([0.25, 1.0]))
        for i, a in enumerate((0.25, 1.0)):
            torch.testing.assert_close(batched[i:i + 1], net(x[i:i + 1], a), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(x, 0.7, torch.ones(1, 1, 64, 96)), net(x, 0.7), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(x, 0.7, torch.zeros(1, 1, 64, 96)), net(x, 0.0), atol=1e-5, rtol=1e-5)
        half = torch.zeros(1, 1, 64, 96)
        half[..., :48] = 1.0                       # the left half at α, the right half at 0
        mapped, at1, at0 = net(x, 1.0, half), net(x, 1.0), net(x, 0.0)
    left, right = (slice(None), slice(None), slice(None), slice(4, 36)), (slice(None), slice(None), slice(None), slice(60, 92))
    for side, own, other in ((left, at1, at0), (right, at0, at1)):
        assert (mapped[side] - own[side]).abs().mean() * 2 < (mapped[side] - other[side]).abs().mean()


def test_exports_to_onnx_and_round_trips_a_checkpoint(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from dynastream.stream.export import export_onnx

    net = frame_net()
    nets.save(net, tmp_path / "f.pt")
    back = nets.load(str(tmp_path / "f.pt"))
    assert back.main.config == PRESETS["arbitrary-frame"] and back.sites == tuple(SITES)
    sess = ort.InferenceSession(str(export_onnx(back, tmp_path / "f.onnx", alpha_map=True)),
                                providers=["CPUExecutionProvider"])
    for h, w in ((36, 44), (240, 320)):
        x = pictures(1, h, w)
        alpha = torch.tensor([[1.0, 0.5, 0.7, 0.9]])
        amap = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            ref = net(x, alpha, amap).numpy()
        out = sess.run(None, {"x": x.numpy(), "alpha": alpha.numpy(), "alpha_map": amap.numpy()})[0]
        assert np.abs(out - ref).max() < 1e-4, (h, w)


def test_arch_and_config_checks_are_one_sentence():
    assert StyleNetConfig.from_dict(PRESETS["arbitrary-frame"].to_dict()) == PRESETS["arbitrary-frame"]
    assert StyleNetConfig.from_dict(PRESETS["arbitrary"].to_dict()).frame_style == 0   # older checkpoints
    arch = {"net": "stylenet", **PRESETS["arbitrary-frame"].to_dict()}
    with pytest.raises(CheckpointError, match="arch.frame_style must be a whole number from 0 to 4096"):
        check_arch("style", {**arch, "frame_style": "100"}, "x.pt")
    with pytest.raises(CheckpointError, match="arch.frame_style needs arch.output_norm true"):
        check_arch("style", {**arch, "output_norm": False}, "x.pt")
    with pytest.raises(ConfigError, match="site style belongs to a frame-conditioned net"):
        from_dict(NetConfig, {"preset": "arbitrary", "sites": ["res3_in", "style"]}, "net")
