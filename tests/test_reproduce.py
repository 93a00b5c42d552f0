"""tools/reproduce.py and tools/figures.py: aggregation, tables, run planning, presence metrics."""
import math

import numpy as np
import pytest

from tools.figures import presence_metrics
from tools.reproduce import (aggregate, curve_points, finite, fmt_change, fmt_stat, markdown_table,
                             mean_std, plan_runs)


def test_mean_std_skips_missing_and_uses_sample_std():
    s = mean_std([0.5, None, float("nan"), 0.7])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.6)
    assert s["std"] == pytest.approx(math.sqrt(0.02))  # ddof=1: ((0.1² + 0.1²) / 1) ** 0.5
    assert mean_std([0.3]) == {"mean": 0.3, "std": 0.0, "n": 1, "values": [0.3]}
    assert mean_std([])["n"] == 0


def test_formatting():
    assert fmt_stat(mean_std([0.5, 0.7])) == "0.600 ± 0.141"
    assert fmt_stat(mean_std([0.5])) == "0.500"
    assert fmt_stat(mean_std([])) == "—"
    assert fmt_change(mean_std([-0.25])) == "−25.0 %"
    assert fmt_change(mean_std([0.1, 0.3])) == "+20.0 ± 14.1 %"
    table = markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]
    with pytest.raises(AssertionError):
        markdown_table(["a", "b"], [["1"]])
    assert finite({"x": float("nan"), "y": [np.float32(1.5), np.int64(2)]}) == {"x": None, "y": [1.5, 2]}


def test_aggregate_over_seeds():
    runs = [{"frame": {"synthetic:test": {"AP": 0.4}}}, {"frame": {"synthetic:test": {"AP": 0.6}}},
            {"frame": {}}]  # a seed without this test set counts as missing
    out = aggregate(runs, [("AP", "frame", "synthetic:test", "AP"), ("x", "source", "s", "CAP")])
    assert out["AP"]["n"] == 2 and out["AP"]["mean"] == pytest.approx(0.5)
    assert out["x"]["n"] == 0


def test_plan_runs_shares_identical_configs_and_one_schedule(tmp_path):
    runs = plan_runs(["ezvsl", "avgn", "depth1", "depth3", "soft"], [0, 1], 300, str(tmp_path),
                     ["model.depth=1"], str(tmp_path / "data"))
    assert [r.name for r in runs] == ["ezvsl_s0", "avgn_s0", "depth3_s0", "ezvsl_s1", "avgn_s1",
                                      "depth3_s1"]
    assert runs[1].variants == ["avgn", "depth1", "soft"]
    for r in runs:  # 8192 / 64 = 128 steps per epoch -> 3 epochs, stopped at 300 steps
        assert r.overrides[-2:] == ["train.max_steps=300", "train.epochs=3"]
        assert r.config["train"]["seed"] == r.seed
    assert runs[2].config["model"]["depth"] == 3 and runs[0].config["model"]["name"] == "ezvsl"
    assert curve_points(300, 4) == [75, 150, 225, 300] and curve_points(2, 4) == [1, 2]


def test_presence_metrics_by_hand():
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.6, 0.1],    # tp, fp
                       [0.2, 0.4, 0.3],    # fn (top-1 right)
                       [0.1, 0.8, 0.7]])   # fp, tp (top-1 wrong)
    m = presence_metrics(scores, labels)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["top1"] == pytest.approx(2 / 3)
    none = presence_metrics(np.zeros((2, 3)), labels[:2])
    assert math.isnan(none["precision"]) and none["recall"] == 0.0
