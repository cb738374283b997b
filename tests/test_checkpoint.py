import os
import pickle
from pathlib import Path

import pytest
import torch

import nets
from nets import CheckpointError, DynamicNet


def _net(preset="lite", mode="normal"):
    torch.manual_seed(3)
    return DynamicNet.for_style(preset, mode).eval()


@pytest.mark.parametrize("mode", ["normal", "dual"])
def test_round_trip_identical_outputs_and_metadata(tmp_path, mode, rng_image):
    net = _net(mode=mode)
    path = nets.save(net, tmp_path / "m.pt", objectives={"O0": {"style_weight": 1e5}},
                     provenance={"steps": 12}, alpha_range=(-0.5, 1.5) if mode == "normal" else None)
    loaded = nets.load(path)
    assert loaded.mode == mode and loaded.sites == net.sites and loaded.kind == "style"
    assert loaded.alpha_range == ((-0.5, 1.5) if mode == "normal" else (-1.0, 1.0))
    assert loaded.meta["objectives"] == {"O0": {"style_weight": 1e5}}
    assert loaded.meta["provenance"] == {"steps": 12} and loaded.meta["name"] == "m"
    with torch.no_grad():
        for a in (0.0, 0.5, 1.0, -1.0):
            assert torch.equal(loaded(rng_image, a), net(rng_image, a))
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_half_storage_loads_as_fp32(tmp_path, rng_image):
    net = _net()
    path = nets.save(net, tmp_path / "h.pt", half=True)
    assert path.stat().st_size < nets.save(net, tmp_path / "f.pt").stat().st_size * 0.6
    loaded = nets.load(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(rng_image, 1.0), net(rng_image, 1.0), atol=2e-2, rtol=1e-2)


def test_dcgan_round_trip(tmp_path):
    torch.manual_seed(0)
    net = DynamicNet.for_dcgan().eval()
    loaded = nets.load(nets.save(net, tmp_path / "g.pt"))
    z = torch.randn(2, 100)
    with torch.no_grad():
        assert torch.equal(loaded(z, 0.7), net(z, 0.7))


def test_untrained_names_are_seeded():
    a, b = nets.load("untrained:lite"), nets.load("untrained:lite")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.meta["provenance"]["untrained"] is True


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        nets.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no model named 'nope'"):
        nets.load("nope")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file at all")
    with pytest.raises(CheckpointError, match="not a dynastream checkpoint"):
        nets.load(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a dynastream checkpoint"):
        nets.load(plain)


def test_newer_format(tmp_path):
    path = nets.save(_net(), tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["format"] = "dynastream/2"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="newer"):
        nets.load(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    path = nets.save(_net("lite"), tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["arch"] = dict(ckpt["arch"], encoder_widths=[32, 64, 128], decoder_widths=[64, 32])
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not fit the declared architecture"):
        nets.load(path)
    ckpt["arch"] = dict(ckpt["arch"], net="transformer")
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not fit the declared architecture"):
        nets.load(path)


class _Payload:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dynastream/1", "payload": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="could run code"):
        nets.load(evil)
    assert not marker.exists()
    # A raw (non-zip) pickle stream too.
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        nets.load(raw)
    assert not marker.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writers_get_the_mode_of_a_plain_open(tmp_path, umask):
    from nets.atomic import atomic_open
    from stream.bench import write_text_atomic

    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w"):
            pass
        written = [nets.save(_net(), tmp_path / "m.pt"), tmp_path / "b.json"]
        write_text_atomic(str(written[1]), "{}\n")
        with pytest.raises(ZeroDivisionError):
            with atomic_open(tmp_path / "never.bin") as f:
                f.write(b"half")
                1 / 0
    finally:
        os.umask(old)
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert plain == 0o666 & ~umask
    assert [p.stat().st_mode & 0o777 for p in written] == [plain, plain]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "m.pt", "plain.txt"]   # no temporary left
