"""demo.py throughput on a generated clip, and the clip / checkpoint makers its tests use.

    python tools/bench_demo.py             # a 30-s 1280x720 clip at 30 fps, quick-start-sized model
    python tools/bench_demo.py --seconds 10 --size 640x360 --device cuda

* ``write_clip``: an mp4 (h264 + aac) in which an object of a synthetic class moves from left to
  right while its sound plays, next to a silent distractor of another class;
* ``colour_checkpoint``: the quick-start-sized AVGN (configs/synthetic.yaml, AVCT off) with
  weights set by hand so that the map of a class peaks where that class's colour is (the answer is
  known without training); speed does not depend on the weights.
Prints the demo's frames/s and how many times faster than real time it ran.
"""
import argparse
import math
import os
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.synthetic import (CLASS_NAMES, _local_coords, _paint, _shape_mask,  # noqa: E402
                                add_noise, render_sound)

QUICK_START = "configs/synthetic.yaml"


def object_box(t, seconds, width, height, size):
    """Pixel xyxy box of the moving object at time t: left to right at constant speed, in the
    upper half."""
    ow, oh = size
    x0 = 4 + (width - ow - 8) * min(max(t / seconds, 0.0), 1.0)
    y0 = height // 4 - oh // 2
    x0 = int(round(x0))
    return (x0, max(y0, 0), x0 + ow, max(y0, 0) + oh)


def distractor_box(width, height, size):
    """Pixel xyxy box of the static distractor: centre of the lower half."""
    ow, oh = size
    x0, y0 = (width - ow) // 2, (3 * height) // 4 - oh // 2
    return (x0, y0, x0 + ow, y0 + oh)


def _draw(img, cls, box, seed):
    """Paint synthetic class `cls` over pixel `box` (inside the frame) of img [H, W, 3] float."""
    x0, y0, x1, y1 = box
    patch = img[y0:y1, x0:x1]  # a view: painting it paints img
    local = (0, 0, x1 - x0, y1 - y0)
    _paint(patch, cls, local, _shape_mask(cls, *_local_coords(local)), np.random.default_rng(seed))


def write_clip(path, seconds=3.0, fps=15, width=128, height=96, sample_rate=44100,
               sounding="disc", distractor="star", audio=True, codec="libx264", audio_codec="aac"):
    """Write the test clip; returns {'box': f(t) -> moving object's xyxy, 'distractor': xyxy}.

    The sounding object (a third of the frame height) moves across the upper half; the distractor
    sits still in the lower half; the background is a flat grey with a little noise. The audio is
    the sounding class's rendered sound (stereo at `sample_rate`) plus noise at 20 dB SNR, encoded
    with `audio_codec` (aac, libmp3lame, pcm_s16le for mkv/mov, ...).
    """
    import av
    size = (max(8, height // 3), max(8, height // 3))
    dbox = distractor_box(width, height, size)
    rng = np.random.default_rng(0)
    with av.open(path, "w") as c:
        vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if audio:
            a_s = c.add_stream(audio_codec, rate=sample_rate, layout="stereo")
            pcm = audio_codec.startswith("pcm_s16")
        for i in range(int(round(seconds * fps))):
            img = np.full((height, width, 3), 0.45, np.float32)
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.02)
            _draw(img, distractor, dbox, 1)
            _draw(img, sounding, object_box(i / fps, seconds, width, height, size), 2)
            frame = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in vs.encode():
            c.mux(packet)
        if audio:
            wave = add_noise(rng, render_sound(rng, sounding, sample_rate, seconds), snr_db=20.0)
            stereo = np.stack([wave, 0.8 * wave])  # [2, S]
            for k in range(0, stereo.shape[1], 1024):
                chunk = np.ascontiguousarray(stereo[:, k:k + 1024])  # [2, n] planar float
                if pcm:  # packed int16 [1, 2 n]
                    chunk = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16" if pcm else "fltp",
                                                   layout="stereo")
                frame.sample_rate, frame.pts = sample_rate, k
                for packet in a_s.encode(frame):
                    c.mux(packet)
            for packet in a_s.encode():
                c.mux(packet)
    return {"box": lambda t: object_box(t, seconds, width, height, size), "distractor": dbox}


def _hue_direction(cls):
    """Unit RGB direction (zero mean) of class `cls`'s colour, in ImageNet-normalised units."""
    from datasets.image import IMAGENET_STD
    from datasets.synthetic import _SPEC, _hsv_to_rgb
    rgb = _hsv_to_rgb(_SPEC[cls]["hue"], 0.8, 0.9)
    grey = np.full(3, 0.45, np.float32)
    d = (rgb - grey) / np.array(IMAGENET_STD, np.float32)
    d = d - d.mean()  # insensitive to brightness
    return torch.from_numpy(d / np.linalg.norm(d))


def colour_model(cfg, present="disc", bias=5.0, beta=0.3):
    """Build cfg's model and set its weights by hand: the map of class i peaks on its colour.

    Visual trunk: conv1 channel k = the response to the colour of class k (a 1-pixel filter along
    the colour's direction, ReLU'd), every residual branch zeroed (the blocks pass their input
    through), the downsampling 1x1 convs copy channel k; the projection puts channel k on
    dimension k and a constant `bias` on dimension C. Class token i = e_i + beta e_C and the
    grouping output projections are zero, so g^a_i = g^v_i = c_i and the map of class i is
    cos(c_i, f_p * c_i), increasing with the colour response r of class i while r < bias.
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


def colour_checkpoint(path, overrides=(), present="disc"):
    """Save `colour_model` of the quick-start config (AVCT off, the synthetic classes) as a
    checkpoint that demo.py loads."""
    from utils.checkpoint import save_checkpoint
    from utils.config import load_config, to_dict
    cfg = load_config(QUICK_START, ["model.use_class_tokens=false",
                                    f"model.num_classes={len(CLASS_NAMES)}"] + list(overrides))
    model, names = colour_model(cfg, present)
    save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg), "class_names": names},
                    path)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--size", default="1280x720", help="WxH of the generated clip")
    p.add_argument("--every", type=float, default=0.5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="demo.py --threads")
    p.add_argument("--keep", default="", help="folder to keep the clip and the outputs in")
    return p.parse_args(argv)


def main(argv=None):
    import demo
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = args.keep or tempfile.mkdtemp(prefix="bench_demo_")
    os.makedirs(folder, exist_ok=True)
    clip, ckpt = os.path.join(folder, "clip.mp4"), os.path.join(folder, "colour.pth")
    t = time.time()
    write_clip(clip, args.seconds, args.fps, width, height, sounding="disc")
    print(f"wrote {clip} ({args.seconds:g} s, {width}x{height}, {args.fps:g} fps) in "
          f"{time.time() - t:.1f} s")
    colour_checkpoint(ckpt)
    t = time.time()
    report = demo.main(["--ckpt", ckpt, "--video", clip, "--out", os.path.join(folder, "out.mp4"),
                        "--every", str(args.every), "--device", args.device,
                        "--threads", str(args.threads)])
    wall = time.time() - t
    frames = report["frames"]
    print(f"demo: {frames} frames in {wall:.1f} s = {frames / wall:.1f} frames/s, "
          f"{args.seconds / wall:.2f}x real time ({math.ceil(args.seconds / args.every)} sampled "
          f"times, torch threads {args.threads}, device {args.device})")
    return report


if __name__ == "__main__":
    main()
