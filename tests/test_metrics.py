"""metrics.py: the fast kernel against the plain definitions, the definitions against sklearn and
hand-computed answers, protocols and evaluators."""
import csv
import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import metrics


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# ------------------------------------------------------------------------- kernel == definitions
def _oracle_maps(rng):
    """(name, scores, masks) cases: random and quantized (ties) maps, all-equal maps, +-0.0,
    non-float32 scores, and empty, full, one-pixel and random masks; odd and even pixel counts."""
    cases = []
    for h, w in [(1, 1), (1, 2), (3, 5), (7, 9), (8, 8), (16, 31)]:
        g = rng.random((8, h, w)) < rng.random((8, 1, 1))
        g[0], g[1] = False, True  # empty and full masks (full: ciou = |B| / P shows B's area)
        g[2] = False
        g[2, rng.integers(h), rng.integers(w)] = True  # one pixel
        noise = rng.random((8, h, w)).astype(np.float32)
        levels = np.round(noise * 3) / 3  # many ties
        const = np.full((8, h, w), 2.5, np.float32)
        signed = np.where(rng.random((8, h, w)) < 0.5, -0.0, 0.0).astype(np.float32)
        signed[::2, 0, 0] = 1.0
        cases += [("noise", noise, g), ("ties", levels.astype(np.float32), g),
                  ("constant", const, g), ("signed zeros", signed, g),
                  ("float64", levels + 1e-12 * rng.integers(0, 3, (8, h, w)), g),
                  ("float64 exact", levels.astype(np.float32).astype(np.float64), g),
                  ("uint8", (noise * 4).astype(np.uint8), g), ("float mask", noise, g * 0.9)]
    return cases


def _assert_same(fast, plain, case):
    """ciou exactly equal; ap with the same NaNs and equal up to the grouping of its sum (the
    kernel adds a map's terms with np.add.reduceat, the definition with np.sum: <= 2 ulp)."""
    (ap_f, ci_f), (ap_p, ci_p) = fast, plain
    assert np.array_equal(np.isnan(ap_f), np.isnan(ap_p)), case
    assert np.nanmax(np.abs(ap_f - ap_p), initial=0.0) <= 1e-15, case
    if ci_p is None:
        assert ci_f is None, case
    else:
        assert ci_f.shape == ci_p.shape and np.array_equal(ci_f, ci_p, equal_nan=True), case


@pytest.mark.parametrize("threshold", [None, "median", "fixed:0", "fixed:0.5", "fixed:1",
                                       "max_ratio:0.5", "max_ratio:1"])
def test_fast_kernel_equals_definitions(threshold):
    """score_maps (metrics_fast) == score_map (the plain definitions), map by map and one map
    against several masks."""
    rng = np.random.default_rng(11)
    for name, s, g in _oracle_maps(rng):
        case = (name, s.shape, threshold)
        _assert_same(metrics.score_maps(s, g, threshold), metrics.score_map(s, g, threshold), case)
        # scores [2, 1, H, W] vs masks [2, 4, H, W]: one sort per map for the four masks
        s1, g4 = s[:2, None], g[:8].reshape((2, 4) + g.shape[1:])
        _assert_same(metrics.score_maps(s1, g4, threshold), metrics.score_map(s1, g4, threshold),
                     case + ("K masks",))
    full = np.ones((1, 4, 6), bool)  # full gt: ciou = |B| / P, the binarized area itself
    ramp = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    ap, ci = metrics.score_maps(ramp, full, threshold)
    assert ap[0] == 1.0
    if threshold is not None:
        assert ci[0] == metrics.binarize(ramp, threshold).sum() / 24


def test_fast_kernel_torch_inputs_and_float_masks_equal_numpy():
    rng = np.random.default_rng(12)
    s = np.round(rng.random((5, 6, 7)) * 4).astype(np.float32)
    g = rng.random((5, 6, 7)) < 0.4
    want = metrics.score_map(s, g, "median")
    got = metrics.score_maps(torch.from_numpy(s), torch.from_numpy(g.astype(np.float32)), "median")
    _assert_same(got, want, "torch")


# ----------------------------------------------------------------------------- pixel_ap
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_ap_equals_sklearn_with_ties(dtype):
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(60):
        h, w = rng.integers(1, 24, size=2)
        levels = int(rng.integers(1, 12))  # quantised scores: many ties
        scores = (np.round(rng.random((4, h, w)) * levels) / levels - rng.random()).astype(dtype)
        if trial % 4 == 0:
            scores = rng.standard_normal((4, h, w)).astype(dtype)  # (almost) no ties
        if trial % 5 == 0:
            scores[..., 0] = -0.0  # ties with +0.0, as in sklearn
            scores[..., -1] = 0.0
        gt = rng.random((4, h, w)) < rng.random()
        batched = metrics.pixel_ap(scores, gt)
        for k in range(4):
            single = metrics.pixel_ap(scores[k], gt[k])
            if not gt[k].any():
                assert np.isnan(batched[k]) and np.isnan(single)
                continue
            ref = average_precision_score(gt[k].ravel(), scores[k].ravel())
            assert abs(batched[k] - ref) < 1e-12, (trial, k, batched[k], ref)
            assert single == batched[k]
            checked += 1
    assert checked > 150


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_map_against_several_masks(dtype):
    """scores [B, 1, H, W] vs masks [B, K, H, W] (one sort per map) equals each pair alone."""
    rng = np.random.default_rng(9)
    s = (np.round(rng.random((3, 1, 7, 9)) * 5) + 1e-9 * (dtype == np.float64)).astype(dtype)
    g = rng.random((3, 4, 7, 9)) < 0.4
    g[1, 2] = False
    for threshold in (None, "median"):
        ap, ci = metrics.score_maps(s, g, threshold)
        assert ap.shape == (3, 4)
        for i, k in itertools.product(range(3), range(4)):
            a, c = metrics.score_maps(s[i, 0], g[i, k], threshold)
            assert (np.isnan(a) and np.isnan(ap[i, k])) or a == ap[i, k]
            if threshold:
                assert (np.isnan(c) and np.isnan(ci[i, k])) or c == ci[i, k]
            if g[i, k].any():
                ref = average_precision_score(g[i, k].ravel(), s[i, 0].ravel())
                assert abs(ap[i, k] - ref) < 1e-12


def test_pixel_ap_float64_scores_that_are_not_float32():
    rng = np.random.default_rng(1)
    s = np.round(rng.random((3, 9, 11)) * 4) / 4 + 1e-12 * rng.integers(0, 3, (3, 9, 11))
    g = rng.random((3, 9, 11)) < 0.3
    ap = metrics.pixel_ap(s, g)
    for k in range(3):
        assert abs(ap[k] - average_precision_score(g[k].ravel(), s[k].ravel())) < 1e-12


def test_pixel_ap_torch_in_torch_out_and_rejects_nan():
    s = torch.rand(2, 5, 6)
    g = torch.rand(2, 5, 6) > 0.5
    out = metrics.pixel_ap(s, g)
    assert isinstance(out, torch.Tensor) and out.shape == (2,)
    assert torch.allclose(out, torch.from_numpy(metrics.pixel_ap(s.numpy(), g.numpy())))
    s[0, 0, 0] = float("nan")
    with pytest.raises(ValueError):
        metrics.pixel_ap(s, g)


# ----------------------------------------------------------------------------- hand-made maps
H, W = 16, 16
HALF_STRIP = _box(H, W, 0, 16, 4, 12).astype(np.float32)  # 128 px = half the image on


def test_binarize_constant_map_and_modes():
    const = np.full((H, W), 3.0)
    assert (metrics.normalize(const) == 0).all()
    assert metrics.binarize(const).all()  # norm = 0 everywhere, median 0, 0 >= 0
    assert metrics.binarize(const, "max_ratio:0.5").all()
    assert not metrics.binarize(const, "fixed:0.1").any()
    ramp = np.arange(H * W, dtype=np.float64).reshape(H, W)
    assert metrics.binarize(ramp).sum() == H * W // 2  # distinct values: exactly the top half
    assert metrics.binarize(ramp, "fixed:0.75").sum() == (ramp / ramp.max() >= 0.75).sum()
    assert metrics.binarize(ramp, "max_ratio:0.5").sum() == (ramp / ramp.max() >= 0.5).sum()
    with pytest.raises(ValueError):
        metrics.binarize(ramp, "top:3")


def test_hand_made_ciou_and_ap():
    perfect_gt = HALF_STRIP.astype(bool)  # map == gt on half the image: thr = 0.5, B = G
    overlap_gt = _box(H, W, 0, 8, 2, 10)  # 64 px, 48 of them inside the strip
    small_gt = _box(H, W, 2, 6, 2, 6)  # 16 px
    maps = np.stack([HALF_STRIP, HALF_STRIP, np.full((H, W), 7.0, np.float32),
                     small_gt.astype(np.float32), HALF_STRIP])
    gts = np.stack([perfect_gt, overlap_gt, small_gt, small_gt, np.zeros((H, W), bool)])
    ap, ci = metrics.score_maps(maps, gts)
    # half overlap: two score groups; 48/128 precise at recall 3/4, then 64/256 at recall 1
    expected_ap = [1.0, 0.75 * 48 / 128 + 0.25 * 64 / 256, 16 / 256, 1.0]
    # all-on map (constant, or a perfect binary map smaller than half: median 0) gives |G| / P
    expected_ciou = [1.0, 48 / (64 + 128 - 48), 16 / 256, 16 / 256]
    assert np.allclose(ap[:4], expected_ap, rtol=0, atol=1e-15)
    assert np.allclose(ci[:4], expected_ciou, rtol=0, atol=1e-15)
    assert np.isnan(ap[4]) and np.isnan(ci[4])  # empty gt: undefined
    # the public ciou on binarized maps agrees
    assert np.allclose(metrics.ciou(metrics.binarize(maps), gts), ci, equal_nan=True)


def test_single_source_evaluator_hand_made():
    maps = np.stack([HALF_STRIP, HALF_STRIP, HALF_STRIP])
    gts = np.stack([HALF_STRIP.astype(bool), _box(H, W, 0, 8, 2, 10), np.zeros((H, W), bool)])
    ev = metrics.SingleSourceEvaluator(iou_thresholds=(0.5, 0.3))
    ev.update(maps, gts, torch.arange(3), ids=["a", "b", "c"])
    out = ev.compute()
    assert set(out) == {"AP", "IoU@0.5", "IoU@0.3", "AUC", "num_samples", "num_excluded",
                        "threshold"}
    assert out["AP"] == pytest.approx((1.0 + 0.34375) / 2, abs=1e-15)
    assert out["IoU@0.5"] == 0.5 and out["IoU@0.3"] == 1.0  # cious 1 and 1/3
    # y(t) = 1 for t <= 0.30, 1/2 for t = 0.35 .. 1: 6 full steps, one half-step, 13 halves
    assert out["AUC"] == pytest.approx(6 * 0.05 + 0.05 * 0.75 + 13 * 0.05 * 0.5, abs=1e-12)
    assert out["num_samples"] == 2 and out["num_excluded"] == 1
    assert out["threshold"] == "median"
    # with presence scores: top-1 recall over every sample (the empty-mask one included)
    ev.reset()
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.5, 0.5, 0.1]])  # tie: first class
    ev.update(maps, gts, torch.arange(3), classes=torch.tensor([1, 2, 0]), scores=scores)
    out = ev.compute()
    assert out["recall@N"] == pytest.approx(2 / 3) and out["AP"] == pytest.approx((1.0 + 0.34375) / 2)
    assert [r["recall"] for r in ev.rows()] == [1.0, 0.0, 1.0]
    ev.reset()  # a padded class (-1) is not counted
    ev.update(maps, gts, torch.arange(3), classes=torch.tensor([1, -1, 0]), scores=scores)
    assert ev.compute()["recall@N"] == 1.0


def test_auc_hand_made():
    assert metrics.auc(np.ones(5)) == pytest.approx(1.0)
    assert metrics.auc(np.zeros(5)) == pytest.approx(0.05 / 2)  # y(0) = 1, y(t > 0) = 0
    assert metrics.auc(np.array([0.5, np.nan])) == pytest.approx(0.5 + 0.025)
    assert np.isnan(metrics.auc(np.array([])))


def test_non_square_canvas_matches_sklearn_and_median():
    rng = np.random.default_rng(2)
    s = rng.random((3, 16, 32)).astype(np.float32)
    g = np.stack([_box(16, 32, 2, 10, 3, 20)] * 3)
    ap, ci = metrics.score_maps(s, g)
    b = metrics.binarize(s)
    assert (b.sum(axis=(1, 2)) == 16 * 32 // 2).all()
    assert np.array_equal(ci, metrics.ciou(b, g))
    for k in range(3):
        assert abs(ap[k] - average_precision_score(g[k].ravel(), s[k].ravel())) < 1e-12


# ----------------------------------------------------------------------------- evaluators
def _random_batch(rng, B, H, W):
    maps = rng.random((B, H, W)).astype(np.float32)
    gts = np.zeros((B, H, W), dtype=bool)
    for i in range(B):
        y, x = rng.integers(0, H // 2), rng.integers(0, W // 2)
        gts[i, y:y + H // 2, x:x + W // 2] = True
        maps[i, y:y + H // 2, x:x + W // 2] += rng.random()
    return maps, gts


def test_single_evaluator_batched_equals_one_by_one_and_dedupes(tmp_path):
    rng = np.random.default_rng(3)
    maps, gts = _random_batch(rng, 10, 12, 20)
    a = metrics.SingleSourceEvaluator(iou_thresholds=(0.5, 0.3))
    a.update(maps, gts, np.arange(10))
    b = metrics.SingleSourceEvaluator(iou_thresholds=(0.5, 0.3))
    for i in [9, 3, 0, 1, 2, 4, 5, 6, 7, 8, 0]:  # any order; index 0 twice (sampler padding)
        b.update(maps[i:i + 1], gts[i:i + 1], [i])
    assert a.compute() == b.compute()
    assert a.compute()["num_samples"] == 10
    ap = metrics.pixel_ap(maps, gts)
    assert a.compute()["AP"] == pytest.approx(ap.mean(), abs=1e-15)
    b.write_csv(tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(10))
    assert float(rows[4]["ap"]) == pytest.approx(ap[4], abs=1e-12)


def _mixtures(rng, B, N, H, F):
    """Canvases of F frames [B, N, H, F*H]; source n in frame n % F with a blob on its box."""
    W = F * H
    maps = rng.random((B, N, H, W)).astype(np.float32) * 0.5
    gts = np.zeros((B, N, H, W), dtype=bool)
    slot = np.tile(np.arange(N) % F, (B, 1))
    for i, n in itertools.product(range(B), range(N)):
        y, x = rng.integers(0, H // 2, size=2) + (0, slot[i, n] * H)
        gts[i, n, y:y + H // 2, x:x + H // 2] = True
        maps[i, n, y:y + H // 2, x:x + H // 2] += 1.0
    classes = np.stack([rng.choice(20, N, replace=False) for _ in range(B)])
    scores = rng.random((B, 20)).astype(np.float32)
    return maps, gts, classes, scores, slot


def test_piap_permutation_invariant_and_equals_cap_for_label_maps():
    rng = np.random.default_rng(4)
    maps, gts, classes, scores, slot = _mixtures(rng, 6, 3, 12, 2)
    ev = metrics.MultiSourceEvaluator(ciou_thresholds=(0.3, 0.1))
    ev.update(maps, maps, gts, classes, scores, slot, np.arange(6))
    out = ev.compute()
    assert set(out) == {"CAP", "PIAP", "CIoU@0.3", "CIoU@0.1", "AUC", "recall@N", "num_samples",
                        "num_sources", "num_excluded", "protocol", "threshold"}
    assert out["PIAP"] == pytest.approx(out["CAP"], abs=1e-15)  # identity is the best match
    assert out["num_samples"] == 6 and out["num_sources"] == 18 and out["num_excluded"] == 0
    expected_cap = metrics.pixel_ap(maps, gts).mean()
    assert out["CAP"] == pytest.approx(expected_cap, abs=1e-15)
    # predicted maps in another order (and for unrelated noise maps): PIAP does not change
    noise = rng.random(maps.shape).astype(np.float32)
    for perm in [(2, 0, 1), (1, 2, 0)]:
        for pred in (maps, noise):
            ref = metrics.MultiSourceEvaluator()
            ref.update(maps, pred, gts, classes, scores, slot, np.arange(6))
            permuted = metrics.MultiSourceEvaluator()
            permuted.update(maps, pred[:, list(perm)], gts, classes, scores, slot, np.arange(6))
            assert permuted.compute()["PIAP"] == pytest.approx(ref.compute()["PIAP"], abs=1e-15)
    # PIAP by brute force on the noise maps
    apm = np.array([[[metrics.pixel_ap(noise[i, m], gts[i, n]) for n in range(3)]
                     for m in range(3)] for i in range(6)])  # [B, m, n]
    brute = np.mean([max(np.mean([apm[i, p[n], n] for n in range(3)])
                         for p in itertools.permutations(range(3))) for i in range(6)])
    ev = metrics.MultiSourceEvaluator()
    ev.update(maps, noise, gts, classes, scores, slot, np.arange(6))
    assert ev.compute()["PIAP"] == pytest.approx(brute, abs=1e-12)
    assert ev.compute()["PIAP"] < out["PIAP"]


def test_padded_sources_are_ignored_and_recall():
    rng = np.random.default_rng(5)
    maps, gts, classes, scores, slot = _mixtures(rng, 4, 2, 12, 2)
    pad = lambda x, v: np.concatenate([x, np.full_like(x[:, :1], v)], axis=1)  # noqa: E731
    a = metrics.MultiSourceEvaluator()
    a.update(maps, maps, gts, classes, scores, slot, np.arange(4))
    b = metrics.MultiSourceEvaluator()
    b.update(pad(maps, 5.0), pad(maps, 9.0), pad(gts, True), pad(classes, -1), scores,
             pad(slot, 0), np.arange(4))
    assert a.compute() == b.compute()
    # recall@N: sample 0 has both labels on top, sample 1 one of two, others none
    scores = np.zeros((4, 20), np.float32)
    scores[0, classes[0]] = 1
    scores[1, classes[1, 0]] = 1
    scores[1, (classes[1, 1] + 1) % 20 if (classes[1, 1] + 1) % 20 != classes[1, 0]
              else (classes[1, 1] + 2) % 20] = 2
    for i in (2, 3):
        others = [c for c in range(20) if c not in classes[i]][:2]
        scores[i, others] = 1
    c = metrics.MultiSourceEvaluator()
    c.update(maps, maps, gts, classes, scores, slot, np.arange(4))
    assert c.compute()["recall@N"] == pytest.approx(3 / 8)


def test_source_protocol_crops_each_source_to_its_frame():
    h = 16
    gt = np.zeros((1, 1, h, 2 * h), dtype=bool)
    gt[0, 0, 4:12, 0:8] = True  # 64 px in frame 0 (left half of the 16 x 16 frame: 1/4)
    m = np.zeros((1, 1, h, 2 * h), dtype=np.float32)
    m[0, 0, :, 0:8] = 1.0  # inside frame 0: the top half is the left half, which holds the box
    m[0, 0, 0:6, 16:32] = 5.0  # a stronger blob in frame 1
    args = (np.array([[3]]), np.eye(20, dtype=np.float32)[[3]], np.array([[0]]), [0])
    frame = metrics.MultiSourceEvaluator(protocol="frame")
    frame.update(m, m, gt, *args)
    source = metrics.MultiSourceEvaluator(protocol="source")
    source.update(m, m, gt, *args)
    fo, so = frame.compute(), source.compute()
    assert so["CAP"] == pytest.approx(64 / 128) and so["PIAP"] == so["CAP"]
    assert so["CIoU@0.3"] == 1.0 and so["protocol"] == "source"
    assert fo["CAP"] < so["CAP"] and fo["CIoU@0.3"] == 0.0  # the blob outranks the box
    # source protocol == frame protocol on hand-cropped frames
    crop = metrics.MultiSourceEvaluator(protocol="frame")
    crop.update(m[..., :h], m[..., :h], gt[..., :h], *args)
    assert crop.compute()["CAP"] == so["CAP"] and crop.compute()["AUC"] == so["AUC"]


def test_source_protocol_uses_each_sources_frame_for_piap():
    rng = np.random.default_rng(6)
    maps, gts, classes, scores, slot = _mixtures(rng, 5, 2, 10, 2)
    pred = rng.random(maps.shape).astype(np.float32)
    ev = metrics.MultiSourceEvaluator(protocol="source", num_frames=2)
    ev.update(maps, pred, gts, classes, scores, slot, np.arange(5))
    out = ev.compute()
    h = 10
    crop = lambda x, i, n, f: x[i, n, :, f * h:(f + 1) * h]  # noqa: E731
    cap = [metrics.pixel_ap(crop(maps, i, n, slot[i, n]), crop(gts, i, n, slot[i, n]))
           for i in range(5) for n in range(2)]
    piap = [max(np.mean([metrics.pixel_ap(crop(pred, i, p[n], slot[i, n]),
                                          crop(gts, i, n, slot[i, n])) for n in range(2)])
                for p in itertools.permutations(range(2))) for i in range(5)]
    assert out["CAP"] == pytest.approx(np.mean(cap), abs=1e-12)
    assert out["PIAP"] == pytest.approx(np.mean(piap), abs=1e-12)


def test_multi_empty_mask_is_excluded_and_counted(tmp_path):
    rng = np.random.default_rng(7)
    maps, gts, classes, scores, slot = _mixtures(rng, 3, 2, 8, 2)
    gts[1, 1] = False
    ev = metrics.MultiSourceEvaluator()
    ev.update(maps, maps, gts, classes, scores, slot, np.arange(3), ids=["x", "y", "z"])
    out = ev.compute()
    assert out["num_sources"] == 5 and out["num_excluded"] == 1 and out["num_samples"] == 3
    ap = metrics.pixel_ap(maps, gts)
    assert out["CAP"] == pytest.approx(np.nanmean(ap), abs=1e-15)
    ev.write_csv(tmp_path / "m.csv")
    with open(tmp_path / "m.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and rows[3]["id"] == "y" and rows[3]["ap"] == "nan"


def test_best_assignment_large_n_matches_brute_force():
    rng = np.random.default_rng(8)
    a = rng.random((6, 5))
    brute = max(a[list(p), range(5)].sum() for p in itertools.permutations(range(6), 5))
    assert metrics._best_assignment(a) == pytest.approx(brute)


# ----------------------------------------------------------------------------- argument checks
def test_bad_arguments_raise_value_error():
    """Argument checks raise ValueError (an assert would vanish under python -O)."""
    maps, gts = np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="share the map size"):
        metrics.score_maps(maps, gts[..., :3])
    single = metrics.SingleSourceEvaluator()
    with pytest.raises(ValueError, match="must both be"):
        single.update(maps, gts[:1], [0, 1])
    with pytest.raises(ValueError, match="one entry per sample"):
        single.update(maps, gts, [0])
    with pytest.raises(ValueError, match="ids for 2 samples"):
        single.update(maps, gts, [0, 1], ids=["a"])
    with pytest.raises(ValueError, match="labeled classes"):
        single.update(maps, gts, [0, 1], scores=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="does not split"):
        metrics.frame_count(4, 9, 2)
    m, g = np.zeros((1, 2, 4, 8), np.float32), np.zeros((1, 2, 4, 8), bool)
    cls, sc, slot = np.array([[0, 1]]), np.zeros((1, 3)), np.array([[0, 1]])
    multi = metrics.MultiSourceEvaluator(protocol="source")
    for args, message in [((m, m[:, :1], g, cls, sc, slot), "must match"),
                          ((m, m, g, cls[:, :1], sc, slot), "classes"),
                          ((m, m, g, cls, sc[0], slot), "scores"),
                          ((m, m, g, cls, sc, slot[:, :1]), "frame_slot"),
                          ((m, m, g, cls, sc, slot + 1), "outside")]:
        with pytest.raises(ValueError, match=message):
            multi.update(*args, [0])
