"""Localize the sounding objects in your own video.

    python demo.py --ckpt runs/synthetic/best.pth --video clip.mp4   # -> runs/synthetic/demo/clip.mp4
    python demo.py --ckpt best.pth --video clip.mkv --out out.mp4 --classes violin,cello
    python demo.py --ckpt best.pth --video clip.mp4 --every 0.25 --topk 2
    python demo.py --ckpt best.pth --video clip.mp4 --threshold 0.5 --still frame.png --device cuda

Any container / codec / frame rate / sample rate PyAV reads. Every --every seconds the model sees
the frame nearest to that time (resized as at test time) and the data.audio.seconds of audio centered
on it (shifted / tiled at the clip's borders, as in training); the classes are the top --topk of
the audio presence scores (or all scores >= --threshold), or the ones named with --classes.
Writes OUT.mp4 (every frame at the original frame rate, blended with the heat-maps of the nearest
sampled time, one color per class (the same in every video), a legend with names and scores; the original audio re-encoded
to AAC) and OUT.json (per sampled time: classes, scores, peak (x, y) in pixels of the original
frame). Nothing is replaced: the default OUT is a new name under the checkpoint's folder
(<run>/demo/<video name>.mp4); an existing --out needs --overwrite. Bad input (no audio,
unreadable file, unknown class, not an AVGN checkpoint) ends with a one-line message and exit
code 2.

This file is the command line; the work is done by localize.py (the model on the sampled times),
utils/video.py (reading and writing the video) and utils/visualize.py (heat-maps and legend).
"""
import argparse
import json
import os
import time

import av
import torch

from datasets.audio import decode_av
from datasets.records import DataError
from localize import DemoError, Localizer, analyze, load_demo_model, resolve_classes, \
    select_classes
from utils.errors import run_cli
from utils.logger import logger, setup_logging
from utils.video import VideoError, probe, render

# the names tests and users import from this script (select_classes: re-exported)
__all__ = ["DemoError", "load_demo_model", "main", "parse_args", "run", "select_classes"]



def parse_args(argv=None):
    """argv (None: sys.argv[1:]) -> argparse.Namespace; bad values end with an argparse error."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--video", required=True, help="input video with an audio track")
    p.add_argument("--out", default=None, help="output video (default: <checkpoint's folder>/"
                   "demo/<video name>.mp4, then -1, -2, ... when taken); the JSON is written "
                   "beside it with the extension .json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
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
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value (a released "
                   "checkpoint: data.dataset=... names its classes, docs/model.md)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda if "
                   "available")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads while the demo "
                   "runs (restored after). 1 is fastest for small models: decoding and encoding "
                   "use their own threads, and torch's threads stall on a busy CPU; raise it for "
                   "a large model on an idle machine")
    args = p.parse_intermixed_args(argv)
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


def output_path(args):
    """--out, or a new name under <checkpoint's folder>/demo/ (never beside the input, inside a
    folder that tools.prepare_videos scans). An existing --out is replaced with --overwrite only;
    the input video never."""
    if args.out is None:
        folder = os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "demo")
        stem = os.path.splitext(os.path.basename(args.video))[0]
        names = (f"{stem}{'' if k == 0 else f'-{k}'}" for k in range(10 ** 6))
        return next(os.path.join(folder, n + ".mp4") for n in names
                    if not any(os.path.exists(os.path.join(folder, n + e)) for e in (".mp4", ".json")))
    out_path, json_path = args.out, os.path.splitext(args.out)[0] + ".json"
    if os.path.abspath(out_path) == os.path.abspath(args.video):
        raise DemoError(f"--out {out_path} would overwrite the input video")
    taken = [p for p in (out_path, json_path) if os.path.exists(p)]
    if taken and not args.overwrite:
        raise DemoError(f"--out: {' and '.join(taken)} exist; pass --overwrite to replace them, "
                        "or another --out")
    return out_path


def run(args):
    """Load the checkpoint, analyze the sampled times, write OUT.json then OUT.mp4 (and the
    still). Returns a summary dict (paths, frame counts, rate, encoder, the JSON report)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DemoError("--device cuda: no CUDA device available")
    out_path = output_path(args)
    json_path = os.path.splitext(out_path)[0] + ".json"
    start = time.time()
    model, cfg, names = load_demo_model(args.ckpt, device, args.overrides)
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
        "times": [localizer.record(s) for s in samples],
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    still = (args.still, samples[len(samples) // 2].frame) if args.still else None
    written, encoder = render(args.video, out_path, info, lambda k: localizer.overlay(samples[k]),
                              len(samples), args.every, t0, audio_start, frames, still)
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
    args = parse_args(argv)
    setup_logging()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    except VideoError as e:
        raise DemoError(str(e)) from None
    except av.error.FFmpegError as e:
        raise DemoError(f"cannot decode {args.video}: {e}") from None
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    run_cli(main)
