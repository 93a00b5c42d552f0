"""Media and checkpoints that tests and benchmarks make: frames, wavs, videos, a hand-set model.

* ``make_root``: a data root of 480p jpgs and 10-s wavs (the loader benchmarks);
* ``write_test_video``: a small mp4 with a growing bar and a tone (tools.prepare_videos' tests);
* ``write_clip``: an mp4 (h264 + aac) in which an object of a synthetic class moves from left to
  right while its sound plays, next to a silent distractor of another class (the demo);
* ``color_checkpoint``: the quick-start-sized AVGN (configs/synthetic.yaml, AVCT off) with
  weights set by hand so that the map of a class peaks where that class's color is (the answer is
  known without training).
"""
import os
from fractions import Fraction

import numpy as np
import soundfile as sf
import torch
from PIL import Image, ImageDraw

from datasets.render import CLASS_NAMES, local_coords, paint, shape_mask, add_noise, render_sound
from utils.config import load_config

QUICK_START = "configs/synthetic.yaml"
# a model small enough for unit tests: tiny('model.depth=2') adds overrides
TINY = ["model.dim=32", "model.heads=4", "model.width=8", "model.depth=1", "model.num_classes=5"]

# a training run small enough for tests: train.main(['--config', QUICK_START, *TINY_RUN, ...])
TINY_RUN = ["model.dim=32", "model.heads=4", "model.width=8", "model.depth=1",
            "model.visual_stride=8", "data.image_size=32", "data.audio.n_fft=256",
            "data.audio.hop=172", "data.audio.frames=32", "data.audio.freq_bins=64",
            "data.synthetic_train=64", "data.num_workers=0", "data.max_items=24",
            "train.batch_size_per_gpu=8", "train.epochs=1", "train.log_every=1",
            "eval.batch_size=16", "eval.save_vis=0", "train.lr=1e-3"]


def tiny(*extra):
    return load_config(None, TINY + list(extra))


def batch(B=3, H=64, W=64, C=5, N=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(B, 3, H, W, generator=g)
    spec = torch.randn(B, 1, 64, 48, generator=g)
    classes = torch.stack([torch.randperm(C, generator=g)[:N] for _ in range(B)])
    classes[-1, 1:] = -1  # the last sample has one source
    labels = torch.zeros(B, C)
    for b, n in (classes >= 0).nonzero().tolist():
        labels[b, classes[b, n]] = 1
    return image, spec, classes, labels


def synthetic_frame(rng, width=854, height=480):
    """A smooth frame with a few shapes (compresses and decodes like a real photo)."""
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    base = (255 * (0.5 + 0.5 * np.sin(6 * x * rng.random(3) + 4 * y * rng.random(3)))).astype(np.uint8)
    img = Image.fromarray(base)
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 80), rng.integers(0, height - 80)
        d.ellipse([x0, y0, x0 + rng.integers(30, 200), y0 + rng.integers(30, 200)],
                  fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def make_root(folder, n, seconds=10.0, sample_rate=44100, seed=0):
    """n items: frames/<id>.jpg (480p) and audio/<id>.wav (seconds at sample_rate)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "frames"), exist_ok=True)
    os.makedirs(os.path.join(folder, "audio"), exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    ids = []
    for i in range(n):
        id_ = f"item{i:05d}"
        synthetic_frame(rng).save(os.path.join(folder, "frames", id_ + ".jpg"), quality=90)
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(os.path.join(folder, "audio", id_ + ".wav"), wave.astype(np.float32), sample_rate,
                 subtype="PCM_16")
        ids.append(id_)
    return ids


def _encode(container, stream, frames):
    """Encode `frames` with `stream`, flush it, and mux every packet into `container`."""
    for frame in frames:
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _audio_frames(planar, sample_rate, layout, pcm=False, chunk=1024):
    """PyAV audio frames of a planar float signal [channels, S] (pcm: packed int16)."""
    import av
    for k in range(0, planar.shape[1], chunk):
        x = np.ascontiguousarray(planar[:, k:k + chunk])  # [channels, n]
        if pcm:  # packed int16 [1, channels * n]
            x = (x.T.reshape(1, -1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(x, format="s16" if pcm else "fltp", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, k
        yield frame


def write_test_video(path, seconds=2.0, fps=10, size=(96, 64), sample_rate=16000, freq=440.0):
    """A small mp4 (mpeg4 video + aac audio, a sine tone) written with PyAV. freq: Hz, or a list
    of Hz, one per second of the clip (the last one held)."""
    import av
    w, h = size
    with av.open(path, "w") as c:
        vs = c.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        as_ = c.add_stream("aac", rate=sample_rate)
        as_.layout = "mono"
        frames = []
        for i in range(int(seconds * fps)):
            img = np.zeros((h, w, 3), dtype=np.uint8)
            img[:, : int(w * (i + 1) / (seconds * fps))] = 200  # a bar growing with time
            frames.append(av.VideoFrame.from_ndarray(img, format="rgb24"))
        _encode(c, vs, frames)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        hz = np.asarray(freq, dtype=np.float64).reshape(-1)
        hz = hz[np.minimum(t.astype(int), len(hz) - 1)]
        tone = (0.5 * np.sin(2 * np.pi * np.cumsum(hz) / sample_rate)).astype(np.float32)
        _encode(c, as_, _audio_frames(tone[None], sample_rate, "mono"))


def object_box(t, seconds, width, height, size, lower=False, reverse=False):
    """Pixel xyxy box of the moving object at time t: left to right at constant speed (right to
    left with `reverse`), in the upper half (the lower with `lower`)."""
    ow, oh = size
    progress = min(max(t / seconds, 0.0), 1.0)
    x0 = 4 + (width - ow - 8) * (1.0 - progress if reverse else progress)
    y0 = (3 * height if lower else height) // 4 - oh // 2
    x0 = int(round(x0))
    return (x0, max(y0, 0), x0 + ow, max(y0, 0) + oh)


def distractor_box(width, height, size, upper=False):
    """Pixel xyxy box of the static distractor: center of the lower half (upper with `upper`)."""
    ow, oh = size
    x0, y0 = (width - ow) // 2, ((height if upper else 3 * height) // 4) - oh // 2
    return (x0, y0, x0 + ow, y0 + oh)


def _draw(img, cls, box, seed):
    """Paint synthetic class `cls` over pixel `box` (inside the frame) of img [H, W, 3] float."""
    x0, y0, x1, y1 = box
    patch = img[y0:y1, x0:x1]  # a view: painting it paints img
    local = (0, 0, x1 - x0, y1 - y0)
    paint(patch, cls, local, shape_mask(cls, *local_coords(local)), np.random.default_rng(seed))


def write_clip(path, seconds=3.0, fps=15, width=128, height=96, sample_rate=44100,
               sounding="disc", distractor="star", audio=True, codec="libx264", audio_codec="aac",
               seed=None):
    """Write the test clip; returns {'box': f(t) -> moving object's xyxy, 'distractor': xyxy}.

    The sounding object (a third of the frame height) moves across the upper half; the distractor
    sits still in the lower half; the background is a flat gray with a little noise. The audio is
    the sounding class's rendered sound (stereo at `sample_rate`) plus noise at 20 dB SNR, encoded
    with `audio_codec` (aac, libmp3lame, pcm_s16le for mkv/mov, ...). seed: None, the clip above
    (noise and sound drawn from seed 0); a number, its own noise and sound, and the halves of the
    two objects and the direction of motion drawn from it (one of four layouts).
    """
    import av
    size = (max(8, height // 3), max(8, height // 3))
    rng = np.random.default_rng(0 if seed is None else seed)
    lower, reverse = (False, False) if seed is None else tuple(bool(b) for b in rng.random(2) < 0.5)
    dbox = distractor_box(width, height, size, upper=lower)
    with av.open(path, "w") as c:
        vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if audio:
            a_s = c.add_stream(audio_codec, rate=sample_rate, layout="stereo")
            pcm = audio_codec.startswith("pcm_s16")
        frames = []
        for i in range(int(round(seconds * fps))):
            img = np.full((height, width, 3), 0.45, np.float32)
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.02)
            _draw(img, distractor, dbox, 1)
            _draw(img, sounding, object_box(i / fps, seconds, width, height, size, lower, reverse),
                  2)
            frame = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            frames.append(av.VideoFrame.from_ndarray(frame, format="rgb24"))
        _encode(c, vs, frames)
        if audio:
            wave = add_noise(rng, render_sound(rng, sounding, sample_rate, seconds), snr_db=20.0)
            stereo = np.stack([wave, 0.8 * wave])  # [2, S]
            _encode(c, a_s, _audio_frames(stereo, sample_rate, "stereo", pcm))
    return {"box": lambda t: object_box(t, seconds, width, height, size, lower, reverse),
            "distractor": dbox}


def _hue_direction(cls):
    """Unit RGB direction (zero mean) of class `cls`'s color, in ImageNet-normalized units."""
    from datasets.image import IMAGENET_STD
    from datasets.render import CLASS_SPEC, hsv_to_rgb
    rgb = hsv_to_rgb(CLASS_SPEC[cls]["hue"], 0.8, 0.9)
    gray = np.full(3, 0.45, np.float32)
    d = (rgb - gray) / np.array(IMAGENET_STD, np.float32)
    d = d - d.mean()  # insensitive to brightness
    return torch.from_numpy(d / np.linalg.norm(d))


def color_model(cfg, present="disc", bias=5.0, beta=0.3):
    """Build cfg's model and set its weights by hand: the map of class i peaks on its color.

    Visual trunk: conv1 channel k = the response to the color of class k (a 1-pixel filter along
    the color's direction, ReLU'd), every residual branch zeroed (the blocks pass their input
    through), the downsampling 1x1 convs copy channel k; the projection puts channel k on
    dimension k and a constant `bias` on dimension C. Class token i = e_i + beta e_C and the
    grouping output projections are zero, so g^a_i = g^v_i = c_i and the map of class i is
    cos(c_i, f_p * c_i), increasing with the color response r of class i while r < bias.
    Presence: p^a_i = sigmoid(1) for class `present`, sigmoid(-1) for the others (audio-blind).
    """
    from models import build_model
    m = cfg.model
    C, D = m.num_classes, m.dim
    assert m.name == "avgn" and not m.use_class_tokens and m.use_grouping, "needs avgn, AVCT off"
    assert C < D and C <= m.width, f"need num_classes < dim and <= width, got {C}, {D}, {m.width}"
    model = build_model(cfg).eval()
    names = CLASS_NAMES[:C]
    with torch.no_grad():
        for p in model.visual.parameters():
            p.zero_()
        for mod in model.visual.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
        trunk = model.visual.trunk
        for k, cls in enumerate(names):
            trunk.conv1.weight[k, :, 3, 3] = _hue_direction(cls)
        for layer in (trunk.layer2, trunk.layer3, trunk.layer4):
            ds = layer[0].downsample[0].weight  # [Cout, Cin, 1, 1]
            ds[torch.arange(C), torch.arange(C)] = 1.0
        model.visual.proj.weight[torch.arange(C), torch.arange(C)] = 1.0
        model.visual.proj.bias[C] = bias
        model.tokens.zero_()
        model.tokens[torch.arange(C), torch.arange(C)] = 1.0
        model.tokens[:, C] = beta
        for grouping in (model.avg_a, model.avg_v):
            grouping.o.weight.zero_()
        model.head_a.weight.zero_()
        model.head_a.weight[0, names.index(present)] = 2.0
        model.head_a.bias.fill_(-1.0)
    return model, names


def color_checkpoint(path, overrides=(), present="disc"):
    """Save `color_model` of the quick-start config (AVCT off, the synthetic classes) as a
    checkpoint that demo.py loads."""
    from utils.checkpoint import save_checkpoint
    from utils.config import load_config, to_dict
    cfg = load_config(QUICK_START, ["model.use_class_tokens=false",
                                    f"model.num_classes={len(CLASS_NAMES)}"] + list(overrides))
    model, names = color_model(cfg, present)
    save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg), "class_names": names},
                    path)
    return path
