"""Where the thresholded maps of a mixture's sources fall: on the source's own mask, on another
source's mask, on a silent object, or on the background; and how much of it lies outside the
source's own frame. Run on the multi-source test sets, under the evaluators' own protocol,
threshold and maps (`engine.evaluate`), with the set's CAP and CIoU beside it.

    python -m study.leak --ckpt study/results/separation/runs/authors_code_pt_s0/checkpoint.pth
    python -m study.leak --runs study/results/separation/runs --out study/results/separation/leak
    python -m study.leak --ckpt run/best.pth --sets music_duet data.root=/data/music

For each labeled source n with binarized map B_n (the protocol's crop) and mask G_n, the on-pixels
of B_n are split into
    own        B_n and G_n
    other      B_n and a mask G_m of another source m of the sample, outside G_n
    silent     B_n on a silent object, outside every source mask (synthetic benchmark only: its
               all_objects.json lists every object of a frame; elsewhere this is background)
    background the rest
summed over the set (shares of all on-pixels); `outside` is the share of on-pixels outside the
source's own frame of a canvas (protocol frame; 0 when scored per frame), and `spread` the mean
over sources of |B_n| / |G_n|. With the objects known, a source is `ambiguous` when a silent
object of its class stands on the same canvas (on the synthetic pairs: in the other frame, for
28 % of the sources; the audio, which says only which classes sound, cannot tell the two apart),
and CAP and CIoU@0.3 are also given for the ambiguous and the other ("clear") sources.

A set of one-frame items (a duet) is scored under the first protocol only: every protocol is the
same there. Defaults: the synthetic pairs, trios and duet, protocols frame and per_frame,
threshold fixed:0.5 (half of each map's range). --runs DIR reads every
DIR/<variant>_s<seed>/checkpoint.pth and writes <out>.json and <out>.md with mean ± sample std
over seeds per variant.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch

from datasets import build_loader
from datasets.image import boxes_to_mask
from datasets.synthetic import load_all_objects
from engine import build_test_sets, evaluate, load_trained, max_sources
from metrics import MultiSourceEvaluator, binarize, frame_count, take_sources
from study.report import fmt_stat, markdown_table, mean_std
from utils.logger import logger, setup_logging
from utils.thresholds import parse_threshold

PARTS = ("own", "other", "silent", "background")
AMBIGUITY = ("ambiguous", "CAP clear", "CIoU@0.3 clear", "CAP ambiguous", "CIoU@0.3 ambiguous")


def split_on_pixels(on, own, other, silent, own_frame):
    """Counts of the on-pixels of binarized maps by where they fall (module docstring).

    Args:
        on, own, other, silent, own_frame: [K, H, W] bool: the binarized maps, their sources'
            masks, the union of the other sources' masks, the silent objects, the source's frame.
    Returns:
        dict of [K] int64 arrays: own, other, silent, background, outside (on-pixels outside
        own_frame), on (all on-pixels), mask (pixels of own).
    """
    on, own, other, silent, own_frame = (np.asarray(x, dtype=bool)
                                         for x in (on, own, other, silent, own_frame))
    count = lambda x: x.sum(axis=(-2, -1)).astype(np.int64)  # noqa: E731
    other = other & ~own
    silent = silent & ~own & ~other
    return {"own": count(on & own), "other": count(on & other), "silent": count(on & silent),
            "background": count(on & ~(own | other | silent)), "outside": count(on & ~own_frame),
            "on": count(on), "mask": count(own)}


def silent_objects(ids, objects, frames, height, width):
    """[B, H, W] bool union of the silent objects' boxes of each sample's frames side by side;
    `ids`: the samples' ids ('+' between the frames' ids); `objects`: {id: [{bbox (normalized
    xyxy), sounding}]} (None: no objects known, all False)."""
    out = np.zeros((len(ids), height, width), dtype=bool)
    if objects is None:
        return out
    fw = width // frames
    for i, sample in enumerate(ids):
        for k, id_ in enumerate(sample.split("+")[:frames]):
            boxes = [o["bbox"] for o in objects.get(id_, ()) if not o["sounding"]]
            out[i, :, k * fw:(k + 1) * fw] = boxes_to_mask(boxes, height, fw) > 0.5
    return out


def ambiguous(sample_id, cls, objects):
    """Does a silent object of class `cls` (a name) stand in any frame of sample `sample_id`
    ('+' between the frames' ids)? `objects` as in `silent_objects`."""
    return any(o["class"] == cls and not o["sounding"]
               for id_ in sample_id.split("+") for o in objects.get(id_, ()))


class LeakEvaluator(MultiSourceEvaluator):
    """MultiSourceEvaluator that also splits each source's binarized map by where it falls
    (`split_on_pixels`) and, with `objects` (as in `silent_objects`) and the model's
    `class_names`, scores the ambiguous sources apart (`ambiguous`)."""

    def __init__(self, objects=None, class_names=None, **kwargs):
        super().__init__(**kwargs)
        if objects is not None and class_names is None:
            raise ValueError("objects need the class_names their classes are named by")
        self.objects, self.class_names = objects, class_names
        self.parts = []

    def reset(self):
        super().reset()
        self.parts = []

    def update(self, maps, pred_maps, gts, classes, scores, frame_slot, indices, ids=None):
        super().update(maps, pred_maps, gts, classes, scores, frame_slot, indices, ids)
        maps, gts, cls = (torch.as_tensor(x).numpy() for x in (maps, gts, classes))
        B, N, H, W = maps.shape
        slot = (np.zeros((B, N), np.int64) if frame_slot is None
                else torch.as_tensor(frame_slot).numpy().astype(np.int64))
        frames = frame_count(H, W, self.num_frames)
        crop = frames if self.protocol in ("source", "per_frame") else None
        masks = gts > 0.5
        valid = cls >= 0
        labeled = masks & valid[:, :, None, None]
        others = np.stack([np.delete(labeled, n, axis=1).any(axis=1) for n in range(N)],
                          axis=1)  # [B, N, H, W]: the other sources' masks
        silent = np.repeat(silent_objects(ids or [""] * B, self.objects, frames, H, W)[:, None],
                           N, axis=1)
        fw = W // frames
        own_frame = np.arange(W)[None, None, None, :] // fw == slot[:, :, None, None]
        own_frame = np.broadcast_to(own_frame, (B, N, H, W))
        b, n = np.nonzero(valid)
        take = lambda x: take_sources(x, b, n, slot[b, n], crop)  # noqa: E731
        scored = take(masks).any(axis=(-2, -1))  # sources with an empty mask are not scored
        on = binarize(take(maps), self.threshold)
        parts = split_on_pixels(on, take(masks), take(others), take(silent), take(own_frame))
        self.parts.append({k: v[scored] for k, v in parts.items()})

    def compute(self):
        out = super().compute()
        parts = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        total = max(int(parts["on"].sum()), 1)
        out.update({k: float(parts[k].sum() / total) for k in PARTS + ("outside",)})
        out["spread"] = float(np.mean(parts["on"] / parts["mask"]))
        out.update({k: float("nan") for k in AMBIGUITY})
        if self.objects is None:
            out["silent"] = float("nan")  # not known: counted as background
            return out
        rows = [r for r in self.rows() if not np.isnan(r["ap"])]  # the scored sources
        flag = np.array([ambiguous(r["id"], self.class_names[r["class"]], self.objects)
                         for r in rows], dtype=bool)
        ap, hit = (np.array([r[k] for r in rows], dtype=np.float64) for k in ("ap", "ciou"))
        t = self.ciou_thresholds[0]
        out["ambiguous"] = float(flag.mean())
        for name, keep in (("ambiguous", flag), ("clear", ~flag)):
            if keep.any():
                out[f"CAP {name}"] = float(ap[keep].mean())
                out[f"CIoU@{t:g} {name}"] = float((hit[keep] >= t).mean())
        return out


def leak(ckpt_path, sets, protocols, threshold, compete_tau=0.0, overrides=(), device="cpu"):
    """{f'{set} {protocol}': metrics} of one checkpoint (LeakEvaluator.compute per set and
    protocol)."""
    ckpt, cfg, model = load_trained(ckpt_path, device,
                                    list(overrides) + [f"eval.test_sets=[{','.join(sets)}]"])
    root = cfg.data.root
    objects = (load_all_objects(root) if os.path.exists(os.path.join(root, "all_objects.json"))
               else None)
    out = {}
    for entry, dataset in build_test_sets(cfg, ckpt["class_names"]):
        if max_sources(dataset) < 2:
            raise SystemExit(f"study.leak scores mixtures; test set '{entry}' has one source "
                             "per item")
        loader = build_loader(dataset, cfg.eval.batch_size, False, cfg.data.num_workers)
        image = dataset[0]["image"]
        for protocol in protocols if image.shape[-1] > image.shape[-2] else protocols[:1]:
            evaluator = LeakEvaluator(objects, ckpt["class_names"], ciou_thresholds=(0.3,),
                                      threshold=threshold, protocol=protocol)
            out[f"{entry} {protocol}"] = evaluate(model, loader, evaluator, device,
                                                  cfg.train.amp, desc=f"{entry} {protocol}",
                                                  compete_tau=compete_tau,
                                                  upsample=cfg.eval.upsample)
    return out


COLUMNS = ("CAP", "CIoU@0.3") + PARTS + ("outside", "spread") + AMBIGUITY


def table(results):
    """{variant: [per-seed {key: metrics}]} -> markdown, one row per variant and key."""
    rows = []
    for variant, seeds in results.items():
        for key in seeds[0]:
            cells = [fmt_stat(mean_std([s[key].get(c, float("nan")) for s in seeds]))
                     for c in COLUMNS]
            rows.append([variant, key, str(len(seeds))] + cells)
    return markdown_table(["variant", "set, protocol", "seeds"] + list(COLUMNS), rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="one checkpoint written by train.py")
    which.add_argument("--runs", help="folder of run folders <variant>_s<seed>/checkpoint.pth")
    p.add_argument("--out", default="", help="with --runs: write <out>.json and <out>.md")
    p.add_argument("--sets", nargs="+",
                   default=["synthetic:test_pairs", "synthetic:test_trios", "synthetic:test_duet"])
    p.add_argument("--protocols", nargs="+", default=["frame", "per_frame"],
                   choices=["frame", "source", "per_frame"])
    p.add_argument("--threshold", default="fixed:0.5", help="as eval.threshold")
    p.add_argument("--compete-tau", type=float, default=0.0, help="as eval.compete_tau")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="default: cuda when available")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    if args.out and not args.runs:
        p.error("--out goes with --runs")
    try:
        parse_threshold(args.threshold)
    except ValueError as e:
        p.error(f"--threshold: {e}")
    if not 0 <= args.compete_tau < float("inf"):
        p.error(f"--compete-tau must be >= 0 and finite, got {args.compete_tau}")
    if args.runs and not os.path.isdir(args.runs):
        p.error(f"--runs: no folder {args.runs}")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = lambda path: leak(path, args.sets, args.protocols, args.threshold,  # noqa: E731
                            args.compete_tau, args.overrides, device)
    if args.ckpt:
        results = {os.path.basename(os.path.dirname(os.path.abspath(args.ckpt))): [run(args.ckpt)]}
    else:
        results = {}
        for name in sorted(os.listdir(args.runs)):
            path = os.path.join(args.runs, name, "checkpoint.pth")
            if os.path.exists(path):
                results.setdefault(re.sub(r"_s\d+$", "", name), []).append(run(path))
        if not results:
            raise SystemExit(f"no <run>/checkpoint.pth under {args.runs}")
    md = table(results)
    logger.info("\n%s", md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(f"`python -m study.leak {' '.join(sys.argv[1:] if argv is None else argv)}`"
                    f"\n\n{md}\n")
    return results


if __name__ == "__main__":
    main()
