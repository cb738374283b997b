"""Test media written with PyAV: small clips with known content, optional audio and VFR timing."""

from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np


def pattern_frame(index: int, height: int, width: int) -> np.ndarray:
    """A smooth moving colour pattern (survives H.264 well) that differs from frame to frame."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 127 + 100 * np.sin((xx + 3 * index) / 9.0)
    g = 127 + 100 * np.cos((yy - 2 * index) / 7.0)
    b = 127 + 100 * np.sin((xx + yy + 5 * index) / 13.0)
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def make_video(path: Path, n_frames: int = 12, width: int = 64, height: int = 48, fps: int = 24,
               codec: str = "libx264", audio: bool = False, pts_ms: Optional[Sequence[int]] = None,
               sample_rate: int = 48000, audio_codec: str = "aac", faststart: bool = False,
               gop: Optional[int] = None) -> list[np.ndarray]:
    """Write a clip and return the RGB frames that went in. ``pts_ms`` gives explicit
    (variable-frame-rate) timestamps in milliseconds; otherwise frames are 1/fps apart.
    ``faststart``: an MP4's index at the front, as for streaming. ``gop``: a keyframe every
    ``gop`` frames (default: the encoder's)."""
    frames = [pattern_frame(i, height, width) for i in range(n_frames)]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = ("yuv420p" if codec in ("libx264", "mpeg4", "libvpx-vp9")
                          else ("rgb24" if codec == "png" else "yuv444p"))
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if gop is not None:
            stream.codec_context.gop_size = gop
        a_stream = None
        if audio:
            a_stream = out.add_stream(audio_codec, rate=sample_rate)
            a_stream.layout = "stereo"
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                vf.pts, vf.time_base = int(pts_ms[i]), Fraction(1, 1000)
            else:
                vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if a_stream is not None:
            duration_s = (pts_ms[-1] / 1000 + 1 / fps) if pts_ms is not None else n_frames / fps
            _write_tone(out, a_stream, duration_s, sample_rate)
    return frames


def make_audio(path: Path, duration_s: float = 0.5, codec: str = "aac", sample_rate: int = 48000) -> None:
    """An audio-only file (a 440 Hz tone)."""
    with av.open(str(path), "w") as out:
        a_stream = out.add_stream(codec, rate=sample_rate)
        a_stream.layout = "stereo"
        _write_tone(out, a_stream, duration_s, sample_rate)


def _write_tone(out, a_stream, duration_s: float, sample_rate: int) -> None:
    n_samples = int(duration_s * sample_rate)
    t = np.arange(n_samples) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunk = 1024
    for start in range(0, n_samples, chunk):
        block = tone[start:start + chunk]
        af = av.AudioFrame.from_ndarray(np.stack([block, block]), format="fltp", layout="stereo")
        af.sample_rate, af.pts, af.time_base = sample_rate, start, Fraction(1, sample_rate)
        for packet in a_stream.encode(af):
            out.mux(packet)
    for packet in a_stream.encode():
        out.mux(packet)


def read_frames(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Decode every video frame of a file: RGB arrays and presentation times in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


def audio_info(path: Path) -> list[tuple[str, int, int]]:
    """(codec, sample rate, decoded samples) per audio stream."""
    out = []
    with av.open(str(path)) as container:
        streams = list(container.streams.audio)
    for i, _ in enumerate(streams):
        with av.open(str(path)) as container:
            stream = container.streams.audio[i]
            samples = sum(f.samples for f in container.decode(stream))
            out.append((stream.codec_context.name, stream.codec_context.sample_rate, samples))
    return out


def cut(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of a file's bytes, as a download that stopped."""
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])
    return dst


def flip_bytes(src: Path, dst: Path, n: int = 200, seed: int = 0, span: int = 10_000) -> Path:
    """``n`` bytes inverted at random within ``span`` bytes around the middle of the file."""
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(max(0, mid - span // 2), min(len(data), mid + span // 2)), n, replace=False):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def audio_decode_errors(path: Path) -> tuple[int, int]:
    """(audio packets, packets that fail to decode) over every audio stream."""
    packets = errors = 0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.audio):
            if packet.size == 0:
                continue
            packets += 1
            try:
                packet.decode()
            except av.error.FFmpegError:
                errors += 1
    return packets, errors


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture (blobs of a few pixels, full contrast) that optical flow can follow."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX)


def panning_frames(n_frames: int, height: int = 96, width: int = 128, step_xy: tuple[int, int] = (3, 1),
                   seed: int = 0) -> list[np.ndarray]:
    """A camera panning over a texture: frame t is the window shifted by t·step (known motion)."""
    dx, dy = step_xy
    big = texture(height + abs(dy) * n_frames, width + abs(dx) * n_frames, seed)
    return [np.ascontiguousarray(big[abs(dy) * t if dy >= 0 else abs(dy) * (n_frames - t):][:height,
                                     abs(dx) * t if dx >= 0 else abs(dx) * (n_frames - t):][:, :width])
            for t in range(n_frames)]


def write_frames(path: Path, frames: Sequence[np.ndarray], fps: int = 24, codec: str = "libx264") -> Path:
    """Encode RGB frames as a clip (x264 at high quality, so the pixels survive)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps, options={"crf": "10"} if codec == "libx264" else {})
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p" if codec == "libx264" else "yuv420p"
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
