"""The model on a video of one's own (demo.py): load a trained checkpoint, choose the classes
(named, or from the audio presence scores), run the frames at regular times with the audio around
each through the model in batches, and turn the outputs into per-time samples (classes, scores,
maps, peaks), their JSON records and their overlays."""
import time
from dataclasses import dataclass, field
from typing import List, Optional

import av
import torch

from datasets.audio import cut_window, spectrogram_from_config
from datasets.image import apply_image, eval_geometry
from datasets.records import canonical_class
from engine import load_trained
from models import localization_maps, presence, upsample_maps
from utils.errors import InputError
from utils.video import frames_at_times
from utils.visualize import Overlay, assign_colors

AGNOSTIC = "sound"  # label of the single map of a class-agnostic model (EZ-VSL)


class DemoError(InputError):
    """Bad input, reported as one line without a traceback (exit code 2)."""


def load_demo_model(path, device, overrides=()):
    """Checkpoint (with config `overrides`) -> (model in eval mode, Config, class names), or
    DemoError saying why not."""
    try:
        ckpt, cfg, model = load_trained(path, device, overrides)
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
class Sample:
    """One sampled time and what the model says about it."""
    t: float  # seconds since the first video frame
    frame: int  # index of the frame nearest to t
    classes: List[int]  # class indices (a class-agnostic model: [-1] for its one map)
    scores: List[Optional[float]]  # presence score of each class (None: class-agnostic)
    presence: Optional[List[float]]  # all C presence scores (None: class-agnostic)
    maps: torch.Tensor = None  # [N, h, w] cosine maps on the feature grid (CPU)
    peaks: List[tuple] = field(default_factory=list)  # (x, y, value) per class, display pixels


def peak(m):
    """[H, W] map -> (x, y, value) of its maximum (pixels)."""
    i = int(m.flatten().argmax())
    return (i % m.shape[1], i // m.shape[1], round(float(m.flatten()[i]), 4))


class Localizer:
    """Runs the model on batches of (frame, audio window) and turns outputs into Samples.

    Args:
        model, cfg, class_names: as load_demo_model returns them.
        fixed: class indices to map at every time (None: chosen by select_classes).
        topk, threshold: select_classes' arguments when fixed is None.
        device: where the model runs; display: (H, W) of the original frames.
    """

    def __init__(self, model, cfg, class_names, fixed, topk, threshold, device, display):
        self.model, self.cfg, self.names = model, cfg, class_names
        self.fixed, self.topk, self.threshold = fixed, topk, threshold
        self.device, self.display = device, display
        self.geometry = eval_geometry(cfg.data.image_size)
        self.model_seconds = 0.0
        self.colors = {}

    def inputs(self, frame, wave, center):
        """A decoded frame and the audio around `center` (seconds into `wave`) -> model inputs
        image [3, S, S], spec [1, F, T]."""
        a = self.cfg.data.audio
        image = apply_image(frame.to_image(), self.geometry, self.cfg.data.interpolation)
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
                s.peaks = [peak(m) for m in upsample_maps(s.maps[None], self.display,
                                                           self.cfg.eval.upsample)[0]]

    def name(self, c):
        return AGNOSTIC if c < 0 else self.names[c]

    def assign_colors(self, samples):
        """One palette color per class, by its index (utils.visualize.assign_colors)."""
        self.colors = assign_colors(c for s in samples for c in s.classes)

    def overlay(self, sample):
        """The heat-maps of one sample at display size in their class colors, with a legend of
        the time, then a color square, name and score per class (an Overlay)."""
        maps = None
        if len(sample.classes):
            maps = upsample_maps(sample.maps[None], self.display,
                                 self.cfg.eval.upsample)[0]  # [N, H, W]
        lines = [(None, f"t = {sample.t:.2f} s")]
        for c, s in zip(sample.classes, sample.scores):
            lines.append((self.colors[c], self.name(c) + ("" if s is None else f"  {s:.2f}")))
        if not sample.classes:
            lines.append((None, f"no class with p >= {self.threshold:g}"))
        return Overlay(maps, [self.colors[c] for c in sample.classes], lines, self.display)

    def record(self, s):
        """A sample as the JSON record of its time: classes, scores, peaks in display pixels."""
        return {"t": s.t, "frame": s.frame,
                "sources": [{"class": self.name(c),
                             "score": None if sc is None else round(sc, 4),
                             "peak": [int(p[0]), int(p[1])], "peak_value": p[2]}
                            for c, sc, p in zip(s.classes, s.scores, s.peaks)],
                "presence": s.presence}


def analyze(path, info, localizer, wave, audio_start, every, batch_size):
    """First pass: decode the frames in order, run the sampled times through the model in
    batches. Returns (samples, number of decoded frames, container time of the first frame).

    Args:
        path: the video; info: its VideoInfo (frame count for the progress bar).
        wave: [S] mono audio of the whole clip at the model's sample rate, whose first sample is
            at container time `audio_start` (seconds).
        every: seconds between sampled times; batch_size: sampled times per model call.
    """
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
