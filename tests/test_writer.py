import os
from fractions import Fraction

import numpy as np
import pytest
import yaml

from dynastream.nets.errors import DynastreamError
from dynastream.stream.keyframes import load_track
from dynastream.stream.ring import FrameRing
from dynastream.stream.sources import VideoFileSource
from dynastream.stream.writer import Recorder, VideoOptions, VideoWriter, check_output, partial_path
from tests.media import audio_decode_errors, audio_info, make_video, pattern_frame, read_frames

SITES = ("res3_in", "up1_in", "out_in")
VFR_MS = [0, 40, 50, 120, 200, 210, 300, 330, 400, 440]


def transcode(src, dst, options=VideoOptions(), audio=True, limit=None, **kw):
    """Decode ``src`` and write it through a VideoWriter (pixels unchanged)."""
    source = VideoFileSource(str(src))
    h, w, _ = source.shape_hwc
    frame = FrameRing(2, source.shape_hwc, "block").acquire_write()
    writer = VideoWriter(dst, w, h, rate=source.stream.average_rate, time_base=source.time_base,
                         options=options, audio_from=src if audio else None, **kw)
    n = 0
    while (limit is None or n < limit) and source.read_into(frame):
        writer.write(frame.rgb_hwc_u8, frame.pts)
        n += 1
    source.close()
    return writer


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_vfr_timestamps_kept_and_audio_copied(tmp_path, ext):
    src = tmp_path / "vfr.mp4"
    make_video(src, n_frames=len(VFR_MS), pts_ms=VFR_MS, audio=True)
    _, times_in = read_frames(src)
    writer = transcode(src, tmp_path / f"out{ext}")
    assert writer.audio_mode == ["copy"]
    assert writer.close() == tmp_path / f"out{ext}"
    frames, times = read_frames(tmp_path / f"out{ext}")
    assert len(frames) == len(VFR_MS)
    tick = 0.0005 if ext == ".mkv" else 1e-9      # Matroska stores milliseconds
    np.testing.assert_allclose(times, times_in, atol=tick)
    (codec_in, rate_in, n_in), = audio_info(src)
    (codec, rate, n), = audio_info(tmp_path / f"out{ext}")
    assert (codec, rate) == ("aac", rate_in) and abs(n - n_in) <= 1024
    assert leftovers(tmp_path) == []


def test_audio_reencoded_to_aac_where_the_container_cannot_hold_it(tmp_path):
    src = tmp_path / "pcm.mkv"
    make_video(src, n_frames=12, codec="ffv1", audio=True, audio_codec="pcm_u8")
    (_, rate_in, n_in), = audio_info(src)
    writer = transcode(src, tmp_path / "out.mp4")      # MP4 cannot hold 8-bit PCM
    assert writer.audio_mode == ["re-encode aac"]
    writer.close()
    (codec, rate, n), = audio_info(tmp_path / "out.mp4")
    assert (codec, rate) == ("aac", rate_in) and abs(n - n_in) <= 1024
    assert len(read_frames(tmp_path / "out.mp4")[0]) == 12


def test_webm_from_a_44k_source_resamples_to_48k_for_opus(tmp_path):
    src = tmp_path / "44k.mp4"
    make_video(src, n_frames=24, audio=True, sample_rate=44100)
    (_, rate_in, n_in), = audio_info(src)
    writer = transcode(src, tmp_path / "out.webm")
    assert rate_in == 44100 and writer.audio_mode == ["re-encode libopus"]
    writer.close()
    (codec, rate, n), = audio_info(tmp_path / "out.webm")
    assert (codec, rate) == ("opus", 48000)
    assert abs(n / rate - n_in / rate_in) < 0.03            # the same duration, every packet decodes
    assert audio_decode_errors(tmp_path / "out.webm")[1] == 0
    assert len(read_frames(tmp_path / "out.webm")[0]) == 24


def test_lossless_codec_is_exact_and_odd_sizes_are_padded(tmp_path):
    frames = [pattern_frame(i, 47, 65) for i in range(4)]
    frames[1][10:20, 10:20] = [255, 0, 0]    # a hard edge that a lossy codec would blur
    exact = VideoWriter(tmp_path / "a.mkv", 65, 47, rate=24, time_base=Fraction(1, 24),
                        options=VideoOptions("ffv1"))
    lossy = VideoWriter(tmp_path / "b.mp4", 65, 47, rate=24, time_base=exact.time_base, options=VideoOptions(crf=0))
    for i, rgb in enumerate(frames):
        exact.write(rgb, i)
        lossy.write(rgb, i)
    exact.close(), lossy.close()
    assert lossy.encoded_wh == (66, 48) and exact.encoded_wh == (65, 47)
    got, _ = read_frames(tmp_path / "a.mkv")
    assert all(np.array_equal(a, b) for a, b in zip(got, frames))
    got, _ = read_frames(tmp_path / "b.mp4")
    assert got[0].shape == (48, 66, 3)
    for a, b in zip(got, frames):   # 4:2:0 chroma: close, and the padding repeats the edge
        assert np.abs(a[:47, :65].astype(int) - b).mean() < 5
        assert np.abs(a[:47, 65].astype(int) - b[:, 64]).mean() < 6
        assert np.abs(a[47, :65].astype(int) - b[46]).mean() < 6


def test_abort_leaves_the_target_untouched_and_keep_partial_keeps_a_playable_file(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, n_frames=12, audio=True)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous render")
    writer = transcode(src, target, limit=5)
    assert writer.abort() is None
    assert target.read_bytes() == b"previous render" and leftovers(tmp_path) == []

    writer = transcode(src, target, limit=5, keep_partial=True)
    kept = writer.abort()
    assert kept == partial_path(target) == tmp_path / "out.partial.mp4"
    assert target.read_bytes() == b"previous render" and leftovers(tmp_path) == []
    frames, times = read_frames(kept)
    assert len(frames) == 5 and times == read_frames(src)[1][:5]
    assert audio_info(kept)[0][0] == "aac"


def test_timestamps_must_increase(tmp_path):
    writer = VideoWriter(tmp_path / "o.mp4", 16, 16, rate=24, time_base=Fraction(1, 24))
    writer.write(pattern_frame(0, 16, 16), 3)
    with pytest.raises(DynastreamError, match="timestamps must increase"):
        writer.write(pattern_frame(1, 16, 16), 3)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, options, match", [
    ("o.mp4", VideoOptions("bogus"), "unknown video codec 'bogus'"),
    ("o.mp4", VideoOptions("aac"), "not a video codec"),
    ("o.webm", VideoOptions("ffv1"), "cannot hold ffv1"),
    ("o.webm", VideoOptions("h264"), r"\.webm files cannot hold h264 video; choose another --codec"),
    ("o.mov", VideoOptions("libvpx-vp9"), "mov files cannot hold libvpx-vp9 video"),   # listed, then refused
    ("o.mkv", VideoOptions("rawvideo"), r"\.mkv files cannot hold rawvideo video; choose another --codec$"),
    ("o.notaformat", VideoOptions(), r"videos are written as \.mp4, \.mkv, \.mov or \.webm files, not \.notaformat$"),
    ("o.gif", VideoOptions(), "not .gif; for a GIF, render to .mp4 and convert that"),
    ("o.avi", VideoOptions("mpeg4"), "not .avi$"),
    ("noextension", VideoOptions(), r"not noextension \(no extension\)"),
    ("o.mp4", VideoOptions(preset="warp"), "unknown preset 'warp'"),
    ("o.mkv", VideoOptions("png", crf=10), "takes no --crf"),
    ("o.mkv", VideoOptions("ffv1", preset="fast"), "takes no --preset"),
])
def test_writer_errors_create_no_file(tmp_path, name, options, match):
    with pytest.raises(DynastreamError, match=match):
        VideoWriter(tmp_path / name, 16, 16, rate=24, time_base=Fraction(1, 24), options=options)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_video_codec_is_named_as_such_even_with_audio(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, n_frames=2, audio=True)
    with pytest.raises(DynastreamError, match=r"\.mov files cannot hold libvpx-vp9 video"):
        VideoWriter(tmp_path / "o.mov", 16, 16, rate=24, time_base=Fraction(1, 24),
                    options=VideoOptions("libvpx-vp9"), audio_from=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_check_output(tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    with pytest.raises(DynastreamError, match="is the input"):
        check_output(tmp_path / "." / "in.mp4", [src])
    with pytest.raises(DynastreamError, match="does not exist"):
        check_output(tmp_path / "missing" / "o.mp4")
    with pytest.raises(DynastreamError, match="is not a folder"):
        check_output(src / "o.mp4")
    with pytest.raises(DynastreamError, match="cannot write"):
        check_output("/proc/o.mp4")      # refused even to root
    with pytest.raises(DynastreamError, match="is a folder"):
        check_output(tmp_path)
    assert check_output(tmp_path / "o.mp4") == tmp_path / "o.mp4"
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_recorder_writes_video_and_track_together(tmp_path):
    target = tmp_path / "take.mp4"
    rec = Recorder(target, 32, 24, SITES, fps=25)
    ring = FrameRing(2, (24, 32, 3), "block", n_alpha=3)
    frame = ring.acquire_write()
    alphas = [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, [0.2, 0.4, 0.6]]
    for i, a in enumerate(alphas):
        frame.rgb_hwc_u8[...] = pattern_frame(i, 24, 32)
        frame.time_s = 10.0 + i / 25        # the source's clock: this take started 10 s in
        frame.alpha[:] = a
        rec.write(frame)
        assert not target.exists() and not rec.keyframes.exists()   # nothing appears before close
    video, keys = rec.close()
    assert (video, keys) == (target, tmp_path / "take.keyframes.yaml")
    frames, times = read_frames(video)
    assert len(frames) == len(alphas)
    np.testing.assert_allclose(times, [i / 25 for i in range(len(alphas))], atol=1e-4)  # the video starts at 0
    data = yaml.safe_load(keys.read_text())
    assert len(data["keys"]) == len(alphas) - 3            # the inner frames of held alphas are left out
    track = load_track(keys, SITES, (0.0, 1.0))
    for i, a in enumerate(alphas):
        np.testing.assert_array_equal(track.alpha_at(t=10.0 + i / 25), np.broadcast_to(np.float32(a), (3,)))
    assert leftovers(tmp_path) == []


def test_recorder_abort_and_empty_recording_write_nothing(tmp_path):
    rec = Recorder(tmp_path / "a.mp4", 16, 16, SITES)
    ring = FrameRing(2, (16, 16, 3), "block", n_alpha=3)
    rec.write(ring.acquire_write())
    rec.abort()
    assert Recorder(tmp_path / "b.mp4", 16, 16, SITES).close() == (tmp_path / "b.mp4", None)
    assert list(tmp_path.iterdir()) == []
