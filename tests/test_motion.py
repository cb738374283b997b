"""The temporal training term (train/motion.py) and its place in both trainers."""

import json

import pytest
import torch

from dynastream import nets
from dynastream.nets import DynamicNet
from dynastream.train.data import load_style_image
from dynastream.train.motion import MotionConfig, inside, moved_copies, random_grid, temporal_loss, warp
from dynastream.train.session import Amp
from dynastream.train.style import Objective, ObjectiveConfig, forward_terms, make_optimizer, measure_terms, train_step
from tests.test_train import SMOKE, fixed_batch, lossnet  # noqa: F401 (fixtures)

STILL = MotionConfig(shift=0, rotate=0, zoom=0, elastic=0, noise=0)


def test_no_motion_is_the_identity_and_a_shift_moves_by_its_pixels():
    x = torch.rand(2, 3, 32, 40)
    grid = random_grid(2, 32, 40, STILL, x.device)
    assert torch.allclose(warp(x, grid), x, atol=1e-5) and inside(grid).mean() > 0.85
    torch.manual_seed(0)
    _, grid, mask = moved_copies(x, MotionConfig(shift=0.1, rotate=0, zoom=0, elastic=0, noise=0))
    # a pure translation: every output pixel samples the input one fixed offset away
    offset_px = (grid[0, 5, 5, 0] - grid[0, 5, 4, 0]) * 20, (grid[0, 5, 5, 0] + 1) * 20 - 0.5 - 5
    assert offset_px[0] == pytest.approx(1.0, abs=1e-4) and abs(float(offset_px[1])) <= 4.0 + 1e-4
    assert 0.5 < mask.mean() < 1.0


def test_an_equivariant_map_scores_zero_and_a_flickering_one_does_not():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 48, 48)
    motion = MotionConfig(noise=0)
    moved, grid, mask = moved_copies(x, motion)
    pointwise = lambda t: t ** 2  # commutes with any warp, up to interpolation  # noqa: E731
    steady = temporal_loss(pointwise(moved), pointwise(x), grid, mask)
    flicker = temporal_loss(moved + 0.1 * torch.randn_like(moved), x, grid, mask)
    assert float(steady) < 0.01 and float(flicker) > 0.009


def tiny_objective(lossnet, temporal_weight):  # noqa: F811
    cfg = ObjectiveConfig(style_image="generated:stripes", style_size=32, style_weight=1.0,
                          temporal_weight=temporal_weight)
    obj = Objective(cfg, lossnet, load_style_image(cfg.style_image, 32), normalize=False)
    return obj


def test_the_term_has_gradient_and_training_with_it_makes_the_net_steadier(lossnet, fixed_batch):  # noqa: F811
    amp = Amp(False, torch.float32, "cpu")
    probe = tiny_objective(lossnet, 1.0)
    torch.manual_seed(0)
    start = DynamicNet.for_style("lite").main.state_dict()
    finals = {}
    for weight in (0.0, 30.0):
        net = DynamicNet.for_style("lite")
        net.main.load_state_dict(start)
        obj = tiny_objective(lossnet, weight)
        opt = make_optimizer(net, "main", 2e-3)
        torch.manual_seed(1)
        for step in range(12):
            terms = train_step(net.main, None, obj, opt, fixed_batch)
            if weight and step == 0:
                assert "temporal" in terms and float(terms["temporal"]) > 0
                assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.main.parameters())
        torch.manual_seed(2)
        finals[weight] = float(measure_terms(net.main, None, probe, fixed_batch, amp)["temporal"])
    assert finals[30.0] < 0.7 * finals[0.0], finals


def test_both_trainers_run_the_term_from_the_config(tmp_path, run_cli):
    out = tmp_path / "run"
    sets = ["objectives.main.temporal_weight=1", "objectives.higher.temporal_weight=2", "motion.rotate=3",
            "schedule.main.steps=4", "schedule.blocks.steps=4", "schedule.log_every=2", "data.image_size=32",
            "objectives.main.style_size=32", "objectives.higher.style_size=32"]
    proc = run_cli("train", "--config", SMOKE, "--out", out, *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("temporal" in r and r["temporal"] > 0 for r in records)
    net = nets.load(out / "smoke.pt")
    higher = net.meta["objectives"]["higher"]
    assert higher["temporal_weight"] == 2.0 and higher["motion"]["rotate"] == 3.0
    assert "temporal" in higher["effective_weights"]
    bad = run_cli("train", "--config", SMOKE, "--out", tmp_path / "bad", "--set", "motion.zoom=2")
    assert bad.returncode == 2 and "motion" in bad.stderr and bad.stderr.count("\n") == 1


def test_a_teacher_objective_takes_the_term():
    from dynastream.train.distill import TeacherObjective, TeacherObjectiveConfig

    cfg = TeacherObjectiveConfig(teacher="model.onnx", temporal_weight=0.5)
    obj = TeacherObjective(cfg, None, {"teacher": "model.onnx"}, {}, motion=MotionConfig(zoom=0.05))
    assert obj.weights == {"pixel": 1.0, "temporal": 0.5} and obj.record()["motion"]["zoom"] == 0.05
    with pytest.raises(ValueError, match="at least one above 0"):
        TeacherObjectiveConfig(teacher="model.onnx", pixel_weight=0, temporal_weight=1)
    torch.manual_seed(0)
    net = DynamicNet.for_style("lite")
    x = torch.rand(2, 3, 32, 32)
    terms = forward_terms(net, 1.0, obj, x, Amp(False, torch.float32, "cpu"), torch.rand(2, 3, 32, 32))
    assert set(terms) == {"pixel", "temporal"} and float(terms["temporal"].detach()) > 0
