import threading
import time

import numpy as np
import pytest

from dynastream.nets.errors import DynastreamError
from dynastream.stream.ring import FrameRing
from dynastream.stream.sources import VideoFileSource, pump
from tests.media import make_video


def test_file_source_decodes_every_frame_with_its_timestamps(tmp_path):
    path = tmp_path / "vfr.mkv"
    pts_ms = [0, 40, 50, 120, 200, 210, 300, 330]
    written = make_video(path, n_frames=8, codec="ffv1", pts_ms=pts_ms)
    source = VideoFileSource(str(path))
    assert source.shape_hwc == (48, 64, 3)
    ring = FrameRing(3, source.shape_hwc, "block")
    errors = []
    t = threading.Thread(target=pump, args=(source, ring, threading.Event(), errors))
    t.start()
    got = []
    while (frame := ring.acquire_read(timeout=5)) is not None:
        got.append((frame.index, round(frame.time_s * 1000), frame.rgb_hwc_u8.copy()))
        ring.release(frame)
    t.join()
    assert not errors
    assert [g[0] for g in got] == list(range(8))
    assert [g[1] for g in got] == pts_ms
    for (_, _, rgb), ref in zip(got, written):  # ffv1 yuv444p: near-lossless after colour conversion
        assert np.abs(rgb.astype(int) - ref.astype(int)).mean() < 3


def test_file_source_loop_and_pace(tmp_path):
    path = tmp_path / "c.mp4"
    make_video(path, n_frames=6, fps=50)
    source = VideoFileSource(str(path), pace=True, loop=True)
    ring = FrameRing(3, source.shape_hwc, "block")
    frame = ring.acquire_write()
    start = time.perf_counter()
    times = []
    for _ in range(14):
        assert source.read_into(frame)
        times.append(frame.time_s)
    elapsed = time.perf_counter() - start
    assert times == sorted(times) and times[6] > times[5]
    assert elapsed >= times[-1] - 0.05, "paced playback is not faster than the file's clock"


def test_file_source_errors(tmp_path):
    with pytest.raises(DynastreamError, match="does not exist"):
        VideoFileSource(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(DynastreamError, match="cannot open"):
        VideoFileSource(str(junk))


def test_truncated_mp4_is_a_clean_error(tmp_path):
    path = tmp_path / "full.mp4"
    make_video(path, n_frames=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DynastreamError):
        source = VideoFileSource(str(cut))
        ring = FrameRing(2, source.shape_hwc, "block")
        frame = ring.acquire_write()
        while source.read_into(frame):
            pass
