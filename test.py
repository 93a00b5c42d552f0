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
import dataclasses
import json
import os


from datasets import build_dataset
from engine import build_evaluator, evaluate, format_metrics
from models import build_model
from utils.checkpoint import load_checkpoint
from utils.config import apply_overrides, from_dict, to_dict
from utils.data import make_loader
from utils.dist import cleanup, init_distributed, is_main_process
from utils.logger import logger, setup_logging
from utils.visualize import save_overlays


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--split", default="test", help="split to evaluate (test or val)")
    p.add_argument("--out", default=None, help="output folder (default: the checkpoint's folder)")
    p.add_argument("--save-vis", type=int, default=0, help="overlays to write per test set")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


def load_model(ckpt, cfg, device):
    """The checkpoint's weights in the model that `cfg` describes, in eval mode on `device`. The
    ImageNet initialisation is skipped: every weight comes from the checkpoint."""
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                           pretrained="none")))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError("the checkpoint's weights do not fit the model of this config (was a "
                         f"model.* key overridden?): {str(e).splitlines()[0]}") from None
    return model.to(device).eval()


def run_tests(ckpt, out_dir, device, split="test", overrides=(), save_vis=0):
    """Evaluate `ckpt` (a loaded checkpoint dict) on cfg.eval.test_sets; returns {name: metrics}."""
    cfg = apply_overrides(from_dict(ckpt["config"], stored=True), overrides)
    model = load_model(ckpt, cfg, device)
    names = cfg.eval.test_sets or [cfg.data.dataset]
    results = {}
    os.makedirs(out_dir, exist_ok=True)
    for entry in names:  # 'name' or 'name:split' (e.g. synthetic:test_pairs)
        name, _, own_split = entry.partition(":")
        dataset = build_dataset(cfg, own_split if own_split and split == "test" else split, name,
                                class_names=ckpt["class_names"])
        loader = make_loader(dataset, cfg.eval.batch_size, False, cfg.data.num_workers)
        evaluator = build_evaluator(dataset, cfg.eval)
        metrics = evaluate(model, loader, evaluator, device, cfg.train.amp, desc=name)
        results[entry] = metrics
        tag = entry.replace(":", "_")
        # collective (gathers every process's rows), writes on rank 0
        evaluator.write_csv(os.path.join(out_dir, f"samples_{tag}_{split}.csv"))
        if is_main_process():
            logger.info(format_metrics(f"{entry} [{split}]", metrics))
            if save_vis:
                save_overlays(model, dataset, ckpt["class_names"], device,
                              os.path.join(out_dir, f"vis_{tag}"), save_vis)
    if is_main_process():
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump({"split": split, "config": to_dict(cfg), "results": results}, f, indent=1)
        logger.info("wrote %s", os.path.join(out_dir, "results.json"))
    return results


def main(argv=None):
    args = parse_args(argv)
    device = init_distributed(args.device)
    out_dir = args.out or os.path.dirname(os.path.abspath(args.ckpt))
    setup_logging(out_dir, "test.log")
    ckpt = load_checkpoint(args.ckpt)
    results = run_tests(ckpt, out_dir, device, args.split, args.overrides, args.save_vis)
    cleanup()
    return results


if __name__ == "__main__":
    main()
