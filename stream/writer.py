"""Video output with PyAV, written atomically.

A ``VideoWriter`` encodes RGB frames (H.264 in MP4 by default, yuv420p) with the timestamps it is
given, so a variable frame rate stays variable, and copies the audio of a source file alongside:
packet for packet where the output container can hold the source's audio codec, re-encoded (AAC,
or the container's own audio codec where AAC is not allowed) where it cannot. Audio is interleaved
with the video as it is written, not appended at the end.

Every copied audio packet is decoded first: a damaged one (the decoder refuses it or logs an
error) would stop players decoding the rest of the track, so it stops the write, or with
``damaged="skip"`` is left out and counted.

Everything goes to a hidden temporary file next to the target, which is renamed onto the target
only when the file is complete. On an error, Ctrl-C, SIGTERM or SIGHUP the target is left
untouched; with ``keep_partial`` the temporary file is finalized (a playable file with the frames
written so far) and kept as ``NAME.partial.EXT``. A temporary file whose process is gone (SIGKILL)
is removed by the next ``check_output`` for the same target. Every failed write, a full disk
first, is one sentence (``write_error``).

``Recorder`` builds on it for live recording: the video plus the α track as performed
(``NAME.keyframes.yaml``), which ``dynastream render --keyframes`` replays on the original file.
"""

import errno
import glob
import io
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import av
import numpy as np

from dynastream.nets.atomic import atomic_open, temp_path
from dynastream.nets.errors import DynastreamError, short_repr
from dynastream.stream import avlog, signals
from dynastream.stream.avlog import DamagePolicy
from dynastream.stream.keyframes import Track
from dynastream.stream.ring import Frame

PathLike = Union[str, os.PathLike]


class WriterError(DynastreamError):
    pass


@dataclass(frozen=True)
class VideoOptions:
    codec: Optional[str] = None      # None: libx264, or the container's own codec where it cannot hold H.264
    crf: Optional[float] = None      # None: the codec's own default (x264: 23)
    preset: Optional[str] = None     # None: the codec's own default (x264: medium)


# Which encoder option carries --crf, and which encoders take --preset. x264/x265 print an invalid
# preset straight to stderr, so their names are checked here first.
CRF_OPTION = {"libx264": "crf", "libx264rgb": "crf", "libx265": "crf", "libvpx-vp9": "crf",
              "libsvtav1": "crf", "h264_nvenc": "cq", "hevc_nvenc": "cq"}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
PRESETS = {"libx264": X264_PRESETS, "libx264rgb": X264_PRESETS, "libx265": X264_PRESETS,
           "libsvtav1": None, "h264_nvenc": None, "hevc_nvenc": None}   # None: the encoder checks
LOSSLESS_PIX_FMTS = ("rgb24", "bgr0", "gbrp", "bgra", "rgba")
SUGGESTED_CODECS = "libx264, libx265, libvpx-vp9, libsvtav1, mpeg4, ffv1, png"
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm")   # the containers that keep timestamps and audio as given
_AVFMT_TS_NEGATIVE = 0x40000   # libavformat: the format can store negative timestamps


# -- atomic output -------------------------------------------------------------------------------

def partial_path(target: PathLike) -> Path:
    target = Path(target)
    return target.with_name(f"{target.stem}.partial{target.suffix}")


def keyframes_path(target: PathLike) -> Path:
    """``out.mp4`` -> ``out.keyframes.yaml``: where a recording's α track goes."""
    target = Path(target)
    return target.with_name(f"{target.stem}.keyframes.yaml")


def remove_stale_temps(target: PathLike, notice: Optional[Callable[[str], None]] = None) -> list[Path]:
    """Remove the temporary files (or folders) of ``target`` that runs which no longer exist left
    behind (SIGKILL, a power cut), each told to ``notice``. Those of live processes stay."""
    target = Path(target)
    pattern = f".{glob.escape(target.stem)}.tmp-*{glob.escape(target.suffix)}"
    removed = []
    for path in target.parent.glob(pattern):
        pid_text = path.name[len(target.stem) + 6:len(path.name) - len(target.suffix)].split("-")[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _process_exists(int(pid_text)):
            continue
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        except FileNotFoundError:
            continue    # another run just removed it
        except OSError:
            continue    # not ours to remove; it stays, as before
        removed.append(path)
        if notice is not None:
            notice(f"removed {path}, left by an earlier run (process {pid_text}) that did not finish")
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # another user's process
        return True
    return True


def check_output(target: PathLike, inputs: Sequence[PathLike] = (), folder_ok: bool = False,
                 notice: Optional[Callable[[str], None]] = None) -> Path:
    """Refuse, before any work, an output that could not be written or would overwrite an input.
    The folder is probed by creating (and removing) the temporary file, which also catches
    read-only and pseudo file systems that ``os.access`` reports as writable to root. Temporary
    files that a killed earlier run left for this target are removed, each told to ``notice``."""
    target = Path(target)
    for source in inputs:
        if _same_path(target, Path(source)):
            raise WriterError(f"the output path {target} is the input; choose another name so the input is kept")
    if target.is_dir() and not folder_ok:
        raise WriterError(f"the output path {target} is a folder; give a file name such as {target / 'out.mp4'}")
    folder = target.parent
    if not folder.exists():
        raise WriterError(f"the output folder {folder} does not exist")
    if not folder.is_dir():
        raise WriterError(f"the output folder {folder} is not a folder")
    probe = temp_path(target)
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except FileExistsError:
        pass   # a leftover of this very process; it is overwritten
    except OSError as e:
        raise WriterError(f"cannot write to the output folder {folder} ({e.strerror or e})") from None
    remove_stale_temps(target, notice)
    return target


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().rstrip(".").split("\n")[0]


def mount_point(path: PathLike) -> Path:
    """The mount point of the file system that holds (or would hold) ``path``."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def write_error(e: OSError, target: PathLike) -> WriterError:
    """One sentence for a failed write; a full disk names the file system it filled."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriterError(f"no space left on {mount_point(target)} while writing {target}")
    return WriterError(f"cannot write {target} ({_reason(e)})")


def write_bytes_atomic(target: PathLike, data: bytes, shown_as: Optional[PathLike] = None) -> Path:
    """Write ``data`` to a temporary file next to ``target``, flush it to the disk (a full disk can
    surface only there) and rename it onto ``target``; on any error or signal the temporary file is
    removed and ``target`` left as it was. Errors name ``shown_as`` (default ``target``)."""
    target = Path(target)
    signals.graceful()
    try:
        with atomic_open(target) as f:
            f.write(data)
    except OSError as e:
        raise write_error(e, shown_as or target) from None
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


# -- video ---------------------------------------------------------------------------------------

def check_video_name(target: PathLike) -> Path:
    """Refuse an output name whose extension is not one of the video containers written here."""
    target = Path(target)
    suffix = target.suffix.lower()
    if suffix in VIDEO_EXTS:
        return target
    what = target.suffix if suffix else f"{target.name} (no extension)"
    hint = "; for a GIF, render to .mp4 and convert that (e.g. with ffmpeg)" if suffix == ".gif" else ""
    raise WriterError(f"videos are written as {', '.join(VIDEO_EXTS[:-1])} or {VIDEO_EXTS[-1]} files, "
                      f"not {what}{hint}")


def _muxer_takes(format_name: str, stream) -> bool:
    """Whether the muxer ``format_name`` starts a file holding only a video stream like ``stream``
    (tried in memory; nothing is encoded)."""
    probe = av.open(io.BytesIO(), "w", format=format_name)
    try:
        s = probe.add_stream(stream.codec_context.name, rate=stream.average_rate)
        s.width, s.height, s.pix_fmt = stream.width, stream.height, stream.pix_fmt
        s.codec_context.time_base = stream.codec_context.time_base
        probe.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    finally:
        try:
            probe.close()
        except (av.error.FFmpegError, ValueError, OSError):
            pass


def video_encoder(name: str) -> av.Codec:
    try:
        codec = av.Codec(name, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        raise WriterError(f"unknown video codec {short_repr(name)} (available here, e.g.: {SUGGESTED_CODECS})") from None
    if codec.type != "video":
        raise WriterError(f"{name} is a {codec.type} codec, not a video codec (e.g.: {SUGGESTED_CODECS})")
    return codec


def pick_pix_fmt(codec: av.Codec) -> str:
    """yuv420p for lossy codecs (what every player decodes); RGB for lossless ones, so that a
    lossless file gives back exactly the pixels that went in."""
    formats = [f.name for f in (codec.video_formats or ())]
    if not formats:      # rawvideo takes anything
        return "rgb24"
    if codec.lossless and not codec.lossy:
        for name in LOSSLESS_PIX_FMTS:
            if name in formats:
                return name
    return "yuv420p" if "yuv420p" in formats else formats[0]


def _codec_options(codec: av.Codec, options: VideoOptions) -> dict:
    out = {}
    if options.crf is not None:
        if codec.name not in CRF_OPTION:
            raise WriterError(f"codec {codec.name} takes no --crf (it does for {', '.join(sorted(CRF_OPTION))})")
        out[CRF_OPTION[codec.name]] = f"{options.crf:g}"
        if codec.name == "libvpx-vp9":
            out["b"] = "0"    # constant quality instead of VP9's default bit rate
    if options.preset is not None:
        if codec.name not in PRESETS:
            raise WriterError(f"codec {codec.name} takes no --preset (it does for {', '.join(sorted(PRESETS))})")
        allowed = PRESETS[codec.name]
        if allowed is not None and options.preset not in allowed:
            raise WriterError(f"unknown preset {short_repr(options.preset)} for {codec.name} (use one of {', '.join(allowed)})")
        out["preset"] = options.preset
    return out


def encoder_rate(codec_name: str, source_rate: int) -> int:
    """The sample rate to encode at: the source's, or where the encoder cannot take it (Opus: only
    48 kHz and fractions of it) the nearest rate above it (PyAV's encoder resamples the frames)."""
    rates = sorted(av.Codec(codec_name, "w").audio_rates or ())
    if not rates or source_rate in rates:
        return source_rate
    return next((r for r in rates if r >= source_rate), rates[-1])


class VideoWriter:
    """Encodes frames of one size into ``target``; ``pts`` are in ``time_base`` units.

    Subsampled pixel formats (yuv420p) need even sizes: an odd width or height is padded by
    repeating the last column or row, so no source pixel is lost (``encoded_wh`` tells).
    """

    def __init__(self, target: PathLike, width: int, height: int, *, rate: Union[Fraction, float],
                 time_base: Fraction, options: VideoOptions = VideoOptions(),
                 audio_from: Optional[PathLike] = None, keep_partial: bool = False,
                 damaged: DamagePolicy = "stop", copy_from=None):
        self.target = Path(target)
        self._copy_from = copy_from      # a video stream whose packets write_packet copies (see remux)
        self._last_dts: Optional[Fraction] = None
        self.temp = temp_path(self.target)
        signals.graceful()               # a stop signal from now on removes (or keeps) the temp file
        self.keep_partial = keep_partial
        self.damaged = damaged           # a damaged audio packet of audio_from: stop, or leave it out
        self.audio_left_out = 0
        self.partial_error = ""          # why keep_partial could not keep the frames written
        self._audio_name = Path(audio_from).name if audio_from is not None else ""
        self.time_base = Fraction(time_base)
        self.frames = 0
        self._last_pts: Optional[int] = None
        self._container = None
        self._audio_in = None
        self._audio: dict = {}         # input stream index -> (output stream, re-encode?)
        self._audio_packets = None
        self._pending = None           # the next audio packet not yet muxed
        self._done = False
        try:
            self._open(width, height, rate, options, audio_from)
        except BaseException:
            self._close_quietly()
            _unlink(self.temp)
            raise

    @classmethod
    def remux(cls, target: PathLike, template, *, audio_from: Optional[PathLike] = None,
              damaged: DamagePolicy = "stop") -> "VideoWriter":
        """A writer that encodes nothing: ``write_packet`` copies the packets of video streams like
        ``template`` (same codec and parameters) as they are, and the audio of ``audio_from`` is
        added as ``VideoWriter`` adds it. ``stream.scale`` joins the parts of a split render so."""
        ctx = template.codec_context
        return cls(target, ctx.width, ctx.height, rate=template.average_rate, time_base=template.time_base,
                   audio_from=audio_from, damaged=damaged, copy_from=template)

    def _open(self, width, height, rate, options, audio_from) -> None:
        check_video_name(self.target)
        if options.codec is not None:
            video_encoder(options.codec)   # an unknown codec is named before anything is created
        # MP4/MOV keep a start other than 0 in an edit list, in the movie's timescale (1/1000 s by
        # default): in the video's own time base it is exact, so a render that starts at a keyframe
        # in the middle of a video (stream.scale) keeps the timestamps the whole render has.
        muxer_options = {"movie_timescale": str(self.time_base.denominator)} \
            if self.target.suffix.lower() in (".mp4", ".mov") and self.time_base.denominator < 2**31 else {}
        try:
            self._container = av.open(str(self.temp), "w", options=muxer_options)
        except OSError as e:
            raise write_error(e, self.target) from None
        supported = self._container.supported_codecs
        fmt = self._container.format
        if self._copy_from is not None:
            self._open_copy(supported, audio_from)
            return
        name = options.codec or ("libx264" if "libx264" in supported else self._container.default_video_codec)
        codec = video_encoder(name)
        codec_opts = _codec_options(codec, options)
        if codec.name not in supported and codec.canonical_name not in supported:
            raise self._cannot_hold(name)
        self.pix_fmt = pick_pix_fmt(codec)
        subsampled = self.pix_fmt.startswith(("yuv420", "yuv422", "yuv411", "yuv410", "nv"))
        self.frame_wh = (width, height)
        self._frame_shape = (height, width, 3)
        self.encoded_wh = (width + width % 2, height + height % 2) if subsampled else (width, height)
        ew, eh = self.encoded_wh
        self._pad_hwc_u8 = np.zeros((eh, ew, 3), np.uint8) if self.encoded_wh != self.frame_wh else None
        rate = Fraction(rate).limit_denominator(1_000_000) if rate else None
        self._video = self._container.add_stream(codec.name, rate=rate)
        self._video.width, self._video.height, self._video.pix_fmt = ew, eh, self.pix_fmt
        self._video.codec_context.time_base = self.time_base
        self._video.options = codec_opts
        # A container that cannot store negative timestamps would shift every stream (and so every
        # frame's time) to make room for the audio encoder's priming packet before 0: drop it.
        self._drop_before_zero = not (fmt.flags & _AVFMT_TS_NEGATIVE)
        if audio_from is not None:
            self._open_audio(audio_from, supported)
        try:
            self._video.codec_context.open()
        except (av.error.FFmpegError, ValueError) as e:
            raise WriterError(f"codec {codec.name} cannot encode {ew}x{eh} {self.pix_fmt} video with these "
                              f"settings ({_reason(e)})") from None
        try:
            self._container.start_encoding()
        except OSError as e:
            raise write_error(e, self.target) from None
        except (av.error.FFmpegError, ValueError) as e:
            # The container's codec list is a hint: MOV lists VP9, then refuses it here. Tell
            # whether the video or the audio is what it refuses.
            if not _muxer_takes(fmt.name, self._video):
                raise self._cannot_hold(name) from None
            raise WriterError(f"{self.target.suffix} files cannot hold the audio of {audio_from} "
                              f"({', '.join(self.audio_mode)}: {_reason(e)})") from None

    def _open_copy(self, supported, audio_from) -> None:
        template = self._copy_from
        name = template.codec_context.name
        if name not in supported and template.codec_context.codec.canonical_name not in supported:
            raise self._cannot_hold(name)
        self.pix_fmt = template.codec_context.pix_fmt
        self.frame_wh = self.encoded_wh = (template.codec_context.width, template.codec_context.height)
        self._frame_shape, self._pad_hwc_u8 = None, None
        self._video = self._container.add_stream_from_template(template)
        self._video.time_base = template.time_base
        self._drop_before_zero = not (self._container.format.flags & _AVFMT_TS_NEGATIVE)
        if audio_from is not None:
            self._open_audio(audio_from, supported)
        try:
            self._container.start_encoding()
        except OSError as e:
            raise write_error(e, self.target) from None
        except (av.error.FFmpegError, ValueError) as e:
            raise WriterError(f"{self.target.suffix} files cannot hold these {name} packets or the audio of "
                              f"{audio_from} ({_reason(e)})") from None

    def _cannot_hold(self, codec_name: str) -> WriterError:
        hint = "" if self.target.suffix.lower() == ".mkv" else " (.mkv holds almost every codec)"
        return WriterError(f"{self.target.suffix} files cannot hold {codec_name} video; choose another --codec"
                           f"{hint}")

    def _open_audio(self, path, supported) -> None:
        avlog.install()
        try:
            self._audio_in = av.open(str(path))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise WriterError(f"cannot read the audio of {path} ({_reason(e)})") from None
        streams = list(self._audio_in.streams.audio)
        for s in streams:
            name = s.codec_context.name
            if name in supported:
                self._audio[s.index] = (self._container.add_stream_from_template(s), False)
            else:
                target = "aac" if "aac" in supported else self._container.default_audio_codec
                out = self._container.add_stream(target, rate=encoder_rate(target, s.codec_context.sample_rate))
                layout = s.codec_context.layout
                # "2 channels" (no channel order) is refused by encoders: use the default order
                out.layout = f"{layout.nb_channels}c" if layout.name.endswith("channels") else layout
                self._audio[s.index] = (out, True)
        if streams:
            self._audio_packets = self._audio_in.demux(streams)
            self._pending = self._next_audio_packet()

    @property
    def last_pts(self) -> Optional[int]:
        return self._last_pts

    @property
    def audio_mode(self) -> list[str]:
        """Per copied audio stream: 'copy' or 're-encode CODEC'."""
        return [f"re-encode {out.codec_context.name}" if encode else "copy" for out, encode in self._audio.values()]

    # -- writing -----------------------------------------------------------------------------------

    def write(self, rgb_hwc_u8: np.ndarray, pts: int) -> None:
        """One frame shown from ``pts`` (time_base units); timestamps must increase."""
        if self._copy_from is not None:
            raise ValueError(f"{self.target.name} is written by stream copy: it takes packets, not frames")
        if self._last_pts is not None and pts <= self._last_pts:
            raise WriterError(f"frame {self.frames} of {self.target.name} has timestamp {pts}, not after "
                              f"{self._last_pts}: timestamps must increase")
        if rgb_hwc_u8.shape != self._frame_shape:
            raise ValueError(f"{self.target.name} takes {self._frame_shape} frames, not {rgb_hwc_u8.shape}")
        self._last_pts = pts
        src = rgb_hwc_u8
        if self._pad_hwc_u8 is not None:
            h, w = rgb_hwc_u8.shape[:2]
            pad = self._pad_hwc_u8
            pad[:h, :w] = rgb_hwc_u8
            pad[:h, w:] = rgb_hwc_u8[:, w - 1:w]
            pad[h:] = pad[h - 1:h]
            src = pad
        # PyAV allocates the frame (and its conversion to the codec's pixel format) per call; a
        # reused frame could still be referenced by an encoder that buffers frames.
        vf = av.VideoFrame.from_ndarray(src, format="rgb24")
        vf.pts, vf.time_base = pts, self.time_base
        try:
            for packet in self._video.encode(vf):
                self._mux_video(packet)
        except OSError as e:      # PyAV's errno errors are OSErrors too: a full disk, an I/O error
            raise write_error(e, self.target) from None
        self.frames += 1

    def write_packet(self, packet) -> None:
        """One encoded packet of a stream like the ``remux`` template's, muxed as it is (its time
        base is the packet's own); decode timestamps must increase."""
        if packet.dts is not None:
            dts = packet.dts * packet.time_base
            if self._last_dts is not None and dts <= self._last_dts:
                raise WriterError(f"packet {self.frames} copied into {self.target.name} is decoded at "
                                  f"{float(dts):.6f} s, not after {float(self._last_dts):.6f} s: "
                                  "decode timestamps must increase")
            self._last_dts = dts
        packet.stream = self._video
        try:
            self._mux_video(packet)
        except OSError as e:
            raise write_error(e, self.target) from None
        self.frames += 1

    def _mux_video(self, packet) -> None:
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is not None:
            self._mux_audio_until(float(ts * packet.time_base))
        self._container.mux(packet)

    def _next_audio_packet(self):
        while True:
            with avlog.Capture() as log:
                try:
                    packet = next(self._audio_packets, None)
                except (av.error.FFmpegError, OSError, ValueError) as e:
                    self._audio_damaged(None, _reason(e))
                    return None
            if log.lines:    # the demuxer skipped bytes: the packets it still gives are checked one by one
                self._audio_damaged(packet, log.lines[0], lost=False)
            if packet is None:
                return None
            if packet.dts is None or packet.size == 0:    # demuxer flush packets
                continue
            if self._drop_before_zero and packet.pts is not None and packet.duration and \
                    packet.pts + packet.duration <= 0:
                continue
            return packet

    def _decode_audio(self, packet) -> Optional[list]:
        """The packet's audio frames; None for a damaged packet (which is then not written: copied
        as is, it would stop players decoding the rest of the track)."""
        failed = ""
        with avlog.Capture() as log:
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError) as e:
                failed = _reason(e)
        if failed or log.lines:
            self._audio_damaged(packet, failed or log.lines[0])
            return None
        return frames

    def _audio_damaged(self, packet, reason: str, lost: bool = True) -> None:
        """Stop at damage in the audio, or count the packet ``lost`` (not written)."""
        at = f" at {float(packet.pts * packet.time_base):.1f} s" if packet is not None and packet.pts is not None else ""
        if self.damaged == "stop":
            raise WriterError(f"the audio of {self._audio_name} is damaged{at}: {reason}; --skip-damaged renders "
                              "it without the damaged audio")
        if packet is not None and lost:
            self.audio_left_out += 1

    def _mux_audio_until(self, time_s: Optional[float]) -> None:
        while self._pending is not None:
            packet = self._pending
            if time_s is not None and float(packet.dts * packet.time_base) > time_s:
                return
            out_stream, encode = self._audio[packet.stream_index]
            frames = self._decode_audio(packet)
            if frames is not None and encode:
                for af in frames:
                    for out_packet in out_stream.encode(af):
                        self._container.mux(out_packet)
            elif frames is not None:
                packet.stream = out_stream
                self._container.mux(packet)
            self._pending = self._next_audio_packet()

    def _finish(self, all_audio: bool) -> None:
        if self._copy_from is None:
            for packet in self._video.encode():
                self._mux_video(packet)
        if all_audio:
            self._mux_audio_until(None)
        for out_stream, encode in self._audio.values():
            if encode:
                for packet in out_stream.encode():
                    self._container.mux(packet)
        self._container.close()
        self._container = None

    def close(self) -> Path:
        """Finish the file (remaining audio included) and move it onto the target."""
        if self._done:
            return self.target
        try:
            self._finish(all_audio=True)
            self._close_quietly()
            _fsync(self.temp)      # a full disk can surface only here, and the rename must not outrun the data
            os.replace(self.temp, self.target)
        except OSError as e:
            self.abort()
            raise write_error(e, self.target) from None
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.target

    def abort(self) -> Optional[Path]:
        """Leave the target untouched; with ``keep_partial`` keep what was written, finalized, as
        ``NAME.partial.EXT`` and return that path."""
        if self._done:
            return None
        self._done = True
        if self.keep_partial and self._container is not None and self.frames:
            try:
                self._finish(all_audio=False)
                self._close_quietly()
                partial = partial_path(self.target)
                os.replace(self.temp, partial)
                return partial
            except Exception as e:   # e.g. the disk is full: finishing the file needs room too
                self.partial_error = _reason(e)
        self._close_quietly()
        _unlink(self.temp)
        return None

    def _close_quietly(self) -> None:
        for c in (self._container, self._audio_in):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        self._container = self._audio_in = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# -- live recording -----------------------------------------------------------------------------

class Recorder:
    """Records performed frames: the video (timed by each frame's ``time_s``, starting at 0) and
    the α track as performed, keyed on the *source's* clock (``frame.time_s``), so that
    ``render --keyframes NAME.keyframes.yaml`` on the original file gives every frame the α it had
    live. Both files appear together, atomically, on ``close``.

    The track keeps one key per recorded frame, less the inner frames of a held α, which a linear
    track reproduces anyway.
    """

    def __init__(self, target: PathLike, width: int, height: int, sites: Sequence[str], *,
                 fps: float = 30.0, options: VideoOptions = VideoOptions(), keep_partial: bool = False,
                 time_base: Fraction = Fraction(1, 90000), notice: Optional[Callable[[str], None]] = None):
        self.target = check_output(check_video_name(target), notice=notice)
        self.keyframes = keyframes_path(self.target)
        remove_stale_temps(self.keyframes, notice)
        self.sites = tuple(sites)
        self._writer = VideoWriter(self.target, width, height, rate=Fraction(fps).limit_denominator(1001),
                                   time_base=time_base, options=options, keep_partial=keep_partial)
        self._t0: Optional[float] = None
        self._times = np.zeros(1024, np.float64)
        self._alphas = np.zeros((1024, len(self.sites)), np.float32)
        self.frames = 0

    def write(self, frame: Frame) -> None:
        if self._t0 is None:
            self._t0 = frame.time_s
        tb = self._writer.time_base
        pts = round((frame.time_s - self._t0) / tb)
        last = self._writer.last_pts
        if last is not None and pts <= last:   # two frames within one tick of the time base
            pts = last + 1
        self._writer.write(frame.rgb_hwc_u8, pts)
        n = self.frames
        if n == len(self._times):   # amortized growth, not an allocation per frame
            self._times = np.concatenate([self._times, np.zeros_like(self._times)])
            self._alphas = np.concatenate([self._alphas, np.zeros_like(self._alphas)])
        self._times[n] = frame.time_s
        self._alphas[n] = frame.alpha
        self.frames += 1

    def track(self) -> Track:
        keep = _essential_samples(self._alphas[:self.frames])
        return Track.from_samples(self._times[keep], self._alphas[keep], self.sites,
                                  name=str(self.keyframes))

    def close(self) -> tuple[Path, Optional[Path]]:
        """Finish both files; returns (video, keyframes). A recording with no frames writes none."""
        if self.frames == 0:
            self._writer.abort()
            return self.target, None
        tmp = temp_path(self.keyframes)
        try:
            self.track().save(tmp)
            self._writer.close()
            os.replace(tmp, self.keyframes)
        except OSError as e:
            self._writer.abort()
            _unlink(tmp)
            raise write_error(e, self.keyframes) from None
        except BaseException:
            self._writer.abort()
            _unlink(tmp)
            raise
        return self.target, self.keyframes

    def abort(self) -> Optional[Path]:
        return self._writer.abort()


def _essential_samples(alphas: np.ndarray) -> np.ndarray:
    """Indices of the samples a linear track needs: the ends, and every sample whose α differs
    from one of its neighbours' (a held α needs only its first and last sample)."""
    n = len(alphas)
    keep = np.ones(n, bool)
    if n > 2:
        keep[1:-1] = ~((alphas[1:-1] == alphas[:-2]).all(axis=1) & (alphas[1:-1] == alphas[2:]).all(axis=1))
    return np.flatnonzero(keep)
