import subprocess
import sys
from pathlib import Path

COMMANDS = ("live", "render", "train", "bench", "export", "models", "generate")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    script = Path(sys.executable).parent / "dynastream"  # the installed console script
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"    {name}" in proc.stdout


def test_models_lists_zoo_or_says_it_is_empty():
    import nets

    proc = run_cli("models")
    assert proc.returncode == 0 and proc.stderr == ""
    entries = nets.zoo_entries()
    if entries:
        for e in entries:
            assert e.name in proc.stdout
    else:
        assert "zoo is empty" in proc.stdout


def test_unknown_option_is_a_usage_error():
    proc = run_cli("models", "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
