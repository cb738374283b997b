import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.nets.checkpoint import DEFAULT_MODEL
from dynastream.nets.errors import DynastreamError
from dynastream.stream.engine import Engine, EngineConfig
from dynastream.stream.keyframes import load_track
from dynastream.stream.render import Progress, RenderConfig, RenderInterrupted, RenderStats, render
from dynastream.stream.ring import FrameRing
from dynastream.stream.sources import VideoFileSource
from dynastream.stream.writer import Recorder, VideoOptions
from tests.media import audio_info, make_audio, make_video, pattern_frame, read_frames

# alpha 0 up to 0.2 s, then a ramp to 1 at 0.4 s (frames at 24 fps: 0..4 at alpha 0, 10.. at 1)
TRACK = "interpolation: linear\nkeys:\n  - {t: 0, alpha: 0}\n  - {t: 0.2, alpha: 0}\n  - {t: 0.4, alpha: 1}\n"
FFV1 = VideoOptions("ffv1")


def main_net_u8(rgb_hwc_u8):
    net = nets.load(DEFAULT_MODEL)
    x = torch.from_numpy(rgb_hwc_u8).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = net.main(x)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def luma(rgb_hwc_u8):
    return rgb_hwc_u8.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def engine_reference(frames, alphas, **kw):
    """What the engine gives for each frame alone, at batch 1."""
    engine = Engine(nets.load(DEFAULT_MODEL), EngineConfig(device="cpu", **kw), frames[0].shape[:2])
    return [engine.run([f], np.asarray(a, np.float32).reshape(1, -1))[0].copy() for f, a in zip(frames, alphas)]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def keyframes(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text(TRACK)
    return path


def test_render_keeps_frames_timestamps_audio_and_alpha0_is_the_main_net(tmp_path, keyframes):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, n_frames=12, audio=True)
    stats = render(src, out, RenderConfig(keyframes=str(keyframes), video=VideoOptions(crf=10)))
    assert stats.frames == 12 and stats.audio == ["copy"] and stats.size_wh == (64, 48)
    frames_in, times_in = read_frames(src)
    frames, times = read_frames(out)
    assert len(frames) == 12 and times == times_in
    (_, _, n_in), = audio_info(src)
    (codec, _, n), = audio_info(out)
    assert codec == "aac" and abs(n - n_in) <= 1024
    # Compared on luma: 4:2:0 chroma cannot carry the pixel-level colour noise of an untrained net.
    for i in range(5):    # alpha = 0: the main net's output, up to H.264 loss
        assert np.abs(luma(frames[i]) - luma(main_net_u8(frames_in[i]))).mean() < 3.5
    for i in range(10, 12):   # alpha = 1 is visibly different from the main net
        assert np.abs(luma(frames[i]) - luma(main_net_u8(frames_in[i]))).mean() > 5
    assert leftovers(tmp_path) == []


def test_render_vfr_with_batches_keeps_every_timestamp(tmp_path):
    pts_ms = [0, 40, 50, 120, 200, 210, 300, 330, 400]
    src, out = tmp_path / "vfr.mp4", tmp_path / "out.mp4"
    make_video(src, n_frames=len(pts_ms), pts_ms=pts_ms, audio=True)
    stats = render(src, out, RenderConfig(alpha=0.3, batch=4))
    assert stats.frames == len(pts_ms)
    _, times = read_frames(out)
    np.testing.assert_allclose(times, np.array(pts_ms) / 1000, atol=1e-9)
    assert abs(audio_info(out)[0][2] - audio_info(src)[0][2]) <= 1024


@pytest.mark.parametrize("batch", [1, 4])
def test_lossless_render_is_exactly_the_engine_with_alpha_per_frame(tmp_path, keyframes, batch):
    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_video(src, n_frames=12, codec="ffv1", audio=True)
    render(src, out, RenderConfig(keyframes=str(keyframes), video=FFV1, batch=batch))
    frames_in, times = read_frames(src)
    track = load_track(keyframes, nets.load(DEFAULT_MODEL).sites, (0.0, 1.0))
    alphas = [track.alpha_at(t=t) for t in times]
    assert len({float(a[0]) for a in alphas}) > 5     # alpha really changes from frame to frame
    expected = engine_reference(frames_in, alphas)
    frames, _ = read_frames(out)
    assert len(frames) == 12
    tolerance = 0 if batch == 1 else 1    # a batch of 4 may round one step differently
    for got, want in zip(frames, expected):
        assert np.abs(got.astype(int) - want).max() <= tolerance


def test_size_and_scale(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, n_frames=3)
    assert render(src, tmp_path / "half.mp4", RenderConfig(scale=0.5)).size_wh == (32, 24)
    assert read_frames(tmp_path / "half.mp4")[0][0].shape == (24, 32, 3)
    assert render(src, tmp_path / "odd.mp4", RenderConfig(size_wh=(33, 25))).size_wh == (34, 26)  # padded for 4:2:0
    assert render(src, tmp_path / "odd.mkv", RenderConfig(size_wh=(33, 25), video=FFV1)).size_wh == (33, 25)


@pytest.mark.parametrize("side", [1, 2, 4])
def test_tiny_images_videos_and_scales_render_at_their_own_size(tmp_path, side):
    import cv2

    image = tmp_path / "tiny.png"
    cv2.imwrite(str(image), pattern_frame(0, side, side))
    render(image, tmp_path / "tiny_out.png", RenderConfig())
    assert cv2.imread(str(tmp_path / "tiny_out.png")).shape == (side, side, 3)
    video = tmp_path / "tiny.mkv"
    make_video(video, n_frames=3, width=side, height=side, codec="ffv1")
    assert render(video, tmp_path / "tiny_out.mkv", RenderConfig(video=FFV1)).size_wh == (side, side)
    assert len(read_frames(tmp_path / "tiny_out.mkv")[0]) == 3
    big = tmp_path / "big.mp4"
    make_video(big, n_frames=2)
    stats = render(big, tmp_path / "scaled.mp4", RenderConfig(scale=side / 64))   # 64x48 -> side x ~side
    assert stats.frames == 2 and read_frames(tmp_path / "scaled.mp4")[0][0].shape[1] == side + side % 2


class Boom(RuntimeError):
    pass


def fail_on_call(monkeypatch, n, exc):
    calls = {"n": 0}
    run = Engine.run

    def failing(self, frames, alpha):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return run(self, frames, alpha)
    monkeypatch.setattr(Engine, "run", failing)


def test_an_error_mid_render_leaves_no_file(tmp_path, monkeypatch):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, n_frames=12, audio=True)
    fail_on_call(monkeypatch, 3, Boom("injected"))
    with pytest.raises(Boom):
        render(src, out, RenderConfig(batch=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    out.write_bytes(b"earlier")
    fail_on_call(monkeypatch, 2, Boom("injected"))
    with pytest.raises(Boom):
        render(src, out, RenderConfig())
    assert out.read_bytes() == b"earlier" and leftovers(tmp_path) == []


def test_ctrl_c_with_keep_partial_keeps_the_frames_so_far(tmp_path, monkeypatch):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, n_frames=12, audio=True)
    fail_on_call(monkeypatch, 4, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        render(src, out, RenderConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    fail_on_call(monkeypatch, 4, KeyboardInterrupt())
    with pytest.raises(RenderInterrupted) as err:
        render(src, out, RenderConfig(batch=2, keep_partial=True))
    assert err.value.partial == tmp_path / "out.partial.mp4" and err.value.frames == 6
    assert not out.exists() and leftovers(tmp_path) == []
    frames, times = read_frames(err.value.partial)
    assert len(frames) == 6 and times == read_frames(src)[1][:6]


def test_image_to_image_and_folder_to_folder(tmp_path):
    import cv2

    image = pattern_frame(0, 40, 56)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    render(tmp_path / "a.png", tmp_path / "a_out.png", RenderConfig(alpha=0.7))
    got = cv2.cvtColor(cv2.imread(str(tmp_path / "a_out.png")), cv2.COLOR_BGR2RGB)
    n_sites = len(nets.load(DEFAULT_MODEL).sites)
    np.testing.assert_array_equal(got, engine_reference([image], [[0.7] * n_sites])[0])

    folder = tmp_path / "frames"
    folder.mkdir()
    images = [pattern_frame(i, 24, 32) for i in range(3)] + [pattern_frame(3, 30, 20)]  # two sizes
    for i, rgb in enumerate(images):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    keys = tmp_path / "k.csv"
    keys.write_text("frame,alpha\n0,0\n3,1\n")
    stats = render(folder, tmp_path / "styled", RenderConfig(keyframes=str(keys)))
    assert stats.frames == 4
    assert sorted(p.name for p in (tmp_path / "styled").iterdir()) == [f"f{i:02d}.png" for i in range(4)]
    for i, rgb in enumerate(images):
        got = cv2.cvtColor(cv2.imread(str(tmp_path / "styled" / f"f{i:02d}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(got, engine_reference([rgb], [[i / 3] * n_sites])[0])

    (folder / "f09.png").write_bytes(b"broken")      # fails last: nothing may appear
    with pytest.raises(DynastreamError, match="cannot read .*f09.png"):
        render(folder, tmp_path / "styled2", RenderConfig())
    assert not (tmp_path / "styled2").exists() and leftovers(tmp_path) == []


def test_a_recordings_keyframes_rerender_the_same_alpha_per_frame(tmp_path):
    """Live with --record, then render the original clip with the recorded track (lossless both)."""
    src = tmp_path / "clip.mkv"
    make_video(src, n_frames=12, codec="ffv1", audio=True)
    net = nets.load(DEFAULT_MODEL)
    source = VideoFileSource(str(src))
    engine = Engine(net, EngineConfig(device="cpu"), source.shape_hwc[:2])
    n = len(net.sites)
    ring = FrameRing(2, source.shape_hwc, "block", n_alpha=n)
    frame_in, frame_out = ring.acquire_write(), ring.acquire_write()
    rec = Recorder(tmp_path / "take.mkv", 64, 48, net.sites, fps=source.fps, options=FFV1)
    performed = []
    while source.read_into(frame_in):
        i = frame_in.index
        alpha = np.array([min(i / 6, 1.0), 0.5, 1.0 - i / 11, 0.25][:n], np.float32) if i >= 3 else np.zeros(n, np.float32)
        frame_out.rgb_hwc_u8[...] = engine.run([frame_in.rgb_hwc_u8], alpha[None])[0]
        frame_out.copy_meta_from(frame_in)
        frame_out.alpha[:] = alpha
        rec.write(frame_out)
        performed.append((frame_in.time_s, alpha))
    source.close()
    video, keys = rec.close()

    track = load_track(keys, net.sites, net.alpha_range)
    for t, alpha in performed:
        np.testing.assert_array_equal(track.alpha_at(t=t), alpha)
    render(src, tmp_path / "full.mkv", RenderConfig(keyframes=str(keys), video=FFV1))
    live, live_times = read_frames(video)
    offline, offline_times = read_frames(tmp_path / "full.mkv")
    assert len(live) == len(offline) == 12
    np.testing.assert_allclose(live_times, offline_times, atol=1e-3)
    for a, b in zip(live, offline):
        np.testing.assert_array_equal(a, b)


# -- the command line ----------------------------------------------------------------------------

def render_command(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dynastream.stream", "render", *map(str, args)], capture_output=True,
                          text=True, timeout=180, cwd=cwd)


def test_cli_renders_and_reports(tmp_path, keyframes):
    src = tmp_path / "in.mp4"
    make_video(src, n_frames=6, audio=True)
    proc = render_command(src, "-o", tmp_path / "out.mkv", "--keyframes", keyframes, "--codec", "ffv1", "--batch", "2")
    assert proc.returncode == 0, proc.stderr
    assert "6 frames at 64x48" in proc.stdout and "audio: copy" in proc.stdout
    assert len(read_frames(tmp_path / "out.mkv")[0]) == 6
    bar = proc.stderr.split("\r")[-1]    # the bar's last state, on a pipe too
    assert "out.mkv: 100%" in bar and "6/6 [" in bar and "frame" in bar and bar.endswith("]\n"), proc.stderr   # frame/s or s/frame


def test_cli_image_shows_one_step_and_its_time_quiet_shows_no_bar(tmp_path):
    import cv2

    rgb = pattern_frame(0, 48, 64)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    proc = render_command(tmp_path / "a.png", "-o", tmp_path / "b.png", "--model", "untrained:lite")
    assert proc.returncode == 0, proc.stderr
    assert "b.png: 100%" in proc.stderr and "1/1 [" in proc.stderr and "image" in proc.stderr
    seconds = re.search(r": 1 image at 64x48 in ([0-9.]+) s \(busy", proc.stdout)
    assert seconds and float(seconds.group(1)) > 0, proc.stdout

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(pattern_frame(i, 48, 64), cv2.COLOR_RGB2BGR))
    proc = render_command(folder, "-o", tmp_path / "styled", "--model", "untrained:lite", "--quiet")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert re.search(r"styled: 2 images at 64x48 in [0-9.]+ s \([0-9.]+ images/s; busy", proc.stdout), proc.stdout


def test_summary_of_short_and_slow_runs():
    one_image = RenderStats(Path("big.png"), frames=1, wall_s=31.0, size_wh=(4000, 3000), unit="image").summary()
    assert one_image.startswith("big.png: 1 image at 4000x3000 in 31.0 s (busy: ") and "fps" not in one_image
    slow = RenderStats(Path("o.mp4"), frames=1, wall_s=30.0, size_wh=(64, 48)).summary()
    assert "1 frame at 64x48 in 30.0 s (0.033 fps;" in slow
    assert "(12.5 fps;" in RenderStats(Path("o.mp4"), frames=25, wall_s=2.0).summary()


def test_progress_bar_shows_the_time_of_a_long_step_and_nothing_on_an_early_error(capsys):
    bar = Progress(1, "image", "big.png", tick_s=0.05)
    time.sleep(1.2)      # one long step under way: the ticker redraws it
    err = capsys.readouterr().err
    assert re.search(r"big.png:   0%\|.*\| 0/1 \[00:0[1-9]<\?", err), err
    bar.update()
    bar.close()
    assert re.search(r"1/1 \[00:0[1-9]<00:00", capsys.readouterr().err)
    early = Progress(1, "image", "x.png")
    early.close()        # an error before any step: no bar at all, only the error will show
    hidden = Progress(3, "frame", "q.mp4", show=False)
    hidden.update(3)
    hidden.close()
    assert capsys.readouterr().err == ""


def error_cases(tmp_path):
    good = tmp_path / "in.mp4"
    make_video(good, n_frames=3)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])   # moov at the end: unreadable
    audio_only = tmp_path / "song.m4a"
    make_audio(audio_only)
    bad_keys = tmp_path / "bad.yaml"
    bad_keys.write_text("keys:\n  - {t: 0, alpha: 0}\n  - {t: 1, alpha: 7}\n")
    out = tmp_path / "out.mp4"
    return {
        "missing input": ([tmp_path / "nope.mp4", "-o", out], "does not exist"),
        "corrupt input": ([corrupt, "-o", out], "cannot open"),
        "no video stream": ([audio_only, "-o", out], "has no video stream"),
        "unwritable folder": ([good, "-o", "/proc/out.mp4"], "cannot write to the output folder /proc"),
        "missing folder": ([good, "-o", tmp_path / "no" / "out.mp4"], "does not exist"),
        "output is input": ([good, "-o", good], "is the input"),
        "bad keyframes": ([good, "-o", out, "--keyframes", bad_keys], "bad.yaml: line 3 .*outside the model's range"),
        "unknown codec": ([good, "-o", out, "--codec", "h266"], "unknown video codec 'h266'"),
        "gif output": ([good, "-o", tmp_path / "out.gif"], "not .gif; for a GIF, render to .mp4"),
        "codec that does not fit": ([good, "-o", tmp_path / "out.webm", "--codec", "libx264"],
                                    r"\.webm files cannot hold libx264 video; choose another --codec"),
        "unknown model": ([good, "-o", out, "--model", "nosuch"], "no model named 'nosuch'"),
    }


def check_one_sentence(name, code, stderr, message):
    assert code == 2, (name, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynastream: error: "), (name, stderr)
    assert "Traceback" not in stderr
    assert re.search(message, lines[0]), (name, lines[0])


def test_every_error_is_one_sentence_exit_2_and_writes_nothing(tmp_path, capsys):
    from dynastream.stream.cli import main

    cases = error_cases(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, (args, message) in cases.items():
        code = main(["render", *map(str, args)])
        check_one_sentence(name, code, capsys.readouterr().err, message)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name


def test_errors_through_the_installed_command(tmp_path):
    cases = error_cases(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name in ("no video stream",):     # the in-process test above covers every case
        args, message = cases[name]
        proc = render_command(*args)
        check_one_sentence(name, proc.returncode, proc.stderr, message)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name


def test_a_photo_or_a_short_clip_renders_eager_and_a_long_job_may_compile():
    """Compiling costs seconds (tens, the first time) and pays back within a few hundred frames."""
    from dynastream.stream.engine import COMPILE_MIN_FRAMES, render_backend

    assert render_backend(1) == render_backend(COMPILE_MIN_FRAMES - 1) == "eager"
    assert render_backend(COMPILE_MIN_FRAMES) == render_backend(None) == "auto"
