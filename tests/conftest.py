import os
from dataclasses import dataclass

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
torch.set_num_threads(2)


@pytest.fixture
def rng_image():
    """A deterministic (1, 3, 40, 48) image batch in [0, 1]."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 40, 48, generator=g)


@pytest.fixture(autouse=True)
def _own_user_config(tmp_path_factory, monkeypatch):
    """Tests never read or write the real user's ~/.config/dynastream (MIDI learn saves there)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))


@dataclass
class CliResult:
    """What a finished ``dynastream`` process gives: its exit status and everything it wrote."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capfd, monkeypatch):
    """``run_cli("render", ..., cwd=..., env=...)`` runs ``stream.cli.main`` in this process.

    The many one-sentence-error tests ran a subprocess each, paying for Python's and torch's start
    (1.5 s a test, most of the suite's time); here they cost what the command does. Capture is at
    the file descriptors (``capfd``), so what C libraries (FFmpeg, SDL) print is seen too. End-to-end
    runs that a person would type (test_*_cli.py, test_signals.py, the installed console script)
    stay subprocesses."""
    from dynastream.stream.cli import main

    def run(*args, cwd=None, env=None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capfd.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:            # argparse's usage errors and --help
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run
