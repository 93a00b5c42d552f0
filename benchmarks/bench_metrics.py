"""Time the evaluators of metrics.py against a per-sample reference loop, and compare numbers.

The reference scores one sample (and one source) at a time the way public sound-localization
repositories do: the plain definitions of metrics.py (min-max normalization, np.median threshold,
ciou, auc) and sklearn.metrics.average_precision_score(gt, map) per map; PIAP by trying every
permutation.
Data: random but structured maps (Gaussian blobs + noise, float32) and box masks, fixed seed;
5158 single-source samples at 224x224 (VGG-SS test size) and 446 two-source samples on 224x448
canvases (two frames side by side).

Usage (from the repository root):
    python -m benchmarks.bench_metrics [--single 5158] [--multi 446] [--size 224]
"""
import argparse
import itertools
import time

import numpy as np
from sklearn.metrics import average_precision_score

import metrics


def make_maps(rng, num, height, width):
    """num float32 maps [num, H, W] and box masks [num, H, W]: noise, a blob on the box for most
    maps, and up to two distractor blobs elsewhere."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    maps = rng.random((num, height, width), dtype=np.float32) * 0.3
    masks = np.zeros((num, height, width), dtype=bool)
    for i in range(num):
        h = rng.integers(height // 4, height * 3 // 4)
        w = rng.integers(width // 4, width * 3 // 4)
        y0, x0 = rng.integers(0, height - h), rng.integers(0, width - w)
        masks[i, y0:y0 + h, x0:x0 + w] = True
        blobs = [(y0 + h / 2, x0 + w / 2, (h + w) / 4)] if rng.random() < 0.75 else []
        blobs += [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.05, 0.2) * height)
                  for _ in range(rng.integers(0, 3))]
        for cy, cx, sigma in blobs:
            maps[i] += rng.uniform(0.5, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                                    / (2 * sigma ** 2))
    return maps, masks


# ------------------------------------------------------------------ per-sample reference loop
def ref_scores(S, G):
    """(ap, ciou) of one map the straightforward way; (nan, nan) for an empty mask."""
    if G.sum() == 0:
        return float("nan"), float("nan")
    ciou = float(metrics.ciou(metrics.binarize(S), G))  # median threshold
    return average_precision_score(G.ravel(), S.ravel()), ciou


def ref_single(maps, masks, t=0.5):
    aps, cious = [], []
    for S, G in zip(maps, masks):
        a, c = ref_scores(S, G)
        if not np.isnan(a):
            aps.append(a)
            cious.append(c)
    cious = np.array(cious)
    return {"AP": np.mean(aps), f"IoU@{t:g}": np.mean(cious >= t), "AUC": metrics.auc(cious)}


def ref_multi(maps, pred_maps, masks, classes, scores, t=0.3):
    aps, cious, piaps, hits, labels = [], [], [], 0, 0
    for i in range(len(maps)):
        k = len(classes[i])
        for n in range(k):
            a, c = ref_scores(maps[i, n], masks[i, n])
            aps.append(a)
            cious.append(c)
        mat = [[average_precision_score(masks[i, n].ravel(), pred_maps[i, m].ravel())
                for n in range(k)] for m in range(k)]
        piaps.append(max(sum(mat[p[n]][n] for n in range(k)) / k
                         for p in itertools.permutations(range(k))))
        top = np.argsort(-scores[i], kind="stable")[:k]
        hits += len(set(classes[i]) & set(top.tolist()))
        labels += k
    cious = np.array(cious)
    return {"CAP": np.mean(aps), "PIAP": np.mean(piaps), f"CIoU@{t:g}": np.mean(cious >= t),
            "AUC": metrics.auc(cious), "recall@N": hits / labels}


# ------------------------------------------------------------------ ours
def ours_single(maps, masks, batch=64):
    ev = metrics.SingleSourceEvaluator(iou_thresholds=(0.5,))
    for s in range(0, len(maps), batch):
        ev.update(maps[s:s + batch], masks[s:s + batch], np.arange(s, min(s + batch, len(maps))))
    return ev.compute()


def ours_multi(maps, pred_maps, masks, classes, scores, slots, batch=32):
    ev = metrics.MultiSourceEvaluator(ciou_thresholds=(0.3,))
    for s in range(0, len(maps), batch):
        e = slice(s, s + batch)
        ev.update(maps[e], pred_maps[e], masks[e], classes[e], scores[e], slots[e],
                  np.arange(s, min(s + batch, len(maps))))
    return ev.compute()


def report(name, num, ours, ref, t_ours, t_ref):
    diff = max(abs(ours[k] - ref[k]) for k in ref)
    print(f"{name}: {num} samples | ours {num / t_ours:9.1f} samples/s ({t_ours:6.2f} s) | "
          f"per-sample loop {num / t_ref:7.1f} samples/s ({t_ref:6.2f} s) | "
          f"speed-up {t_ref / t_ours:5.1f}x | max |diff| {diff:.1e}")
    print("   ours: " + ", ".join(f"{k}={ours[k]:.6f}" for k in ref))
    return diff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=5158, help="single-source samples")
    parser.add_argument("--multi", type=int, default=446, help="two-source samples")
    parser.add_argument("--size", type=int, default=224, help="frame height and width")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    H = args.size

    maps, masks = make_maps(rng, args.single, H, H)
    t0 = time.perf_counter()
    ours = ours_single(maps, masks)
    t1 = time.perf_counter()
    ref = ref_single(maps, masks)
    t2 = time.perf_counter()
    d1 = report("single-source", args.single, ours, ref, t1 - t0, t2 - t1)

    # two sources per canvas of two frames: source n lives in frame n, its mask is zero elsewhere
    M, C = args.multi, 20
    frame_maps, frame_masks = make_maps(rng, 2 * M, H, H)
    canvas = np.zeros((M, 2, H, 2 * H), dtype=np.float32)  # [M, N, H, 2W]
    gts = np.zeros((M, 2, H, 2 * H), dtype=bool)
    noise = rng.random((M, 2, H, 2 * H), dtype=np.float32) * 0.3
    for n in range(2):
        canvas[:, n] = noise[:, n]
        canvas[:, n, :, n * H:(n + 1) * H] += frame_maps[n::2]
        gts[:, n, :, n * H:(n + 1) * H] = frame_masks[n::2]
    classes = np.stack([rng.choice(C, 2, replace=False) for _ in range(M)])  # [M, 2]
    scores = rng.random((M, C)).astype(np.float32)
    scores[np.arange(M)[:, None], classes] += rng.random((M, 2)).astype(np.float32)
    # maps of the predicted classes: the labels' maps in the other order, slightly perturbed
    pred = canvas[:, ::-1] + rng.random((M, 2, H, 2 * H), dtype=np.float32) * 0.2
    slots = np.tile(np.arange(2), (M, 1))
    t0 = time.perf_counter()
    ours = ours_multi(canvas, pred, gts, classes, scores, slots)
    t1 = time.perf_counter()
    ref = ref_multi(canvas, pred, gts, classes.tolist(), scores)
    t2 = time.perf_counter()
    d2 = report("multi-source (2 per 224x448 canvas)", M, ours, ref, t1 - t0, t2 - t1)
    return max(d1, d2)


if __name__ == "__main__":
    main()
