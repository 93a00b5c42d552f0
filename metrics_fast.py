"""The fast kernel behind metrics.py: pixel AP and ciou(binarize(S), G) of many maps at once.

It computes exactly what `metrics.score_map` defines (tests/test_metrics.py holds the two equal);
the evaluators call it. Speed: each map is sorted once and the AP, the binarization threshold
and the binarized area are all read off that order. For float32 maps the gt bit rides in the
(always zero) lowest bit of the float64 copy, so a SIMD value sort replaces an argsort; other
scores use a stable argsort. Scores [..., 1, H, W] against masks [..., K, H, W] (K <= 8) sort
each map once for all K masks. Chunks of maps run on torch.get_num_threads() threads (numpy
releases the GIL), each with its own reused sort buffer.
"""
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from utils.thresholds import parse_threshold

_CHUNK_ELEMENTS = 1 << 18  # pixels per worker task (whole maps): keys stay in cache
_LOW_BYTE = 0 if sys.byteorder == "little" else 7  # byte of a float64 holding its lowest bits
_POOL = {}  # workers -> ThreadPoolExecutor
_LOCAL = threading.local()  # per-thread sort buffer
_ARANGE = np.arange(0, dtype=np.float64)  # cached 0, 1, 2, ... (read-only)


def score_maps(s, g, threshold="median"):
    """pixel_ap and ciou(binarize(S), G) for a batch of maps with one sort per map.

    Args:
        s: [..., H, W] finite scores S (numpy, any real dtype).
        g: [..., H, W] bool masks G; leading dimensions broadcast with the scores' (scores
            [..., 1, H, W] vs masks [..., K, H, W] sort each map once).
        threshold: 'median' | 'fixed:v' | 'max_ratio:r', or None to skip the ciou.
    Returns:
        ap [...] and ciou [...] (None when threshold is None), float64; NaN where G is empty.
    """
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
    g = g.reshape(-1, K, P)  # [M, K, P]
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


def _norm_values(v, lo, hi):
    """(v - lo) / (hi - lo) in float64, 0 where hi == lo; lo, hi broadcast against v."""
    v, lo, hi = (np.asarray(a, dtype=np.float64) for a in (v, lo, hi))
    d = hi - lo
    return np.where(d > 0, (v - lo) / np.where(d > 0, d, 1.0), 0.0)


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


def _ciou_from_counts(inter, gt_area, pred_area):
    """sum(B*G) / (sum(G) + sum(B*(1-G))) from the three sums; NaN where sum(G) = 0."""
    inter, gt_area, pred_area = (np.asarray(a, dtype=np.float64)
                                 for a in (inter, gt_area, pred_area))
    denom = gt_area + pred_area - inter
    return np.where(gt_area > 0, inter / np.where(denom > 0, denom, 1.0), np.nan)


def _arange(n):
    """np.arange(n) as float64 from a cached, read-only array (saves filling fresh memory)."""
    global _ARANGE
    if _ARANGE.size < n:
        grown = np.arange(max(n, 2 * _ARANGE.size), dtype=np.float64)
        grown.flags.writeable = False
        _ARANGE = grown
    return _ARANGE[:n]


def _workspace(shape):
    """Per-thread float64 buffer of `shape`, reused across calls (first touches of fresh memory
    cost as much as the sort itself)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.size < int(np.prod(shape)):
        buf = _LOCAL.buf = np.empty(int(np.prod(shape)), dtype=np.float64)
    return buf[:int(np.prod(shape))].reshape(shape)


def _pool(workers):
    """A thread pool of `workers` threads, made once per size."""
    if workers not in _POOL:
        _POOL[workers] = ThreadPoolExecutor(max_workers=workers)
    return _POOL[workers]
