"""`dynastream generate`: grids written by the real CLI entry point, read back from disk."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.stream.cli import main
from tests.models import make_dcgan

TILE = 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_dcgan(tmp_path_factory.mktemp("models") / "faces.pt")


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def tile(grid: np.ndarray, row: int, col: int, side: int = TILE) -> np.ndarray:
    y, x = 2 + row * (side + 2), 2 + col * (side + 2)
    return grid[y:y + side, x:x + side]


def expected_u8(y_nchw: torch.Tensor) -> np.ndarray:
    return ((y_nchw + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_grid_has_one_row_per_sample_and_one_column_per_alpha_with_the_same_z(tmp_path, ckpt, capsys):
    out = tmp_path / "grid.png"
    assert main(["generate", str(ckpt), "-o", str(out), "--alpha", "0,0.5,1", "--n", "3", "--seed", "7",
                 "--device", "cpu"]) == 0
    grid = read_rgb(out)
    assert grid.shape == (3 * (TILE + 2) + 2, 3 * (TILE + 2) + 2, 3)
    assert capsys.readouterr().out.strip() == f"wrote {out}: 3 samples x 3 alphas (0, 0.5, 1) of faces, 200x200 px"
    # 2 px of white between and around the tiles
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all() and (grid[-2:] == 255).all()
    assert (grid[TILE + 2:TILE + 4] == 255).all() and (grid[:, TILE + 2:TILE + 4] == 255).all()
    net = nets.load(ckpt)
    z = torch.randn((3, net.main.config.nz), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        main_only = expected_u8(net.main(z))
        blocks = expected_u8(net(z, 1.0))
    for i in range(3):
        np.testing.assert_array_equal(tile(grid, i, 0), main_only[i])   # α = 0 is the main generator
        np.testing.assert_array_equal(tile(grid, i, 2), blocks[i])
        assert (tile(grid, i, 0) != tile(grid, i, 2)).mean() > 0.5, "alpha changes the picture"
    assert (tile(grid, 0, 0) != tile(grid, 1, 0)).mean() > 0.5, "rows are different samples"


def test_scale_upsamples_tiles_nearest_and_the_same_seed_writes_the_same_file(tmp_path, ckpt, capsys):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    args = ["generate", str(ckpt), "--n", "2", "--alpha", "0,1", "--device", "cpu"]
    assert main([*args, "-o", str(a)]) == 0
    assert main([*args, "-o", str(b)]) == 0
    assert main([*args, "-o", str(c), "--scale", "3"]) == 0
    assert a.read_bytes() == b.read_bytes()
    small, big = read_rgb(a), read_rgb(c)
    assert big.shape == (2 * (3 * TILE + 2) + 2, 2 * (3 * TILE + 2) + 2, 3)
    for row in range(2):
        for col in range(2):
            np.testing.assert_array_equal(tile(big, row, col, 3 * TILE),
                                          tile(small, row, col).repeat(3, 0).repeat(3, 1))
    assert main([*args, "-o", str(tmp_path / "d.png"), "--seed", "1"]) == 0
    assert (tmp_path / "d.png").read_bytes() != a.read_bytes()


def test_dual_model_defaults_to_minus_one_zero_one_and_jpeg_by_suffix(tmp_path, capsys):
    dual = make_dcgan(tmp_path / "dual.pt", mode="dual")
    out = tmp_path / "sheet.jpg"
    assert main(["generate", str(dual), "-o", str(out), "--n", "1", "--device", "cpu"]) == 0
    assert "1 samples x 3 alphas (-1, 0, 1)" in capsys.readouterr().out
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert read_rgb(out).shape == (TILE + 4, 3 * (TILE + 2) + 2, 3)


@pytest.mark.parametrize("args, needle", [
    (["untrained:lite"], "untrained:lite is a style model; generate needs a dcgan model (see dynastream models)"),
    (["CKPT", "--alpha", "0,half"], "--alpha must be comma-separated numbers such as 0,0.5,1, not '0,half'"),
    (["CKPT", "--alpha", "0,1.5"], "alpha 1.5 is outside the model's range [0, 1]"),
    (["CKPT", "--n", "0"], "--n must be at least 1, not 0"),
    (["CKPT", "--scale", "0"], "--scale must be a whole number of at least 1, not 0"),
    (["CKPT", "-o", "OUT/grid.gif"], "cannot tell the image type of grid.gif: name it .png, .jpg or .jpeg"),
    (["CKPT", "-o", "OUT/missing/grid.png"], "the output folder OUT/missing does not exist"),
    (["no-such-model"], "no model named 'no-such-model'"),
    (["CKPT", "--alpha", "0,nan"], "alpha values must be finite numbers, not '0.0, nan'"),
    (["CKPT", "--n", "1000000"], "a grid of 1000000 rows and 3 columns of 64 px tiles would be more than 8192 px"),
    (["CKPT", "--scale", "100000"], "columns of 6400000 px tiles would be more than 8192 px a side"),
    (["CKPT", "--seed", str(2 ** 70)], "--seed must be a whole number from 0 to"),
])
def test_bad_input_is_one_sentence_exit_2_and_no_file(tmp_path, ckpt, capsys, args, needle):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [str(ckpt) if a == "CKPT" else a.replace("OUT", str(out_dir)) for a in args]
    if "-o" not in args:
        args += ["-o", str(out_dir / "grid.png")]
    assert main(["generate", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynastream: error: ")
    assert needle.replace("OUT", str(out_dir)) in err[0]
    assert list(out_dir.iterdir()) == [], "nothing written, not even a temporary file"


def test_the_console_command_writes_a_grid(tmp_path, ckpt):
    proc = subprocess.run([sys.executable, "-m", "dynastream.stream", "generate", str(ckpt), "-o", "g.png", "--n", "2"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == "wrote g.png: 2 samples x 3 alphas (0, 0.5, 1) of faces, 200x134 px\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]
