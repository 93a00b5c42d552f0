"""Evaluate a checkpoint on every test set its config names.

    python test.py --ckpt run/checkpoint.pth
    python test.py --ckpt run/best.pth eval.protocol=source eval.threshold=fixed:0.5 --save-vis 16
    python test.py --ckpt run/best.pth data.root=/data/music --out results/music
    torchrun --nproc_per_node=4 test.py --ckpt run/best.pth

Model and data are rebuilt from the config stored in the checkpoint; key=value overrides apply on
top (data root, protocol, threshold, number of sources, ...). Writes results.json, one per-sample
CSV per test set and, with --save-vis N, N overlays per test set, beside the checkpoint or in --out.
"""
import argparse
import os

from engine import load_trained, run_tests
from utils.dist import cleanup, init_distributed
from utils.errors import run_cli
from utils.logger import setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--split", default="test", choices=["test", "val"], help="split to evaluate")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    p.add_argument("--save-vis", type=int, default=0, help="overlays to write per test set")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    if args.save_vis < 0:
        p.error("--save-vis must be >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = init_distributed(args.device)
    out_dir = args.out or os.path.dirname(os.path.abspath(args.ckpt))
    setup_logging(out_dir, "test.log")
    ckpt, cfg, model = load_trained(args.ckpt, device, args.overrides)
    results = run_tests(ckpt, cfg, model, out_dir, device, args.split, args.save_vis)
    cleanup()
    return results


if __name__ == "__main__":
    run_cli(main)
