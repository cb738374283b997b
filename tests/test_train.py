"""The style trainer on real parts: generated images, a random-weight VGG16 loss network, tiny sizes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dynastream import configs, nets
from dynastream.configs.schema import load_config
from dynastream.nets import DynamicNet
from dynastream.train.data import load_style_image
from dynastream.train.lossnet import load_lossnet
from dynastream.train.session import Interrupted, state_sha256
from dynastream.train.style import Objective, ObjectiveConfig, StyleTrainConfig, make_optimizer, train, train_step

SMOKE = configs.path("train/smoke.yaml")
TINY = ["data.image_size=32", "data.batch_size=2", "objectives.main.style_size=32",
        "objectives.higher.style_size=32", "schedule.log_every=2", "schedule.checkpoint_every=0"]
REPO = Path(__file__).resolve().parent.parent


def env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cli(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "dynastream.stream", "train", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=cwd)


def tiny_config(*sets) -> StyleTrainConfig:
    return load_config(StyleTrainConfig, SMOKE, [*TINY, *sets])


@pytest.fixture(scope="module")
def lossnet():
    return load_lossnet("random").net


@pytest.fixture(scope="module")
def fixed_batch():
    from dynastream.train.data import CropDataset

    return CropDataset("generated:shapes", 32).preview_batch(2)[0]


def objective(lossnet, style_weight=10.0, pattern="stripes"):
    cfg = ObjectiveConfig(style_image=f"generated:{pattern}", style_size=32, style_weight=style_weight)
    obj = Objective(cfg, lossnet, load_style_image(cfg.style_image, 32), normalize=True)
    return obj


def fit(net, group, alpha, obj, x, steps, lr=1e-3):
    opt = make_optimizer(net, group, lr)
    model = net.main if group == "main" else net
    losses = []
    for _ in range(steps):
        if obj.needs_calibration:
            with torch.no_grad():
                y = model(x) if alpha is None else model(x, alpha)
                obj.calibrate({k: float(v) for k, v in obj.terms(y, obj.content_target(x)).items()})
        losses.append(float(train_step(model, alpha, obj, opt, x)["loss"]))
    return losses


def test_loss_goes_down_on_a_fixed_batch_for_main_then_blocks(lossnet, fixed_batch):
    torch.manual_seed(0)
    net = DynamicNet.for_style("lite")
    main_losses = fit(net, "main", None, objective(lossnet, 1.0), fixed_batch, 20)
    assert main_losses[0] == pytest.approx(2.0, rel=1e-4), "normalised: each of the 2 terms starts at 1"
    assert main_losses[-1] < 0.6 * main_losses[0]
    main_before = state_sha256(net.main)
    block_losses = fit(net, "higher", 1.0, objective(lossnet, 10.0, "checks"), fixed_batch, 20)
    assert block_losses[-1] < 0.7 * block_losses[0]
    assert state_sha256(net.main) == main_before, "the blocks phase leaves the main net bit-identical"
    with torch.no_grad():
        assert torch.equal(net(fixed_batch, 0.0), net.main(fixed_batch))


def test_dual_trains_only_the_blocks_of_its_sign(lossnet, fixed_batch):
    torch.manual_seed(0)
    net = DynamicNet.for_style("lite", "dual")
    before = {g: [p.detach().clone() for p in net.group_parameters(g)] for g in net.groups()}
    fit(net, "lower", -1.0, objective(lossnet, 10.0, "waves"), fixed_batch, 3)
    after_lower = {g: [p.detach().clone() for p in net.group_parameters(g)] for g in net.groups()}
    unchanged = lambda a, b: all(torch.equal(p, q) for p, q in zip(a, b))  # noqa: E731
    assert unchanged(before["main"], after_lower["main"]) and unchanged(before["higher"], after_lower["higher"])
    assert not unchanged(before["lower"], after_lower["lower"])
    fit(net, "higher", 1.0, objective(lossnet, 10.0), fixed_batch, 3)
    assert unchanged(after_lower["lower"], [p.detach() for p in net.group_parameters("lower")])
    assert unchanged(before["main"], [p.detach() for p in net.group_parameters("main")])
    assert not unchanged(after_lower["higher"], [p.detach() for p in net.group_parameters("higher")])


def test_smoke_config_trains_and_loads(tmp_path):
    out = tmp_path / "smoke"
    proc = cli("--config", "configs/train/smoke.yaml", "--out", str(out), cwd=tmp_path)  # shipped name, any cwd
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out / 'smoke.pt'}" in proc.stdout
    net = nets.load(out / "smoke.pt")
    assert net.main.config == nets.PRESETS["lite"] and net.mode == "normal"
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        y0, y1 = net(x, 0.0), net(x, 1.0)
        assert y0.shape == y1.shape == x.shape and torch.isfinite(y1).all()
        assert torch.equal(y0, net.main(x)) and not torch.allclose(y0, y1)
    prov, obj = net.meta["provenance"], net.meta["objectives"]
    assert prov["loss_net"]["source"] == "random" and prov["data"]["folder"] == "generated:shapes"
    assert prov["steps"] == {"main": 20, "higher": 20} and prov["total_steps"] == 40
    assert set(prov["final_losses"]) == {"main", "higher"} and prov["config"]["name"] == "smoke"
    assert {"torch", "python", "dynastream"} <= set(prov["versions"])
    assert obj["main"]["alpha"] == 0.0 and obj["higher"]["alpha"] == 1.0 and obj["normalized"] is True
    eff = obj["higher"]["effective_weights"]
    assert eff["style"] == pytest.approx(10.0 / obj["higher"]["initial_terms"]["style"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(5, 41, 5))
    assert {"loss", "content", "style", "sec_per_step", "phase", "alpha"} <= set(records[-1])
    from PIL import Image

    sheet = Image.open(out / "previews" / "final.png")
    assert sheet.size == (6 * 64 + 7 * 2, 2 * 64 + 3 * 2), "2 validation images x (input + 5 alphas)"


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    cfg = tiny_config("schedule.main.steps=5", "schedule.blocks.steps=5")
    whole = nets.read(train(cfg, tmp_path / "whole"))
    with pytest.raises(Interrupted) as e:
        train(cfg, tmp_path / "parts", stop_at_step=3)           # inside the main phase
    assert e.value.step == 3 and nets.read(e.value.path)["train_state"]["step"] == 3
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "parts", resume=True, stop_at_step=7)   # inside the blocks phase
    parts = nets.read(train(cfg, tmp_path / "parts", resume=True))
    assert parts["state_dict"].keys() == whole["state_dict"].keys()
    for k, v in whole["state_dict"].items():
        assert torch.equal(parts["state_dict"][k], v), k
    assert parts["objectives"] == whole["objectives"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    with pytest.raises(nets.DynastreamError, match="already holds a training run"):
        train(cfg, tmp_path / "whole")


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dynastream.stream", "train", "--config", str(SMOKE), "--out", str(out), *sum(
        (["--set", s] for s in [*TINY, "schedule.main.steps=100000", "schedule.log_every=1"]), [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.monotonic() + 300
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr.splitlines()[-1] and "Traceback" not in stderr
    state = nets.read(out / "last.pt")["train_state"]
    assert state["step"] >= 1 and state["phase_index"] == 0 and state["optimizer"]["state"]


def test_two_process_gloo_ddp_matches_one_process_with_twice_the_batch(tmp_path):
    sets = sum((["--set", s] for s in [*TINY, "schedule.main.steps=2", "schedule.blocks.steps=2",
                                       "schedule.log_every=1"]), [])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run([*torchrun, "-m", "dynastream.stream", "train", "--config", str(SMOKE), "--out", str(tmp_path / "ddp"), *sets],
                          capture_output=True, text=True, timeout=600, env=env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = nets.read(tmp_path / "ddp" / "smoke.pt")
    assert ckpt["provenance"]["processes"] == 2 and ckpt["provenance"]["total_steps"] == 4
    assert not (tmp_path / "ddp" / "last.pt.tmp").exists() and len(list((tmp_path / "ddp").glob(".*"))) == 0
    ddp = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp] == [1, 2, 3, 4]
    # each process reads its own half of what one process with batch 4 reads, and gradients are averaged
    cfg = tiny_config("schedule.main.steps=2", "schedule.blocks.steps=2", "schedule.log_every=1", "data.batch_size=4")
    single = nets.read(train(cfg, tmp_path / "single"))
    one = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(ddp, one):
        first = a["step"] == 1   # depends on the data only; later steps (the blocks' first too, through the
        for k in ("content", "style", "loss"):   # trained main net) on gradients averaged in another order
            assert a[k] == pytest.approx(b[k], rel=1e-5 if first else 1e-2), (a["step"], k)
    assert ckpt["objectives"]["main"]["initial_terms"] == pytest.approx(single["objectives"]["main"]["initial_terms"], rel=1e-5)


@pytest.mark.parametrize("sets, message", [
    (["objectives.main.style_image=missing.jpg"], "style image missing.jpg does not exist"),
    (["data.folder=EMPTY"], "holds no images"),
    (["schedule.main.steps=many"], "--set schedule.main.steps=many: schedule.main.steps must be an integer, not 'many'"),
    (["schedule.mian.steps=3"], "--set schedule.mian.steps=3: no config key 'schedule.mian'"),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, run_cli, sets, message):
    (tmp_path / "EMPTY").mkdir()
    args = ["--config", str(SMOKE), "--out", str(tmp_path / "out")]
    for s in sets:
        args += ["--set", s]
    proc = run_cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynastream: error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists(), "nothing written for bad input"


def test_unknown_config_key_in_process(tmp_path, capsys):
    from dynastream.stream.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("  image_size: 64", "  image_sise: 64"))
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"dynastream: error: config {bad}: unknown key 'data.image_sise' (known here: folder, "
                   "image_size, batch_size, crop_scale, workers, preview_images, teacher_crops, teacher_crop_size, "
                   "teacher_cache, color_jitter)")
    assert main(["train", "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (("lr: 1.0e-3}\n  blocks", "lr: .nan}\n  blocks"), "schedule.main.lr must be a finite number, not nan"),
    (("lr: 1.0e-3}\n  blocks", "lr: .inf}\n  blocks"), "schedule.main.lr must be a finite number, not inf"),
    (("    style_weight: 10.0", "    style_weight: -.inf"), "objectives.higher.style_weight must be a finite number"),
    (("  image_size: 64", "  image_size: .nan"), "data.image_size must be an integer, not nan"),
])
def test_non_finite_config_numbers_are_refused_before_the_output_folder_exists(tmp_path, capsys, edit, message):
    from dynastream.stream.cli import main

    bad = tmp_path / "bad.yaml"
    text = SMOKE.read_text()
    assert edit[0] in text
    bad.write_text(text.replace(edit[0], edit[1], 1))
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dynastream: error: config {bad}: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--set", "schedule.blocks.lr=nan"]) == 2
    assert "schedule.blocks.lr must be a finite number, not 'nan'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("schedule", [["schedule.log_every=2"],                                # caught at a log step
                                      ["schedule.log_every=50", "schedule.checkpoint_every=1"]])  # at a checkpoint
def test_a_loss_that_turns_non_finite_stops_the_run_without_a_nan_checkpoint(tmp_path, capsys, schedule):
    """A finite but absurd weight overflows the fp32 loss: one sentence, exit 2, no checkpoint."""
    from dynastream.stream.cli import main

    out = tmp_path / "o"
    args = ["train", "--config", str(SMOKE), "--out", str(out), *[a for s in TINY + schedule for a in ("--set", s)],
            "--set", "schedule.main.steps=4", "--set", "objectives.normalize=false",
            "--set", "objectives.main.style_weight=1e300"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"dynastream: error: training stopped at step [12] \(phase main\): the \w+ loss became (nan|inf), "
                        "so no checkpoint was written from here on; lower the learning rate or the loss weights", err), err
    assert not list(out.rglob("*.pt"))
