"""`dynastream live --source demo --osc PORT --web PORT` headless, as a performer runs it: α moved by
real OSC packets over UDP loopback and by a slider of the page in a real headless Chromium, the
frames reaching that page, and both ways in counted in the summary."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from pythonosc.udp_client import SimpleUDPClient

from dynastream import nets
from tests.browser import Chromium, need_chromium

ROOT = Path(__file__).resolve().parents[1]


def start_live(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-u", "-m", "dynastream.stream", "live", "--source", "demo", "--headless",
                             "--size", "160x120", "--backend", "eager", "--threads", "1",
                             "--stats-json", str(tmp_path / "stats.json"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    found = {}
    deadline = time.monotonic() + 120
    while len(found) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("live: OSC on udp://"):
            found["osc"] = int(line.split("udp://", 1)[1].split()[0].rsplit(":", 1)[1])
        elif line.startswith("live: web page on "):
            found["web"] = line.split(" on ", 1)[1].strip()
    if len(found) < 2:
        proc.kill()
        raise AssertionError(f"live did not announce OSC and the page: {proc.communicate()}")
    return proc, found


def stop_live(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


SITED_MODEL = "untrained:lite"   # a model with several tuning sites (the zoo's have one, on their style vector)


def test_osc_and_the_browser_page_move_alpha_and_the_page_shows_the_frames(tmp_path):
    need_chromium()
    proc, where = start_live(tmp_path, "--model", SITED_MODEL, "--osc", "0", "--web", "0")
    try:
        osc = SimpleUDPClient("127.0.0.1", where["osc"])
        osc.send_message("/dynastream/site/res3_in", 0.9)        # taken
        osc.send_message("/dynastream/alpha", "loud")            # refused: not a number
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"not an OSC packet", ("127.0.0.1", where["osc"]))   # refused: not OSC
        with Chromium(where["web"], tmp_path / "profile") as page:
            assert page.wait_for("document.getElementById('picture').naturalWidth") == 160   # a frame arrived
            # OSC's α reaches the controller and comes back in the page's state (slew: ~0.1 s)
            page.wait_for("document.getElementById('alpha-res3_in-value').textContent === '0.90'")
            page.evaluate("(() => { const s = document.getElementById('alpha-out_in'); s.value = 0.1;"
                          " s.dispatchEvent(new Event('input')); return true; })()")
            page.wait_for("document.getElementById('alpha-out_in-value').textContent === '0.10'")
            page.wait_for("document.getElementById('model').textContent.includes('web (2 viewers)')")
            shot = page.screenshot()
            box = page.evaluate("(() => { const r = document.getElementById('picture').getBoundingClientRect();"
                                " return [r.left, r.top, r.width, r.height]; })()")
    finally:
        if proc.poll() is None:
            out, err = stop_live(proc)
    cv2.imwrite(str(tmp_path / "page.png"), cv2.cvtColor(shot, cv2.COLOR_RGB2BGR))   # to look at
    x, y, w, h = (round(v) for v in box)
    picture = shot[y:y + h, x:x + w]
    assert w > 100 and h > 60 and picture.std() > 10, "the picture on the page is not a flat colour"
    assert "Traceback" not in err
    summary = out.strip().splitlines()[-1]
    assert "osc 1 messages taken, 2 refused" in summary and "web 1 messages taken, 0 refused" in summary, summary
    expected = {**{site: 0.5 for site in nets.load(SITED_MODEL).sites}, "res3_in": 0.9, "out_in": 0.1}
    assert "last alpha " + " ".join(f"{s} {v:.2f}" for s, v in expected.items()) in summary, summary
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["inputs"]["osc"]["taken"] == 1 and stats["inputs"]["osc"]["refused"] == 2
    assert stats["inputs"]["web"] == {"taken": 1, "refused": 0}
    assert stats["alpha_last"] == expected
    assert stats["sinks"]["web"]["sent"] > 0 and stats["sinks"]["web"]["failed"] is False
    assert stats["ended_by"] == "Ctrl-C"


@pytest.mark.slow   # tests/test_osc.py and test_web.py check the sentence in-process
def test_a_port_in_use_is_one_sentence_and_exit_2(tmp_path):
    from tests.test_live_cli import assert_one_line_error, live

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert_one_line_error(live("--source", "demo", "--headless", "--backend", "eager", "--osc", str(port)),
                              f"--osc: cannot listen on 127.0.0.1 port {port} (Address already in use)")
