"""A damaged input video: by default the render stops at the first damage in one sentence; with
--skip-damaged the damaged frames and audio packets are left out and counted. Either way the
output holds exactly the frames it says, and no damaged audio packet is copied into it."""

import re

import pytest

from dynastream.stream.cli import main
from dynastream.stream.render import RenderConfig, render
from tests.media import audio_decode_errors, cut, flip_bytes, make_video, read_frames

N_FRAMES = 96


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """name -> (path, whether the frame count is exact: an MP4's index gives it, a WebM has none)."""
    folder = tmp_path_factory.mktemp("damaged")
    mp4, webm = folder / "clip.mp4", folder / "clip.webm"
    make_video(mp4, n_frames=N_FRAMES, audio=True, faststart=True)
    make_video(webm, n_frames=N_FRAMES, codec="libvpx-vp9", audio=True, audio_codec="libopus")
    return {
        "cut.mp4": (cut(mp4, folder / "cut.mp4", 0.6), True),
        "flipped.mp4": (flip_bytes(mp4, folder / "flipped.mp4"), True),
        "flipped.webm": (flip_bytes(webm, folder / "flipped.webm", span=6000), False),
    }


@pytest.mark.parametrize("name", ["cut.mp4", "flipped.mp4", "flipped.webm"])
def test_damage_stops_the_render_in_one_sentence_and_keep_partial_keeps_every_rendered_frame(
        tmp_path, capsys, damaged, name):
    src, _ = damaged[name]
    out = tmp_path / f"out{src.suffix}"
    code = main(["render", str(src), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.match(rf"dynastream: error: {re.escape(str(src))} is damaged at \d+\.\d s \(frame \d+\): .+; "
                    "--skip-damaged renders it without the damaged frames$", err), err
    assert list(tmp_path.iterdir()) == []

    code = main(["render", str(src), "-o", str(out), "--keep-partial", "--batch", "2", "--quiet"])
    err = capsys.readouterr().err.strip()
    at_frame = int(re.search(r"\(frame (\d+)\)", err).group(1))
    kept = int(re.search(r"the (\d+) frames rendered before are kept in", err).group(1))
    partial = tmp_path / f"out.partial{src.suffix}"
    assert code == 2 and sorted(tmp_path.iterdir()) == [partial], err
    assert 0 < at_frame == kept == len(read_frames(partial)[0]) < N_FRAMES


@pytest.mark.parametrize("name", ["cut.mp4", "flipped.mp4", "flipped.webm"])
def test_skip_damaged_counts_what_it_leaves_out_and_writes_exactly_what_it_says(tmp_path, damaged, name):
    src, exact = damaged[name]
    out = tmp_path / f"out{src.suffix}"
    stats = render(src, out, RenderConfig(skip_damaged=True))
    frames, times = read_frames(out)
    assert len(frames) == stats.frames and times == sorted(times)
    lost = stats.damage.frames
    assert lost > 0 and stats.damage.errors > 0 and stats.damage.first_s is not None
    assert re.search(rf"; {stats.damage.errors} decode errors?\): ", stats.summary())
    assert f"{lost} frames could not be decoded and are left out" in stats.summary()
    if exact:
        assert stats.frames + lost == N_FRAMES
    else:
        assert abs(stats.frames + lost - N_FRAMES) <= 2
    packets, errors = audio_decode_errors(out)
    assert packets > 0 and errors == 0, "a damaged audio packet was copied"
    if name == "flipped.mp4":
        assert stats.audio_left_out > 0 and "damaged audio packets left out" in stats.summary()
