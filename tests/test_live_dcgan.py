"""`dynastream live` with a dcgan model: the latent walk through the real pipeline (threads, rings,
engine, pygame under the dummy driver, PyAV recordings read back)."""

import json
import subprocess
import sys
import time

import av
import numpy as np
import pygame
import pytest
import torch
import torch.nn.functional as F

from dynastream import nets
from dynastream.stream.alpha import ControllerConfig
from dynastream.stream.cli import main
from dynastream.stream.keyframes import load_track
from dynastream.stream.latent import WALK_KEYS, LatentWalk, latent_keys
from dynastream.stream.live import LiveConfig, LivePipeline, run_live
from tests.models import make_dcgan


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_dcgan(tmp_path_factory.mktemp("models") / "faces.pt")


class Collect:
    def __init__(self, keys=None):
        self.frames = []          # (time_s, alpha, rgb)
        self.keys = keys or {}
        self.pressed_at = {}

    def __call__(self, frame):
        self.frames.append((frame.time_s, frame.alpha.copy(), frame.rgb_hwc_u8.copy()))
        key = self.keys.get(len(self.frames))
        if key is not None:
            self.pressed_at[len(self.frames)] = time.perf_counter()
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0))


def walk_reference(net, walk: LatentWalk, time_s: float, alpha: np.ndarray, size_hw) -> np.ndarray:
    """G(z(t), α), bilinear to the picture size, (y + 1) / 2 as uint8."""
    z = torch.from_numpy(walk.z_at(time_s))[None]
    with torch.no_grad():
        y = F.interpolate(net(z, torch.from_numpy(alpha)), size=size_hw, mode="bilinear", align_corners=False)
    return ((y + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def assert_near(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_walk_passes_through_the_seeded_keys_smoothly_and_loops():
    walk = LatentWalk(nz=16, seed=3, key_s=2.0)
    keys = torch.randn((WALK_KEYS, 16), generator=torch.Generator().manual_seed(3)).numpy()
    for k in (0, 1, 5, WALK_KEYS - 1):
        np.testing.assert_allclose(walk.z_at(2.0 * k), keys[k], atol=1e-5)
    np.testing.assert_allclose(walk.z_at(2.0 * WALK_KEYS), keys[0], atol=1e-5)   # a closed loop
    # `dynastream generate --seed 3` rows are the walk's first key points
    np.testing.assert_array_equal(latent_keys(4, 16, 3).numpy(), walk.keys[:4])
    # on the great circle from key 0 to key 1: in their plane, the angle from key 0 growing to theirs
    a, b = keys[0], keys[1]
    basis, _ = np.linalg.qr(np.stack([a, b], 1))
    angles = []
    for t in np.linspace(0.0, 2.0, 41):
        z = walk.z_at(t)
        np.testing.assert_allclose(basis @ (basis.T @ z), z, atol=1e-4)
        angles.append(np.arccos(np.clip(z @ a / np.linalg.norm(z) / np.linalg.norm(a), -1, 1)))
    assert np.all(np.diff(angles) > -1e-6) and angles[-1] == pytest.approx(
        np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-4)
    # eased: it lingers at a key and moves fastest half way
    at_key = np.linalg.norm(walk.z_at(0.01) - walk.z_at(0.0))
    half_way = np.linalg.norm(walk.z_at(1.01) - walk.z_at(1.0))
    assert at_key < 0.02 * half_way
    out = np.empty(16, np.float32)
    walk.z_into(out, 3.3)
    np.testing.assert_array_equal(out, walk.z_at(3.3))


def test_headless_walk_is_g_of_z_of_t_with_alpha_from_a_keyframe_track(tmp_path, ckpt):
    track_csv = tmp_path / "alpha.csv"
    track_csv.write_text("t,alpha\n0,0\n0.5,1\n")
    collect = Collect()
    lines = []
    config = LiveConfig(models=(str(ckpt),), headless=True, device="cpu", frames=16, size=(96, 80), fps=30,
                        walk_seconds=0.4, keyframes=str(track_csv), stats_json=str(tmp_path / "stats.json"))
    stats = run_live(config, on_shown=collect, report=lines.append)

    assert stats.shown == len(collect.frames) == 16 and stats.ended_by == "--frames 16"
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["source"] == "latent walk" and saved["size"] == "96x80" and saved["shown"] == 16
    assert lines[0].startswith("live: latent walk (seed 0, a key point every 0.4 s) -> faces on cpu at 96x80")
    net = nets.load(ckpt)
    walk = LatentWalk(net.main.config.nz, seed=0, key_s=0.4)
    track = load_track(track_csv, net.sites, net.alpha_range)
    times = [t for t, _, _ in collect.frames]
    assert all(b > a for a, b in zip(times, times[1:])), "the walk moves on every frame"
    for time_s, alpha, rgb in collect.frames:
        np.testing.assert_array_equal(alpha, track.alpha_at(t=time_s))
        assert_near(rgb, walk_reference(net, walk, time_s, alpha, (80, 96)))
    pictures = [rgb for _, _, rgb in collect.frames]
    assert all((a != b).any() for a, b in zip(pictures, pictures[1:])), "z changes from frame to frame"
    time_s, alpha, rgb = collect.frames[-1]
    assert alpha[0] > 0.8
    same_z_alpha_0 = walk_reference(net, walk, time_s, np.zeros(1, np.float32), (80, 96))
    assert (np.abs(rgb.astype(int) - same_z_alpha_0.astype(int)) > 8).mean() > 0.3, "alpha reaches the picture"


def test_pause_freezes_the_walk_while_alpha_stays_live(ckpt):
    collect = Collect(keys={3: pygame.K_SPACE, 4: pygame.K_a, 28: pygame.K_SPACE})   # pause, LFO, resume
    config = LiveConfig(models=(str(ckpt),), device="cpu", hud=False, frames=40, size=(64, 64), fps=30,
                        walk_seconds=0.5, controls=ControllerConfig(lfo_period=0.2, slew=0))
    stats = run_live(config, on_shown=collect, report=lambda s: None, notice=lambda s: None)
    assert stats.shown == 40 and stats.skipped_while_paused > 0
    held = collect.frames[9:28]       # a few frames processed before the pause came through are skipped
    held_t = held[0][0]
    assert all(t == held_t for t, _, _ in held), "z holds while paused"
    assert len({float(a[0]) for _, a, _ in held}) > 3, "alpha still moves (LFO)"
    net = nets.load(ckpt)
    walk = LatentWalk(net.main.config.nz, seed=0, key_s=0.5)
    for t, alpha, rgb in held:
        assert_near(rgb, walk_reference(net, walk, t, alpha, (64, 64)))
    resumed = [t for t, _, _ in collect.frames[28:] if t != held_t]
    assert len(resumed) >= 4 and all(b >= a for a, b in zip(resumed, resumed[1:])) and resumed[-1] > resumed[0]
    paused_s = collect.pressed_at[28] - collect.pressed_at[3]
    assert paused_s > 0.4
    assert resumed[0] - held_t < min(0.2, paused_s / 2), "the walk goes on from where it stopped"


def test_m_cycles_dcgan_models_only_and_a_style_model_is_left_out(tmp_path, ckpt):
    other = make_dcgan(tmp_path / "other.pt", nz=8, seed=1)
    collect = Collect(keys={3: pygame.K_m})
    notices = []
    config = LiveConfig(models=(str(ckpt), "untrained:lite", str(other)), device="cpu", hud=False, frames=30,
                        size=(64, 64), walk_seconds=0.5)
    pipeline = LivePipeline(config, on_shown=collect, report=lambda s: None, notice=notices.append)
    stats = pipeline.run()
    assert "untrained:lite is a style model and is left out of the m cycle: this session shows dcgan models" in notices
    assert pipeline.session.models.names[:2] == [str(ckpt), str(other)]
    zoo_kinds = {e.name: e.kind for e in nets.zoo_entries()}
    assert all(zoo_kinds[n] == "dcgan" for n in pipeline.session.models.names[2:])
    assert stats.model == "other"
    net = nets.load(other)           # another nz: the walk goes on through its own latent space
    t, alpha, rgb = collect.frames[-1]
    assert_near(rgb, walk_reference(net, LatentWalk(8, seed=0, key_s=0.5), t, alpha, (64, 64)))

    style_notices = []
    style = LivePipeline(LiveConfig(models=("untrained:lite", "untrained:dcgan"), source="demo", input_size=(64, 48),
                                    headless=True, frames=2, device="cpu"),
                         report=lambda s: None, notice=style_notices.append)
    assert style.run().shown == 2
    assert "untrained:dcgan is a dcgan model and is left out of the m cycle: this session shows style models" \
        in style_notices
    assert "untrained:dcgan" not in style.session.models.names


def test_cli_records_a_walk_headless_and_says_a_source_is_not_used(tmp_path, ckpt):
    proc = subprocess.run([sys.executable, "-m", "dynastream.stream", "live", "--model", str(ckpt), "--source", "demo",
                           "--headless", "--frames", "12", "--size", "64x64", "--walk-seed", "2",
                           "--walk-seconds", "1", "--record", "take.mp4", "--stats-json", "s.json"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["dynastream: source demo is not used: a dcgan model makes its own pictures "
                                        "(a latent walk)", "dynastream: recording take.mp4"]
    out = proc.stdout.splitlines()
    assert out[0].startswith("live: latent walk (seed 2, a key point every 1 s) -> faces")
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["source"] == "latent walk" and stats["shown"] == stats["recorded"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "take.keyframes.yaml", "take.mp4"]
    with av.open(str(tmp_path / "take.mp4")) as container:
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(video=0)]
    assert len(frames) == 12 and frames[0][0].shape == (64, 64, 3)
    assert all(b[1] > a[1] for a, b in zip(frames, frames[1:]))
    performed = load_track(tmp_path / "take.keyframes.yaml", ("layer3_out",), (0.0, 1.0))
    assert performed.alpha_at(t=frames[-1][1])[0] == pytest.approx(0.5)   # the middle of the range, untouched


def test_bad_walk_settings_are_one_sentence(capsys):
    assert main(["live", "--model", "untrained:dcgan", "--headless", "--walk-seconds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dynastream: error: --walk-seconds must be a finite number > 0 and at most 3600, not '0'"]


def test_both_engines_offer_the_live_loops_contract(tmp_path):
    """The live loop touches an engine only through stream.engine.FrameEngine; the style Engine and
    the latent walk's GeneratorEngine both have every member of it."""
    import inspect

    from dynastream.stream.engine import Engine, EngineConfig, FrameEngine
    from dynastream.stream.latent import GeneratorEngine

    style = Engine(nets.load("untrained:lite"), EngineConfig(device="cpu", backend="eager"), (24, 32))
    walk = GeneratorEngine(nets.load(make_dcgan(tmp_path / "g.pt")), EngineConfig(device="cpu", size_wh=(32, 32)))
    members = [*FrameEngine.__annotations__, *(n for n, _ in inspect.getmembers(FrameEngine)
                                               if not n.startswith("_"))]
    for engine in (style, walk):
        assert isinstance(engine, FrameEngine), type(engine).__name__
        assert all(hasattr(engine, m) for m in members), [m for m in members if not hasattr(engine, m)]
        assert engine.runs == "eager" and not engine.compile_pending
        y = engine.run([np.zeros((*engine.in_hw, 3), np.uint8)], np.zeros((1, engine.n_sites), np.float32))
        assert y.shape == (1, *engine.out_hw, 3) and y.dtype == np.uint8
