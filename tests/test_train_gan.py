"""The Dynamic DCGAN trainer on real parts: subsets drawn on the fly or written as files, a narrow
generator, a few steps per phase."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from dynastream import configs, nets
from dynastream.configs.schema import ConfigError, load_config
from dynastream.train.data import DataError, SubsetDataset, celeba_split, generated_subset
from dynastream.train.gan import PREVIEW_ALPHAS, DCGANTrainConfig, recalibrate_batchnorm, train, zero_last_convs
from dynastream.train.session import Interrupted, RunError

SMOKE = configs.path("train/dcgan_smoke.yaml")
TINY = ["schedule.main.steps=4", "schedule.blocks.steps=4", "schedule.log_every=2", "schedule.checkpoint_every=0"]
REPO = Path(__file__).resolve().parent.parent


def tiny(*sets) -> DCGANTrainConfig:
    return load_config(DCGANTrainConfig, SMOKE, [*TINY, *sets])


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def main_state(ckpt: dict) -> dict:
    return {k: v for k, v in ckpt["state_dict"].items() if k.startswith("main.")}


def test_both_phases_train_and_the_main_generator_stays_bit_identical(tmp_path):
    cfg = tiny()
    with pytest.raises(Interrupted):   # stopped after the blocks phase's first step
        train(cfg, tmp_path / "run", stop_at_step=5)
    after_main = nets.read(tmp_path / "run" / "last.pt")
    final_path = train(cfg, tmp_path / "run", resume=True)
    final = nets.read(final_path)
    assert final["kind"] == "dcgan" and final["mode"] == "normal" and final["sites"] == ["layer3_out"]
    assert states_equal(main_state(after_main), main_state(final))
    blocks = [k for k in final["state_dict"] if k.startswith("higher.")]
    assert blocks and not all(torch.equal(after_main["state_dict"][k], final["state_dict"][k]) for k in blocks), \
        "the tuning block must have trained"
    prov = final["provenance"]
    assert prov["total_steps"] == 8 and set(prov["final_losses"]) == {"main", "higher"}
    assert final["objectives"]["main"]["data"] == "generated:circles"
    assert final["objectives"]["higher"]["data"] == "generated:squares"

    # resuming gave exactly what an uninterrupted run gives
    straight = nets.read(train(cfg, tmp_path / "straight"))
    assert states_equal(straight["state_dict"], final["state_dict"])

    # the preview: one row per preview z, one column per α, 64 px tiles with 2 px padding
    with Image.open(tmp_path / "run" / "previews" / "final.png") as sheet:
        rows, cols = cfg.data.preview_samples, len(PREVIEW_ALPHAS)
        assert sheet.size == (cols * 66 + 2, rows * 66 + 2)


def test_alpha_zero_is_exactly_the_main_generator(tmp_path):
    net = nets.load(train(tiny(), tmp_path / "run"))
    z = torch.randn(4, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(net(z, 0.0), net.main(z))
        assert not torch.equal(net(z, 1.0), net.main(z))
        y = net(z, torch.tensor([0.0, 0.5, 1.0, 0.25]))
    assert y.shape == (4, 3, 64, 64) and y.min() >= -1 and y.max() <= 1


def test_recalibration_makes_eval_statistics_the_average_over_its_batches():
    torch.manual_seed(0)
    g = nets.DynamicNet.for_dcgan(nets.dcgan.DCGANConfig(ngf=8, ndf=8)).main
    recalibrate_batchnorm(g, 100, 16, torch.Generator().manual_seed(3), torch.device("cpu"), batches_=20)
    bn = g.layer1[1]
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 20
    zgen = torch.Generator().manual_seed(3)   # the same z again: the stored statistics are their exact averages
    with torch.no_grad():
        hs = [g.layer1[0](torch.randn(16, 100, generator=zgen).reshape(16, 100, 1, 1)) for _ in range(20)]
    means = torch.stack([h.mean(dim=(0, 2, 3)) for h in hs]).mean(0)
    variances = torch.stack([h.transpose(0, 1).flatten(1).var(dim=1) for h in hs]).mean(0)
    assert torch.allclose(bn.running_mean, means, atol=1e-6)
    assert torch.allclose(bn.running_var, variances, rtol=1e-4)


def write_celeba(folder: Path, flags: list[int]) -> None:
    (folder / "img_align_celeba").mkdir(parents=True)
    rows = []
    for i, flag in enumerate(flags):
        name = f"{i + 1:06d}.jpg"
        generated_subset("circles" if flag < 0 else "squares", i, 128).save(folder / "img_align_celeba" / name)
        rows.append(f"{name} {-flag} {flag} 1")
    (folder / "list_attr_celeba.txt").write_text(f"{len(flags)}\nSmiling Male Young\n" + "\n".join(rows) + "\n")


def test_celeba_layout_is_split_by_attribute_and_value(tmp_path):
    write_celeba(tmp_path / "celeba", [1, -1, -1, 1, -1])
    others, matching = celeba_split(tmp_path / "celeba", "Male", -1)
    assert [p.name for p in matching] == ["000002.jpg", "000003.jpg", "000005.jpg"]
    assert [p.name for p in others] == ["000001.jpg", "000004.jpg"]
    with pytest.raises(DataError, match="no attribute 'Bald'.*Smiling, Male, Young"):
        celeba_split(tmp_path / "celeba", "Bald", 1)
    with pytest.raises(DataError, match="no image without Young = 1"):
        celeba_split(tmp_path / "celeba", "Young", 1)
    with pytest.raises(DataError, match="list_attr_celeba.txt is missing"):
        celeba_split(tmp_path, "Male", 1)
    x, skipped = SubsetDataset(matching, 64, crop=100)[(0, 7)]
    assert x.shape == (3, 64, 64) and -1 <= x.min() < x.max() <= 1 and (skipped < 0).all()


def test_cli_trains_from_a_celeba_folder(tmp_path, run_cli):
    write_celeba(tmp_path / "celeba", [1, -1] * 4)
    sets = ["data.a=null", "data.b=null", f"data.celeba={{folder: {tmp_path / 'celeba'}, attribute: Male, value: 1}}",
            "data.crop=100", "data.batch_size=4", "schedule.main.steps=2", "schedule.blocks.steps=2"]
    proc = run_cli("train", "--config", SMOKE, "--out", tmp_path / "run", *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stderr
    ckpt = nets.read(tmp_path / "run" / "dcgan_smoke.pt")
    assert ckpt["objectives"]["higher"]["images"] == 4 and "(Male == 1)" in ckpt["objectives"]["higher"]["data"]


@pytest.mark.parametrize("sets, message", [
    (["data.celeba={folder: x, attribute: Male}"], "either both a and b"),
    (["data.b=null"], "either both a and b"),
    (["data.batch_size=1"], "batch_size must be >= 2"),
    (["net.ngf=0"], "nz, ngf and ndf must be >= 1"),
    (["schedule.blocks_discriminator=shared"], "blocks_discriminator must be one of fresh, continue"),
])
def test_bad_configs_are_one_sentence(sets, message):
    with pytest.raises(ConfigError, match=message):
        tiny(*sets)


def test_a_missing_subset_folder_is_reported_before_training(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        train(tiny(f"data.b={tmp_path / 'nowhere'}"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_eval_scores_a_dcgan_with_a_subset_classifier(tmp_path, run_cli):
    model = train(tiny(), tmp_path / "run")
    proc = run_cli("eval", model, "--samples", "16", "--alphas", "0,1", "--json", tmp_path / "e.json",
                   "--sheet", tmp_path / "e.png")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["subsets"] == {"A": "generated:circles", "B": "generated:squares"}
    assert result["classifier_accuracy"] > 0.9, "discs vs squares is an easy split"
    assert result["alphas"] == [0.0, 1.0] and len(result["p_b"]) == len(result["share_b"]) == 2
    assert "subset classifier accuracy" in proc.stdout
    with Image.open(tmp_path / "e.png") as sheet:
        assert sheet.size == (2 * 66 + 2, 8 * 66 + 2)
    bad = run_cli("eval", model, "--subsets", "only-one")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--subsets must be two folders" in bad.stderr


def test_blocks_start_neutral_and_a_run_can_start_from_another_generator(tmp_path):
    first = train(tiny(), tmp_path / "first")
    net = nets.load(first)
    zero_last_convs(net.higher)
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(net(z, 1.0), net(z, 0.0)), "a zeroed block leaves α = 1 drawing what α = 0 draws"

    second = train(tiny("schedule.main.steps=0", f"net.main_from={first}"), tmp_path / "second")
    a, b = nets.read(first), nets.read(second)
    assert states_equal(main_state(a), main_state(b)), "only the tuning block trains"
    assert b["provenance"]["main_from"]["path"] == str(first.resolve()) and b["provenance"]["total_steps"] == 4
    with pytest.raises(RunError, match="has nz 100 and ngf 8; this config asks for nz 100 and ngf 16"):
        train(tiny("schedule.main.steps=0", f"net.main_from={first}", "net.ngf=16"), tmp_path / "third")
