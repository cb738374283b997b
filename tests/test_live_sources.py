"""Live sources: camera (OpenCV), images, the demo clip and ``open_source``."""

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dynastream.nets.errors import DynastreamError
from dynastream.stream.ring import Frame
from dynastream.stream.sources import (
    DEMO_IMAGE,
    CameraError,
    CameraSource,
    DemoSource,
    ImageSource,
    VideoFileSource,
    open_source,
)
from tests.media import make_video, pattern_frame


def slot(source) -> Frame:
    return Frame(np.zeros(source.shape_hwc, np.uint8))


def test_camera_reader_hands_out_only_the_newest_frame_and_ends_when_frames_stop(tmp_path):
    # OpenCV opens a file through the same VideoCapture call as a camera; it stands in for hardware
    # here. It decodes much faster than we read, as a camera does when the consumer is slow.
    path = tmp_path / "cam.mkv"
    written = make_video(path, n_frames=40, codec="ffv1")
    source = CameraSource(str(path), stall_timeout_s=1.0)
    try:
        assert source.shape_hwc == (48, 64, 3)
        frame = slot(source)
        indices = []
        time.sleep(0.3)                        # the reader runs ahead meanwhile
        while source.read_into(frame):
            indices.append(frame.index)
            assert np.abs(frame.rgb_hwc_u8.astype(int) - written[frame.index].astype(int)).mean() < 3
            assert frame.captured_at <= time.perf_counter()
        assert indices == sorted(set(indices)), "no frame twice, never backwards"
        assert indices[0] > 0, "stale frames buffered before the read were skipped"
        assert "stopped delivering frames" in source.end_reason
    finally:
        source.close()


def test_missing_camera_is_one_sentence_naming_what_was_tried():
    with pytest.raises(CameraError) as err:
        CameraSource("/dev/video97")
    assert "/dev/video97" in str(err.value) and "--source demo" in str(err.value)
    if not Path("/dev/video93").exists():
        with pytest.raises(CameraError, match=r"camera 93 \(tried /dev/video93 with OpenCV"):
            CameraSource(93)


def test_still_image_repeats_and_folder_plays_in_order(tmp_path):
    still = pattern_frame(1, 30, 40)
    cv2.imwrite(str(tmp_path / "still.png"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    source = ImageSource(str(tmp_path / "still.png"), fps=200)
    frame = slot(source)
    for i in range(5):
        assert source.read_into(frame)
        assert np.array_equal(frame.rgb_hwc_u8, still) and frame.index == i
    assert frame.time_s == pytest.approx(4 / 200)

    folder = tmp_path / "seq"
    folder.mkdir()
    frames = [pattern_frame(i, 30, 40) for i in range(3)]
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "f003.png"), np.zeros((60, 80, 3), np.uint8))   # another size: resized
    source = ImageSource(str(folder), fps=500)
    frame = slot(source)
    got = []
    while source.read_into(frame):
        got.append(frame.rgb_hwc_u8.copy())
    assert len(got) == 4 and all(np.array_equal(g, f) for g, f in zip(got, frames))
    assert np.all(got[3] == 0)
    looping = ImageSource(str(folder), fps=500, loop=True)
    frame = slot(looping)
    for _ in range(9):
        assert looping.read_into(frame)
    assert np.array_equal(frame.rgb_hwc_u8, frames[0]) and frame.index == 8


def test_demo_clip_moves_and_needs_only_the_package():
    assert DEMO_IMAGE.is_file() and DEMO_IMAGE.stat().st_size < 150_000
    assert (DEMO_IMAGE.parent / "CREDITS.md").is_file()
    source = DemoSource(pace=False)
    assert source.shape_hwc == (480, 640, 3) and source.fps == 30
    frame = slot(source)
    firsts = []
    for _ in range(31):
        assert source.read_into(frame)
        firsts.append(frame.rgb_hwc_u8.copy())
    assert frame.index == 30 and frame.time_s == pytest.approx(1.0)
    assert firsts[0].std() > 20, "a picture, not a flat colour"
    assert np.abs(firsts[30].astype(int) - firsts[0].astype(int)).mean() > 2, "the clip moves"
    again = DemoSource(pace=False)
    f2 = slot(again)
    again.read_into(f2)
    assert np.array_equal(f2.rgb_hwc_u8, firsts[0]), "deterministic"
    small = DemoSource((320, 240), fps=60, pace=False)
    assert small.shape_hwc == (240, 320, 3)


def test_open_source_picks_by_what_the_user_typed(tmp_path):
    video = tmp_path / "v.mp4"
    make_video(video, n_frames=3)
    cv2.imwrite(str(tmp_path / "i.jpg"), np.zeros((20, 30, 3), np.uint8))
    assert isinstance(open_source("demo"), DemoSource)
    assert isinstance(open_source(str(video)), VideoFileSource)
    assert isinstance(open_source(str(tmp_path / "i.jpg")), ImageSource)
    assert isinstance(open_source(str(tmp_path)), ImageSource)
    with pytest.raises(DynastreamError, match="does not exist"):
        open_source(str(tmp_path / "nothing.mp4"))
    with pytest.raises(DynastreamError, match="apply to cameras, images and the demo"):
        open_source(str(video), size_wh=(320, 240))
    if not Path("/dev/video0").exists():
        notices = []
        source = open_source(None, notice=notices.append)
        assert isinstance(source, DemoSource)
        assert notices and "no camera found (/dev/video0" in notices[0] and "demo" in notices[0]
