"""demo.py throughput on a generated clip (tests.fixtures makes the clip and the checkpoint).

    python -m benchmarks.bench_demo             # a 30-s 1280x720 clip at 30 fps, quick-start-sized model
    python -m benchmarks.bench_demo --seconds 10 --size 640x360 --device cuda

The model is ``color_checkpoint`` (quick-start-sized; speed does not depend on the weights).
Prints the demo's frames/s and how many times faster than real time it ran.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

from tests.fixtures import color_checkpoint, write_clip


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
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    folder = args.keep or tempfile.mkdtemp(prefix="bench_demo_")
    os.makedirs(folder, exist_ok=True)
    clip, ckpt = os.path.join(folder, "clip.mp4"), os.path.join(folder, "color.pth")
    t = time.time()
    write_clip(clip, args.seconds, args.fps, width, height, sounding="disc")
    print(f"wrote {clip} ({args.seconds:g} s, {width}x{height}, {args.fps:g} fps) in "
          f"{time.time() - t:.1f} s")
    color_checkpoint(ckpt)
    t = time.time()
    command = [sys.executable, "demo.py", "--ckpt", ckpt, "--video", clip, "--out",
               os.path.join(folder, "out.mp4"), "--every", str(args.every), "--device",
               args.device, "--threads", str(args.threads)]
    subprocess.run(command, check=True)  # demo.py logs its own frames/s
    wall = time.time() - t
    print(f"demo.py process: {wall:.1f} s, {args.seconds / wall:.2f}x real time with start-up "
          f"({math.ceil(args.seconds / args.every)} sampled times, torch threads {args.threads}, "
          f"device {args.device})")
    return wall


if __name__ == "__main__":
    main()
