import json

import torch
from PIL import Image

from dynastream import nets
from dynastream.nets import DynamicNet
from dynastream.train.data import generated_content


def test_eval_sweeps_alpha_and_writes_json(tmp_path, run_cli):
    torch.manual_seed(0)
    net = DynamicNet.for_style("lite", "normal")
    objective = {"style_image": "generated:stripes", "style_size": 32, "content_layer": "relu2_2",
                 "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}}
    path = nets.save(net, tmp_path / "m.pt", objectives={"kind": "style-transfer", "main": objective,
                                                         "higher": dict(objective, style_image="generated:checks")},
                     provenance={"loss_net": {"source": "random"}})
    images = tmp_path / "held"
    images.mkdir()
    for i in range(2):
        generated_content(i, 40).save(images / f"{i}.png")
    out = tmp_path / "eval.json"
    proc = run_cli("eval", path, "--images", images, "--alphas", "0,0.5,1", "--size", "32", "--json", out,
                   "--sheet", tmp_path / "sheet.png")
    assert proc.returncode == 0, proc.stderr
    assert "style vs main" in proc.stdout and "style vs higher" in proc.stdout
    result = json.loads(out.read_text())
    assert result["alphas"] == [0.0, 0.5, 1.0] and len(result["content"]) == 3
    assert set(result["style"]) == {"main", "higher"} and all(len(v) == 3 for v in result["style"].values())
    assert result["content"][0] > 0 and result["content"][0] != result["content"][2]
    assert set(result["monotonic"]) == {"content_rises", "style_falls"}
    assert Image.open(tmp_path / "sheet.png").size[0] > 6 * 32


def test_eval_without_style_objectives_is_one_sentence(tmp_path, run_cli):
    proc = run_cli("eval", "untrained:lite", "--images", tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "records no style objectives" in proc.stderr


def test_monotonic_reads_each_side_of_a_dual_sweep_from_alpha_zero():
    from dynastream.train.evaluate import EvalResult

    r = EvalResult(model="m", loss_net="random", images=["x.png"], alphas=[-1.0, -0.5, 0.0, 0.5, 1.0],
                   content=[9.0, 5.0, 1.0, 2.0, 1.5],
                   style={"higher": [7.0, 8.0, 6.0, 3.0, 1.0], "lower": [1.0, 4.0, 6.0, 9.0, 9.0]},
                   style_images={"higher": "b.jpg", "lower": "a.jpg"})
    assert r.monotonic("higher") == {"content_rises": False, "style_falls": True}
    assert r.monotonic("lower") == {"content_rises": True, "style_falls": True}
    assert r.to_dict()["monotonic_lower"] == {"content_rises": True, "style_falls": True}
