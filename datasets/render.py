"""Rendering of the synthetic benchmark's items, in memory: frames with one sounding object among
silent distractors of other classes, and sounds made of the sounding class's pitch, timbre and
rhythm plus noise (see `datasets.synthetic` for the files on disk, the lists and the datasets).

* ``render_item(split, seed, index, ...)`` draws one item (about a millisecond at CPU sizes),
  deterministic: item ``i`` of split ``s`` comes from ``SeedSequence([tag(s), seed, i, part])``
  (training stream: ``[tag, seed, epoch, i, part]``), so splits use disjoint seeds;
* ``objects_map``, ``center_map``, ``baseline_map``: audio-blind baseline maps.
"""
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from PIL import Image

# One class = one shape, color (hue, degrees) and texture; one pitch (Hz), timbre and rhythm.
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
CLASS_SPEC = {s[0]: dict(hue=s[1], texture=s[2], f0=s[3], timbre=s[4], rhythm=s[5]) for s in CLASS_SPECS}

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
# do; with these, "every object + center prior" scores pixel AP ~0.40 on the single-source test
# (center prior alone ~0.22) -- see the README section for the measurements and the trade-off.
# shape box area as a fraction of the frame, uniform in [AREA_MIN, AREA_MAX]
AREA_MIN, AREA_MAX = 0.06, 0.30
ASPECT_MAX = 1.5  # w/h (in frame-normalized units) log-uniform in [1/ASPECT_MAX, ASPECT_MAX]
OUTSIDE = 0.5  # at most this fraction of an object's width / height may lie beyond the border
MIN_VISIBLE = 0.45  # fraction of each object's pixels left visible after occlusion
DISTRACTORS = (2, 3)  # silent objects per frame: uniform in this range
PITCH_JITTER = 0.02  # std of log f0 (clipped at 2.5 std: about +-0.9 semitone)
TEMPO_JITTER = 0.08  # std of log rhythm rate
SNR_DB = (0.0, 20.0)  # white noise, uniform SNR range
TABLE_SIZE = 2048  # wavetable length

SPLIT_TAGS = {"train": 1, "val": 2, "test": 3, "duet": 4, "stream": 5, "lists": 6,
              "pretrain": 7}  # pretrain: the visual stand-in of ImageNet (study.pretrain_visual)
PARTS = {"classes": 0, "frame": 1, "audio": 2}
DEFAULT_SIZES = dict(num_train=2000, num_val=200, num_test=500, num_duet=300, num_pairs=500,
                     num_trios=300)


@dataclass
class SyntheticObject:
    cls: str  # class name
    box: Tuple[float, float, float, float]  # normalized xyxy (pixel-exact at the render size)
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

def shape_mask(shape, u, v):
    """Boolean mask [h, w] of `shape` on local coordinates u (x), v (y, down) [h, w] in [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.ones(u.shape, bool)
    if shape == "triangle":  # apex at the top center, base along the bottom edge
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


def hsv_to_rgb(h, s, v):
    """One color: h in degrees, s and v in [0, 1] -> float32 [3] in [0, 1]."""
    h = (h % 360.0) / 60.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32)


def _background(rng, size):
    """Low-contrast clutter: tinted gray + linear gradient + smooth blobs + pixel noise."""
    base = rng.uniform(0.3, 0.6) + rng.uniform(-0.06, 0.06, size=3)  # [3]
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    grad = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]) * rng.uniform(0, 0.2)
    gh, gw = int(rng.integers(3, 7)), int(rng.integers(3, 7))  # coarse grid, upsampled to blobs
    coarse = 0.75 * rng.uniform(0, 1, size=(gh, gw, 1)) + 0.25 * rng.uniform(0, 1, size=(gh, gw, 3))
    coarse = (coarse * 255.0).astype(np.uint8)  # mostly luminance, a little color
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


def local_coords(box):
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
        masks = [shape_mask(c, *local_coords(b)) for c, b in zip(classes, boxes)]
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


def paint(img, cls, box, mask, rng):
    """Paint object `cls` (its shape `mask` [h, w] over pixel `box`) into `img` [S, S, 3] float."""
    spec = CLASS_SPEC[cls]
    frame, local = _in_frame(box, img.shape[0])
    u, v = local_coords(box)
    color = hsv_to_rgb(spec["hue"] + rng.uniform(-6, 6), rng.uniform(0.65, 0.95),
                         rng.uniform(0.75, 1.0))
    shade = _texture(spec["texture"], u[local], v[local], rng.uniform(2.0, 4.0),
                     rng.uniform(0, 2 * math.pi))
    m = mask[local]
    img[frame][m] = shade[m][:, None] * color  # [n, 3]


def draw_objects(rng, classes, size, background=None):
    """Lay out and paint `classes` (one object each) on `background(rng, size)` (default: the
    benchmark's clutter) -> (image [S, S, 3] float, drawing order, tight pixel boxes)."""
    boxes, masks, order, tight = _layout(rng, classes, size)
    img = (background or _background)(rng, size)
    for k in order:
        paint(img, classes[k], boxes[k], masks[k], rng)
    return img, order, tight


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
    img, order, tight = draw_objects(rng, classes, S)
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
        spec = CLASS_SPEC[cls]
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
    spec = CLASS_SPEC[cls]
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
        objects: list of SyntheticObject (or dicts with "bbox" normalized xyxy and "sounding").
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


def center_map(height, width=None):
    """Audio-blind center prior: a Gaussian bump at the frame center, [H, W] float32."""
    width = width or height
    y = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.25 ** 2)).astype(np.float32)


def baseline_map(all_objects, sample_id, height, kind="objects"):
    """Audio-blind map for a test sample on its canvas (frames side by side for '+'-joined ids).

    Args:
        all_objects: `load_all_objects(root)`.
        sample_id: the sample's id ("test_000001" or "test_000001+test_000042").
        height: frame side H; the canvas is [H, k * H] for k joined ids.
        kind: 'objects' (1 on every object, sounding or not) | 'center' (center prior per frame).
    Returns:
        [H, k * H] float32.
    """
    if kind not in ("objects", "center"):
        raise ValueError(f"unknown baseline '{kind}', expected 'objects' or 'center'")
    frames = [objects_map(all_objects[i], height) if kind == "objects" else center_map(height)
              for i in sample_id.split("+")]
    return np.concatenate(frames, axis=1)
