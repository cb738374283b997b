"""A headless live soak: the pipeline runs for DYNASTREAM_SOAK_S seconds (default 60) with memory
flat and no error. Slow: run it with `pytest -m slow tests/test_soak.py` (docs/reliability.md)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SOAK_S = float(os.environ.get("DYNASTREAM_SOAK_S", "60"))
WARMUP_S = 10.0                 # allocator and caches settle; RSS is fitted after this
MAX_SLOPE_MB_PER_MIN = 3.0      # a frame of 160x120 leaked per frame would be ~100 MB/min


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_headless_live_soak_keeps_memory_flat_and_has_no_errors(tmp_path):
    if not Path("/proc/self/status").exists():
        pytest.skip("reads RSS from /proc")
    stats = tmp_path / "stats.json"
    proc = subprocess.Popen([sys.executable, "-u", "-m", "dynastream.stream", "live", "--source", "demo", "--headless",
                             "--size", "160x120", "--backend", "eager", "--stats-json", str(stats)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("live: demo"), proc.stderr.read()
        start = time.monotonic()
        times, rss = [], []
        while (elapsed := time.monotonic() - start) < SOAK_S:
            assert proc.poll() is None, proc.communicate()
            times.append(elapsed)
            rss.append(rss_mb(proc.pid))
            time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and err == "", err
    summary = json.loads(stats.read_text())
    assert summary["ended_by"] == "Ctrl-C" and summary["shown"] > SOAK_S, summary
    t, m = np.array(times), np.array(rss)
    settled = t >= min(WARMUP_S, SOAK_S / 2)
    slope_mb_per_min = 60 * np.polyfit(t[settled], m[settled], 1)[0]
    print(f"soak {SOAK_S:.0f} s: {summary['shown']} frames, {summary['fps']:.1f} fps, RSS {m.min():.0f}-{m.max():.0f} MB, "
          f"slope {slope_mb_per_min:+.2f} MB/min")
    assert abs(slope_mb_per_min) < MAX_SLOPE_MB_PER_MIN, (slope_mb_per_min, list(zip(times, rss)))
