import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynastream import nets
from dynastream.nets import CheckpointError, DynamicNet
from dynastream.nets.checkpoint import DIGEST_KEY, ZOO_DIR, weights_digest


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
    with pytest.raises(CheckpointError, match="needs arch.net stylenet, not 'transformer'"):
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
    from dynastream.nets.atomic import atomic_open
    from dynastream.stream.bench import write_text_atomic

    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w"):
            pass
        written = [nets.save(_net(), tmp_path / "m.pt"), tmp_path / "b.json"]
        write_text_atomic(str(written[1]), "{}\n")
        with pytest.raises(ZeroDivisionError):
            with atomic_open(tmp_path / "never.bin") as f:
                f.write(b"half")
                raise ZeroDivisionError
    finally:
        os.umask(old)
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert plain == 0o666 & ~umask
    assert [p.stat().st_mode & 0o777 for p in written] == [plain, plain]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "m.pt", "plain.txt"]   # no temporary left
# --- damaged and hostile checkpoints ----------------------------------------------------------

def _saved_dict(tmp_path, **changes) -> Path:
    """A saved lite checkpoint with top-level fields replaced (None removes one)."""
    path = nets.save(_net(), tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            ckpt.pop(key)
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


def test_save_writes_a_digest_of_the_weights_and_load_checks_it(tmp_path):
    path = nets.save(_net(), tmp_path / "m.pt", half=True)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt[DIGEST_KEY] == weights_digest(ckpt["state_dict"]) and len(ckpt[DIGEST_KEY]) == 64
    state = dict(ckpt["state_dict"])
    state["main.conv1.conv.bias"] = state["main.conv1.conv.bias"] + 0.001   # finite, plausible, wrong
    torch.save(dict(ckpt, state_dict=state), path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged: its weights do not match their "
                                              "recorded digest"):
        nets.load(path)


def test_every_zoo_checkpoint_carries_its_digest():
    for entry in nets.zoo_entries():
        ckpt = nets.read(ZOO_DIR / entry.file)
        assert ckpt[DIGEST_KEY] == weights_digest(ckpt["state_dict"]), entry.name
        assert {t.dtype for t in ckpt["state_dict"].values()} <= {torch.float16, torch.int64}, entry.name


def test_a_checkpoint_without_digest_still_loads_but_not_with_bad_weights(tmp_path, rng_image):
    net = _net()
    path = _saved_dict(tmp_path, **{DIGEST_KEY: None})
    with torch.no_grad():
        assert torch.equal(nets.load(path)(rng_image, 0.5), net(rng_image, 0.5))
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["higher.res3_in.conv1.conv.weight"][0, 0, 0, :2] = float("nan")
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"damaged: weight higher.res3_in.conv1.conv.weight holds 2 "
                                              r"non-finite value\(s\)"):
        nets.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda t: torch.full_like(t, float("inf")), "holds .* non-finite value"),
    (lambda t: torch.full_like(t, 1e30), "holds values as large as 1e\\+30"),
    (lambda t: t.round().to(torch.int64), "has dtype int64, the architecture needs float32"),
    (lambda t: t.to(torch.bool), "has dtype bool, not a floating-point or integer type"),
    (lambda t: t[:1], "has shape \\(1,\\), the architecture needs \\(12,\\)"),
])
def test_wrong_weights_are_refused_with_or_without_digest(tmp_path, change, message):
    ckpt = torch.load(nets.save(_net(), tmp_path / "m.pt"), weights_only=True)
    state = dict(ckpt["state_dict"])
    state["main.conv1.conv.bias"] = change(state["main.conv1.conv.bias"])
    for digest in (weights_digest(state), None):   # a digest that matches does not make them right
        path = tmp_path / "w.pt"
        torch.save({**ckpt, "state_dict": state, DIGEST_KEY: digest} if digest else
                   {k: v for k, v in {**ckpt, "state_dict": state}.items() if k != DIGEST_KEY}, path)
        with pytest.raises(CheckpointError, match=message):
            nets.load(path)


def test_save_refuses_non_finite_weights(tmp_path):
    net = _net()
    with torch.no_grad():
        net.main.conv1.conv.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="refused to save .* weight main.conv1.conv.bias holds 1 non-finite"):
        nets.save(net, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="refused to save .*: alpha_range must be two finite numbers"):
        nets.save(_net(), tmp_path / "range.pt", alpha_range=(0.0, float("nan")))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("field, value, message", [
    ("arch", "paper", "arch must be a mapping, not 'paper'"),
    ("arch", {"net": "stylenet", "encoder_widths": [12, 24], "decoder_widths": [24, 12], "n_res": 5},
     "arch.encoder_widths must be a list of 3 whole numbers from 1 to 1024, not \\[12, 24\\]"),
    ("arch", {"net": "stylenet", "encoder_widths": [12, 24, "32"], "decoder_widths": [24, 12], "n_res": 5},
     "arch.encoder_widths must be"),
    ("arch", {"net": "dcgan", "nz": 100, "ngf": 64, "ndf": 64, "nc": 3}, "a style checkpoint needs arch.net stylenet"),
    ("alpha_range", "0..1", "alpha_range must be two finite numbers \\[low, high\\] with low < high, not '0..1'"),
    ("alpha_range", 1.0, "alpha_range must be two finite numbers"),
    ("alpha_range", [1.0, 0.0], "alpha_range must be two finite numbers"),
    ("alpha_range", [0.0, float("inf")], "alpha_range must be two finite numbers"),
    ("alpha_range", [True, 2], "alpha_range must be two finite numbers"),
    ("sites", "res3_in", "sites must be a list of distinct site names, not 'res3_in'"),
    ("sites", ["res3_in", 3], "sites must be a list of distinct site names"),
    ("sites", ["res3_in", "res3_in"], "sites must be a list of distinct site names"),
    ("sites", ["res9_in"], "do not fit the declared architecture \\(sites must be distinct names"),
    ("mode", 1, "mode must be normal or dual, not 1"),
    ("kind", "x" * 1000, "kind must be style or dcgan, not 'xxxx"),
    ("objectives", [1], "objectives must be a mapping"),
    ("provenance", "me", "provenance must be a mapping"),
    ("state_dict", [1, 2], "state_dict must map weight names to tensors"),
    ("state_dict", {"a": 1}, "state_dict must map weight names to tensors"),
    (DIGEST_KEY, 7, "weights_sha256 must be a text, not 7"),
])
def test_metadata_of_the_wrong_type_or_range_is_one_sentence(tmp_path, field, value, message):
    with pytest.raises(CheckpointError) as err:
        nets.load(_saved_dict(tmp_path, **{field: value}))
    assert re.search(message, str(err.value)) and len(str(err.value)) < 300, str(err.value)


HOSTILE_ARCH_SCRIPT = """
import json, resource, sys, time, torch
from dynastream import nets
path, results = sys.argv[1], []
ckpt = torch.load(path, weights_only=True)
for arch in json.loads(sys.argv[2]):
    torch.save(dict(ckpt, arch=dict(ckpt["arch"], **arch)), path)
    before_kb, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    try:
        nets.load(path)
        message = None
    except nets.CheckpointError as e:
        message = str(e)
    results.append([message, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb])
print(json.dumps(results))
"""


def test_hostile_architecture_is_refused_before_anything_is_allocated(tmp_path):
    """Huge widths and thousands of blocks are out of bounds; in-bounds but big ones are compared
    with the weights' shapes on the meta device. Either way: well under a second, < 50 MB."""
    archs = [{"n_res": 5000}, {"encoder_widths": [10 ** 6] * 3}, {"n_res": 2 ** 70},
             {"encoder_widths": [1024] * 3, "decoder_widths": [1024] * 2, "n_res": 64}]
    path = nets.save(_net(), tmp_path / "m.pt")
    proc = subprocess.run([sys.executable, "-c", HOSTILE_ARCH_SCRIPT, str(path), json.dumps(archs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for arch, (message, seconds, peak_growth_kb) in zip(archs, json.loads(proc.stdout)):
        assert message is not None and ("must be a whole number" in message or "must be a list of 3" in message
                                        or "do not fit the declared architecture" in message), (arch, message)
        assert seconds < 0.5 and peak_growth_kb < 50_000, (arch, seconds, peak_growth_kb)


def test_a_corrupted_zoo_checkpoint_is_one_sentence_and_render_writes_nothing(tmp_path, run_cli):
    """2,000 bytes XORed in the middle of a copy of a zoo file: refused, exit 2, no output."""
    from PIL import Image

    data = bytearray((ZOO_DIR / "fast-blue-to-red.pt").read_bytes())
    middle = len(data) // 2
    data[middle - 1000:middle + 1000] = bytes(b ^ 0x5A for b in data[middle - 1000:middle + 1000])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    image = tmp_path / "in.png"
    Image.new("RGB", (32, 24), (120, 60, 200)).save(image)
    out = tmp_path / "out.png"
    proc = run_cli("render", image, "-o", out, "--model", bad)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"dynastream: error: checkpoint {bad} is damaged: its weights do not match their " \
                          "recorded digest\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "in.png"]
