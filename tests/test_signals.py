"""Real signals sent to real `dynastream` processes: SIGTERM and SIGHUP clean up like Ctrl-C (no
temporary file left, a live take finished), SIGKILL's leftovers are removed by the next write to
the same target, and a signal during start-up ends the command in one line."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from dynastream import nets
from dynastream.nets.checkpoint import DEFAULT_MODEL
from dynastream.stream.cli import main
from dynastream.stream.keyframes import load_track
from tests.media import make_video, read_frames


def start(*args, cwd, new_session=False):
    return subprocess.Popen([sys.executable, "-u", "-m", "dynastream.stream", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session)


def finish(proc, timeout=90):
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(predicate, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


SLOW = ("--size", "320x180", "--device", "cpu")   # frames slow enough (tens of ms each) to be caught mid-render


def temp_of(proc, folder, name="out", ext=".mp4"):
    return folder / f".{name}.tmp-{proc.pid}{ext}"


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """A clip that takes several seconds to render here, with audio."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_video(path, n_frames=240, width=160, height=120, audio=True)
    return path


def dot_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_render_cleans_up_on_each_stop_signal(tmp_path, long_clip, sig):
    proc = start("render", long_clip, "-o", "out.mp4", *SLOW, cwd=tmp_path)
    wait_for(lambda: temp_of(proc, tmp_path).exists(), proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = finish(proc)
    how = "interrupted" if sig == signal.SIGINT else f"stopped by {signal.Signals(sig).name}"
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == f"dynastream: render {how}; out.mp4 was not written", err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_render_keep_partial_on_sigterm_keeps_what_was_rendered(tmp_path, long_clip):
    proc = start("render", long_clip, "-o", "out.mp4", "--keep-partial", *SLOW, cwd=tmp_path)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    # the progress bar says when frames were rendered (a loaded machine may take seconds for the first)
    wait_for(lambda: re.search(r"\| *[1-9]\d*/240", "".join(chunks)), proc)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:   # hung: do not leave it running after the test
            proc.kill()
    reader.join(timeout=10)
    err = "".join(chunks).replace("\r", "\n")
    assert proc.returncode == 143 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dynastream: render stopped by SIGTERM; the ") and last.endswith("kept in out.partial.mp4")
    kept = int(last.split("the ")[1].split(" frames")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial.mp4"]
    assert len(read_frames(tmp_path / "out.partial.mp4")[0]) == kept > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_live_record_finishes_the_take_on_sigterm_and_sighup(tmp_path, sig):
    proc = start("live", "--source", "demo", "--headless", "--size", "64x48", "--record", "take.mp4",
                 "--stats-json", "stats.json", cwd=tmp_path)
    assert proc.stdout.readline().startswith("live: demo"), finish(proc)
    wait_for(lambda: temp_of(proc, tmp_path, "take").exists(), proc)
    time.sleep(1.5)
    proc.send_signal(sig)
    out, err = finish(proc)
    name = signal.Signals(sig).name
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert f"ended by {name}" in out and "recorded take.mp4" in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "take.keyframes.yaml", "take.mp4"]
    frames, times = read_frames(tmp_path / "take.mp4")
    assert len(frames) > 5
    track = load_track(tmp_path / "take.keyframes.yaml", nets.load(DEFAULT_MODEL).sites, (0.0, 1.0))
    assert track.keys


def test_sigkill_leftovers_are_removed_by_the_next_render_which_says_so(tmp_path, long_clip, capsys):
    proc = start("render", long_clip, "-o", "out.mp4", *SLOW, cwd=tmp_path)
    temp = temp_of(proc, tmp_path)
    wait_for(temp.exists, proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert temp.exists(), "SIGKILL cannot be caught: the temporary file stays"
    short = tmp_path / "short.mp4"
    make_video(short, n_frames=3)
    code = main(["render", str(short), "-o", str(tmp_path / "out.mp4"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert err.strip().splitlines() == [f"dynastream: removed {temp}, left by an earlier run (process {proc.pid}) "
                                        "that did not finish"]
    assert dot_files(tmp_path) == [] and len(read_frames(tmp_path / "out.mp4")[0]) == 3


@pytest.mark.parametrize("sig, delay_s", [(signal.SIGINT, 1.0), (signal.SIGINT, 2.5), (signal.SIGTERM, 1.5)])
def test_a_signal_during_live_start_up_ends_in_one_line(tmp_path, sig, delay_s):
    """Ctrl-C in a terminal reaches the whole process group (compile workers too)."""
    proc = start("live", "--source", "demo", "--headless", "--record", "take.mp4", cwd=tmp_path, new_session=True)
    time.sleep(delay_s)
    os.killpg(proc.pid, sig)
    out, err = finish(proc, timeout=60)
    assert "Traceback" not in err and "Exception" not in err, err
    if out.startswith("live: demo"):          # it had started: it ends like q
        assert proc.returncode == 0 and "ended by" in out, (out, err)
    else:
        how = "interrupted" if sig == signal.SIGINT else f"stopped by {signal.Signals(sig).name}"
        assert proc.returncode == 128 + sig and err.strip() == f"dynastream: {how}", err
    assert dot_files(tmp_path) == []


def test_a_stop_signal_inside_deferred_waits_for_the_loops_poll():
    """Inside ``signals.deferred`` (a render's frame loop) a stop signal is only recorded and the
    loop's ``raise_if_requested`` raises it: a handler's exception could otherwise land between a
    ring lock's acquire and its ``with`` block and keep the lock (a render hung so on SIGTERM)."""
    import os

    from dynastream.stream import signals as sig

    with sig.stop_signals():
        sig.graceful()
        with sig.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)                      # the handler has run: nothing raised here
            with pytest.raises(sig.Interrupted, match="SIGTERM"):
                sig.raise_if_requested()
        assert not sig._deferred
