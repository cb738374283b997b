import pytest
import torch

from dynastream.nets import PRESETS, DCGANConfig, DCGANDiscriminator, DCGANGenerator, DynamicNet
from dynastream.nets.stylenet import STYLE_SITES, stylenet_macs_per_pixel


def make(preset: str, mode: str) -> DynamicNet:
    torch.manual_seed(0)
    return DynamicNet.for_style(preset, mode).eval()


@pytest.mark.parametrize("preset", ["paper", "lite"])
@pytest.mark.parametrize("mode", ["normal", "dual"])
def test_alpha_zero_is_main_net_bit_for_bit(preset, mode, rng_image):
    net = make(preset, mode)
    with torch.no_grad():
        main_out = net.main(rng_image)
        for alpha in (0.0, torch.tensor(0.0), torch.zeros(3), torch.zeros(1), torch.zeros(1, 3)):
            assert torch.equal(net(rng_image, alpha), main_out)
        assert not torch.equal(net(rng_image, 1.0), main_out)


def test_per_site_alpha_changes_only_through_that_site(rng_image):
    net = make("lite", "normal")
    with torch.no_grad():
        main_out = net.main(rng_image)
        outs = []
        for i in range(3):
            alpha = torch.zeros(3)
            alpha[i] = 1.0
            out = net(rng_image, alpha)
            assert not torch.equal(out, main_out)
            outs.append(out)
        assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2])
        # Zeroing one site's block weights makes that site inert at any alpha.
        for p in net.higher["up1_in"].parameters():
            p.zero_()
        assert torch.equal(net(rng_image, torch.tensor([0.0, 0.7, 0.0])), main_out)


def test_per_sample_alpha_equals_running_each_sample_alone():
    net = make("lite", "normal")
    x = torch.rand(4, 3, 32, 40, generator=torch.Generator().manual_seed(2))
    alphas = torch.tensor([0.0, 0.3, 1.0, 1.2])
    per_site = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.0, 0.2], [0.3, 0.3, 0.3], [0.0, 0.0, 0.0]])
    with torch.no_grad():
        batched = net(x, alphas)
        batched_sites = net(x, per_site)
        for i in range(4):
            torch.testing.assert_close(batched[i:i + 1], net(x[i:i + 1], float(alphas[i])), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batched_sites[i:i + 1], net(x[i:i + 1], per_site[i]), atol=1e-5, rtol=1e-5)


def test_alpha_shapes_rejected_when_wrong_or_ambiguous():
    net = make("lite", "normal")
    with pytest.raises(ValueError, match="ambiguous"):
        net(torch.rand(3, 3, 16, 16), torch.zeros(3))
    with pytest.raises(ValueError, match="fits neither"):
        net(torch.rand(2, 3, 16, 16), torch.zeros(5))
    with pytest.raises(ValueError, match="fits neither"):
        net(torch.rand(2, 3, 16, 16), torch.zeros(2, 2))


def test_dual_positive_alpha_uses_only_higher_blocks_and_negative_only_lower(rng_image):
    net = make("lite", "dual")
    with torch.no_grad():
        pos, neg = net(rng_image, 0.6), net(rng_image, -0.6)
        for p in net.lower.parameters():
            p.add_(torch.randn_like(p))
        assert torch.equal(net(rng_image, 0.6), pos)
        assert not torch.equal(net(rng_image, -0.6), neg)
        neg = net(rng_image, -0.6)
        for p in net.higher.parameters():
            p.add_(torch.randn_like(p))
        assert torch.equal(net(rng_image, -0.6), neg)
        assert not torch.equal(net(rng_image, 0.6), pos)


def test_same_graph_for_every_alpha_exports_once():
    """torch.export fails on data-dependent Python control flow, so one exported graph serving
    every α shows no branch looks at α's value."""
    net = make("lite", "normal")
    x = torch.rand(1, 3, 32, 32)
    exported = torch.export.export(net, (x, torch.tensor([0.2, 0.2, 0.2])))
    for a in ([0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [-0.3, 1.4, 2.0]):
        a = torch.tensor(a)
        torch.testing.assert_close(exported.module()(x, a), net(x, a))


def test_lite_costs_about_a_tenth_of_paper():
    ratio = stylenet_macs_per_pixel(PRESETS["lite"]) / stylenet_macs_per_pixel(PRESETS["paper"])
    assert 0.08 <= ratio <= 0.12
    # The paper net is ~0.31 MFLOP/pixel (DESIGN.md): 2 FLOP per MAC.
    assert 2 * stylenet_macs_per_pixel(PRESETS["paper"]) == pytest.approx(0.31e6, rel=0.02)
    assert 2 * stylenet_macs_per_pixel(PRESETS["paper"], STYLE_SITES) == pytest.approx(0.47e6, rel=0.05)


def test_groups_and_freeze_main():
    net = make("lite", "dual")
    n_main = sum(p.numel() for p in net.group_parameters("main"))
    n_hi = sum(p.numel() for p in net.group_parameters("higher"))
    n_lo = sum(p.numel() for p in net.group_parameters("lower"))
    assert n_main + n_hi + n_lo == sum(p.numel() for p in net.parameters()) and n_hi == n_lo > 0
    net.freeze_main()
    net.train()
    assert not net.main.training and net.higher.training
    assert not any(p.requires_grad for p in net.group_parameters("main"))
    assert all(p.requires_grad for p in net.group_parameters("higher"))
    with pytest.raises(ValueError):
        make("lite", "normal").group_parameters("lower")


def test_dcgan_shapes_and_dynamic_generator_alpha_zero():
    torch.manual_seed(0)
    g, d = DCGANGenerator(), DCGANDiscriminator()
    z = torch.randn(5, 100)
    assert g(z).shape == (5, 3, 64, 64)
    assert g(z.view(5, 100, 1, 1)).shape == (5, 3, 64, 64)
    assert d(g(z)).shape == (5,)
    dyn = DynamicNet.for_dcgan(DCGANConfig()).eval()
    assert dyn.sites == ("layer3_out",) and dyn.kind == "dcgan"
    with torch.no_grad():
        assert torch.equal(dyn(z, 0.0), dyn.main(z))
        assert not torch.equal(dyn(z, 1.0), dyn.main(z))
        per_sample = dyn(z, torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5]))
        assert torch.equal(per_sample[0], dyn.main(z)[0])


@pytest.mark.parametrize("hw", [(25, 33), (47, 65), (48, 64)])
def test_any_frame_size_comes_back_at_its_size(hw):
    net = make("lite", "normal")
    x = torch.rand(1, 3, *hw)
    assert net(x, 0.5).shape == (1, 3, *hw)
    assert net.main(x).shape == (1, 3, *hw)
