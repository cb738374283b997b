import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.stream.export import export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("model", ["untrained:lite", "untrained:lite-dual"])
def test_onnx_matches_torch_at_three_alphas_with_dynamic_size_and_batch(tmp_path, model):
    net = nets.load(model)
    path = export_onnx(net, tmp_path / "m.onnx")
    sess = session(path)
    assert [i.name for i in sess.get_inputs()] == ["x", "alpha"]
    lo, hi = net.alpha_range
    g = torch.Generator().manual_seed(3)
    for (h, w), batch in [((40, 56), 1), ((64, 48), 3)]:
        x = torch.rand(batch, 3, h, w, generator=g)
        for a in (lo, (lo + hi) / 2 + 0.1, hi):
            alpha = torch.full((batch, 3), a)
            alpha[0, 1] = a / 2          # per-site values differ too
            with torch.no_grad():
                ref = net(x, alpha).numpy()
            out = sess.run(None, {"x": x.numpy(), "alpha": alpha.numpy()})[0]
            assert out.shape == ref.shape
            assert np.abs(out - ref).max() < 1e-4, (model, h, w, batch, a)


def test_dcgan_generator_exports_with_alpha_input(tmp_path):
    net = nets.load("untrained:dcgan")
    sess = session(export_onnx(net, tmp_path / "g.onnx"))
    z = torch.randn(2, net.main.config.nz, generator=torch.Generator().manual_seed(0))
    alpha = torch.tensor([[0.0], [1.0]])
    with torch.no_grad():
        ref = net(z, alpha).numpy()
    assert np.abs(sess.run(None, {"z": z.numpy(), "alpha": alpha.numpy()})[0] - ref).max() < 1e-4


def test_onnx_carries_sites_and_alpha_range(tmp_path):
    path = export_onnx(nets.load("untrained:lite-dual"), tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["dynastream.sites"] == '["res3_in", "up1_in", "out_in"]'
    assert meta["dynastream.mode"] == "dual" and meta["dynastream.alpha_range"] == "[-1.0, 1.0]"


def test_export_command_writes_a_model_and_refuses_bad_input_in_one_sentence(tmp_path, run_cli):
    out = tmp_path / "lite.onnx"
    proc = subprocess.run([sys.executable, "-m", "dynastream.stream", "export", "untrained:lite", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)   # once as a person types it
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and session(out).get_outputs()[0].name == "y"

    proc = run_cli("export", "no-such-model", "-o", str(tmp_path / "x.onnx"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("dynastream: error: no model named 'no-such-model'")
    assert len(proc.stderr.strip().splitlines()) == 1

    for bad, reason in ((tmp_path / "missing" / "x.onnx", "does not exist"), (tmp_path, "is a directory")):
        proc = run_cli("export", "untrained:lite", "-o", str(bad))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite.onnx"]   # no temporary left behind


def test_unwritable_folder_leaves_nothing(tmp_path, run_cli):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if (folder / "probe").exists() or _writable_anyway(folder):
            pytest.skip("running as a user that can write to read-only folders (root)")
        proc = run_cli("export", "untrained:lite", "-o", str(folder / "x.onnx"))
        assert proc.returncode == 2 and "not writable" in proc.stderr
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def _writable_anyway(folder):
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def plain_open_mode(folder):
    """The mode a plain ``open(path, "w")`` gives a new file in ``folder`` (0666 less the umask)."""
    probe = folder / "plain.txt"
    with open(probe, "w"):
        pass
    mode = probe.stat().st_mode & 0o777
    probe.unlink()
    return mode


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_onnx_file_gets_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = export_onnx(nets.load("untrained:dcgan"), tmp_path / "g.onnx")
        assert path.stat().st_mode & 0o777 == plain_open_mode(tmp_path) == 0o666 & ~umask
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]
