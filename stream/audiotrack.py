"""α from sound: a keyframe track that follows a file's audio (``dynastream track from-audio``,
``render --alpha-from-audio``).

The audio is decoded with PyAV to mono float at ``SAMPLE_RATE`` and reduced to one value per
``HOP_S``: the onset strength (spectral flux: how much the log spectrum rises from one hop to
the next, summed over frequency; peaks at beats and attacks), the RMS envelope (loudness), or
their mean. The feature is scaled so its 99th percentile is 1, clipped to [0, 1], smoothed by an
envelope follower (rises with time constant ``attack_s``, falls with ``release_s``) and mapped to
``low + (high - low) * value``. The result is an ordinary linear keyframe track, ``rate`` keys a
second, so it can be edited and replayed like any other.
"""

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np

from dynastream.nets.errors import DynastreamError
from dynastream.stream.keyframes import Track

Feature = Literal["onset", "rms", "both"]
FEATURES: tuple[str, ...] = ("onset", "rms", "both")
SAMPLE_RATE = 22050
HOP_S = 0.01
N_FFT = 1024
MAX_SECONDS = 6 * 3600


class AudioTrackError(DynastreamError):
    pass


@dataclass(frozen=True)
class AudioOptions:
    feature: Feature = "onset"
    low: Optional[float] = None    # α at silence; None: the low end of the model's range
    high: Optional[float] = None   # α at the loudest (99th percentile) moments; None: the high end
    attack_s: float = 0.01
    release_s: float = 0.25
    rate: float = 25.0         # keys per second

    def resolved(self, alpha_range: tuple[float, float], allow_extrapolation: bool = False) -> "AudioOptions":
        """Checked, with low and high filled in from ``alpha_range``."""
        lo, hi = alpha_range
        options = replace(self, low=lo if self.low is None else self.low, high=hi if self.high is None else self.high)
        options.check(alpha_range, allow_extrapolation)
        return options

    def check(self, alpha_range: tuple[float, float], allow_extrapolation: bool = False) -> None:
        if self.feature not in FEATURES:
            raise AudioTrackError(f"the audio feature must be one of {', '.join(FEATURES)}, not {self.feature}")
        for name, value in (("--attack", self.attack_s), ("--release", self.release_s)):
            if not (math.isfinite(value) and 0 < value <= 60):
                raise AudioTrackError(f"{name} must be a number of seconds above 0 and at most 60, not {value:g}")
        if not (math.isfinite(self.rate) and 1 <= self.rate <= 1000):
            raise AudioTrackError(f"--key-rate must be from 1 to 1000 keys a second, not {self.rate:g}")
        lo, hi = alpha_range
        for name, value in (("--low", self.low), ("--high", self.high)):
            if not math.isfinite(value):
                raise AudioTrackError(f"{name} must be a finite number, not {value}")
            if not allow_extrapolation and not lo <= value <= hi:
                raise AudioTrackError(f"{name} {value:g} is outside the model's range [{lo:g}, {hi:g}] "
                                      "(use --allow-extrapolation to go beyond it)")


def decode_mono(path: Union[str, Path], sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """The first audio stream of ``path`` as mono float32 samples at ``sample_rate``, and the
    time in seconds of the first sample."""
    import av

    from dynastream.stream import avlog

    path = Path(path)
    if not path.is_file():
        raise AudioTrackError(f"{path} does not exist")
    avlog.install()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise AudioTrackError(f"cannot open {path} as a media file ({type(e).__name__})") from None
    try:
        if not container.streams.audio:
            raise AudioTrackError(f"{path} has no audio stream to take alpha from")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, total, start_s = [], 0, None
        try:
            for frame in container.decode(stream):
                if start_s is None and frame.time is not None:
                    start_s = max(0.0, float(frame.time))
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if total > MAX_SECONDS * sample_rate:
                    raise AudioTrackError(f"{path} has more than {MAX_SECONDS // 3600} hours of audio")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:
            raise AudioTrackError(f"cannot decode the audio of {path} ({type(e).__name__})") from None
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size < sample_rate * HOP_S * 2:
        raise AudioTrackError(f"the audio of {path} is too short to follow")
    return samples, start_s or 0.0


def features(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, np.ndarray]:
    """Onset strength and RMS per hop (both >= 0), hop k centred at ``k * HOP_S`` seconds.
    Computed in blocks of hops, so an hour of audio needs tens of MB, not GB."""
    hop = int(round(sample_rate * HOP_S))
    n = 1 + len(samples) // hop
    padded = np.pad(samples, (N_FFT // 2, N_FFT // 2 + hop))
    window = np.hanning(N_FFT).astype(np.float32)
    flux, rms = np.zeros(n, np.float64), np.zeros(n, np.float64)
    previous = None
    block = 2048
    for first in range(0, n, block):
        count = min(block, n - first)
        idx = np.arange(N_FFT)[None, :] + hop * np.arange(first, first + count)[:, None]
        frames = padded[idx]
        middle = frames[:, N_FFT // 2 - hop:N_FFT // 2 + hop].astype(np.float64)
        rms[first:first + count] = np.sqrt(np.mean(middle * middle, axis=1))
        log_mag = np.log1p(100.0 * np.abs(np.fft.rfft(frames * window, axis=1)))
        stacked = log_mag if previous is None else np.concatenate([previous, log_mag])
        rise = np.maximum(stacked[1:] - stacked[:-1], 0.0).sum(axis=1)
        if previous is None:
            flux[first + 1:first + count] = rise
        else:
            flux[first:first + count] = rise
        previous = log_mag[-1:]
    return {"onset": flux, "rms": rms}


def _normalise(x: np.ndarray) -> np.ndarray:
    scale = float(np.percentile(x, 99)) if x.size else 0.0
    if scale <= 0:
        scale = float(x.max()) if x.size and x.max() > 0 else 1.0
    return np.clip(x / scale, 0.0, 1.0)


def follow(x: np.ndarray, attack_s: float, release_s: float, dt: float = HOP_S) -> np.ndarray:
    """Envelope follower: towards each value with time constant attack_s (rising) or release_s."""
    up, down = 1.0 - math.exp(-dt / attack_s), 1.0 - math.exp(-dt / release_s)
    out = np.empty_like(x)
    y = 0.0
    for i, v in enumerate(x.tolist()):
        y += (v - y) * (up if v > y else down)
        out[i] = y
    return out


def envelope(samples: np.ndarray, options: AudioOptions, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The smoothed feature in [0, 1] per hop."""
    f = features(samples, sample_rate)
    if options.feature == "both":
        x = 0.5 * (_normalise(f["onset"]) + _normalise(f["rms"]))
    else:
        x = _normalise(f[options.feature])
    return follow(x, options.attack_s, options.release_s)


def audio_track(path: Union[str, Path], sites: Sequence[str], alpha_range: tuple[float, float],
                options: AudioOptions = AudioOptions(), allow_extrapolation: bool = False) -> Track:
    """A time-keyed linear track following the audio of ``path``."""
    options = options.resolved(alpha_range, allow_extrapolation)
    samples, start_s = decode_mono(path)
    env = envelope(samples, options)
    duration_s = len(samples) / SAMPLE_RATE
    times_s = np.arange(0.0, duration_s + 1e-9, 1.0 / options.rate)   # from the first sample
    # Each key takes the envelope's largest value since the key before, so a short peak between
    # two keys is not lost (the key rate may be below the hop rate).
    hop_of = np.minimum(np.round(times_s / HOP_S).astype(np.int64), len(env) - 1)
    starts = np.concatenate([[0], hop_of[:-1] + 1])
    value = np.array([env[s:e + 1].max() if e >= s else env[e] for s, e in zip(starts, hop_of)], np.float64)
    alpha = np.round(options.low + (options.high - options.low) * value, 4)   # readable keys
    alphas = np.repeat(alpha[:, None], len(sites), axis=1).astype(np.float32)
    track = Track.from_samples(np.round(start_s + times_s, 6), alphas, sites, name=f"audio of {Path(path).name}")
    track.check_range(alpha_range, allow_extrapolation)
    return track
