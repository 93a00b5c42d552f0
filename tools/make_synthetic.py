"""Write the synthetic audio-visual benchmark (see datasets/synthetic.py and the README).

    python -m tools.make_synthetic --out data/synthetic --image-size 64 --sample-rate 11025

Writes frames/<id>.jpg, audio/<id>.wav, annotations.json (VGG-SS style), train.txt, val.txt,
test.txt, test_pairs.csv, test_trios.csv, test_duet.json/.csv, all_objects.json, classes.txt and
meta.json. Deterministic for a given --seed. An existing --out is never written into: it is
refused, or with --overwrite replaced whole; the benchmark is written to a temporary sibling
folder and renamed into place, so --out holds it complete or not at all.
"""
import argparse
import os
import shutil
import time

from datasets.synthetic import DEFAULT_SIZES, write_synthetic
from utils.errors import run_cli
from utils.run_folder import replacing_data
from utils.logger import logger, setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="data root to write")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--image-size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--sample-rate", type=int, default=11025, help="audio sample rate (Hz)")
    p.add_argument("--seconds", type=float, default=1.0, help="clip length (s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    for k, v in DEFAULT_SIZES.items():
        p.add_argument("--" + k.replace("_", "-"), type=int, default=v, help=f"default {v}")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    t = time.time()
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out {args.out} is a file, not a folder")
    if os.path.isdir(out) and os.listdir(out) and not args.overwrite:
        raise FileExistsError(f"--out {args.out} exists and holds files: choose another folder, "
                              "or replace it whole with --overwrite")
    sizes = {k: getattr(args, k) for k in DEFAULT_SIZES}
    tmp, old = f"{out}.tmp-{os.getpid()}", f"{out}.old-{os.getpid()}"
    try:
        meta = write_synthetic(tmp, seed=args.seed, image_size=args.image_size,
                               sample_rate=args.sample_rate, seconds=args.seconds, **sizes)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with replacing_data(out):  # --overwrite: refused while a run reads the folder
        if os.path.isdir(out):  # the old folder moves aside, the new one takes its name
            os.replace(out, old)
        os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    n = sum(meta[k] for k in ("num_train", "num_val", "num_test", "num_duet"))
    logger.info("wrote %d items to %s in %.1f s", n, args.out, time.time() - t)
    return meta


if __name__ == "__main__":
    run_cli(main)
