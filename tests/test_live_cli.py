"""`dynastream live` as a user runs it: subprocesses, exit codes, what lands on stdout and stderr."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dynastream.nets.zoo_index import DEFAULT_MODEL
from tests.media import make_video


def live(*args: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynastream.stream", "live", *args], capture_output=True, text=True,
                          timeout=180, env=env, cwd=cwd)


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynastream: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_demo_runs_headless_for_60_frames_with_nothing_outside_the_package(tmp_path):
    pkg_env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = live("--source", "demo", "--headless", "--frames", "60", "--size", "160x120",
                "--stats-json", "stats.json", cwd=tmp_path, env=pkg_env)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["shown"] == 60 and stats["processed"] >= 60 and stats["captured"] >= 60
    assert stats["source"] == "demo" and stats["ended_by"] == "--frames 60"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]
    out = proc.stdout.splitlines()
    assert DEFAULT_MODEL in out[0] and out[-1].startswith("live: 60 frames shown")
    assert proc.stderr == ""


@pytest.mark.parametrize("args", [["--source", "tiny.png"], ["--source", "tiny.png", "--size", "2x2"],
                                  ["--source", "demo", "--size", "1x1"]])
def test_tiny_frames_run_live(tmp_path, args):
    import cv2

    cv2.imwrite(str(tmp_path / "tiny.png"), np.full((1, 1, 3), 128, np.uint8))
    proc = live("--headless", "--frames", "3", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "live: 3 frames shown" in proc.stdout and "Traceback" not in proc.stderr


def test_no_source_falls_back_to_the_demo_and_midi_without_a_device_warns(tmp_path):
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera")
    proc = live("--headless", "--frames", "3", "--midi")
    assert proc.returncode == 0, proc.stderr
    assert "no camera found (/dev/video0" in proc.stderr and "demo" in proc.stderr
    assert "warning: no MIDI input device found; the keys still work" in proc.stderr
    assert "compiling the net for 320x240 in the background" in proc.stderr
    assert len(proc.stderr.splitlines()) == 3, "nothing but the three notices (no OpenCV or ALSA noise)"
    assert "live: 3 frames shown" in proc.stdout
    listed = live("--midi-list")
    assert listed.returncode == 0 and listed.stdout.strip() == "no MIDI input devices found"
    assert listed.stderr == ""


def test_ctrl_c_ends_cleanly_with_the_summary(tmp_path):
    proc = subprocess.Popen([sys.executable, "-u", "-m", "dynastream.stream", "live", "--source", "demo", "--headless",
                             "--stats-json", str(tmp_path / "s.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()             # printed once the pipeline runs
        assert first.startswith("live: demo")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "ended by Ctrl-C" in out and "Traceback" not in err
    assert json.loads((tmp_path / "s.json").read_text())["ended_by"] == "Ctrl-C"


@pytest.mark.parametrize("args, needles", [
    (["--source", "7"], ["camera 7", "/dev/video7", "--source demo"]),
    (["--source", "/dev/video42"], ["/dev/video42", "--source demo"]),
    (["--source", "missing.mp4"], ["missing.mp4 does not exist"]),
    (["--source", "demo", "--model", "no-such-model"], ["no model named 'no-such-model'"]),
    (["--source", "demo", "--headless", "--backend", "turbo"], ["unknown backend 'turbo'"]),
    (["--source", "demo", "--size", "320x0"], ["bad --size '320x0'", "numbers from 1 to 8192"]),
    (["--source", "demo", "--record", "no/such/folder/out.mp4"], ["output folder no/such/folder does not exist"]),
    (["--source", "demo", "--stats-json", "no/such/folder/s.json"],
     ["--stats-json: the output folder no/such/folder does not exist"]),
    (["--source", "demo", "--stats-json", "/proc/s.json"], ["--stats-json: cannot write to the output folder /proc"]),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, run_cli, args, needles):
    if any(a.startswith("/dev/video") and Path(a).exists() for a in args) or ("7" in args and Path("/dev/video7").exists()):
        pytest.skip("that camera exists here")
    assert_one_line_error(run_cli("live", "--headless", *args, cwd=tmp_path), *needles)


def test_unreadable_file_bad_config_and_no_display(tmp_path, run_cli):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 2000)
    assert_one_line_error(run_cli("live", "--headless", "--source", str(junk)), "cannot open", "junk.mp4")
    config = tmp_path / "live.yaml"
    config.write_text("source: demo\nframs: 10\n")
    assert_one_line_error(run_cli("live", "--config", str(config)), "unknown key 'frams'")
    video = tmp_path / "v.mp4"
    make_video(video, n_frames=3)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["SDL_VIDEODRIVER"] = "x11"
    assert_one_line_error(live("--source", str(video), env=env), "no display", "--headless", "render")
