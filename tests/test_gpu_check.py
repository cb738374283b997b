"""scripts/gpu-check --dry-run: every step of the device check, tiny, on the CPU, and its output
within what the device tool brings back (at most 8 files, 2 folders deep, plain names)."""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STEPS = ("env", "tests", "bench", "render", "train")


@pytest.mark.slow   # 20 s, and its fixed 60 s budget fails under load; the budget logic is tested below, each
                   # step's command by its own tests (bench --quick, render, train smoke); run: pytest -m slow
def test_dry_run_reports_every_step_and_fits_the_device_limits(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run([str(REPO / "scripts" / "gpu-check"), "--dry-run"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    summary = (out / "summary.md").read_text()
    table = {m.group(1): (m.group(2), m.group(3)) for m in
             re.finditer(r"^\| (\w+) \| (ok|skipped|failed|timeout|pending) \| [\d.]* \| (.*) \|$", summary, re.M)}
    for step in STEPS:
        assert step in table, f"summary.md has no row for step {step}"
        state, note = table[step]
        assert state in ("ok", "skipped"), f"{step}: {state} {note}"
        assert state == "ok" or note.strip(), f"{step} is skipped without a reason"
    assert all(table[s][0] == "ok" for s in STEPS), table     # on a CPU every dry step can run

    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        assert len(rel.parts) <= 3, f"{rel} is more than 2 folders down"
        assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in rel.parts), rel
    assert all(p.stat().st_size <= 16 * 2**20 for p in files)

    s = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in s["steps"]] == list(STEPS) and s["mode"] == "dry run"
    bench = json.loads((out / "bench.json").read_text())
    assert {r["variant"] for r in bench["runs"]} == {"fast", "eager"}
    eager = next(r for r in bench["runs"] if r["variant"] == "eager")
    assert eager["result"]["settings"]["cuda_graphs"] is False and not eager["result"]["baseline"]
    render = next(r for r in s["steps"] if r["name"] == "render")["numbers"]["rows"]
    assert render and all(r["frames_out"] == r["frames_in"] and r["fps"] > 0 for r in render)
    with tarfile.open(out / "models.tar.gz") as tf:
        assert any(n.endswith(".pt") for n in tf.getnames())
    with tarfile.open(out / "previews.tar.gz") as tf:
        names = tf.getnames()
        assert any(n.endswith("sheet.png") for n in names) and any(n.endswith("eval.json") for n in names)


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_budget_skips_a_step_without_its_minimum_time_and_stops_a_child_at_its_deadline(tmp_path):
    import argparse
    import shutil
    import time

    gc = _module()
    args = argparse.Namespace(steps=gc.STEPS, configs=(), data=None, loss_net=None, site=None, keep_work=False)
    check = gc.Check(gc.DRY, tmp_path, args)
    try:
        deadlines = []
        check.end = time.monotonic() + 100
        check.step("tests", lambda deadline: (deadlines.append(deadline) or ("ok", "ran", {})))
        cap = gc.DRY.steps["tests"][1]
        assert check.results[-1].status == "ok" and deadlines[0] <= time.monotonic() + cap
        check.end = time.monotonic() + 1                      # less than the bench step's minimum
        check.step("bench", lambda deadline: ("ok", "should not run", {}))
        assert check.results[-1].status == "skipped" and "out of time" in check.results[-1].note
        started = time.monotonic()
        child = check.py("sleeper", "import time; time.sleep(60)", deadline=time.monotonic() + 1)
        assert child.timed_out and time.monotonic() - started < 10
        assert "| bench | skipped |" in (tmp_path / "summary.md").read_text()
    finally:
        shutil.rmtree(check.work, ignore_errors=True)
