"""The live pipeline end to end: real threads, rings, engine, pygame (dummy driver), PyAV files."""

import dataclasses
import json

import cv2
import numpy as np
import pygame
import torch

from dynastream import nets
from dynastream.nets.checkpoint import DEFAULT_MODEL
from dynastream.stream.alpha import ControllerConfig
from dynastream.stream.keyframes import load_track
from dynastream.stream.live import LiveConfig, run_live
from dynastream.stream.ring import FrameRing
from dynastream.stream.sources import CameraSource, VideoFileSource
from tests.media import make_video


def decoded_frames(path) -> list[np.ndarray]:
    source = VideoFileSource(str(path))
    frame = FrameRing(2, source.shape_hwc, "block").acquire_write()
    out = []
    while source.read_into(frame):
        out.append(frame.rgb_hwc_u8.copy())
    source.close()
    return out


def reference(net, rgb_hwc_u8: np.ndarray, alpha_s: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(rgb_hwc_u8).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net(x, torch.from_numpy(alpha_s))
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


class Collect:
    def __init__(self, every=None):
        self.frames = []
        self.every = every

    def __call__(self, frame):
        self.frames.append((frame.index, frame.time_s, frame.alpha.copy(), frame.rgb_hwc_u8.copy()))
        if self.every is not None:
            self.every(len(self.frames))


def test_headless_run_follows_a_keyframe_track_frame_by_frame(tmp_path):
    video = tmp_path / "clip.mkv"
    make_video(video, n_frames=24, width=64, height=48, fps=24, codec="ffv1")
    track_csv = tmp_path / "alpha.csv"
    track_csv.write_text("t,alpha\n0,0\n1,1\n")        # alpha = t: a new value on every frame
    collect = Collect()
    config = LiveConfig(source=str(video), headless=True, device="cpu", keyframes=str(track_csv),
                        stats_json=str(tmp_path / "stats.json"))
    lines = []
    stats = run_live(config, on_shown=collect, report=lines.append)

    sources = decoded_frames(video)
    net = nets.load(DEFAULT_MODEL)
    track = load_track(track_csv, net.sites, (0.0, 1.0))
    assert stats.captured == 24 and stats.ended_by == "end of stream"
    assert stats.shown == len(collect.frames) >= 4
    assert stats.shown + stats.dropped == 24, "every captured frame was either shown or counted as dropped"
    alphas = [a[0] for _, _, a, _ in collect.frames]
    assert len(set(alphas)) == len(alphas), "alpha changed on every frame shown"
    for index, time_s, alpha, rgb in collect.frames:
        np.testing.assert_array_equal(alpha, track.alpha_at(t=time_s))
        ref = reference(net, sources[index], alpha)
        assert rgb.shape == ref.shape == (48, 64, 3)
        assert np.abs(rgb.astype(int) - ref.astype(int)).max() <= 1, f"frame {index} is not net(frame, alpha)"
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["shown"] == stats.shown and saved["latency_ms_p50"] > 0 and saved["fps"] > 0
    assert lines[-1].startswith(f"live: {stats.shown} frames shown") and "latency p50" in lines[-1]


def test_window_run_shows_frames_takes_a_screenshot_switches_model_and_quits_on_q(tmp_path):
    video = tmp_path / "loop.mkv"
    make_video(video, n_frames=10, width=64, height=48, fps=50, codec="ffv1")
    shown_on_screen = []

    def script(n):
        surface = pygame.display.get_surface()
        shown_on_screen.append(pygame.surfarray.array3d(surface).transpose(1, 0, 2))
        key = {3: pygame.K_s, 6: pygame.K_m, 26: pygame.K_v, 34: pygame.K_q}.get(n)
        if key is not None:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))

    collect = Collect(every=script)
    config = LiveConfig(source=str(video), loop=True, device="cpu", hud=False, window=(64, 48),
                        models=("untrained:lite", "untrained:lite-dual"),
                        controls=ControllerConfig(initial=0.7), save_dir=str(tmp_path / "shots"))
    stats = run_live(config, on_shown=collect, report=lambda s: None, notice=lambda s: None)
    assert stats.ended_by == "quit" and stats.shown == 34
    # the window showed exactly the processed frames (no HUD, window size = processing size)
    for (_, _, _, rgb), screen in zip(collect.frames[:26], shown_on_screen):
        assert np.array_equal(rgb, screen)
    shots = list((tmp_path / "shots").iterdir())
    assert len(shots) == 1
    saved = cv2.cvtColor(cv2.imread(str(shots[0])), cv2.COLOR_BGR2RGB)
    assert any(np.array_equal(saved, rgb) for _, _, _, rgb in collect.frames[3:5])
    # m switched to the dual model while frames kept coming
    assert stats.model == "untrained:lite-dual"
    dual = nets.load("untrained:lite-dual")
    sources = decoded_frames(video)
    index, _, alpha, rgb = collect.frames[-1]
    source_rgb = sources[index % len(sources)]     # the looping file's index keeps counting
    assert np.abs(rgb.astype(int) - reference(dual, source_rgb, alpha).astype(int)).max() <= 1
    # v: split view; the left half of the window shows the source frame
    split = shown_on_screen[-1]
    assert np.abs(split[:, :20].astype(int) - source_rgb[:, :20].astype(int)).max() <= 1


def test_a_camera_that_stops_delivering_ends_the_run_with_a_summary(tmp_path):
    video = tmp_path / "cam.mkv"
    make_video(video, n_frames=15, width=64, height=48, fps=30, codec="ffv1")
    camera = CameraSource(str(video), stall_timeout_s=0.5)   # OpenCV's file backend stands in for a camera
    lines = []
    stats = run_live(LiveConfig(headless=True, device="cpu"), source=camera, report=lines.append)
    assert "stopped delivering frames" in stats.ended_by
    assert 1 <= stats.shown <= 15
    assert "stopped delivering frames" in lines[-1]


def test_pause_keeps_processing_the_held_frame_with_new_alpha(tmp_path):
    video = tmp_path / "p.mkv"
    make_video(video, n_frames=30, width=64, height=48, fps=60, codec="ffv1")
    frames = []

    def script(n):
        if n == 3:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE, mod=0))
        if n == 6:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_a, mod=0))   # LFO: alpha moves

    collect = Collect(every=script)
    config = LiveConfig(source=str(video), loop=True, device="cpu", hud=False, frames=14,
                        controls=ControllerConfig(lfo_period=0.2, slew=0))
    stats = run_live(dataclasses.replace(config), on_shown=collect, report=frames.append, notice=lambda s: None)
    assert stats.shown == 14 and stats.skipped_while_paused > 0
    held = collect.frames[8:]
    assert len({f[0] for f in held}) == 1, "the same source frame while paused"
    assert len({float(f[2][0]) for f in held}) > 3, "with alpha still changing"


def read_video(path) -> tuple[list[np.ndarray], list[float]]:
    import av

    with av.open(str(path)) as container:
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(video=0)]
    return [f for f, _ in frames], [t for _, t in frames]


def test_record_writes_every_shown_frame_and_the_alpha_track(tmp_path):
    video = tmp_path / "src.mkv"
    make_video(video, n_frames=20, width=64, height=48, fps=20, codec="ffv1")
    track_csv = tmp_path / "alpha.csv"
    track_csv.write_text("t,alpha\n0,0\n1,1\n")
    target = tmp_path / "take.mp4"
    collect = Collect()
    lines = []
    stats = run_live(LiveConfig(source=str(video), headless=True, device="cpu", keyframes=str(track_csv),
                                record=str(target)), on_shown=collect, report=lines.append)
    assert stats.recorded == stats.shown == len(collect.frames)
    keyframes = tmp_path / "take.keyframes.yaml"
    assert stats.recordings == [str(target), str(keyframes)]
    assert any(line.startswith(f"recorded {target} ({stats.shown} frames)") for line in lines)
    frames, times = read_video(target)
    assert len(frames) == stats.shown
    t0 = collect.frames[0][1]
    np.testing.assert_allclose(times, [t - t0 for _, t, _, _ in collect.frames], atol=2e-3)
    shown = np.stack([rgb for _, _, _, rgb in collect.frames]).astype(int)
    for i, got in enumerate(frames):   # H.264 of noisy untrained output: near, and nearest to its own frame
        diffs = np.abs(shown - got.astype(int)).mean(axis=(1, 2, 3))
        assert diffs[i] < 20 and diffs[i] == diffs.min()
    performed = load_track(keyframes, nets.load(DEFAULT_MODEL).sites, (0.0, 1.0))
    for _, time_s, alpha, _ in collect.frames:
        np.testing.assert_allclose(performed.alpha_at(t=time_s), alpha, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.csv", "src.mkv", "take.keyframes.yaml", "take.mp4"]


def test_r_key_starts_and_stops_a_take_in_the_save_folder(tmp_path):
    def script(n):
        key = {3: pygame.K_r, 9: pygame.K_r, 12: pygame.K_q}.get(n)
        if key is not None:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0))

    lines = []
    stats = run_live(LiveConfig(source="demo", input_size=(64, 48), device="cpu", save_dir=str(tmp_path)),
                     on_shown=Collect(every=script), report=lines.append, notice=lambda s: None)
    assert stats.ended_by == "quit" and stats.recorded == 6          # frames 4..9 were shown while on
    videos = sorted(tmp_path.glob("dynastream-*.mp4"))
    assert len(videos) == 1 and (tmp_path / f"{videos[0].stem}.keyframes.yaml").is_file()
    assert len(read_video(videos[0])[0]) == 6
    assert not list(tmp_path.glob(".*")), "no temporary files left"


def test_the_switch_is_busy_while_the_next_model_loads_so_q_exits_at_once(monkeypatch):
    """q right after m: the next model's load (and compile) is still running on the loader thread;
    `dynastream live` then leaves with os._exit instead of waiting for it in Python's shutdown (or
    aborting in inductor's C++ threads, as a real window showed: exit 134)."""
    import threading

    from dynastream import nets
    from dynastream.stream import switch
    from dynastream.stream.engine import Engine, EngineConfig

    net = nets.load("untrained:lite")
    engine = Engine(net, EngineConfig(device="cpu", backend="eager"), (24, 32))
    release = threading.Event()
    real_load = nets.load

    def slow_load(name):
        release.wait(30)
        return real_load(name)

    monkeypatch.setattr(switch.nets, "load", slow_load)
    models = switch.ModelSwitch(["untrained:lite", "untrained:lite-dual"], "style", engine, net,
                                make_engine=lambda n: Engine(n, EngineConfig(device="cpu", backend="eager"), (24, 32)),
                                notice=lambda m: None, windowed=False)
    assert not models.busy
    assert models.next().startswith("loading untrained:lite-dual")
    assert models.busy
    release.set()
    models._loader.join(30)
    assert not models.busy and models.swap() is not None
