"""Audio: decode, resample, window, log power spectrogram.

    wave = load_window(path, sample_rate=22050, seconds=3.0, center=None)  # float32 [S]
    spec = log_spectrogram(wave, n_fft=512, hop=220, frames=300)          # [1, 257, 300]

wav/flac are read with soundfile, only the frames of the window (plus a little margin for the
resampler), and resampled with a polyphase filter (`scipy.signal.resample_poly`); any other
container is decoded and resampled with PyAV, from a seek to just before the window.
"""
import math
import os
from fractions import Fraction
from typing import Optional, Tuple

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly, spectrogram

from .records import DataError

SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
EPS = 1e-7
_MARGIN_S = 0.05  # extra seconds read on each side of the window (resampler edge effects)
MAX_AMPLITUDE = 1e3  # decoded samples are about [-1, 1]; far beyond is a broken (float) file
SILENT_PEAK = 1e-4  # a window whose samples all stay below this (-80 dBFS, ~3 LSB of 16 bits) is silent


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of a 1-D float32 signal."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    frac = Fraction(int(sr_out), int(sr_in)).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator).astype(np.float32)


def _to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def _window_bounds(total: int, n: int, center: Optional[int]) -> Tuple[int, int]:
    """[start, stop) of an n-sample window centered on `center` (None: clip center), kept inside
    the clip when the clip is long enough."""
    if total <= n:
        return 0, total
    c = total // 2 if center is None else int(center)
    start = min(max(c - n // 2, 0), total - n)
    return start, start + n


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Exactly n samples: tile a shorter signal, crop a longer one."""
    if len(x) == 0:
        raise DataError("empty audio")
    if len(x) < n:
        x = np.tile(x, math.ceil(n / len(x)))
    return np.ascontiguousarray(x[:n], dtype=np.float32)


def _read_soundfile(path, sample_rate, seconds, center):
    with sf.SoundFile(path) as f:
        sr, total = f.samplerate, f.frames
        n_in = int(round(seconds * sr))
        c = None if center is None else int(round(center * sr))
        start, stop = _window_bounds(total, n_in, c)
        m = int(_MARGIN_S * sr) if sr != sample_rate else 0
        lo, hi = max(start - m, 0), min(stop + m, total)
        f.seek(lo)
        x = _to_mono(f.read(hi - lo, dtype="float32", always_2d=False))
    y = resample(x, sr, sample_rate)
    skip = int(round((start - lo) * sample_rate / sr))
    keep = int(round((stop - start) * sample_rate / sr))
    return y[skip:skip + keep]


def decode_av(path: str, sample_rate: int, with_start: bool = False,
              span: Optional[Tuple[float, float]] = None):
    """First audio stream of a container PyAV reads -> mono float32 [S] at `sample_rate` (format
    conversion, down-mix and resampling by PyAV's resampler). with_start: also return the time in
    seconds, on the container's timeline, of the first decoded sample (to align with video frame
    times). span: (t0, t1) container seconds: decode only from a seek to t0 (or before) until t1,
    instead of the whole stream."""
    import av
    with av.open(path) as c:
        if not c.streams.audio:
            raise DataError(f"no audio stream in {path}")
        stream = c.streams.audio[0]
        seek = span is not None and span[0] > 0
        if seek:
            c.seek(int(span[0] / stream.time_base), stream=stream, backward=True)
        rs = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        chunks, start = [], None
        for frame in c.decode(stream):
            if seek and (frame.time is None or (start is None and frame.time > span[0] + 1e-3)):
                # no timestamps, or the seek landed after t0: decode from the start instead
                return decode_av(path, sample_rate, with_start, span=(0.0, span[1]))
            if start is None and frame.time is not None:
                start = float(frame.time)
            if chunks and span is not None and frame.time is not None and frame.time > span[1]:
                break
            chunks.extend(out.to_ndarray().reshape(-1) for out in rs.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in rs.resample(None))  # flush
    if not chunks:
        raise DataError(f"no audio decoded from {path}")
    x = np.concatenate(chunks).astype(np.float32, copy=False)
    return (x, start or 0.0) if with_start else x


def cut_window(x: np.ndarray, sample_rate: int, seconds: float,
               center: Optional[float] = None) -> np.ndarray:
    """Exactly round(seconds * sample_rate) samples of x centered on `center` seconds (None: the
    clip center), shifted to stay inside the clip, tiled when the clip is shorter."""
    n = int(round(seconds * sample_rate))
    c = None if center is None else int(round(center * sample_rate))
    start, stop = _window_bounds(len(x), n, c)
    return _fit(x[start:stop], n)


def load_window(path: str, sample_rate: int, seconds: float,
                center: Optional[float] = None) -> np.ndarray:
    """Mono float32 window of `seconds` at `sample_rate`, centered on `center` seconds (None: on the
    clip center), shifted to stay inside the clip, tiled when the clip is shorter. For a video
    container, `center` is on the container's timeline (the times PyAV gives its frames), and only
    the audio around it is decoded.

    Raises DataError naming the file when it is missing, cannot be decoded, or holds non-finite
    samples or values beyond +-MAX_AMPLITUDE (a float wav written from garbage).
    """
    n = int(round(seconds * sample_rate))
    if not os.path.isfile(path):
        raise DataError(f"audio file not found: {path}")
    try:
        if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTS:
            x = _read_soundfile(path, sample_rate, seconds, center)
        elif center is None:
            x = decode_av(path, sample_rate)
            x = x[slice(*_window_bounds(len(x), n, None))]
        else:  # a window more on each side, so that near the ends it shifts as on the whole clip
            x, start = decode_av(path, sample_rate, with_start=True,
                                 span=(center - 1.5 * seconds, center + 1.5 * seconds))
            c = int(round((center - start) * sample_rate))
            if not 0 <= c < len(x) or len(x) < n:  # center outside the audio, or a short clip
                x, start = decode_av(path, sample_rate, with_start=True)
                c = int(round((center - start) * sample_rate))
            x = x[slice(*_window_bounds(len(x), n, c))]
    except DataError:
        raise
    except Exception as e:  # corrupt file: name it
        raise DataError(f"cannot decode audio {path}: {type(e).__name__}: {e}") from e
    if x.size and not (np.isfinite(x).all() and np.abs(x).max() <= MAX_AMPLITUDE):
        bad = x[~np.isfinite(x)] if not np.isfinite(x).all() else x[np.abs(x).argmax()][None]
        raise DataError(f"audio {path} holds sample values such as {float(bad[0])!r}: decoded "
                        f"audio must be finite and within +-{MAX_AMPLITUDE:g} (about [-1, 1])")
    try:
        return _fit(x, n)
    except DataError:
        raise DataError(f"no audio samples in {path}") from None


def peak_limit(x: np.ndarray) -> np.ndarray:
    """Scale a (mixed) waveform down so that max |x| <= 1 (untouched when already inside)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    return (x / peak).astype(np.float32) if peak > 1.0 else x.astype(np.float32, copy=False)


_WINDOWS = {}


FRONTENDS = ("stft", "released")


def log_spectrogram(wave, n_fft: int = 512, hop: int = 220, frames: int = 300,
                    freq_bins: int = 0, log_mean: float = -4.0, log_std: float = 4.0,
                    frontend: str = "stft", sample_rate: int = 22050) -> torch.Tensor:
    """Waveform [S] -> normalized log power spectrogram [1, F, T].

    power -> log(power + 1e-7) -> (x - log_mean) / log_std; T cropped / padded (with the value of
    silence) to exactly `frames`; F = n_fft // 2 + 1, or the lowest `freq_bins` bins when > 0.
    The power is, by `frontend`:
      stft      |STFT|^2, Hann window of n_fft, centered frames (this project);
      released  scipy.signal.spectrogram(wave, sample_rate, nperseg=n_fft, noverlap=n_fft - hop):
                Tukey window, frames not centered, each detrended, power spectral density
                (the released datasets.py:41-44, with log_mean 0 and log_std 12 its normalization).
    """
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got {tuple(x.shape)}")
    if frontend not in FRONTENDS:
        raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}")
    if frontend == "released":
        if len(x) < n_fft:
            x = torch.nn.functional.pad(x, (0, n_fft - len(x)))
        power = spectrogram(x.numpy(), sample_rate, nperseg=n_fft, noverlap=n_fft - hop)[2]
        s = torch.from_numpy(((np.log(power + EPS) - log_mean) / log_std).astype(np.float32))
    else:
        if n_fft not in _WINDOWS:
            _WINDOWS[n_fft] = torch.hann_window(n_fft)
        if len(x) < n_fft // 2 + 1:  # reflect padding needs n_fft // 2 samples
            x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - len(x)))
        z = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=_WINDOWS[n_fft],
                       center=True, return_complex=True)  # [n_fft // 2 + 1, T']
        s = (torch.log(z.real ** 2 + z.imag ** 2 + EPS) - log_mean) / log_std
    if freq_bins > 0:
        s = s[:freq_bins]
    if s.shape[1] >= frames:
        s = s[:, :frames]
    else:
        pad = (math.log(EPS) - log_mean) / log_std
        s = torch.nn.functional.pad(s, (0, frames - s.shape[1]), value=pad)
    return s.unsqueeze(0).contiguous()  # [1, F, T]


def spectrogram_from_config(wave, audio_cfg) -> torch.Tensor:
    """`log_spectrogram` with the fields of an AudioConfig."""
    return log_spectrogram(wave, audio_cfg.n_fft, audio_cfg.hop, audio_cfg.frames,
                           audio_cfg.freq_bins, audio_cfg.log_mean, audio_cfg.log_std,
                           audio_cfg.frontend, audio_cfg.sample_rate)
