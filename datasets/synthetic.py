"""Synthetic audio-visual benchmark: rendered frames and sounds with a known sounding object.

Every item is a frame holding one sounding object and 2-3 silent distractors of *other* classes,
all drawn the same way from the same size distribution, on a cluttered background, and a sound
made of the sounding class's pitch, timbre (harmonics) and rhythm (amplitude pattern) plus noise.
Which object sounds can only be told from the audio, so a model that ignores it cannot localise.

* ``render_item(rng, ...)`` draws one item in memory (about a millisecond at CPU sizes);
* ``write_synthetic(out, ...)`` writes the VGG-SS-like layout read by the real loaders (frames,
  wavs, ``annotations.json``, lists, test pairs/trios, a MUSIC-Duet-like one-frame test, and
  ``all_objects.json`` with every object box for audio-blind baselines);
* ``SyntheticStream`` streams training items rendered from (seed, epoch, index);
* ``build_synthetic(cfg, split)`` generates the data root when needed and returns a dataset.

Items are deterministic: item ``i`` of split ``s`` comes from ``SeedSequence([tag(s), seed, i, part])``
(training stream: ``[tag, seed, epoch, i, part]``), so splits use disjoint seeds.
"""
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image

from . import Benchmark, build_from_spec
from .dataset import AudioVisualDataset
from .image import render_boxes
from .records import Record

log = logging.getLogger("avgn." + __name__)  # shown by utils.logger.setup_logging

GENERATOR_VERSION = 1  # bump when rendering changes: data roots with another version regenerate

# One class = one shape, colour (hue, degrees) and texture; one pitch (Hz), timbre and rhythm.
# Pitches are 4 semitones apart (jitter stays under 1 semitone); timbres and rhythms are shared
# by pairs of classes in different combinations, so each cue alone is informative but partial.
CLASS_SPECS = (
    # name         hue  texture     f0     timbre    rhythm
    ("disc",         0, "solid",    150.0, "saw",    "steady"),
    ("square",      36, "hstripes", 189.0, "square", "tremolo_slow"),
    ("triangle",    72, "vstripes", 238.1, "bright", "pulse_fast"),
    ("ring",       108, "checker",  300.0, "even",   "gate"),
    ("cross",      144, "dots",     378.0, "pure",   "pulse_slow"),
    ("diamond",    180, "solid",    476.2, "square", "tremolo_fast"),
    ("star",       216, "hstripes", 600.0, "pure",   "steady"),
    ("hexagon",    252, "vstripes", 756.0, "saw",    "gate"),
    ("dome",       288, "checker",  952.4, "even",   "pulse_slow"),
    ("hourglass",  324, "dots",    1200.0, "bright", "tremolo_slow"),
)
CLASS_NAMES = sorted(s[0] for s in CLASS_SPECS)  # class index = position in this sorted list
_SPEC = {s[0]: dict(hue=s[1], texture=s[2], f0=s[3], timbre=s[4], rhythm=s[5]) for s in CLASS_SPECS}

# harmonic amplitudes (the fundamental is always the strongest partial)
TIMBRES = {
    "pure": (1.0, 0.12),
    "saw": tuple(1.0 / h for h in range(1, 11)),
    "square": tuple((1.0 / h if h % 2 else 0.0) for h in range(1, 11)),
    "bright": (1.0, 0.8, 0.7, 0.6, 0.5, 0.4),
    "even": (1.0, 0.7, 0.0, 0.5, 0.0, 0.35),
}
# rhythm: (kind, rate in Hz, duty)
RHYTHMS = {
    "steady": ("steady", 0.0, 1.0),
    "tremolo_slow": ("tremolo", 3.0, 1.0),
    "tremolo_fast": ("tremolo", 8.0, 1.0),
    "pulse_slow": ("pulse", 2.5, 1.0),
    "pulse_fast": ("pulse", 6.0, 1.0),
    "gate": ("gate", 4.0, 0.5),
}

# Layout. Sizes, border cuts and the number of distractors set how well an audio-blind map can
# do; with these, "every object + centre prior" scores pixel AP ~0.40 on the single-source test
# (centre prior alone ~0.22) -- see the README section for the measurements and the trade-off.
# shape box area as a fraction of the frame, uniform in [AREA_MIN, AREA_MAX]
AREA_MIN, AREA_MAX = 0.06, 0.30
ASPECT_MAX = 1.5  # w/h (in frame-normalised units) log-uniform in [1/ASPECT_MAX, ASPECT_MAX]
OUTSIDE = 0.5  # at most this fraction of an object's width / height may lie beyond the border
MIN_VISIBLE = 0.45  # fraction of each object's pixels left visible after occlusion
DISTRACTORS = (2, 3)  # silent objects per frame: uniform in this range
PITCH_JITTER = 0.02  # std of log f0 (clipped at 2.5 std: about +-0.9 semitone)
TEMPO_JITTER = 0.08  # std of log rhythm rate
SNR_DB = (0.0, 20.0)  # white noise, uniform SNR range
TABLE_SIZE = 2048  # wavetable length

SPLIT_TAGS = {"train": 1, "val": 2, "test": 3, "duet": 4, "stream": 5, "lists": 6}
PARTS = {"classes": 0, "frame": 1, "audio": 2}
DEFAULT_SIZES = dict(num_train=2000, num_val=200, num_test=500, num_duet=300, num_pairs=500,
                     num_trios=300)


@dataclass
class SyntheticObject:
    cls: str  # class name
    box: Tuple[float, float, float, float]  # normalised xyxy (pixel-exact at the render size)
    sounding: bool


@dataclass
class SyntheticItem:
    image: np.ndarray  # [H, W, 3] uint8
    audio: np.ndarray  # [T] float32 in [-1, 1]
    objects: List[SyntheticObject]  # drawing order (later objects occlude earlier ones)

    @property
    def sounding(self):
        return [o for o in self.objects if o.sounding]


def item_rng(split, seed, index, part, epoch=None):
    """Generator for one `part` ('classes', 'frame' or 'audio') of item `index` of `split`.

    The parts have independent streams, so a frame can be rendered without its sound and vice
    versa; the training stream also keys on `epoch`.
    """
    key = [SPLIT_TAGS[split], int(seed)] + ([] if epoch is None else [int(epoch)])
    key += [int(index), PARTS[part]]
    return np.random.default_rng(np.random.SeedSequence(key))


# ----------------------------------------------------------------------------- images

def _shape_mask(shape, u, v):
    """Boolean mask [h, w] of `shape` on local coordinates u (x), v (y, down) [h, w] in [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.ones(u.shape, bool)
    if shape == "triangle":  # apex at the top centre, base along the bottom edge
        return au <= (v + 1.0) * 0.5
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    if shape == "cross":
        return (au <= 0.34) | (av <= 0.34)
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "star":  # four-pointed astroid
        return np.sqrt(au) + np.sqrt(av) <= 1.2
    if shape == "hexagon":
        return au + 0.5 * av <= 1.0
    if shape == "dome":  # half ellipse with a flat base
        return u * u + (v - 1.0) ** 2 * 0.25 <= 1.0
    if shape == "hourglass":
        return au <= av + 0.1
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture, u, v, freq, phase):
    """Brightness pattern (1 or 0.55) of `texture` on local coordinates u, v [h, w]."""
    if texture == "solid":
        return np.ones(u.shape, np.float32)
    if texture == "hstripes":
        on = np.sin(freq * math.pi * v + phase) > 0
    elif texture == "vstripes":
        on = np.sin(freq * math.pi * u + phase) > 0
    elif texture == "checker":
        on = (np.sin(freq * math.pi * u + phase) > 0) ^ (np.sin(freq * math.pi * v + phase) > 0)
    elif texture == "dots":
        fu = (u * freq + phase) % 2.0 - 1.0
        fv = (v * freq + phase) % 2.0 - 1.0
        on = fu * fu + fv * fv > 0.35
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return np.where(on, np.float32(1.0), np.float32(0.55))


def _hsv_to_rgb(h, s, v):
    """One colour: h in degrees, s and v in [0, 1] -> float32 [3] in [0, 1]."""
    h = (h % 360.0) / 60.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32)


def _background(rng, size):
    """Low-contrast clutter: tinted grey + linear gradient + smooth blobs + pixel noise."""
    base = rng.uniform(0.3, 0.6) + rng.uniform(-0.06, 0.06, size=3)  # [3]
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    grad = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]) * rng.uniform(0, 0.2)
    gh, gw = int(rng.integers(3, 7)), int(rng.integers(3, 7))  # coarse grid, upsampled to blobs
    coarse = 0.75 * rng.uniform(0, 1, size=(gh, gw, 1)) + 0.25 * rng.uniform(0, 1, size=(gh, gw, 3))
    coarse = (coarse * 255.0).astype(np.uint8)  # mostly luminance, a little colour
    blobs = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR), np.float32)
    blobs = (blobs / 255.0 - 0.5) * rng.uniform(0.1, 0.3)  # [S, S, 3]
    img = base.astype(np.float32) + grad[:, :, None] + blobs
    return img


def _sample_box(rng, size, placed=(), tries=4):
    """A pixel box [x0, y0, x1, y1) of area fraction U(AREA_MIN, AREA_MAX), at most OUTSIDE of
    its width / height beyond the frame border (the shape is then cut by the border).

    The size is drawn once; of `tries` random positions the one overlapping the `placed` boxes
    least (inside the frame) is kept. Every object is placed the same way, sounding or not.
    """
    area = rng.uniform(AREA_MIN, AREA_MAX)
    aspect = math.exp(rng.uniform(-math.log(ASPECT_MAX), math.log(ASPECT_MAX)))
    pw = max(4, round(min(math.sqrt(area * aspect), 0.95) * size))
    ph = max(4, round(min(math.sqrt(area / aspect), 0.95) * size))
    mx, my = int(OUTSIDE * pw), int(OUTSIDE * ph)
    xs = rng.integers(-mx, size - pw + mx + 1, size=tries)
    ys = rng.integers(-my, size - ph + my + 1, size=tries)
    best, best_overlap = None, None
    for x0, y0 in zip(xs.tolist(), ys.tolist()):
        overlap = sum(max(0, min(x0 + pw, b[2]) - max(x0, b[0])) * max(0, min(y0 + ph, b[3]) - max(y0, b[1]))
                      for b in placed)
        if best is None or overlap < best_overlap:
            best, best_overlap = (x0, y0, x0 + pw, y0 + ph), overlap
    return best


def _local_coords(box):
    """Local coordinates u (x), v (y, down) in [-1, 1] over a pixel box: [h, w] each."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    u = ((np.arange(w, dtype=np.float32) + 0.5) / w * 2.0 - 1.0)[None, :]  # [1, w]
    v = ((np.arange(h, dtype=np.float32) + 0.5) / h * 2.0 - 1.0)[:, None]  # [h, 1]
    return np.broadcast_arrays(u, v)  # [h, w] each


def _in_frame(box, size):
    """(frame slices, local slices) of the part of pixel `box` inside a size x size frame."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    return ((slice(cy0, cy1), slice(cx0, cx1)),
            (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0)))


def _layout(rng, classes, size):
    """Boxes and shape masks such that every object keeps MIN_VISIBLE of its pixels in view
    (not occluded, not cut by the border).

    Returns:
        boxes (pixel xyxy per object, may reach outside the frame), masks ([h, w] bool per object,
        over its whole box), order (drawing order), tight (in-frame bounding box of each shape,
        pixel xyxy).
    """
    order = rng.permutation(len(classes))  # drawing order independent of which one sounds
    for _attempt in range(50):
        boxes = []
        for _k in classes:
            boxes.append(_sample_box(rng, size, boxes))
        masks = [_shape_mask(c, *_local_coords(b)) for c, b in zip(classes, boxes)]
        labels = np.full((size, size), -1, np.int8)
        for k in order:
            frame, local = _in_frame(boxes[k], size)
            labels[frame][masks[k][local]] = k
        visible = np.bincount(labels.ravel() + 1, minlength=len(classes) + 1)[1:]
        if all(visible[k] >= MIN_VISIBLE * m.sum() for k, m in enumerate(masks)):
            break
    tight = []
    for b, m in zip(boxes, masks):
        frame, local = _in_frame(b, size)
        cut = m[local]  # [h', w'] the shape inside the frame
        rows, cols = np.flatnonzero(cut.any(1)), np.flatnonzero(cut.any(0))
        x0, y0 = frame[1].start, frame[0].start
        tight.append((x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1))
    return boxes, masks, order, tight


def _paint(img, cls, box, mask, rng):
    """Paint object `cls` (its shape `mask` [h, w] over pixel `box`) into `img` [S, S, 3] float."""
    spec = _SPEC[cls]
    frame, local = _in_frame(box, img.shape[0])
    u, v = _local_coords(box)
    colour = _hsv_to_rgb(spec["hue"] + rng.uniform(-6, 6), rng.uniform(0.65, 0.95),
                         rng.uniform(0.75, 1.0))
    shade = _texture(spec["texture"], u[local], v[local], rng.uniform(2.0, 4.0),
                     rng.uniform(0, 2 * math.pi))
    m = mask[local]
    img[frame][m] = shade[m][:, None] * colour  # [n, 3]


def render_frame(rng, sounding, image_size, num_distractors=None):
    """Draw a frame with the `sounding` classes plus DISTRACTORS silent objects of other classes.

    Args:
        rng: numpy Generator.
        sounding: list of class names that sound (1 for single-source items, 2 for duets).
        image_size: S, the frame is S x S.
        num_distractors: silent objects (default: uniform in DISTRACTORS).
    Returns:
        image [S, S, 3] uint8, objects (list of SyntheticObject, in drawing order).
    """
    if num_distractors is None:
        num_distractors = int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))
    others = [c for c in CLASS_NAMES if c not in sounding]
    distractors = [others[i] for i in rng.choice(len(others), num_distractors, replace=False)]
    classes = list(sounding) + distractors
    flags = [True] * len(sounding) + [False] * num_distractors
    S = image_size
    boxes, masks, order, tight = _layout(rng, classes, S)
    img = _background(rng, S)
    for k in order:
        _paint(img, classes[k], boxes[k], masks[k], rng)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.02)
    image = (np.clip(img, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    objects = [SyntheticObject(classes[k], tuple(int(c) / S for c in tight[k]), flags[k])
               for k in order]
    return image, objects


# ----------------------------------------------------------------------------- audio

_TABLES = {}


def _wavetable(cls, sample_rate):
    """One period of the class's timbre, partials kept below Nyquist at the highest jitter."""
    key = (cls, sample_rate)
    if key not in _TABLES:
        spec = _SPEC[cls]
        top = spec["f0"] * math.exp(2.5 * PITCH_JITTER) * 1.01
        phase = np.arange(TABLE_SIZE) / TABLE_SIZE * 2 * math.pi
        table = np.zeros(TABLE_SIZE)
        for h, a in enumerate(TIMBRES[spec["timbre"]], start=1):
            if a and h * top < 0.45 * sample_rate:
                table += a * np.sin(h * phase)
        _TABLES[key] = (table / np.abs(table).max()).astype(np.float32)
    return _TABLES[key]


def _envelope(kind, rate, duty, t, phase):
    """Amplitude pattern in [0, 1] over times `t` [T] (seconds)."""
    if kind == "steady":
        return np.ones_like(t)
    x = (t * rate + phase) % 1.0  # position in the beat, [T]
    if kind == "tremolo":
        return 0.55 + 0.45 * np.sin(2 * math.pi * x)
    if kind == "pulse":  # percussive notes: fast attack, exponential decay
        return np.minimum(x * 40.0, 1.0) * np.exp(-x * 5.0)
    if kind == "gate":  # on/off with 10 ms ramps
        ramp = 0.01 * rate
        return np.clip(np.minimum(x / ramp, (duty - x) / ramp), 0.0, 1.0)
    raise ValueError(f"unknown rhythm {kind!r}")


def render_sound(rng, cls, sample_rate, seconds):
    """The clean sound of class `cls`: [T] float32, peak 1, T = round(seconds * sample_rate).

    Pitch and tempo carry mild random jitter, the start phase of the rhythm is random, and a slow
    vibrato is added, so no two clips are identical.
    """
    spec = _SPEC[cls]
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)  # [T]
    f0 = spec["f0"] * math.exp(float(np.clip(rng.normal(), -2.5, 2.5)) * PITCH_JITTER)
    vib = 0.004 * np.sin(2 * math.pi * rng.uniform(4.0, 6.0) * t + rng.uniform(0, 2 * math.pi))
    cycles = np.cumsum(np.float32(f0 / sample_rate) * (1.0 + vib)) + rng.uniform()  # [T]
    idx = ((cycles % 1.0) * TABLE_SIZE).astype(np.int32) % TABLE_SIZE
    tone = _wavetable(cls, sample_rate)[idx]
    kind, rate, duty = RHYTHMS[spec["rhythm"]]
    rate *= math.exp(rng.normal() * TEMPO_JITTER)
    env = _envelope(kind, rate, duty, t, rng.uniform())
    return (tone * env).astype(np.float32)


def add_noise(rng, audio, snr_db=None):
    """Add white noise at `snr_db` (default: uniform in SNR_DB) and set a random peak level."""
    if snr_db is None:
        snr_db = rng.uniform(*SNR_DB)
    rms = float(np.sqrt(np.mean(audio * audio))) + 1e-8
    noise = rng.standard_normal(audio.shape[0], dtype=np.float32)
    out = audio + noise * np.float32(rms / 10.0 ** (snr_db / 20.0))
    return (out * np.float32(rng.uniform(0.3, 0.9) / (np.abs(out).max() + 1e-8))).astype(np.float32)


# ----------------------------------------------------------------------------- items

def render_audio(rng, classes, sample_rate, seconds):
    """The sum of the `classes`' sounds (equal loudness) plus noise: [T] float32 in [-1, 1]."""
    return add_noise(rng, sum(render_sound(rng, c, sample_rate, seconds) for c in classes))


def render_item(split, seed, index, image_size, sample_rate, seconds, classes=None,
                num_sources=1, epoch=None):
    """Item `index` of `split`: a frame with its sounding objects (+ distractors) and their sound.

    Args:
        split, seed, index, epoch: the item's key (see `item_rng`).
        image_size, sample_rate, seconds: render sizes.
        classes: sounding class names (default: `num_sources` distinct classes at random).
        num_sources: sounding objects when `classes` is None.
    Returns:
        SyntheticItem.
    """
    if classes is None:
        rng = item_rng(split, seed, index, "classes", epoch)
        classes = [CLASS_NAMES[i] for i in rng.choice(len(CLASS_NAMES), num_sources, replace=False)]
    image, objects = render_frame(item_rng(split, seed, index, "frame", epoch), list(classes),
                                  image_size)
    audio = render_audio(item_rng(split, seed, index, "audio", epoch), classes, sample_rate, seconds)
    return SyntheticItem(image, audio, objects)


def objects_map(objects, height, width=None, sounding_only=False):
    """Audio-blind baseline map: 1 inside every object box (or the sounding ones), else 0.

    Args:
        objects: list of SyntheticObject (or dicts with "bbox" normalised xyxy and "sounding").
    Returns:
        [H, W] float32.
    """
    width = width or height
    out = np.zeros((height, width), np.float32)
    for o in objects:
        box, sounding = (o.box, o.sounding) if isinstance(o, SyntheticObject) else (o["bbox"], o["sounding"])
        if sounding_only and not sounding:
            continue
        x0, y0, x1, y1 = (int(round(c * s)) for c, s in zip(box, (width, height, width, height)))
        out[y0:y1, x0:x1] = 1.0
    return out


def centre_map(height, width=None):
    """Audio-blind centre prior: a Gaussian bump at the frame centre, [H, W] float32."""
    width = width or height
    y = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.25 ** 2)).astype(np.float32)


def load_all_objects(root):
    """``<root>/all_objects.json``: {id: [{"class", "bbox" (normalised xyxy), "sounding"}, ...]}."""
    with open(os.path.join(root, "all_objects.json")) as f:
        return json.load(f)


def baseline_map(all_objects, sample_id, height, kind="objects"):
    """Audio-blind map for a test sample on its canvas (frames side by side for '+'-joined ids).

    Args:
        all_objects: `load_all_objects(root)`.
        sample_id: the sample's id ("test_000001" or "test_000001+test_000042").
        height: frame side H; the canvas is [H, k * H] for k joined ids.
        kind: 'objects' (1 on every object, sounding or not) | 'centre' (centre prior per frame).
    Returns:
        [H, k * H] float32.
    """
    if kind not in ("objects", "centre"):
        raise ValueError(f"unknown baseline '{kind}', expected 'objects' or 'centre'")
    frames = [objects_map(all_objects[i], height) if kind == "objects" else centre_map(height)
              for i in sample_id.split("+")]
    return np.concatenate(frames, axis=1)


# ----------------------------------------------------------------------------- files on disk

def _settings(seed, image_size, sample_rate, seconds, **sizes):
    """The generator settings stored in meta.json (a data root with others is regenerated)."""
    out = dict(generator="avgn-synthetic", version=GENERATOR_VERSION, seed=int(seed),
               image_size=int(image_size), sample_rate=int(sample_rate), seconds=float(seconds),
               design=dict(area=[AREA_MIN, AREA_MAX], aspect_max=ASPECT_MAX, outside=OUTSIDE,
                           min_visible=MIN_VISIBLE, distractors=list(DISTRACTORS),
                           snr_db=list(SNR_DB), pitch_jitter=PITCH_JITTER,
                           tempo_jitter=TEMPO_JITTER))
    out.update({k: int(sizes.get(k, v)) for k, v in DEFAULT_SIZES.items()})
    return out


def _save_item(out, id_, item, sample_rate):
    import soundfile as sf
    Image.fromarray(item.image).save(os.path.join(out, "frames", f"{id_}.jpg"), quality=90)
    sf.write(os.path.join(out, "audio", f"{id_}.wav"), item.audio, sample_rate, subtype="PCM_16")


def _objects_json(item):
    return [{"class": o.cls, "bbox": [round(c, 6) for c in o.box], "sounding": o.sounding}
            for o in item.objects]


def _xyxy_to_xywh(b):
    return [round(b[0], 6), round(b[1], 6), round(b[2] - b[0], 6), round(b[3] - b[1], 6)]


def _write_lines(path, rows):
    with open(path, "w") as f:
        f.writelines(",".join(r) + "\n" for r in rows)


def _groups(rng, ids, classes, k, count):
    """`count` tuples of k ids of pairwise different classes (deterministic for `rng`)."""
    out = []
    while len(out) < count:
        pick = rng.choice(len(ids), k, replace=False)
        if len({classes[i] for i in pick}) == k:
            out.append(sum(([ids[i], classes[i]] for i in pick), []))
    return out


def write_synthetic(out, seed=0, image_size=96, sample_rate=11025, seconds=1.0, automatic=False,
                    **sizes):
    """Write the synthetic benchmark to `out` (the layout of the module docstring / README).

    Args:
        out: data root (created; existing files with the same names are overwritten).
        seed: generator seed; item i of split s is `render_item(s, seed, i, ...)`.
        image_size: frames are image_size x image_size jpgs.
        sample_rate, seconds: mono wavs (16-bit).
        automatic: written by `ensure_synthetic` (may be regenerated when the settings change),
            not by a user (tools/make_synthetic.py: never replaced).
        sizes: num_train, num_val, num_test, num_duet, num_pairs, num_trios (see DEFAULT_SIZES).
    Returns:
        the settings dict written to ``<out>/meta.json``.
    """
    meta = _settings(seed, image_size, sample_rate, seconds, **sizes)
    for d in ("frames", "audio"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    annotations, all_objects, lists = [], {}, {}
    C = len(CLASS_NAMES)
    for split in ("train", "val", "test"):
        lists[split] = []
        for i in range(meta[f"num_{split}"]):
            id_, cls = f"{split}_{i:06d}", CLASS_NAMES[i % C]  # class-balanced lists
            item = render_item(split, seed, i, image_size, sample_rate, seconds, [cls])
            _save_item(out, id_, item, sample_rate)
            (box,) = [list(o.box) for o in item.sounding]
            annotations.append({"file": id_, "class": cls, "bbox": [[round(c, 6) for c in box]]})
            all_objects[id_] = _objects_json(item)
            lists[split].append((id_, cls))
        _write_lines(os.path.join(out, f"{split}.txt"), lists[split])
    duet, duet_ids = [], []
    for i in range(meta["num_duet"]):
        id_ = f"duet_{i:06d}"
        item = render_item("duet", seed, i, image_size, sample_rate, seconds, num_sources=2)
        _save_item(out, id_, item, sample_rate)
        (a, b) = item.sounding
        duet.append({"file": id_, "class_src1": a.cls, "bbox_src1": _xyxy_to_xywh(a.box),
                     "class_src2": b.cls, "bbox_src2": _xyxy_to_xywh(b.box)})
        all_objects[id_] = _objects_json(item)
        duet_ids.append((id_,))
    rng = item_rng("lists", seed, 0, "classes")
    test_ids, test_cls = [r[0] for r in lists["test"]], [r[1] for r in lists["test"]]
    _write_lines(os.path.join(out, "test_pairs.csv"), _groups(rng, test_ids, test_cls, 2, meta["num_pairs"]))
    _write_lines(os.path.join(out, "test_trios.csv"), _groups(rng, test_ids, test_cls, 3, meta["num_trios"]))
    _write_lines(os.path.join(out, "test_duet.csv"), duet_ids)
    _write_lines(os.path.join(out, "classes.txt"), [(c,) for c in CLASS_NAMES])
    for name, obj in (("annotations.json", annotations), ("test_duet.json", duet),
                      ("all_objects.json", all_objects),
                      ("meta.json", dict(meta, automatic=bool(automatic)))):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=1 if name == "meta.json" else None)
    return meta


def read_meta(root):
    """The settings in ``<root>/meta.json`` (without its 'automatic' flag), or None when
    absent/unreadable."""
    try:
        with open(os.path.join(root, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(meta, dict):
        meta.pop("automatic", None)
    return meta


def _made_automatically(root):
    try:
        with open(os.path.join(root, "meta.json")) as f:
            return json.load(f).get("automatic") is True
    except (OSError, ValueError, AttributeError):
        return False


def ensure_synthetic(root, seed=0, image_size=96, sample_rate=11025, seconds=1.0, **sizes):
    """Generate the benchmark in `root` unless its meta.json already matches these settings.

    Generation writes to a temporary sibling folder that is renamed into place, so concurrent
    callers (several DDP ranks) never see a half-written root; an existing root is replaced only
    when this function generated it (its meta.json says so), with a warning: a foreign folder or
    one written by tools/make_synthetic.py is never replaced (FileExistsError naming both
    settings).
    Returns:
        True when the data was (re)generated, False when it was already there.
    """
    wanted = _settings(seed, image_size, sample_rate, seconds, **sizes)
    old = read_meta(root)
    if old == wanted:
        return False
    root = os.path.abspath(root)
    if os.path.exists(root) and (old is None or old.get("generator") != wanted["generator"]):
        raise FileExistsError(f"{root} exists and is not a synthetic data root (no matching "
                              f"meta.json); remove it or choose another data.root")
    changed = old and {k: (old.get(k), v) for k, v in wanted.items() if old.get(k) != v}
    if old is not None and not _made_automatically(root):
        raise FileExistsError(
            f"{root} was written by tools/make_synthetic.py with other settings than the config "
            f"asks for ((made, wanted): {changed}); it is never replaced: choose another "
            "data.root (generated automatically), or set the config's data.image_size and "
            "data.audio.sample_rate / seconds to the folder's")
    if old is None:
        log.info("generating the synthetic benchmark in %s", root)
    else:
        log.warning("regenerating the synthetic benchmark in %s, generated earlier with other "
                    "settings ((old, new): %s)", root, changed)
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    write_synthetic(tmp, automatic=True, **{k: v for k, v in wanted.items()
                                            if k not in ("generator", "version", "design")})
    if read_meta(root) == wanted:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    if os.path.exists(root):
        trash = f"{root}.old-{os.getpid()}"
        os.replace(root, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, root)
    except OSError:  # another process renamed its (identical) copy in between
        if read_meta(root) != wanted:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return True


# ----------------------------------------------------------------------------- datasets

class SyntheticStream(AudioVisualDataset):
    """Training items rendered in memory from (seed, epoch, index): unbounded, never repeated.

    Item i has the fixed class ``CLASS_NAMES[i % C]`` (so mixture partners and class-balanced
    batches work through the parent's machinery); its layout, distractors, colours, sound jitter
    and noise are redrawn every epoch (`set_epoch`). Mixtures (num_sources > 1) go through the
    parent: partner items of other classes, frames side by side, waveforms summed.

    Arguments: length (items per epoch), render settings, then as `AudioVisualDataset`.
    """

    def __init__(self, length, data_cfg, seed=0, num_sources=1, canvas="concat"):
        C = len(CLASS_NAMES)
        items = [Record(id=f"stream_{i:07d}", frame="", audio="", classes=[CLASS_NAMES[i % C]],
                        where=f"synthetic training stream item {i}", extra={"index": i})
                 for i in range(int(length))]
        self.render_seed = int(seed)
        self._boxes = {}  # (epoch, index) -> sounding boxes of the frames rendered last
        super().__init__(items, CLASS_NAMES, data_cfg, train=True, num_sources=num_sources,
                         canvas=canvas, seed=seed, origin="the synthetic training stream")

    def check_record(self, record):
        return None  # classes are ours, nothing is read from disk

    def load_frame(self, record):
        key = (self.epoch, record.extra["index"])
        image, objects = render_frame(item_rng("stream", self.render_seed, key[1], "frame", key[0]),
                                      record.classes, self.size)
        if len(self._boxes) > 64:
            self._boxes.clear()
        self._boxes[key] = [[o.box] for o in objects if o.sounding]
        return Image.fromarray(image)

    def load_source_masks(self, record, geometry):
        key = (self.epoch, record.extra["index"])
        if key not in self._boxes:  # called without load_frame: draw the frame for its boxes
            self.load_frame(record)
        return [render_boxes(boxes, geometry) for boxes in self._boxes[key]]

    def load_audio(self, record):
        a = self.audio_cfg
        rng = item_rng("stream", self.render_seed, record.extra["index"], "audio", self.epoch)
        return render_audio(rng, record.classes, a.sample_rate, a.seconds)


# the on-disk splits, read by the same code as the real benchmarks (VGG-SS / MUSIC-Duet formats)
DISK_SPECS = {
    "test": Benchmark("train.txt", "test.txt", "vggss", "annotations.json", val_list="val.txt"),
    "test_pairs": Benchmark("train.txt", "test_pairs.csv", "vggss", "annotations.json",
                            test_pairs=True, canvas="concat", val_list="val.txt"),
    "test_trios": Benchmark("train.txt", "test_trios.csv", "vggss", "annotations.json",
                            test_pairs=True, canvas="concat", val_list="val.txt"),
    "test_duet": Benchmark("train.txt", "test_duet.csv", "music", "test_duet.json",
                           canvas="single", val_list="val.txt"),
}
SPLITS = ("train", "train_files", "val", "test", "test_pairs", "test_trios", "test_duet")
DEFAULT_STREAM_LENGTH = 8000


def build_synthetic(cfg, split, class_names=None, report=None):
    """The synthetic benchmark's dataset for `split` (generating cfg.data.root when needed).

    split: 'train' (streamed, cfg.data.synthetic_train items per epoch, default
        DEFAULT_STREAM_LENGTH, rendered from (cfg.train.seed, epoch, index); cfg.data.num_sources
        mixtures), 'train_files' (the on-disk train.txt), 'val', 'test' (single source, VGG-SS
        format), 'test_pairs', 'test_trios' (2 / 3 test clips side by side), 'test_duet'
        (2 sources in one frame, MUSIC-Duet format).
    class_names: checked against CLASS_NAMES when given (e.g. from a checkpoint).
    report: checking mode, see `datasets.build_dataset`.
    The data root is rendered at cfg.data.image_size, cfg.data.audio.sample_rate and .seconds
    (seed 0, DEFAULT_SIZES); a root written with other settings is regenerated.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown synthetic split '{split}'; known: {SPLITS}")
    if class_names is not None and list(class_names) != CLASS_NAMES:
        raise ValueError(f"class names {list(class_names)} are not the synthetic classes {CLASS_NAMES}")
    d, a = cfg.data, cfg.data.audio
    if d.metadata and os.path.abspath(d.metadata) != os.path.abspath(d.root):
        raise ValueError("the synthetic benchmark keeps its lists in data.root: leave data.metadata "
                         f"empty (got '{d.metadata}')")
    ensure_synthetic(d.root, image_size=d.image_size, sample_rate=a.sample_rate, seconds=a.seconds)
    if split == "train":
        return SyntheticStream(d.synthetic_train or DEFAULT_STREAM_LENGTH, d, seed=cfg.train.seed,
                               num_sources=d.num_sources, canvas=d.canvas)
    if split in ("train_files", "val"):
        return build_from_spec(cfg, split[:5], DISK_SPECS["test"], "synthetic", CLASS_NAMES,
                               report)
    return build_from_spec(cfg, "test", DISK_SPECS[split], "synthetic", CLASS_NAMES, report)
