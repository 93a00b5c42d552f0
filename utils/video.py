"""Videos through PyAV, any container / codec / rate it reads: probe a file, take the frames
nearest to regular times, and write a copy whose every frame is blended with an overlay, at the
original frame rate, with the original audio re-encoded to AAC (demo.py)."""
import math
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from utils.logger import progress

ENCODERS = ("libx264", "h264", "mpeg4")  # first one the bundled FFmpeg has
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class VideoError(Exception):
    """A video that cannot be read or written as asked; the message says why in one line."""


@dataclass
class VideoInfo:
    width: int  # display size of the frames (pixels)
    height: int
    rate: Fraction  # frames per second (average)
    duration: float  # seconds, as the container says (0: unknown)
    frames: int  # frame count estimate (for progress bars)
    audio_rate: int  # sample rate of the original audio track
    audio_channels: int


def probe(path):
    """Open `path`, check it has a video and an audio stream, return VideoInfo or VideoError."""
    if not os.path.isfile(path):
        raise VideoError(f"video not found: {path}")
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise VideoError(f"no video stream in {path}")
            if not c.streams.audio:
                raise VideoError(f"no audio track in {path}: the model localizes sounds, it needs "
                                 f"the clip's audio")
            v, a = c.streams.video[0], c.streams.audio[0]
            rate = v.average_rate or v.guessed_rate or Fraction(25)
            duration = c.duration / 1e6 if c.duration else (
                float(v.duration * v.time_base) if v.duration else 0.0)
            frames = v.frames or int(round(duration * rate))
            if not v.width or not v.height:
                raise VideoError(f"cannot read the video stream of {path} (no frame size)")
            return VideoInfo(v.width, v.height, Fraction(rate), duration, frames,
                             a.rate, a.channels)
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot read {path} as a video: {e}") from None


def frames_at_times(container, every, total=None, desc="analyze"):
    """Decode the first video stream sequentially; yield (t, index, frame, t0) for t = 0, every,
    2 every, ... (seconds since the first frame, whose container time is t0), the frame being the
    nearest one to t (ties: the earlier). Returns the number of decoded frames
    (StopIteration.value)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    k, t0, prev, n = 0, None, None, 0
    for n, frame in enumerate(progress(container.decode(stream), total=total, desc=desc,
                                       unit="frame"), start=1):
        tau = frame.time if frame.time is not None else (n - 1) / rate
        t0 = tau if t0 is None else t0
        tau -= t0
        if prev is not None:
            while k * every <= (prev[0] + tau) / 2:  # the previous frame is the nearest
                yield k * every, prev[1], prev[2], t0
                k += 1
        prev = (tau, n - 1, frame)
    if prev is not None:
        while k * every <= prev[0] + 0.5 / rate:
            yield k * every, prev[1], prev[2], t0
            k += 1
    return n


def pick_encoder():
    """The first of ENCODERS the bundled FFmpeg can encode with, or VideoError."""
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise VideoError(f"the bundled FFmpeg has none of the video encoders {ENCODERS}")


def render(path, out_path, info, overlay_at, count, every, t0, audio_start, frames_total,
           still=None):
    """Second pass: decode video and audio in file order, blend every frame with the overlay of
    its nearest sampled time, encode (h264 or mpeg4) with the audio re-encoded to AAC. Video and
    audio keep their times relative to the earlier of the two starts (t0, audio_start).

    Args:
        path: input video; out_path: output video (written to a temporary file, then renamed).
        info: VideoInfo of `path`.
        overlay_at: k -> the overlay of sampled time k (k * every seconds after the first
            frame): an object whose blend(rgb) maps [H, W, 3] uint8 to [H, W, 3] uint8.
        count: number of sampled times.
        every: seconds between sampled times; t0: container time of the first video frame;
        audio_start: container time of the first audio sample.
        frames_total: frame count for the progress bar.
        still: (PNG path, frame index): also save that blended frame; None: no still.
    Returns (frames written, encoder name).
    """
    H, W = info.height, info.width
    We, He = W - W % 2, H - H % 2  # yuv420p needs even sizes
    ext = os.path.splitext(out_path)[1] or ".mp4"
    tmp = f"{out_path}.tmp{os.getpid()}{ext}"
    base = min(t0, audio_start)
    rate = float(info.rate)
    overlay, n, written_samples, last_pts = (None, None), 0, 0, -1
    try:
        with av.open(path) as c, av.open(tmp, "w") as o:
            iv, ia = c.streams.video[0], c.streams.audio[0]
            iv.thread_type = "AUTO"
            encoder = pick_encoder()
            ov = o.add_stream(encoder, rate=info.rate)
            ov.width, ov.height, ov.pix_fmt = We, He, "yuv420p"
            ov.time_base = iv.time_base
            if encoder == "mpeg4":
                ov.bit_rate = int(max(1e6, We * He * rate * 0.2))
            else:
                ov.options = {"preset": "veryfast", "crf": "20"}
            layout = LAYOUTS.get(info.audio_channels, "stereo")
            oa = o.add_stream("aac", rate=info.audio_rate, layout=layout)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=info.audio_rate,
                                          frame_size=1024)
            a_offset = int(round((audio_start - base) * info.audio_rate))

            def put_audio(frames):
                nonlocal written_samples
                for g in frames:
                    g.pts, g.time_base = a_offset + written_samples, Fraction(1, info.audio_rate)
                    written_samples += g.samples
                    for pkt in oa.encode(g):
                        o.mux(pkt)

            bar = progress(total=frames_total, desc="render", unit="frame")
            for packet in c.demux(iv, ia):
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        put_audio(resampler.resample(frame))
                        continue
                    tau = frame.time if frame.time is not None else t0 + n / rate
                    k = int(math.floor((tau - t0) / every + 0.5))
                    k = min(max(k, 0), count - 1)  # nearest sampled time
                    if overlay[0] != k:
                        overlay = (k, overlay_at(k))
                    if (frame.width, frame.height) != (W, H):
                        frame = frame.reformat(width=W, height=H)
                    rgb = overlay[1].blend(frame.to_ndarray(format="rgb24"))[:He, :We]
                    if still and n == still[1]:
                        Image.fromarray(rgb).save(still[0])
                    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    last_pts = max(int(round((tau - base) / iv.time_base)), last_pts + 1)
                    out.pts, out.time_base = last_pts, iv.time_base
                    for pkt in ov.encode(out):
                        o.mux(pkt)
                    n += 1
                    bar.update(1)
            bar.close()
            put_audio(resampler.resample(None))
            for pkt in oa.encode():
                o.mux(pkt)
            for pkt in ov.encode():
                o.mux(pkt)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n, encoder
