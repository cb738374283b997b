"""render-many: many files, one after another here or as Ray tasks, and long files in parts.

The Ray tests share one local cluster (2 CPUs) for the module. Its workers run ``fail_on_markers``
at start-up, so a test can make a worker's render raise, or the worker die, once, mid-file."""

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from dynastream.stream.cli import main
from dynastream.stream.engine import Engine
from dynastream.stream.render import RenderConfig, render
from dynastream.stream.scale import plan_spans
from dynastream.stream.sources import VideoFileSource
from dynastream.stream.writer import VideoOptions
from tests.media import audio_info, make_video, read_frames

FFV1 = VideoOptions("ffv1")
TRACK = "interpolation: linear\nkeys:\n  - {t: 0, alpha: 0}\n  - {t: 0.25, alpha: 1}\n"
MARKERS = "DYNASTREAM_TEST_MARKERS"     # the folder where markers for the Ray workers are put


def fail_on_markers() -> None:
    """Ray worker start-up (``worker_process_setup_hook``): from its 3rd frame written on, a worker's
    VideoWriter.write raises if ``raise-once`` is in the markers folder, or the worker dies (as if
    killed) if ``crash-once`` is; the marker is removed, so it happens once. (stream.writer, not the
    engine: the progress actor's worker runs this too, and should not have to import torch.)"""
    from dynastream.stream.writer import VideoWriter

    write, calls = VideoWriter.write, [0]

    def write_or_fail(self, *args, **kwargs):
        calls[0] += 1
        folder = Path(os.environ[MARKERS])
        if calls[0] >= 3 and _claim(folder / "raise-once"):
            raise RuntimeError("injected failure")
        if calls[0] >= 3 and _claim(folder / "crash-once"):
            os._exit(3)
        return write(self, *args, **kwargs)
    VideoWriter.write = write_or_fail


def _claim(marker: Path) -> bool:
    try:
        marker.unlink()
        return True
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Renders here with one torch thread, as each Ray task runs: two threads on the two cores of a
    busy machine wait for each other (several times slower; docs/scale.md)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_markers(tmp_path_factory):
    ray = pytest.importorskip("ray")
    markers = tmp_path_factory.mktemp("ray-markers")
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.test_render_many.fail_on_markers",
                          "env_vars": {MARKERS: str(markers), "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield markers
    ray.shutdown()


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def same_video(got: Path, want: Path, exact: bool = True) -> None:
    got_frames, got_times = read_frames(got)
    want_frames, want_times = read_frames(want)
    assert len(got_frames) == len(want_frames) and got_times == want_times, got
    if exact:
        for a, b in zip(got_frames, want_frames):
            np.testing.assert_array_equal(a, b)
    assert [a[:2] for a in audio_info(got)] == [a[:2] for a in audio_info(want)]
    assert [a[2] for a in audio_info(got)] == [a[2] for a in audio_info(want)]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Two clips and a long one (keyframes every 6 frames; b and long have tracks of their own),
    k.yaml (the track for the others) and each clip rendered whole by render with its track."""
    root = tmp_path_factory.mktemp("library")
    folder = root / "in"
    folder.mkdir()
    make_video(folder / "a.mkv", n_frames=6, codec="ffv1", audio=True)
    make_video(folder / "b.mkv", n_frames=6, codec="ffv1", audio=True)
    make_video(folder / "long.mkv", n_frames=24, codec="ffv1", audio=True, gop=6)
    (folder / "b.keyframes.yaml").write_text("keys:\n  - {t: 0, alpha: 1}\n  - {t: 0.2, alpha: 0}\n")
    (folder / "long.keyframes.yaml").write_text("keys:\n  - {frame: 0, alpha: 0}\n  - {frame: 23, alpha: 1}\n")
    (root / "k.yaml").write_text(TRACK)
    (root / "refs").mkdir()
    tracks = {"a": root / "k.yaml", "b": folder / "b.keyframes.yaml", "long": folder / "long.keyframes.yaml"}
    for name, track in tracks.items():
        render(folder / f"{name}.mkv", root / "refs" / f"{name}.mkv", RenderConfig(keyframes=str(track), video=FFV1))
    return folder


# -- here, without Ray ------------------------------------------------------------------------------

def test_here_each_file_gets_its_own_track_a_failed_try_is_retried_and_a_corrupt_file_is_listed(
        tmp_path, library, monkeypatch, capsys):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    run, calls = Engine.run, [0]

    def fails_once(self, *args, **kwargs):     # the 3rd batch of the first render raises, once
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("injected failure")
        return run(self, *args, **kwargs)
    monkeypatch.setattr(Engine, "run", fails_once)
    out = tmp_path / "out"
    code = main(["render-many", str(library), str(corrupt), "-o", str(out), "--keyframes",
                 str(library.parent / "k.yaml"), "--codec", "ffv1", "-q"])
    captured = capsys.readouterr()
    assert code == 2 and calls[0] > 3
    assert sorted(p.name for p in out.iterdir()) == ["a.mkv", "b.mkv", "long.mkv"]
    for name in ("a", "b", "long"):
        same_video(out / f"{name}.mkv", library.parent / "refs" / f"{name}.mkv")
    a, b = (read_frames(library.parent / "refs" / f"{name}.mkv")[0][0] for name in "ab")
    assert np.abs(a.astype(int) - b).mean() > 5     # the same clip: the tracks made the difference
    assert "alpha: k.yaml" in captured.out and "alpha: b.keyframes.yaml" in captured.out
    assert re.search(r"4 files: 3 rendered, 1 failed; 36 frames in [0-9.]+ s .* on this machine", captured.out)
    errors = captured.err.strip().splitlines()
    assert errors == [f"dynastream: corrupt.mp4 failed: cannot open {corrupt} as a video "
                      "(Invalid data found when processing input)",
                      f"dynastream: error: 1 of 4 files failed (listed above); the others are in {out}"], captured.err
    assert "Traceback" not in captured.err


def test_here_a_split_x264_render_has_the_frames_and_timestamps_of_a_whole_one(tmp_path, capsys):
    pts_ms = [0, 40, 50, 120, 200, 210, 300, 330, 400, 480, 520, 600]
    src = tmp_path / "vfr.mp4"
    make_video(src, n_frames=len(pts_ms), pts_ms=pts_ms, audio=True, gop=3)
    spans = plan_spans(src, 0.1)    # keyframes at frames 0, 3, 6, 9: 0, 0.12, 0.3, 0.48 s
    assert len(spans) == 4 and [s.first_index for s in spans] == [0, 3, 6, 9]
    assert sum(s.frames for s in spans) == 12 and spans[-1].end_pts is None
    part = VideoFileSource(str(src), span=spans[1])
    assert part.frame_count == 12       # the whole file's: a part picks the backend a whole render would
    part.close()
    render(src, tmp_path / "whole.mp4", RenderConfig(alpha=0.5))
    assert main(["render-many", str(src), "-o", str(tmp_path / "out"), "--alpha", "0.5", "--split", "0.1"]) == 0
    bar = capsys.readouterr().err.split("\r")[-1]    # the bar over the whole job, in its last state
    assert "out: 100%" in bar and "12/12 [" in bar, bar
    same_video(tmp_path / "out" / "vfr.mp4", tmp_path / "whole.mp4", exact=False)   # H.264: each part re-encoded
    np.testing.assert_allclose(read_frames(tmp_path / "out" / "vfr.mp4")[1], np.array(pts_ms) / 1000, atol=1e-9)
    assert hidden(tmp_path / "out") == []


def test_mistakes_are_one_sentence_before_any_work(tmp_path, library, monkeypatch, capsys):
    make_video(tmp_path / "a.mkv", n_frames=2, codec="ffv1")   # the same name as library/a.mkv
    (tmp_path / "empty").mkdir()
    (tmp_path / "photo.png").write_bytes(b"png")
    out = tmp_path / "out"
    cases = {
        "no ray": ([library, "--ray"], r"--ray needs Ray, which is not installed: pip install 'dynastream\[scale\]'"),
        "missing input": ([tmp_path / "nope.mp4"], "input .*nope.mp4 does not exist"),
        "an image": ([tmp_path / "photo.png"], "photo.png is an image: use dynastream render"),
        "no videos": ([tmp_path / "empty"], "the folder .*empty holds no videos"),
        "one name twice": ([library, tmp_path / "a.mkv"], "a.mkv and .*a.mkv would both be written to"),
        "split and stabilize": ([library, "--split", "1", "--stabilize"], "--stabilize blends each frame"),
        "a bad model": ([library, "--model", "nosuch"], "no model named 'nosuch'"),
        "a bad container": ([library, "--ext", "avi"], "not .avi"),
        "an input taken for the address": (["--ray", library / "a.mkv", library / "b.mkv"],
                                           "--ray took .*a.mkv for the cluster's address: give the inputs before"),
    }
    monkeypatch.setitem(sys.modules, "ray", None)     # import ray raises ImportError, as without it
    for name, (args, message) in cases.items():
        code = main(["render-many", *map(str, args), "-o", str(out), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("dynastream: error: "), (name, err)
        assert re.search(message, err[0]), (name, err)
        assert not out.exists() or list(out.iterdir()) == [], name


# -- on a local Ray cluster ------------------------------------------------------------------------

def test_ray_renders_the_files_and_a_split_one_exactly_as_renders_here(tmp_path, library, ray_markers, capsys):
    """The long clip goes in 4 parts over both workers; one worker's render raises once and Ray
    tries it again."""
    (ray_markers / "raise-once").touch()
    out = tmp_path / "out"
    code = main(["render-many", str(library / "a.mkv"), str(library / "b.mkv"), str(library / "long.mkv"),
                 "-o", str(out), "--keyframes", str(library.parent / "k.yaml"), "--codec", "ffv1", "--split", "0.25",
                 "--ray"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    bar = captured.err.split("\r")[-1]    # the bar's last state: every frame once (a join adds none)
    assert "out: 100%" in bar and "36/36 [" in bar, bar
    assert not (ray_markers / "raise-once").exists()       # the failure happened
    for name in ("a", "b", "long"):
        same_video(out / f"{name}.mkv", library.parent / "refs" / f"{name}.mkv")
    assert "long.mkv: 24 frames at 64x48 in 4 parts" in captured.out
    assert re.search(r"3 files: 3 rendered, 0 failed; 36 frames in [0-9.]+ s .* on Ray: 2 CPUs, 2 tasks at a time",
                     captured.out), captured.out
    assert hidden(out) == []


def test_ray_a_worker_that_dies_is_replaced_and_a_corrupt_file_is_listed(tmp_path, ray_markers, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "clip.mp4", n_frames=6, audio=True)
    (folder / "corrupt.mp4").write_bytes((folder / "clip.mp4").read_bytes()[:2000])
    (ray_markers / "crash-once").touch()
    out = tmp_path / "out"
    code = main(["render-many", str(folder), "-o", str(out), "--ray", "-q"])
    captured = capsys.readouterr()
    assert not (ray_markers / "crash-once").exists()       # a worker died mid-render
    assert code == 2 and sorted(p.name for p in out.iterdir()) == ["clip.mp4"]
    render(folder / "clip.mp4", tmp_path / "whole.mp4")
    same_video(out / "clip.mp4", tmp_path / "whole.mp4", exact=False)   # x264 may differ from run to run
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"dynastream: corrupt.mp4 failed: cannot open {folder}"), errors
    assert errors[1] == f"dynastream: error: 1 of 2 files failed (listed above); the others are in {out}"
