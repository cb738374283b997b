import json
import subprocess
import sys

import numpy as np
import torch

from dynastream import nets
from dynastream.stream.bench import SeedBaseline, alpha_sequence


def test_bench_quick_json_has_every_field(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "dynastream.stream", "bench", "--quick", "--json", str(out),
                           "--live-source-fps", "60"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["schema"] == "dynastream-bench/1" and r["quick"] is True
    m = r["machine"]
    assert m["torch"] == torch.__version__ and m["cores"] >= 1 and m["cpu"] and m["devices"]["cpu"]
    assert len(r["load_avg_start"]) == 3 and len(r["load_avg_end"]) == 3
    assert r["model"]["name"] == "untrained:lite" and r["model"]["params"] > 0

    base = r["baseline"]
    assert len(base) == 1 and base[0]["batch"] == 1
    rows = r["model_only"]
    assert [row["batch"] for row in rows] == [1, 2]
    for row in rows + base:
        for key in ("alpha_changing", "alpha_fixed"):
            t = row[key]
            assert t["fps"] > 0 and 0 < t["latency_ms_p50"] <= t["latency_ms_p95"] and len(t["fps_runs"]) == 2
        assert "alpha_cost_pct" in row and row["host_peak_rss_mb"] > 0 and "load_1m" in row
    for row in rows:
        assert row["backend"] == "eager" and row["device"] == "cpu" and row["size"] == "64x48"
        assert row["baseline_fps"] == base[0]["alpha_changing"]["fps"]
        assert abs(row["speedup_vs_baseline"] - row["alpha_changing"]["fps"] / row["baseline_fps"]) < 0.01
        assert row["setup_s"] >= 0 and row["device_peak_mb"] is None
    best = r["best_batch"][0]
    assert best["fps"] == max(row["alpha_changing"]["fps"] for row in rows)
    assert best["batch1_fps"] == rows[0]["alpha_changing"]["fps"]
    pipe = r["pipeline"]
    for name in ("render", "live"):
        assert name in pipe and ("skipped" in pipe[name] or pipe[name]["rows"])
    assert all(row[4] == 60 for row in pipe["live"]["rows"]) and "paced at 60 fps" in pipe["live"]["notes"][0]
    assert r["host_peak_rss_mb_process"] > 0
    # the human-readable tables went to stdout, with the baseline row and the ratio column
    assert "BASELINE (seed loop)" in proc.stdout and "x baseline" in proc.stdout


def test_bench_markdown_tables_and_bad_options(run_cli):
    proc = run_cli("bench", "--quick", "--markdown", "--no-pipeline", "--batch", "1")
    assert proc.returncode == 0, proc.stderr
    assert "| --- |" in proc.stdout and "| cpu | 64x48 | BASELINE (seed loop) |" in proc.stdout
    proc = run_cli("bench", "--quick", "--live-source-fps", "0")
    assert proc.returncode == 2 and "--live-source-fps must be from 1 to 1000, not 0" in proc.stderr
    proc = run_cli("bench", "--quick", "untrained:dcgan")
    assert proc.returncode == 2 and "bench measures style nets" in proc.stderr and "Traceback" not in proc.stderr


def test_seed_baseline_is_the_same_net():
    net = nets.load("untrained:lite-dual")
    base = SeedBaseline(net, torch.device("cpu"))
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a in (-0.7, 0.0, 0.6):
            assert torch.allclose(base.forward(x, a), net(x, a), atol=1e-6)
    frame = (x[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert base.run_frame(frame, 0.5).shape == (24, 32, 3)


def test_alpha_sequence_changes_every_call_and_stays_in_range():
    seq = alpha_sequence(50, 2, 3, (0.0, 1.0))
    assert seq.shape == (50, 2, 3)
    assert (seq > 0).all() and (seq < 1).all()
    assert len(np.unique(seq[:, 0, 0])) == 50 and (seq[:, :, 0:1] == seq).all()


def test_pipeline_alpha_track_gives_every_frame_a_new_alpha(tmp_path):
    from dynastream.stream.bench import write_alpha_track
    from dynastream.stream.keyframes import load_track

    net = nets.load("untrained:lite")
    path = tmp_path / "alpha.csv"
    write_alpha_track(path, net.alpha_range, seconds=3)
    track = load_track(path, net.sites, net.alpha_range)
    values = [float(track.alpha_at(t=i / 30)[0]) for i in range(90)]
    assert all(a != b for a, b in zip(values, values[1:])) and 0 < min(values) and max(values) < 1
