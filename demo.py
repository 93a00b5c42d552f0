"""Localize the sounding objects in your own video.

    python demo.py --ckpt runs/synthetic/best.pth --video clip.mp4
    python demo.py --ckpt best.pth --video clip.mkv --out out.mp4 --classes violin,cello
    python demo.py --ckpt best.pth --video clip.mp4 --every 0.25 --topk 2
    python demo.py --ckpt best.pth --video clip.mp4 --threshold 0.5 --still frame.png --device cuda

Any container / codec / frame rate / sample rate PyAV reads. Every --every seconds the model sees
the frame nearest to that time (resized as at test time) and the data.audio.seconds of audio centered
on it (shifted / tiled at the clip's borders, as in training); the classes are the top --topk of
the audio presence scores (or all scores >= --threshold), or the ones named with --classes.
Writes OUT.mp4 (every frame at the original frame rate, blended with the heat-maps of the nearest
sampled time, one color per class, a legend with names and scores; the original audio re-encoded
to AAC) and OUT.json (per sampled time: classes, scores, peak (x, y) in pixels of the original
frame). Bad input (no audio, unreadable file, unknown class, not an AVGN checkpoint) ends with a
one-line message and exit code 1.
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from datasets.audio import cut_window, decode_av, spectrogram_from_config
from datasets.image import apply_image, eval_geometry
from datasets.records import DataError, canonical_class
from engine import load_trained
from models import localization_maps, presence, upsample_maps
from utils.logger import logger, progress, setup_logging

# class colors, given in order of first appearance; neighbors are far apart
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128))
AGNOSTIC = "sound"  # label of the single map of a class-agnostic model (EZ-VSL)
ENCODERS = ("libx264", "h264", "mpeg4")  # first one the bundled FFmpeg has
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class DemoError(Exception):
    """Bad input, reported as one line without a traceback."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--video", required=True, help="input video with an audio track")
    p.add_argument("--out", default=None, help="output video (default: <video>_avgn.mp4); the "
                   "JSON is written beside it with the extension .json")
    p.add_argument("--classes", default="auto", help="'auto' (from the audio presence scores) or "
                   "class names separated by commas")
    p.add_argument("--every", type=float, default=0.5, help="seconds between sampled times")
    p.add_argument("--topk", type=int, default=None, help="auto: the k most present classes "
                   "(default 1; with --threshold: at most k)")
    p.add_argument("--threshold", type=float, default=None, help="auto: every class whose "
                   "presence score is >= P")
    p.add_argument("--batch-size", type=int, default=16, help="sampled times per model call")
    p.add_argument("--still", default=None, help="also write the frame of the middle sampled "
                   "time, blended, as a PNG")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda if "
                   "available")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads while the demo "
                   "runs (restored after). 1 is fastest for small models: decoding and encoding "
                   "use their own threads, and torch's threads stall on a busy CPU; raise it for "
                   "a large model on an idle machine")
    args = p.parse_args(argv)
    if not args.every > 0:
        p.error("--every must be > 0")
    if args.topk is not None and args.topk < 1:
        p.error("--topk must be >= 1")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        p.error("--threshold must be in [0, 1]")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.classes != "auto" and (args.topk is not None or args.threshold is not None):
        p.error("--topk / --threshold select classes with --classes auto only")
    return args


# ----------------------------------------------------------------------------- inputs

def load_demo_model(path, device):
    """Checkpoint -> (model in eval mode, Config, class names), or DemoError saying why not."""
    try:
        ckpt, cfg, model = load_trained(path, device)
    except (FileNotFoundError, RuntimeError, ValueError) as e:  # ConfigError is a ValueError
        raise DemoError(str(e)) from None
    return model, cfg, list(ckpt["class_names"])


def resolve_classes(spec, names):
    """'auto' -> None; 'a,b' -> [class indices] (exact, then case/punctuation-insensitive match).

    Raises DemoError listing the known names for an unknown one."""
    if spec == "auto":
        return None
    canon = {canonical_class(n): i for i, n in enumerate(names)}
    out = []
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            continue
        i = names.index(name) if name in names else canon.get(canonical_class(name))
        if i is None:
            raise DemoError(f"unknown class {name!r}; the checkpoint knows {len(names)}: "
                            f"{', '.join(names)}")
        if i not in out:
            out.append(i)
    if not out:
        raise DemoError("--classes names no class; give names separated by commas, or 'auto'")
    return out


def select_classes(scores, topk=None, threshold=None):
    """Class indices chosen from presence scores, best first.

    Args:
        scores: [C] presence scores (sequence of floats).
        topk: keep at most this many (default 1 without threshold, all with one).
        threshold: keep the scores >= threshold (None: no threshold).
    """
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    if threshold is None:
        return order[:topk or 1]
    kept = [i for i in order if float(scores[i]) >= threshold]
    return kept[:topk] if topk else kept


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
    """Open `path`, check it has a video and an audio stream, return VideoInfo or DemoError."""
    import av
    if not os.path.isfile(path):
        raise DemoError(f"video not found: {path}")
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise DemoError(f"no video stream in {path}")
            if not c.streams.audio:
                raise DemoError(f"no audio track in {path}: the model localizes sounds, it needs "
                                f"the clip's audio")
            v, a = c.streams.video[0], c.streams.audio[0]
            rate = v.average_rate or v.guessed_rate or Fraction(25)
            duration = c.duration / 1e6 if c.duration else (
                float(v.duration * v.time_base) if v.duration else 0.0)
            frames = v.frames or int(round(duration * rate))
            if not v.width or not v.height:
                raise DemoError(f"cannot read the video stream of {path} (no frame size)")
            return VideoInfo(v.width, v.height, Fraction(rate), duration, frames,
                             a.rate, a.channels)
    except av.error.FFmpegError as e:
        raise DemoError(f"cannot read {path} as a video: {e}") from None


# ----------------------------------------------------------------------------- analysis

@dataclass
class Sample:
    """One sampled time and what the model says about it."""
    t: float  # seconds since the first video frame
    frame: int  # index of the frame nearest to t
    classes: List[int]  # class indices (a class-agnostic model: [-1] for its one map)
    scores: List[Optional[float]]  # presence score of each class (None: class-agnostic)
    presence: Optional[List[float]]  # all C presence scores (None: class-agnostic)
    maps: torch.Tensor = None  # [N, h, w] cosine maps on the feature grid (CPU)
    peaks: List[tuple] = field(default_factory=list)  # (x, y, value) per class, display pixels


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


class Localizer:
    """Runs the model on batches of (frame, audio window) and turns outputs into Samples."""

    def __init__(self, model, cfg, class_names, fixed, topk, threshold, device, display):
        self.model, self.cfg, self.names = model, cfg, class_names
        self.fixed, self.topk, self.threshold = fixed, topk, threshold
        self.device, self.display = device, display  # display: (H, W) of the original frames
        self.geometry = eval_geometry(cfg.data.image_size)
        self.model_seconds = 0.0

    def inputs(self, frame, wave, center):
        """A decoded frame and the audio around `center` (seconds into `wave`) -> model inputs
        image [3, S, S], spec [1, F, T]."""
        a = self.cfg.data.audio
        image = apply_image(frame.to_image(), self.geometry)
        spec = spectrogram_from_config(cut_window(wave, a.sample_rate, a.seconds, center), a)
        return image, spec

    @torch.inference_mode()
    def __call__(self, images, specs, samples):
        """images [B, 3, S, S], specs [B, 1, F, T]; fills maps, classes, scores, peaks of the B
        `samples` in place."""
        start = time.time()
        out = self.model(images.to(self.device), specs.to(self.device))
        agnostic = not self.model.class_aware
        p = presence(out).float().cpu()  # [B, C]
        chosen = []
        for b in range(len(samples)):
            if agnostic:
                chosen.append([-1])  # one map, the same for every class (--classes ignored)
            elif self.fixed is not None:
                chosen.append(list(self.fixed))
            else:
                chosen.append(select_classes(p[b].tolist(), self.topk, self.threshold))
        N = max(1, max(len(c) for c in chosen))
        classes = torch.full((len(samples), N), -1, dtype=torch.long)  # [B, N], -1: padding
        for b, c in enumerate(chosen):
            classes[b, :len(c)] = torch.tensor([max(i, 0) for i in c], dtype=torch.long)
        maps = localization_maps(out, classes.to(self.device), self.model.modulate)
        maps = maps.float().cpu()  # [B, N, h, w]
        self.model_seconds += time.time() - start
        for b, s in enumerate(samples):
            s.classes = chosen[b]
            s.scores = [None if agnostic else float(p[b, i]) for i in chosen[b]]
            s.presence = None if agnostic else [round(float(v), 4) for v in p[b]]
            s.maps = maps[b, :len(chosen[b])].clone()  # [N, h, w]
            if len(s.classes):
                s.peaks = [peak(m) for m in upsample_maps(s.maps[None], self.display)[0]]

    def name(self, c):
        return AGNOSTIC if c < 0 else self.names[c]

    def assign_colors(self, samples):
        """One palette color per class, in order of first appearance over the sampled times
        (the same class keeps its color for the whole video; neighbors differ)."""
        self.colors = {}
        for s in samples:
            for c in s.classes:
                self.colors.setdefault(c, PALETTE[len(self.colors) % len(PALETTE)])

    def color(self, c):
        return self.colors[c]


def peak(m):
    """[H, W] map -> (x, y, value) of its maximum (pixels)."""
    i = int(m.flatten().argmax())
    return (i % m.shape[1], i // m.shape[1], round(float(m.flatten()[i]), 4))


def analyze(path, info, localizer, wave, audio_start, every, batch_size):
    """First pass: decode the frames in order, run the sampled times through the model in
    batches. Returns (samples, number of decoded frames, container time of the first frame)."""
    import av
    samples, batch, t0 = [], [], 0.0

    def flush():
        if batch:
            localizer(torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]),
                      [b[2] for b in batch])
            batch.clear()

    with av.open(path) as c:
        gen = frames_at_times(c, every, info.frames)
        while True:
            try:
                t, index, frame, t0 = next(gen)
            except StopIteration as stop:
                frames = stop.value
                break
            s = Sample(t=round(t, 6), frame=index, classes=[], scores=[], presence=None)
            # [3, S, S], [1, F, T]
            image, spec = localizer.inputs(frame, wave, t0 + t - audio_start)
            batch.append((image, spec, s))
            samples.append(s)
            if len(batch) == batch_size:
                flush()
        flush()
    if not samples:
        raise DemoError(f"no video frame decoded from {path}")
    return samples, frames, t0


# ----------------------------------------------------------------------------- rendering

def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def legend(sample, localizer, height):
    """RGBA legend image: the time, then a color square, name and score per class."""
    size = max(10, int(round(height / 36)))
    font = _font(size)
    lines = [(None, f"t = {sample.t:.2f} s")]
    for c, s in zip(sample.classes, sample.scores):
        lines.append((c, localizer.name(c) + ("" if s is None else f"  {s:.2f}")))
    if not sample.classes:
        lines.append((None, f"no class with p >= {localizer.threshold:g}"))
    pad, gap = max(2, size // 4), size + max(2, size // 3)
    width = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font))
                for _, text in lines) + 2 * pad + gap
    img = Image.new("RGBA", (width, len(lines) * gap + 2 * pad), (0, 0, 0, 150))
    d = ImageDraw.Draw(img)
    for row, (c, text) in enumerate(lines):
        y = pad + row * gap
        if c is not None:
            d.rectangle((pad, y + 1, pad + size - 2, y + size - 1),
                        fill=localizer.color(c) + (255,))
        d.text((pad + (gap if c is not None else 0), y), text, font=font, fill=(255, 255, 255, 255))
    return img


class Overlay:
    """The heat-maps of one sampled time at display size, ready to blend:
    out = frame * keep + paint (keep [H, W, 1], paint [H, W, 3], float32), then the legend."""

    def __init__(self, sample, localizer, display):
        H, W = display
        keep = np.ones((H, W, 1), np.float32)
        paint = np.zeros((H, W, 3), np.float32)
        if len(sample.classes):
            maps = upsample_maps(sample.maps[None], display)[0]  # [N, H, W]
            lo = maps.flatten(1).amin(1)[:, None, None]
            hi = maps.flatten(1).amax(1)[:, None, None]
            alpha = (0.7 * ((maps - lo) / (hi - lo).clamp_min(1e-6)) ** 2).numpy()  # [N, H, W]
            rgb = np.array([localizer.color(c) for c in sample.classes], np.float32)  # [N, 3]
            total = alpha.sum(0)[..., None]  # [H, W, 1]
            mixed = np.einsum("nhw,nc->hwc", alpha, rgb) / np.maximum(total, 1e-6)  # [H, W, 3]
            a = 1.0 - np.prod(1.0 - alpha, axis=0)[..., None]  # [H, W, 1] combined opacity
            keep, paint = 1.0 - a, mixed * a
        self.keep, self.paint = keep, paint
        lg = legend(sample, localizer, H)
        lw, lh = min(lg.width, W), min(lg.height, H)
        m = max(1, H // 60)
        lw, lh = min(lw, W - m), min(lh, H - m)
        rgba = np.asarray(lg, np.float32)[:lh, :lw] / 255.0  # [lh, lw, 4]
        la = rgba[..., 3:]
        self.keep[m:m + lh, m:m + lw] *= 1.0 - la
        self.paint[m:m + lh, m:m + lw] = self.paint[m:m + lh, m:m + lw] * (1.0 - la) \
            + rgba[..., :3] * 255.0 * la

    def blend(self, rgb):
        """rgb [H, W, 3] uint8 -> blended [H, W, 3] uint8."""
        return np.clip(rgb * self.keep + self.paint + 0.5, 0, 255).astype(np.uint8)


def pick_encoder():
    import av
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise DemoError(f"the bundled FFmpeg has none of the video encoders {ENCODERS}")


def render(path, out_path, info, samples, localizer, every, t0, audio_start, frames_total,
           still=None):
    """Second pass: decode video and audio in file order, blend every frame with the overlay of
    its nearest sampled time, encode (h264 or mpeg4) with the audio re-encoded to AAC. Video and
    audio keep their times relative to the earlier of the two starts (t0, audio_start).
    Returns (frames written, encoder name)."""
    import av
    H, W = info.height, info.width
    We, He = W - W % 2, H - H % 2  # yuv420p needs even sizes
    still_frame = samples[len(samples) // 2].frame
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
                    k = min(max(k, 0), len(samples) - 1)  # nearest sampled time
                    if overlay[0] != k:
                        overlay = (k, Overlay(samples[k], localizer, (H, W)))
                    if (frame.width, frame.height) != (W, H):
                        frame = frame.reformat(width=W, height=H)
                    rgb = overlay[1].blend(frame.to_ndarray(format="rgb24"))[:He, :We]
                    if still and n == still_frame:
                        Image.fromarray(rgb).save(still)
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


# ----------------------------------------------------------------------------- main

def sample_record(s, localizer):
    return {"t": s.t, "frame": s.frame,
            "sources": [{"class": localizer.name(c), "score": None if sc is None else round(sc, 4),
                         "peak": [int(p[0]), int(p[1])], "peak_value": p[2]}
                        for c, sc, p in zip(s.classes, s.scores, s.peaks)],
            "presence": s.presence}


def run(args):
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DemoError("--device cuda: no CUDA device available")
    out_path = args.out or os.path.splitext(args.video)[0] + "_avgn.mp4"
    if os.path.abspath(out_path) == os.path.abspath(args.video):
        raise DemoError(f"--out {out_path} would overwrite the input video")
    json_path = os.path.splitext(out_path)[0] + ".json"
    start = time.time()
    model, cfg, names = load_demo_model(args.ckpt, device)
    fixed = resolve_classes(args.classes, names)
    if fixed is not None and not model.class_aware:
        logger.warning("%s is class-agnostic (%s): every class gets the same map", args.ckpt,
                       cfg.model.name)
    info = probe(args.video)
    sr = cfg.data.audio.sample_rate
    try:
        wave, audio_start = decode_av(args.video, sr, with_start=True)
    except DataError as e:
        raise DemoError(str(e)) from None
    logger.info("%s: %dx%d, %.2f fps, %.2f s; audio %d Hz x %d resampled to %d Hz; model %s "
                "(%d classes) on %s", args.video, info.width, info.height, float(info.rate),
                info.duration, info.audio_rate, info.audio_channels, sr, cfg.model.name,
                len(names), device)
    localizer = Localizer(model, cfg, names, fixed, args.topk, args.threshold, device,
                          (info.height, info.width))
    samples, frames, t0 = analyze(args.video, info, localizer, wave, audio_start, args.every,
                                  args.batch_size)
    localizer.assign_colors(samples)
    analyzed = time.time()
    report = {
        "video": args.video, "checkpoint": args.ckpt, "model": cfg.model.name,
        "class_names": names, "width": info.width, "height": info.height,
        "fps": float(info.rate), "duration": info.duration, "every": args.every,
        "classes": args.classes, "topk": args.topk, "threshold": args.threshold,
        "times": [sample_record(s, localizer) for s in samples],
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    written, encoder = render(args.video, out_path, info, samples, localizer, args.every, t0,
                              audio_start, frames, args.still)
    wall = time.time() - start
    video_s = frames / float(info.rate)
    logger.info("analyzed %d sampled times (model %.1f s) in %.1f s; wrote %s (%s, %d frames) "
                "and %s%s", len(samples), localizer.model_seconds, analyzed - start, out_path,
                encoder, written, json_path, f" and {args.still}" if args.still else "")
    logger.info("rate: %d frames in %.1f s = %.1f frames/s (%.2fx real time)", frames, wall,
                frames / wall, video_s / wall)
    return {"out": out_path, "json": json_path, "frames": frames, "written": written,
            "samples": len(samples), "seconds": wall, "frames_per_second": frames / wall,
            "encoder": encoder, "report": report}


def main(argv=None):
    """Parse argv, run the demo; returns a summary dict. Bad input raises DemoError."""
    import av
    args = parse_args(argv)
    setup_logging()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    except av.error.FFmpegError as e:
        raise DemoError(f"cannot decode {args.video}: {e}") from None
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    try:
        main()
    except DemoError as e:
        sys.exit(f"demo.py: error: {e}")
