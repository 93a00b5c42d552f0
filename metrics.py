"""Sound-localization metrics of the AVGN paper (single-source Table 1, multi-source Table 2).

Pure functions on numpy arrays or torch tensors, batched over leading dimensions, plus two
accumulators that collect per-sample results and reduce them (across processes when
torch.distributed is initialized). Definitions (maps are scored at the gt resolution):

- ``normalize(S) = (S - min S) / (max S - min S)`` per map; a constant map gives all zeros.
- ``binarize(S, threshold)``: ``B = norm(S) >= thr`` with ``thr`` = the median of norm(S)
  (``"median"``), a fixed value (``"fixed:v"``) or ``r * max norm(S)`` (``"max_ratio:r"``).
- ``ciou(B, G) = sum(B*G) / (sum(G) + sum(B*(1-G)))``; NaN when ``sum(G) = 0``.
- ``pixel_ap(S, G)``: average precision of the continuous scores against the binary mask over all
  pixels, ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds (ties grouped), identical to
  ``sklearn.metrics.average_precision_score(G.ravel(), S.ravel())``; NaN when ``sum(G) = 0``.
- ``auc(cious)``: trapezoidal area under ``y(t)`` = fraction of items with ciou >= t,
  ``t = 0, 0.05, ..., 1`` (computed as k / 20).

Items whose gt mask is empty are excluded from every mean and reported as ``num_excluded``.
Speed: each map is sorted once and the AP, the median and the binarized area are all read off that
order. For float32 maps the gt bit rides in the (always zero) lowest bit of the float64 copy, so a
SIMD value sort replaces an argsort; other scores use a stable argsort. Scores [..., 1, H, W]
against masks [..., K, H, W] (K <= 8) sort each map once for all K masks. Chunks of maps run on
torch.get_num_threads() threads (numpy releases the GIL).
"""
import csv
import itertools
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from utils import dist as dist_utils
from utils.thresholds import parse_threshold

AUC_THRESHOLDS = np.arange(21) / 20.0  # t = 0, 0.05, ..., 1
_CHUNK_ELEMENTS = 1 << 18  # pixels per worker task (whole maps): keys stay in cache


# ----------------------------------------------------------------------------- conversions
def _to_numpy(x):
    """numpy view/copy of a torch tensor (any device; bf16 -> float32) or array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _like(out, ref):
    """Return `out` (numpy) as a torch tensor when `ref` is a tensor, else unchanged."""
    if isinstance(ref, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(out))
    return out


def _as_float(s):
    """Scores as float32 when every value is exactly a float32 (fast exact sort keys), else float64
    (with -0.0 turned into +0.0 so that it ties with 0.0, as in sklearn)."""
    if s.dtype == np.float32:
        return s
    if s.dtype in (np.float16, np.int8, np.uint8, np.int16, np.uint16, np.bool_):
        return s.astype(np.float32)
    s = s.astype(np.float64, copy=False)
    s32 = s.astype(np.float32)
    return s32 if np.array_equal(s32, s) else s + 0.0


def _as_mask(gt):
    """Binary mask: foreground where gt > 0.5."""
    gt = np.asarray(gt)
    return gt if gt.dtype == np.bool_ else gt > 0.5


# ----------------------------------------------------------------------------- public functions
def _norm_values(v, lo, hi):
    """(v - lo) / (hi - lo) in float64, 0 where hi == lo; lo, hi broadcast against v."""
    v, lo, hi = (np.asarray(a, dtype=np.float64) for a in (v, lo, hi))
    d = hi - lo
    return np.where(d > 0, (v - lo) / np.where(d > 0, d, 1.0), 0.0)


def normalize(S):
    """Per-map min-max normalization.

    Args:
        S: [..., H, W] scores (numpy or torch).
    Returns:
        [..., H, W] float64 in [0, 1]; a constant map gives all zeros. Same library as the input.
    """
    s = _to_numpy(S).astype(np.float64)
    lo = s.min(axis=(-2, -1), keepdims=True)
    hi = s.max(axis=(-2, -1), keepdims=True)
    return _like(_norm_values(s, lo, hi), S)


def _threshold_value(sorted_norm_at, num_pixels, threshold):
    """Binarization threshold per map from its normalized values in ascending order.

    Args:
        sorted_norm_at: callable, positions [M] (one per map) -> the normalized values [M] found
            at those positions of each map's ascending order.
        num_pixels: pixels per map P.
        threshold: 'median' | 'fixed:v' | 'max_ratio:r'.
    Returns:
        [M] float64 thresholds (the median as numpy computes it: mean of the two middle values).
    """
    mode, value = parse_threshold(threshold)
    if mode == "median":
        hi = sorted_norm_at(num_pixels // 2)
        if num_pixels % 2:
            return hi
        return (sorted_norm_at(num_pixels // 2 - 1) + hi) / 2.0
    if mode == "fixed":
        return np.full_like(sorted_norm_at(0), value)
    return value * sorted_norm_at(num_pixels - 1)  # max_ratio


def binarize(scores, threshold="median"):
    """B = norm(S) >= thr per map.

    Args:
        scores: [..., H, W] (numpy or torch).
        threshold: 'median' (thr = median of norm(S); a constant map has norm 0 everywhere, so
            thr = 0 and B is all ones), 'fixed:v' (thr = v) or 'max_ratio:r'
            (thr = r * max norm(S)).
    Returns:
        [..., H, W] bool, same library as the input.
    """
    norm = _to_numpy(normalize(_to_numpy(scores)))
    flat = norm.reshape(-1, norm.shape[-2] * norm.shape[-1])  # [M, P]
    srt = np.sort(flat, axis=1)
    rows = np.arange(flat.shape[0])
    thr = _threshold_value(lambda i: srt[rows, i], flat.shape[1], threshold)
    return _like((flat >= thr[:, None]).reshape(norm.shape), scores)


def _ciou_from_counts(inter, gt_area, pred_area):
    """sum(B*G) / (sum(G) + sum(B*(1-G))) from the three sums; NaN where sum(G) = 0."""
    inter, gt_area, pred_area = (np.asarray(a, dtype=np.float64)
                                 for a in (inter, gt_area, pred_area))
    denom = gt_area + pred_area - inter
    return np.where(gt_area > 0, inter / np.where(denom > 0, denom, 1.0), np.nan)


def ciou(pred, gt):
    """Consensus IoU of binary maps.

    Args:
        pred: [..., H, W] binary prediction B.
        gt: [..., H, W] mask G (foreground where > 0.5).
    Returns:
        [...] float64 sum(B*G) / (sum(G) + sum(B*(1-G))); NaN where G is empty.
    """
    b = _to_numpy(pred).astype(bool)
    g = _as_mask(_to_numpy(gt))
    inter = (b & g).sum(axis=(-2, -1))
    return _like(_ciou_from_counts(inter, g.sum(axis=(-2, -1)), b.sum(axis=(-2, -1))), pred)


def pixel_ap(scores, gt):
    """Pixel average precision of continuous scores against a binary mask.

    sum_k (R_k - R_{k-1}) P_k over the distinct score values (tied pixels form one threshold),
    equal to sklearn.metrics.average_precision_score(gt.ravel(), scores.ravel()).

    Args:
        scores: [..., H, W] finite scores S.
        gt: [..., H, W] mask G (foreground where > 0.5); leading dimensions broadcast.
    Returns:
        [...] float64 AP (the broadcast leading shape); NaN where G is empty.
    """
    ap, _ = score_maps(scores, gt, threshold=None)
    return _like(ap, scores)


def auc(cious):
    """Area under y(t) = fraction of items with ciou >= t, t = 0, 0.05, ..., 1 (trapezoids).

    Args:
        cious: [K] ciou values (NaN entries are dropped).
    Returns:
        float; NaN when no item is left.
    """
    c = _to_numpy(cious).astype(np.float64).ravel()
    c = c[~np.isnan(c)]
    if c.size == 0:
        return float("nan")
    y = (c[:, None] >= AUC_THRESHOLDS[None, :]).mean(axis=0)  # [21]
    return float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(AUC_THRESHOLDS)))


# ----------------------------------------------------------------------------- fast core
def _sort_maps(s, g):
    """Sort each map once, keeping the bit of every pixel in each of K masks.

    Args:
        s: [M, P] float32 or float64 scores.
        g: [M, K, P] bool masks (K <= 8 for float32 scores).
    Returns:
        vals [M, P] float64 scores in ascending order, and K arrays pos [M, P] bool: the masks
        in that order.
    """
    K = g.shape[1]
    if s.dtype == np.float32:
        # A float32 value in a float64 has 29 zero low bits: the lowest byte carries the mask bits
        # without changing the order of distinct values, so a (SIMD) value sort replaces an argsort.
        assert K <= 8, f"{K} masks per map do not fit in one byte"
        key = _workspace(s.shape)
        np.copyto(key, s)
        low = key.view(np.uint8).reshape(s.shape + (8,))[..., _LOW_BYTE]  # [M, P] view
        low |= g[:, 0]
        for k in range(1, K):
            low |= g[:, k].view(np.uint8) << k
        key.sort(axis=1)
        pos = [(low & 1).view(bool)] + [((low >> k) & 1).view(bool) for k in range(1, K)]
        low[...] = 0
        return key, pos
    order = np.argsort(s, axis=1, kind="stable")
    return (np.take_along_axis(s, order, axis=1),
            [np.take_along_axis(g[:, k], order, axis=1) for k in range(K)])


_ARANGE = np.arange(0, dtype=np.float64)


def _arange(n):
    """np.arange(n) as float64 from a cached, read-only array (saves filling fresh memory)."""
    global _ARANGE
    if _ARANGE.size < n:
        grown = np.arange(max(n, 2 * _ARANGE.size), dtype=np.float64)
        grown.flags.writeable = False
        _ARANGE = grown
    return _ARANGE[:n]


def _ap_from_sorted(vals, pos, ties):
    """AP per row from the sorted scores and the mask in that order (see _sort_maps).

    AP = (1/npos) sum over positive pixels of TP(>= s) / N(>= s), where N(>= s) = P - (start of
    the pixel's tie group) and TP(>= s) = npos - (positives before that start).

    Args:
        vals: [M, P] ascending scores; pos: [M, P] bool.
        ties: flat indices in the [M, P - 1] layout of the pixels whose score equals the previous
            one's (np.flatnonzero(vals[:, 1:] == vals[:, :-1])).
    Returns:
        ap [M] (NaN where no positive), npos [M], flat indices (ascending) of the positives in
        the [M, P] layout, and the index in that list of each row's first positive [M].
    """
    M, P = vals.shape
    flat = np.flatnonzero(pos)  # positives, row-major (ascending within a row)
    npos = np.count_nonzero(pos, axis=1)  # [M]
    row_end = np.cumsum(npos)
    row_start = row_end - npos
    # numerator TP(>= s) = npos - (positives before the group start): npos, npos - 1, ..., 1 in a
    # row without ties; denominator N(>= s) = P - (group start): distance to the row's end
    num = np.repeat(row_end, npos) - _arange(flat.size)
    den = np.repeat(np.arange(1, M + 1) * P, npos) - flat
    if ties.size:
        e = ties + ties // (P - 1) + 1  # -> [M * P] layout
        run_first = np.ones(e.size, dtype=bool)
        run_first[1:] = e[1:] != e[:-1] + 1
        group_start = (e[run_first] - 1)[np.cumsum(run_first) - 1]  # flat start of e's group
        is_pos = pos.reshape(-1)[e]
        st = group_start[is_pos]
        tied = np.searchsorted(flat, e[is_pos])  # their places among the positives
        rows = st // P
        num[tied] = row_end[rows] - np.searchsorted(flat, st)
        den[tied] = (rows + 1) * P - st
    contrib = num / den
    total = np.zeros(M)
    has = npos > 0
    if has.any():
        total[has] = np.add.reduceat(contrib, row_start[has])
    ap = np.where(has, total / np.maximum(npos, 1), np.nan)
    return ap, npos, flat, row_start


def _score_chunk(s, g, threshold):
    """ap [M, K] and ciou [M, K] (None when threshold is None) of [M, P] scores s against each of
    the K masks g [M, K, P]."""
    vals, pos = _sort_maps(_as_float(s), g)
    M, P = s.shape
    r = np.arange(M)
    lo, hi = vals[:, 0], vals[:, -1]
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("scores must be finite")
    ties = np.flatnonzero(vals[:, 1:] == vals[:, :-1])  # score equals the previous one's
    per_mask = [_ap_from_sorted(vals, p, ties) for p in pos]  # K x (ap, npos, flat, row_start)
    ap = np.stack([m[0] for m in per_mask], axis=1)  # [M, K]
    if threshold is None:
        return ap, None
    thr = _threshold_value(lambda i: _norm_values(vals[r, i], lo, hi), P, threshold)

    def on(i):  # [M] bool: is sorted position i (clipped to P - 1) binarized on?
        return _norm_values(vals[r, np.minimum(i, P - 1)], lo, hi) >= thr

    # norm is non-decreasing along the sorted order, so B is a suffix [a, P): binary search a.
    # The median lies at P // 2, so a <= P // 2 and usually a = P // 2 (unless ties reach below).
    b = np.full(M, P // 2 if parse_threshold(threshold)[0] == "median" else P, dtype=np.int64)
    a = np.where((b > 0) & on(b - 1), 0, b)  # a lies in [a, b]
    while np.any(a < b):
        active = a < b
        mid = (a + b) // 2
        ok = on(mid)
        b = np.where(active & ok, mid, b)
        a = np.where(active & ~ok, mid + 1, a)
    ci = [_ciou_from_counts(npos - (np.searchsorted(flat, r * P + a) - row_start),  # in [a, P)
                            npos, P - a) for _, npos, flat, row_start in per_mask]
    return ap, np.stack(ci, axis=1)


_POOL = {}
_LOCAL = threading.local()
_LOW_BYTE = 0 if sys.byteorder == "little" else 7  # byte of a float64 holding its lowest bits


def _workspace(shape):
    """Per-thread float64 buffer of `shape`, reused across calls (first touches of fresh memory
    cost as much as the sort itself)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.size < int(np.prod(shape)):
        buf = _LOCAL.buf = np.empty(int(np.prod(shape)), dtype=np.float64)
    return buf[:int(np.prod(shape))].reshape(shape)


def _pool(workers):
    if workers not in _POOL:
        _POOL[workers] = ThreadPoolExecutor(max_workers=workers)
    return _POOL[workers]


def score_maps(scores, gt, threshold="median"):
    """pixel_ap and ciou(binarize(S), G) for a batch of maps with one sort per map.

    Args:
        scores: [..., H, W] finite scores S (numpy or torch).
        gt: [..., H, W] masks G (foreground where > 0.5); leading dimensions broadcast with the
            scores' (scores [..., 1, H, W] vs masks [..., K, H, W] sort each map once).
        threshold: binarization for ciou ('median' | 'fixed:v' | 'max_ratio:r'), or None to skip
            the ciou.
    Returns:
        ap [...] and ciou [...] (None when threshold is None), float64 numpy; NaN where G is empty.
    """
    s, g = _to_numpy(scores), _to_numpy(gt)
    assert s.ndim >= 2 and s.shape[-2:] == g.shape[-2:], \
        f"scores {s.shape} and gt {g.shape} must share the map size [H, W]"
    K = g.shape[-3] if s.ndim >= 3 and g.ndim >= 3 and s.shape[-3] == 1 else 1
    if 1 < K <= 8:  # scores [..., 1, H, W] vs masks [..., K, H, W]: sort each map once for all K
        lead = np.broadcast_shapes(s.shape[:-3], g.shape[:-3])
        s = np.broadcast_to(s[..., 0, :, :], lead + s.shape[-2:])
        g = np.broadcast_to(g, lead + g.shape[-3:])
        out_shape = lead + (K,)
    else:
        s, g = np.broadcast_arrays(s, g)  # leading dimensions broadcast
        K, out_shape = 1, s.shape[:-2]
    P = s.shape[-2] * s.shape[-1]
    s = s.reshape(-1, P)  # [M, P]
    g = _as_mask(g.reshape(-1, K, P))  # [M, K, P]
    M = s.shape[0]
    step = max(1, _CHUNK_ELEMENTS // max(P, 1))
    chunks = [(i, min(i + step, M)) for i in range(0, M, step)]
    workers = min(len(chunks), max(1, torch.get_num_threads()))
    run = (lambda c: _score_chunk(s[c[0]:c[1]], g[c[0]:c[1]], threshold))
    results = list(_pool(workers).map(run, chunks)) if workers > 1 else [run(c) for c in chunks]
    ap = np.concatenate([r[0] for r in results]) if results else np.zeros((0, K))
    if threshold is None:
        return ap.reshape(out_shape), None
    ci = np.concatenate([r[1] for r in results]) if results else np.zeros((0, K))
    return ap.reshape(out_shape), ci.reshape(out_shape)


# ----------------------------------------------------------------------------- accumulators
def _gather_unique(records):
    """Records of every process (all_gather_object when distributed), one per sample index.

    DistributedSampler pads the last batch by repeating indices; the first record of an index is
    kept, so every item counts exactly once. Collective: all processes must call it.

    Args:
        records: list of tuples whose first entry is the int sample index.
    Returns:
        list of records sorted by index.
    """
    unique = {}
    for part in dist_utils.all_gather_object(records):
        for rec in part:
            unique.setdefault(rec[0], rec)
    return [unique[k] for k in sorted(unique)]


def _mean(x):
    """sum / count as a float; NaN when empty."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.sum() / x.size) if x.size else float("nan")


def _indices_ids(indices, ids, batch):
    idx = _to_numpy(indices).astype(np.int64).reshape(-1)
    assert idx.shape == (batch,), f"indices {idx.shape} must have one entry per sample ({batch})"
    ids = [None] * batch if ids is None else list(ids)
    assert len(ids) == batch, f"{len(ids)} ids for {batch} samples"
    return idx.tolist(), ids


def _write_rows(path, rows):
    """Write dict rows to a CSV file on the main process."""
    if not dist_utils.is_main_process() or not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _threshold_key(prefix, t):
    return f"{prefix}@{t:g}"  # IoU@0.5, CIoU@0.3


class SingleSourceEvaluator:
    """Table 1 metrics: AP (mean pixel_ap), IoU@t (fraction of samples with ciou >= t) and AUC;
    with presence scores, recall@N (N = 1: the labeled class has the highest score).

    Samples with an empty gt mask are excluded from the first three and counted in num_excluded.
    compute(), rows() and write_csv() gather across processes (call them on every rank).

    Args:
        iou_thresholds: t values for the IoU@t keys (0.5 MUSIC / VGGSound-Single, 0.3
            VGGSound-Instruments).
        threshold: binarization of the maps for ciou: 'median' | 'fixed:v' | 'max_ratio:r'.
    """

    def __init__(self, iou_thresholds=(0.5,), threshold="median"):
        parse_threshold(threshold)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.threshold = threshold
        self.records = []  # (index, id, ap, ciou, top-1 hit or None)

    def reset(self):
        self.records = []

    def update(self, maps, gts, indices, ids=None, classes=None, scores=None):
        """Score a batch.

        Args:
            maps: [B, H, W] localization maps (any real scores; higher = sounding).
            gts: [B, H, W] gt masks (foreground where > 0.5), same resolution as the maps.
            indices: [B] int dataset indices (used to de-duplicate sampler padding).
            ids: optional list of B str sample ids (for the CSV).
            classes, scores: optional [B] labeled class and [B, C] audio presence scores.
        """
        assert maps.ndim == 3 and tuple(maps.shape) == tuple(gts.shape), \
            f"maps {tuple(maps.shape)} and gts {tuple(gts.shape)} must both be [B, H, W]"
        idx, ids = _indices_ids(indices, ids, maps.shape[0])
        ap, ci = score_maps(maps, gts, self.threshold)  # [B], [B]
        hits = [None] * len(idx)
        if scores is not None:
            assert classes is not None, "scores need the labeled classes"
            cls = _to_numpy(classes).astype(np.int64)
            top = np.argmax(_to_numpy(scores), axis=1)  # first of ties, as the stable sort
            hits = [None if c < 0 else bool(t == c) for t, c in zip(top.tolist(), cls.tolist())]
        self.records.extend(zip(idx, ids, ap.tolist(), ci.tolist(), hits))

    def rows(self):
        """Per-sample dicts (index, id, ap, ciou[, recall]), de-duplicated and sorted by index."""
        recs = _gather_unique(self.records)
        scored = any(r[4] is not None for r in recs)  # every row gets the column, or none
        return [dict(index=i, id=s, ap=a, ciou=c,
                     **({"recall": float("nan") if h is None else float(h)} if scored else {}))
                for i, s, a, c, h in recs]

    def write_csv(self, path):
        _write_rows(path, self.rows())

    def compute(self):
        """Returns dict: AP, IoU@t per threshold, AUC, recall@N (when scores were given; over all
        samples), num_samples, num_excluded, threshold."""
        recs = _gather_unique(self.records)
        ap = np.array([r[2] for r in recs], dtype=np.float64)
        ci = np.array([r[3] for r in recs], dtype=np.float64)
        keep = ~np.isnan(ap)
        ap, ci = ap[keep], ci[keep]
        out = {"AP": _mean(ap)}
        for t in self.iou_thresholds:
            out[_threshold_key("IoU", t)] = _mean(ci >= t)
        out["AUC"] = auc(ci)
        hits = [r[4] for r in recs if r[4] is not None]
        if hits:
            out["recall@N"] = float(np.mean(hits))
        out.update(num_samples=int(keep.sum()), num_excluded=int((~keep).sum()),
                   threshold=self.threshold)
        return out


def _best_assignment(ap):
    """Largest sum of ap[m, n] over injective assignments of the columns n to rows m.

    Args:
        ap: [K, N] (K predicted maps >= N sources).
    Returns:
        float, the best sum.
    """
    k, n = ap.shape
    if n <= 4:
        return max(float(ap[list(p), range(n)].sum()) for p in itertools.permutations(range(k), n))
    from scipy.optimize import linear_sum_assignment
    r, c = linear_sum_assignment(ap, maximize=True)
    return float(ap[r, c].sum())


def frame_count(height, width, num_frames=None):
    """Frames side by side on a canvas: num_frames, or width/height rounded (at least 1)."""
    frames = num_frames or max(1, int(round(width / height)))
    assert width % frames == 0, f"canvas width {width} does not split into {frames} frames"
    return frames


def take_sources(x, b, n, slot, frames):
    """Maps of (sample b, source n), cropped to frame `slot` of `frames` when frames is given.

    Args:
        x: [B, N, H, W] numpy; b, n, slot: [K] int.
        frames: None (whole canvas) or the number of equal-width frames side by side.
    Returns:
        [K, H, W] or [K, H, W / frames].
    """
    if frames is None:
        return x[b, n]  # [K, H, W]
    B, N, H, W = x.shape
    return x.reshape(B, N, H, frames, W // frames)[b, n, :, slot]  # [K, H, W / frames]


class MultiSourceEvaluator:
    """Table 2 metrics for mixtures: CAP, PIAP, CIoU@t, AUC and audio top-N recall.

    Per sample with sources n (classes c_n, masks G_n):
    - CAP: mean over all (sample, source) of pixel_ap(S_n, G_n), S_n = map of class c_n.
    - PIAP: mean over samples of max over assignments pi of (1/N) sum_n pixel_ap(Shat_pi(n), G_n),
      Shat_1..Shat_N = maps of the N classes with the highest audio presence (permutations for
      N <= 4, linear_sum_assignment above).
    - CIoU@t: fraction of (sample, source) with ciou(binarize(S_n), G_n) >= t; AUC over them.
    - recall@N: fraction of labeled classes among the sample's N highest presence scores.
    Protocol 'frame' scores maps and masks on the whole canvas as given; 'source' crops each
    source's map (and the predicted maps compared with it) and mask to the source's own frame
    (frame k of num_frames equal-width slots side by side) before normalizing and scoring;
    'per_frame' (the authors' protocol) scores as 'source', on maps made by running the model on
    each frame alone with the mixture's audio (engine.evaluate puts them side by side).
    Sources with an empty mask are excluded from CAP, CIoU, AUC and PIAP (PIAP then assigns the
    remaining sources) and counted in num_excluded. compute(), rows() and write_csv() gather
    across processes (call them on every rank).

    Args:
        ciou_thresholds: t values for the CIoU@t keys (0.3 MUSIC / VGGSound-Duet, 0.1
            VGGSound-Instruments).
        threshold: 'median' | 'fixed:v' | 'max_ratio:r'.
        protocol: 'frame' | 'source' | 'per_frame'.
        num_frames: frames per canvas for protocol 'source' (None: canvas width / height rounded).
    """

    def __init__(self, ciou_thresholds=(0.3,), threshold="median", protocol="frame",
                 num_frames=None):
        parse_threshold(threshold)
        if protocol not in ("frame", "source", "per_frame"):
            raise ValueError(f"unknown protocol {protocol!r}; use 'frame', 'source' or "
                             "'per_frame'")
        self.ciou_thresholds = tuple(float(t) for t in ciou_thresholds)
        self.threshold = threshold
        self.protocol = protocol
        self.num_frames = num_frames
        self.records = []  # (index, id, sources [(class, frame, ap, ciou)], piap, hits, labels)

    def reset(self):
        self.records = []

    def update(self, maps, pred_maps, gts, classes, scores, frame_slot, indices, ids=None):
        """Score a batch of mixtures.

        Args:
            maps: [B, N, H, W] maps S_n for the labeled classes c_n.
            pred_maps: [B, N, H, W] maps for the top-N classes by audio presence (highest first);
                a sample with k sources uses pred_maps[:, :k].
            gts: [B, N, H, W] masks G_n (foreground where > 0.5) on the canvas.
            classes: [B, N] long class of each source, -1 for padding (ignored).
            scores: [B, C] audio presence scores p^a.
            frame_slot: [B, N] long frame of the canvas each source lives in (None: all 0; only
                read by protocol 'source').
            indices: [B] int dataset indices; ids: optional list of B str.
        """
        maps, pred_maps, gts = _to_numpy(maps), _to_numpy(pred_maps), _to_numpy(gts)
        cls, scores = _to_numpy(classes).astype(np.int64), _to_numpy(scores)
        B, N, H, W = maps.shape
        assert pred_maps.shape == maps.shape == gts.shape, \
            f"maps {maps.shape}, pred_maps {pred_maps.shape} and gts {gts.shape} must match"
        assert cls.shape == (B, N), f"classes {cls.shape} must be [B, N] = {(B, N)}"
        assert scores.ndim == 2 and scores.shape[0] == B, f"scores {scores.shape} must be [B, C]"
        slot = (np.zeros((B, N), np.int64) if frame_slot is None
                else _to_numpy(frame_slot).astype(np.int64))
        assert slot.shape == (B, N), f"frame_slot {slot.shape} must be [B, N]"
        idx, ids = _indices_ids(indices, ids, B)
        frames = None
        if self.protocol in ("source", "per_frame"):
            frames = frame_count(H, W, self.num_frames)
            assert ((slot >= 0) & (slot < frames))[cls >= 0].all(), \
                f"frame_slot outside [0, {frames})"

        valid = cls >= 0  # [B, N]
        count = valid.sum(1)  # [B] sources per sample
        b, n = np.nonzero(valid)  # [K] labeled sources
        ap, ci = score_maps(take_sources(maps, b, n, slot[b, n], frames),
                            take_sources(gts, b, n, slot[b, n], frames), self.threshold)
        # PIAP: AP of predicted map m < count against each source n of the same sample
        if frames is None:  # one sort per predicted map for all the sample's masks
            apm, _ = score_maps(pred_maps[:, :, None], gts[:, None], None)  # [B, N(m), N(n)]
            mats = [apm[i, :count[i]][:, valid[i]] for i in range(B)]
        else:  # every (m, n) pair, cropped to source n's frame
            reps = count[b]
            pb, pn = np.repeat(b, reps), np.repeat(n, reps)  # [Q]
            pm = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)  # 0..count-1
            pair_ap, _ = score_maps(take_sources(pred_maps, pb, pm, slot[pb, pn], frames),
                                    take_sources(gts, pb, pn, slot[pb, pn], frames), None)
            ends = np.cumsum(count ** 2)
            mats = [pair_ap[e - k * k:e].reshape(k, k).T  # [m, n]
                    for e, k in zip(ends.tolist(), count.tolist())]

        order = np.argsort(-scores, axis=1, kind="stable")  # [B, C] classes by presence
        src_start = np.cumsum(count) - count
        for i in range(B):
            k, s0 = int(count[i]), int(src_start[i])
            if k == 0:
                continue
            labels = cls[i][valid[i]]
            sources = [(int(c), int(f), float(a), float(u)) for c, f, a, u in
                       zip(labels, slot[i][valid[i]], ap[s0:s0 + k], ci[s0:s0 + k])]
            scored = ~np.isnan(ap[s0:s0 + k])
            piap = (_best_assignment(mats[i][:, scored]) / scored.sum() if scored.any()
                    else float("nan"))
            hits = len(set(labels.tolist()) & set(order[i, :k].tolist()))
            self.records.append((idx[i], ids[i], sources, piap, hits, k))

    def rows(self):
        """Per-source dicts (index, id, source, class, frame, ap, ciou, piap, recall), sorted by
        sample index; piap and recall (hits / labels) are the sample's."""
        return [dict(index=i, id=s, source=j, **{"class": c}, frame=f, ap=a, ciou=u, piap=p,
                     recall=h / k)
                for i, s, srcs, p, h, k in _gather_unique(self.records)
                for j, (c, f, a, u) in enumerate(srcs)]

    def write_csv(self, path):
        _write_rows(path, self.rows())

    def compute(self):
        """Returns dict: CAP, PIAP, CIoU@t per threshold, AUC, recall@N, num_samples (samples
        with a scored source), num_sources (scored sources), num_excluded (sources with an empty
        mask), protocol, threshold."""
        recs = _gather_unique(self.records)
        src = np.array([(a, u) for r in recs for _, _, a, u in r[2]], dtype=np.float64)
        src = src.reshape(-1, 2)
        keep = ~np.isnan(src[:, 0])
        ap, ci = src[keep, 0], src[keep, 1]
        piap = np.array([r[3] for r in recs], dtype=np.float64)
        piap = piap[~np.isnan(piap)]
        out = {"CAP": _mean(ap), "PIAP": _mean(piap)}
        for t in self.ciou_thresholds:
            out[_threshold_key("CIoU", t)] = _mean(ci >= t)
        labels = sum(r[5] for r in recs)
        out.update(AUC=auc(ci), **{"recall@N": sum(r[4] for r in recs) / labels if labels
                                   else float("nan")},
                   num_samples=int(piap.size), num_sources=int(keep.sum()),
                   num_excluded=int((~keep).sum()), protocol=self.protocol,
                   threshold=self.threshold)
        return out
