"""Sound-localization metrics of the AVGN paper (single-source Table 1, multi-source Table 2).

First the paper's definitions, as plain numpy functions on one map or a batch of maps
[..., H, W] (numpy arrays or torch tensors; the result in the input's library); maps are scored
at the gt resolution:

- ``normalize(S) = (S - min S) / (max S - min S)`` per map; a constant map gives all zeros.
- ``binarize(S, threshold)``: ``B = norm(S) >= thr`` with ``thr`` = the median of norm(S)
  (``"median"``), a fixed value (``"fixed:v"``) or ``r * max norm(S)`` (``"max_ratio:r"``).
- ``ciou(B, G) = sum(B*G) / (sum(G) + sum(B*(1-G)))``; NaN when ``sum(G) = 0``.
- ``pixel_ap(S, G)``: average precision of the continuous scores against the binary mask over all
  pixels, ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds (ties grouped), identical to
  ``sklearn.metrics.average_precision_score(G.ravel(), S.ravel())``; NaN when ``sum(G) = 0``.
- ``auc(cious)``: trapezoidal area under ``y(t)`` = fraction of items with ciou >= t,
  ``t = 0, 0.05, ..., 1`` (computed as k / 20).
- ``score_map(S, G, threshold)``: the per-map scores of the evaluators, pixel_ap and
  ciou(binarize(S), G).

Then ``score_maps``, the same per-map scores for a whole batch from the fast kernel in
metrics_fast.py (tests/test_metrics.py holds the two equal), and two evaluators that collect
per-sample records and reduce them (across processes when torch.distributed is initialized).
Items whose gt mask is empty are excluded from every mean and reported as ``num_excluded``.
"""
import csv
import itertools
from typing import List, NamedTuple, Optional

import numpy as np
import torch

import metrics_fast
from utils import dist as dist_utils
from utils.thresholds import parse_threshold

AUC_THRESHOLDS = np.arange(21) / 20.0  # t = 0, 0.05, ..., 1


# ----------------------------------------------------------------------------- definitions
def normalize(S):
    """Per-map min-max normalization.

    Args:
        S: [..., H, W] scores.
    Returns:
        [..., H, W] float64 in [0, 1]; a constant map gives all zeros.
    """
    s = _to_numpy(S).astype(np.float64)
    lo = s.min(axis=(-2, -1), keepdims=True)  # [..., 1, 1]
    hi = s.max(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore"):  # 0 / 0 on a constant map, replaced by 0
        norm = (s - lo) / (hi - lo)
    return _like(np.where(hi > lo, norm, 0.0), S)


def threshold_value(norm, threshold="median"):
    """Binarization threshold of each normalized map.

    Args:
        norm: [..., H, W] normalized maps (numpy).
        threshold: 'median' (the median of norm), 'fixed:v' (v) or 'max_ratio:r' (r * max norm).
    Returns:
        [..., 1, 1] float64.
    """
    mode, value = parse_threshold(threshold)
    if mode == "median":
        return np.median(norm, axis=(-2, -1), keepdims=True)
    if mode == "fixed":
        return np.full(norm.shape[:-2] + (1, 1), value)
    return value * norm.max(axis=(-2, -1), keepdims=True)  # max_ratio


def binarize(S, threshold="median"):
    """B = norm(S) >= thr per map.

    Args:
        S: [..., H, W] scores.
        threshold: 'median' | 'fixed:v' | 'max_ratio:r' (threshold_value). A constant map has
            norm 0 everywhere, so 'median' and 'max_ratio:r' switch it all on.
    Returns:
        [..., H, W] bool.
    """
    norm = _to_numpy(normalize(_to_numpy(S)))
    return _like(norm >= threshold_value(norm, threshold), S)


def ciou(B, G):
    """Consensus IoU of binary maps.

    Args:
        B: [..., H, W] binary prediction.
        G: [..., H, W] mask (foreground where > 0.5); leading dimensions broadcast.
    Returns:
        [...] float64 sum(B*G) / (sum(G) + sum(B*(1-G))); NaN where G is empty.
    """
    b, g = _to_numpy(B).astype(bool), _as_mask(_to_numpy(G))
    inter = (b & g).sum(axis=(-2, -1))
    area = g.sum(axis=(-2, -1))
    outside = (b & ~g).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore"):  # 0 / 0 where G and B are empty, replaced by NaN
        return _like(np.where(area > 0, inter / (area + outside), np.nan), B)


def average_precision(s, g):
    """Pixel AP of one map: sum_k (R_k - R_{k-1}) P_k over the distinct scores s_k.

    A score group holding m positives raises the recall by m / npos, so the sum is the mean, over
    the positive pixels, of the precision TP(>= s) / N(>= s) at the pixel's own score s (tied
    pixels share one threshold). Summed from the lowest score up.

    Args:
        s: [P] finite float64 scores; g: [P] bool mask.
    Returns:
        float; NaN when g is empty.
    """
    npos = int(g.sum())
    if npos == 0:
        return float("nan")
    ranked = np.sort(s)  # [P] every score, ascending
    hits = np.sort(s[g])  # [npos] the positives' scores, ascending
    at_least = s.size - np.searchsorted(ranked, hits, side="left")  # N(>= s) at each positive
    tp_at_least = npos - np.searchsorted(hits, hits, side="left")  # TP(>= s)
    return float(np.sum(tp_at_least / at_least) / npos)


def pixel_ap(S, G):
    """Pixel average precision of continuous scores against a binary mask, map by map.

    Equal to sklearn.metrics.average_precision_score(G.ravel(), S.ravel()) (average_precision).

    Args:
        S: [..., H, W] finite scores.
        G: [..., H, W] mask (foreground where > 0.5); leading dimensions broadcast.
    Returns:
        [...] float64 AP (the broadcast leading shape); NaN where G is empty.
    """
    s, g = np.broadcast_arrays(_to_numpy(S).astype(np.float64), _as_mask(_to_numpy(G)))
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    P = s.shape[-2] * s.shape[-1]
    ap = [average_precision(a, b) for a, b in zip(s.reshape(-1, P), g.reshape(-1, P))]  # [M]
    return _like(np.array(ap, dtype=np.float64).reshape(s.shape[:-2]), S)


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


def score_map(S, G, threshold="median"):
    """What the evaluators score per map: pixel_ap(S, G) and ciou(binarize(S, threshold), G).

    Args:
        S: [..., H, W] finite scores; G: [..., H, W] masks; leading dimensions broadcast.
        threshold: 'median' | 'fixed:v' | 'max_ratio:r', or None to skip the ciou.
    Returns:
        ap [...] and ciou [...] (None when threshold is None), float64 numpy.
    """
    S, G = _to_numpy(S), _to_numpy(G)
    return pixel_ap(S, G), None if threshold is None else ciou(binarize(S, threshold), G)


# ----------------------------------------------------------------------------- fast batch
def score_maps(scores, gt, threshold="median"):
    """score_map for a batch of maps, from the fast kernel (metrics_fast: one sort per map).

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
    if not (s.ndim >= 2 and s.shape[-2:] == g.shape[-2:]):
        raise ValueError(f"scores {s.shape} and gt {g.shape} must share the map size [H, W]")
    return metrics_fast.score_maps(s, _as_mask(g), threshold)


# ----------------------------------------------------------------------------- records
class SingleRecord(NamedTuple):
    """One sample scored by SingleSourceEvaluator."""
    index: int  # dataset index
    id: Optional[str]
    ap: float  # pixel_ap (NaN: empty mask)
    ciou: float
    hit: Optional[bool]  # top-1 class == labeled class (None: no scores or no label)


class SourceRecord(NamedTuple):
    """One source of a mixture scored by MultiSourceEvaluator."""
    label: int  # class c_n
    frame: int  # frame slot of the canvas
    ap: float  # pixel_ap(S_n, G_n) (NaN: empty mask)
    ciou: float


class MultiRecord(NamedTuple):
    """One mixture scored by MultiSourceEvaluator."""
    index: int  # dataset index
    id: Optional[str]
    sources: List[SourceRecord]
    piap: float  # NaN when no source is scored
    hits: int  # labeled classes among the top-N presence scores
    labels: int  # N, the labeled sources


def _gather_unique(records):
    """Records of every process (all_gather_object when distributed), one per sample index.

    DistributedSampler pads the last batch by repeating indices; the first record of an index is
    kept, so every item counts exactly once. Collective: all processes must call it.

    Args:
        records: list of records with an int `index`.
    Returns:
        list of records sorted by index.
    """
    unique = {}
    for part in dist_utils.all_gather_object(records):
        for rec in part:
            unique.setdefault(rec.index, rec)
    return [unique[k] for k in sorted(unique)]


def _mean(x):
    """sum / count as a float; NaN when empty."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.sum() / x.size) if x.size else float("nan")


def _indices_ids(indices, ids, batch):
    """indices [batch] -> list of int; ids -> list of `batch` ids (None when not given)."""
    idx = _to_numpy(indices).astype(np.int64).reshape(-1)
    if idx.shape != (batch,):
        raise ValueError(f"indices {idx.shape} must have one entry per sample ({batch})")
    ids = [None] * batch if ids is None else list(ids)
    if len(ids) != batch:
        raise ValueError(f"{len(ids)} ids for {batch} samples")
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


# ----------------------------------------------------------------------------- evaluators
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
        self.records = []  # SingleRecord per sample

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
        if not (maps.ndim == 3 and tuple(maps.shape) == tuple(gts.shape)):
            raise ValueError(f"maps {tuple(maps.shape)} and gts {tuple(gts.shape)} must both be "
                             "[B, H, W]")
        idx, ids = _indices_ids(indices, ids, maps.shape[0])
        ap, ci = score_maps(maps, gts, self.threshold)  # [B], [B]
        hits = [None] * len(idx)
        if scores is not None:
            if classes is None:
                raise ValueError("scores need the labeled classes")
            cls = _to_numpy(classes).astype(np.int64)
            top = np.argmax(_to_numpy(scores), axis=1)  # first of ties, as the stable sort
            hits = [None if c < 0 else bool(t == c) for t, c in zip(top.tolist(), cls.tolist())]
        self.records.extend(map(SingleRecord._make, zip(idx, ids, ap.tolist(), ci.tolist(), hits)))

    def rows(self):
        """Per-sample dicts (index, id, ap, ciou[, recall]), de-duplicated and sorted by index."""
        recs = _gather_unique(self.records)
        scored = any(r.hit is not None for r in recs)  # every row gets the column, or none
        return [dict(index=r.index, id=r.id, ap=r.ap, ciou=r.ciou,
                     **({"recall": float("nan") if r.hit is None else float(r.hit)} if scored
                        else {}))
                for r in recs]

    def write_csv(self, path):
        _write_rows(path, self.rows())

    def compute(self):
        """Returns dict: AP, IoU@t per threshold, AUC, recall@N (when scores were given; over all
        samples), num_samples, num_excluded, threshold."""
        recs = _gather_unique(self.records)
        ap = np.array([r.ap for r in recs], dtype=np.float64)
        ci = np.array([r.ciou for r in recs], dtype=np.float64)
        keep = ~np.isnan(ap)
        ap, ci = ap[keep], ci[keep]
        out = {"AP": _mean(ap)}
        for t in self.iou_thresholds:
            out[_threshold_key("IoU", t)] = _mean(ci >= t)
        out["AUC"] = auc(ci)
        hits = [r.hit for r in recs if r.hit is not None]
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
    if width % frames:
        raise ValueError(f"canvas width {width} does not split into {frames} frames")
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
        self.records = []  # MultiRecord per sample

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
        if maps.ndim != 4:
            raise ValueError(f"maps {maps.shape} must be [B, N, H, W]")
        B, N, H, W = maps.shape
        if not pred_maps.shape == maps.shape == gts.shape:
            raise ValueError(f"maps {maps.shape}, pred_maps {pred_maps.shape} and gts {gts.shape} "
                             "must match")
        if cls.shape != (B, N):
            raise ValueError(f"classes {cls.shape} must be [B, N] = {(B, N)}")
        if not (scores.ndim == 2 and scores.shape[0] == B):
            raise ValueError(f"scores {scores.shape} must be [B, C]")
        slot = (np.zeros((B, N), np.int64) if frame_slot is None
                else _to_numpy(frame_slot).astype(np.int64))
        if slot.shape != (B, N):
            raise ValueError(f"frame_slot {slot.shape} must be [B, N]")
        idx, ids = _indices_ids(indices, ids, B)
        frames = None
        if self.protocol in ("source", "per_frame"):
            frames = frame_count(H, W, self.num_frames)
            if not ((slot >= 0) & (slot < frames))[cls >= 0].all():
                raise ValueError(f"frame_slot outside [0, {frames})")

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
            sources = [SourceRecord(int(c), int(f), float(a), float(u)) for c, f, a, u in
                       zip(labels, slot[i][valid[i]], ap[s0:s0 + k], ci[s0:s0 + k])]
            scored = ~np.isnan(ap[s0:s0 + k])
            piap = (_best_assignment(mats[i][:, scored]) / scored.sum() if scored.any()
                    else float("nan"))
            hits = len(set(labels.tolist()) & set(order[i, :k].tolist()))
            self.records.append(MultiRecord(idx[i], ids[i], sources, piap, hits, k))

    def rows(self):
        """Per-source dicts (index, id, source, class, frame, ap, ciou, piap, recall), sorted by
        sample index; piap and recall (hits / labels) are the sample's."""
        return [dict(index=r.index, id=r.id, source=j, **{"class": s.label}, frame=s.frame,
                     ap=s.ap, ciou=s.ciou, piap=r.piap, recall=r.hits / r.labels)
                for r in _gather_unique(self.records)
                for j, s in enumerate(r.sources)]

    def write_csv(self, path):
        _write_rows(path, self.rows())

    def compute(self):
        """Returns dict: CAP, PIAP, CIoU@t per threshold, AUC, recall@N, num_samples (samples
        with a scored source), num_sources (scored sources), num_excluded (sources with an empty
        mask), protocol, threshold."""
        recs = _gather_unique(self.records)
        src = np.array([(s.ap, s.ciou) for r in recs for s in r.sources], dtype=np.float64)
        src = src.reshape(-1, 2)
        keep = ~np.isnan(src[:, 0])
        ap, ci = src[keep, 0], src[keep, 1]
        piap = np.array([r.piap for r in recs], dtype=np.float64)
        piap = piap[~np.isnan(piap)]
        out = {"CAP": _mean(ap), "PIAP": _mean(piap)}
        for t in self.ciou_thresholds:
            out[_threshold_key("CIoU", t)] = _mean(ci >= t)
        labels = sum(r.labels for r in recs)
        out.update(AUC=auc(ci), **{"recall@N": sum(r.hits for r in recs) / labels if labels
                                   else float("nan")},
                   num_samples=int(piap.size), num_sources=int(keep.sum()),
                   num_excluded=int((~keep).sum()), protocol=self.protocol,
                   threshold=self.threshold)
        return out


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


def _as_mask(gt):
    """Binary mask: foreground where gt > 0.5."""
    gt = np.asarray(gt)
    return gt if gt.dtype == np.bool_ else gt > 0.5
