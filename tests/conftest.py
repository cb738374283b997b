import os

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
