"""A full disk while writing: one sentence naming the file system and the file, exit 2, nothing
half-written at the target and no temporary file left. The real test fills a small tmpfs (root
with mount(8) needed; skipped otherwise); the fault-injection test runs everywhere."""

import errno
import os
import shutil
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest

from dynastream.stream.cli import main
from dynastream.stream.render import write_image
from dynastream.stream.writer import VideoWriter
from tests.media import read_frames
from tests.models import make_dcgan

DISK_BYTES = 512 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of DISK_BYTES; ``small_disk.fill(free)`` leaves about ``free`` bytes of room."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield Disk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class Disk:
    def __init__(self, mnt):
        self.mnt = mnt

    def fill(self, free_bytes: int) -> None:
        st = os.statvfs(self.mnt)
        ballast = st.f_bavail * st.f_frsize - free_bytes
        with open(self.mnt / "ballast", "ab") as f:
            f.write(b"\0" * max(0, ballast))

    def names(self):
        return sorted(p.name for p in self.mnt.iterdir() if p.name != "ballast")


def noise_frames_video(path, n_frames=24):
    """A clip whose frames do not compress (so the output fills the disk quickly)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv444p"
        for i in range(n_frames):
            vf = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), np.uint8), format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def check_full_disk_error(capsys, code, mnt, target):
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"dynastream: error: no space left on {mnt} while writing {target}"), err
    return err


@pytest.mark.parametrize("case", ["ffv1", "x264", "x264 keep-partial", "image", "folder", "generate"])
def test_a_full_disk_is_one_sentence_and_leaves_nothing(tmp_path, capsys, small_disk, case):
    mnt = small_disk.mnt
    clip = tmp_path / "noise.mkv"
    noise_frames_video(clip)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(1).integers(0, 256, (300, 300, 3), np.uint8))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        shutil.copy(photo, frames / f"f{i}.png")
    target = {"ffv1": mnt / "out.mkv", "image": mnt / "out.png", "folder": mnt / "styled",
              "generate": mnt / "grid.png"}.get(case, mnt / "out.mp4")
    args = {
        "ffv1": ["render", clip, "-o", target, "--codec", "ffv1", "--quiet"],
        "x264": ["render", clip, "-o", target, "--crf", "0", "--quiet"],
        "x264 keep-partial": ["render", clip, "-o", target, "--crf", "0", "--keep-partial", "--quiet"],
        "image": ["render", photo, "-o", target, "--quiet"],
        "folder": ["render", frames, "-o", target, "--quiet"],
        "generate": ["generate", make_dcgan(tmp_path / "g.pt"), "-o", target, "--scale", "4"],
    }[case]
    small_disk.fill(48 * 1024 if case.startswith(("ffv1", "x264")) else 4096)
    code = main([str(a) for a in args])
    err = check_full_disk_error(capsys, code, mnt, target if case != "folder" else target / "f0.png")
    kept = [n for n in small_disk.names() if ".partial." in n]
    assert [n for n in small_disk.names() if n not in kept] == [], small_disk.names()
    if kept:    # finishing the partial file needed room too; if it fit, it plays and it is named
        assert kept == ["out.partial.mp4"] and "kept in" in err and len(read_frames(mnt / kept[0])[0]) > 0
    elif case == "x264 keep-partial":
        assert "could not be kept either" in err


def test_a_write_failing_with_enospc_is_one_sentence_even_without_a_small_disk(tmp_path, monkeypatch):
    """The same paths through fault injection, for machines where no tmpfs can be mounted."""
    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", no_space)
        with pytest.raises(Exception, match=f"no space left on .* while writing {tmp_path / 'a.png'}$"):
            write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []

    writer = VideoWriter(tmp_path / "out.mp4", 64, 48, rate=24, time_base=Fraction(1, 24))
    writer.write(np.zeros((48, 64, 3), np.uint8), 0)
    monkeypatch.setattr(VideoWriter, "_mux_video", lambda self, packet: no_space())
    with pytest.raises(Exception, match="no space left on .* while writing .*out.mp4$"):
        for i in range(1, 60):           # x264 holds frames back before the first packet comes out
            writer.write(np.zeros((48, 64, 3), np.uint8), i)
    writer.abort()
    assert list(tmp_path.iterdir()) == []
