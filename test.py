"""Evaluate a checkpoint on every test set its config names.

    python test.py --ckpt run/checkpoint.pth
    python test.py --ckpt run/best.pth eval.protocol=source eval.threshold=fixed:0.5 --save-vis 16
    python test.py --ckpt run/best.pth data.root=/data/music --out results/music
    torchrun --nproc_per_node=4 test.py --ckpt run/best.pth

Model and data are rebuilt from the config stored in the checkpoint; key=value overrides apply on
top (data root, protocol, threshold, number of sources, ...). Writes results.json, one per-sample
CSV per test set and, with --save-vis N, N overlays per test set, beside the checkpoint or in --out.
Nothing is replaced: when the checkpoint's folder holds results already (those of train.py's own
test), they go to a new sub-folder test-<k>; an --out that holds results needs --overwrite.
"""
import argparse
import os

from datasets.synthetic import synthetic_roots
from engine import load_trained, run_tests
from utils.dist import all_gather_object, cleanup, init_distributed, is_main_process
from utils.errors import run_cli
from utils.logger import release_log, setup_logging
from utils.run_folder import using_data


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--split", default="test", choices=["test", "val"], help="split to evaluate")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder, "
                   "or its first free test-<k> when it holds a results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the results an --out "
                   "folder holds")
    p.add_argument("--save-vis", type=int, default=0, help="overlays to write per test set")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    if args.save_vis < 0:
        p.error("--save-vis must be >= 0")
    return args


def output_dir(args):
    """--out (refused when it holds results, unless --overwrite), or the checkpoint's folder, or
    its first free sub-folder test-<k> when that holds results: nothing is replaced."""
    if args.out:
        if os.path.isfile(os.path.join(args.out, "results.json")) and not args.overwrite:
            raise FileExistsError(f"--out {args.out} holds results.json: choose another --out, or "
                                  "replace it with --overwrite")
        return args.out
    folder = os.path.dirname(os.path.abspath(args.ckpt))
    if not os.path.exists(os.path.join(folder, "results.json")):
        return folder
    k = 1
    while os.path.exists(os.path.join(folder, f"test-{k}")):
        k += 1
    return os.path.join(folder, f"test-{k}")


def main(argv=None):
    args = parse_args(argv)
    device = init_distributed(args.device)
    try:  # rank 0 chooses the folder; every rank gets it, or its refusal
        out_dir = output_dir(args) if is_main_process() else None
    except FileExistsError as e:
        out_dir = e
    out_dir = all_gather_object(out_dir)[0]
    if isinstance(out_dir, Exception):
        raise out_dir
    setup_logging(out_dir, "test.log", hold=True)  # written once the checkpoint has loaded
    ckpt, cfg, model = load_trained(args.ckpt, device, args.overrides)
    release_log()
    with using_data(synthetic_roots(cfg), "test.py --ckpt " + args.ckpt):  # not regenerated now
        results = run_tests(ckpt, cfg, model, out_dir, device, args.split, args.save_vis)
    cleanup()
    return results


if __name__ == "__main__":
    run_cli(main)
