import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ("live", "render", "train", "bench", "export", "models", "generate")


def test_help_lists_every_subcommand():
    script = Path(sys.executable).parent / "dynastream"  # the installed console script
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"    {name}" in proc.stdout


def test_models_lists_zoo_or_says_it_is_empty(run_cli):
    from dynastream import nets

    proc = run_cli("models")
    assert proc.returncode == 0 and proc.stderr == ""
    entries = nets.zoo_entries()
    if entries:
        for e in entries:
            assert e.name in proc.stdout
    else:
        assert "zoo is empty" in proc.stdout


def test_unknown_option_is_a_usage_error(run_cli):
    proc = run_cli("models", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def imported_modules(*args: str) -> set[str]:
    """The modules ``python -m dynastream.stream ARGS`` imports, from ``-X importtime``'s report on stderr."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dynastream.stream", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_help_and_models_do_not_import_torch():
    heavy = ("torch", "torchvision", "numpy", "cv2", "av", "pygame")
    for args in (("--help",), ("render", "--help"), ("models",)):
        modules = imported_modules(*args)
        assert "dynastream.stream.cli" in modules, args
        assert not sorted(m for m in modules if m.split(".")[0] in heavy), args


def test_nets_names_are_lazy_and_all_there():
    code = """
import sys
from dynastream import nets
import dynastream.nets.errors, dynastream.nets.zoo_index
assert "torch" not in sys.modules, "torch imported"
for name in nets.__all__:
    getattr(nets, name)
from dynastream.nets.checkpoint import DEFAULT_MODEL, ZOO_DIR, CheckpointError, ZooEntry
assert DEFAULT_MODEL == nets.zoo_index.DEFAULT_MODEL and nets.CheckpointError is CheckpointError
assert nets.checkpoint.zoo_entries is nets.zoo_entries and nets.ZooEntry is ZooEntry
assert not hasattr(nets, "no_such_name")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
@pytest.mark.parametrize("args, message", [
    (["--alpha", "nan"], "argument --alpha: must be a finite number, not 'nan'"),
    (["--scale", "inf"], "argument --scale: must be a finite number above 0 and at most 8, not 'inf'"),
    (["--fps", "1e400"], "argument --fps: must be a finite number above 0 and at most 1000"),
    (["--batch", "1000000"], "argument --batch: must be a finite number above 0 and at most 256"),
    (["--size", "100000x100"], "argument --size: bad size '100000x100': use WIDTHxHEIGHT with numbers from 1 to 8192"),
    (["--crf", "nan"], "argument --crf: must be a finite number, not 'nan'"),
])
def test_render_numbers_are_finite_and_bounded(capsys, args, message):
    from dynastream.stream.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["render", "in.mp4", "-o", "out.mp4", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_render_crf_out_of_range_and_eval_numbers_are_one_sentence(capsys):
    from dynastream.stream.cli import main

    assert main(["render", "in.mp4", "-o", "out.mp4", "--crf", "1e9"]) == 2
    assert capsys.readouterr().err == "dynastream: error: --crf must be from 0 to 63, not 1e+09\n"
    assert main(["eval", "untrained:lite", "--alphas", "0,inf"]) == 2
    assert capsys.readouterr().err == "dynastream: error: --alphas must be finite numbers, not '0,inf'\n"
    assert main(["eval", "untrained:lite", "--size", "100000"]) == 2
    assert "--size must be from 16 to 4096 pixels, not 100000" in capsys.readouterr().err
