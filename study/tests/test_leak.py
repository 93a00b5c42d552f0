"""study/leak.py: where a mixture's thresholded maps fall, by hand and on a trained checkpoint."""
import json

import numpy as np
import pytest
import torch

import train
from metrics import MultiSourceEvaluator
from study.leak import LeakEvaluator, main, silent_objects, split_on_pixels


def test_split_on_pixels_by_hand():
    z = np.zeros((1, 2, 4), dtype=bool)
    on, own, other, silent, frame = (z.copy() for _ in range(5))
    on[0, 0, :] = True  # four on-pixels in the top row
    own[0, 0, 0] = True
    other[0, 0, 1] = other[0, 0, 0] = True  # overlaps the own mask at pixel 0: counted as own
    silent[0, 0, 1:3] = True  # pixel 1 is in another source's mask: counted as other
    frame[0, :, :2] = True
    parts = split_on_pixels(on, own, other, silent, frame)
    assert {k: int(v[0]) for k, v in parts.items()} == dict(
        own=1, other=1, silent=1, background=1, outside=2, on=4, mask=1)


def test_silent_objects_are_the_silent_boxes_of_each_frame():
    objects = {"a": [{"bbox": [0.5, 0.5, 1.0, 1.0], "sounding": False},
                     {"bbox": [0.0, 0.0, 0.5, 0.5], "sounding": True}],
               "b": [{"bbox": [0.0, 0.0, 0.25, 1.0], "sounding": False}]}
    out = silent_objects(["a+b", "b"], objects, frames=2, height=4, width=8)
    expect = np.zeros((2, 4, 8), dtype=bool)
    expect[0, 2:, 2:4] = True  # a's silent box, frame 0
    expect[0, :, 4] = True  # b's, frame 1
    expect[1, :, 0] = True  # sample 2: b alone in frame 0
    np.testing.assert_array_equal(out, expect)
    assert not silent_objects(["a+b"], None, 2, 4, 8).any()


def _canvas():
    """One two-frame canvas (frames 4 x 4): source 0 in frame 0, source 1 in frame 1; source 0's
    map is on its own box, on 2 pixels of source 1's box and on a silent object of frame 0."""
    gts = torch.zeros(1, 2, 4, 8)
    gts[0, 0, :2, :2] = 1
    gts[0, 1, :2, 4:6] = 1
    maps = gts.clone()
    maps[0, 0, 0, 4:6] = 1  # on source 1's box, outside frame 0
    maps[0, 0, 3, 2:4] = 1  # on the silent object of frame 0
    # the silent object is of source 0's class: source 0 is ambiguous, source 1 is not
    objects = {"a": [{"class": "c3", "bbox": [0.5, 0.5, 1.0, 1.0], "sounding": False}], "b": []}
    args = dict(maps=maps, pred_maps=maps, gts=gts, classes=torch.tensor([[3, 5]]),
                scores=torch.rand(1, 8), frame_slot=torch.tensor([[0, 1]]),
                indices=torch.tensor([0]), ids=["a+b"])
    return args, objects


@pytest.mark.parametrize("protocol", ["frame", "source"])
def test_leak_evaluator_splits_each_sources_map_and_keeps_the_set_metrics(protocol):
    args, objects = _canvas()
    names = [f"c{i}" for i in range(8)]
    leak = LeakEvaluator(objects, names, threshold="fixed:0.5", protocol=protocol)
    plain = MultiSourceEvaluator(threshold="fixed:0.5", protocol=protocol)
    leak.update(**args)
    plain.update(**args)
    out, ref = leak.compute(), plain.compute()
    assert all(out[k] == ref[k] for k in ref)  # CAP, CIoU, ... as the evaluator scores them
    if protocol == "frame":  # source 0: 4 own, 2 other (outside its frame), 2 silent; 1: 4 own
        expect = dict(own=8 / 12, other=2 / 12, silent=2 / 12, background=0.0, outside=2 / 12,
                      spread=(8 / 4 + 4 / 4) / 2)
    else:  # cropped to the source's frame: source 1's box is out of source 0's crop
        expect = dict(own=8 / 10, other=0.0, silent=2 / 10, background=0.0, outside=0.0,
                      spread=(6 / 4 + 4 / 4) / 2)
    assert {k: out[k] for k in expect} == pytest.approx(expect)
    ap = [r["ap"] for r in plain.rows()]
    assert (out["ambiguous"], out["CAP ambiguous"], out["CAP clear"]) == (0.5, ap[0], ap[1])
    blind = LeakEvaluator(None, threshold="fixed:0.5", protocol=protocol)  # objects unknown
    blind.update(**args)
    out = blind.compute()
    assert np.isnan(out["silent"]) and out["background"] == pytest.approx(expect["silent"])
    assert np.isnan(out["ambiguous"]) and np.isnan(out["CAP clear"])
    with pytest.raises(ValueError, match="class_names"):
        LeakEvaluator(objects)


def test_tools_leak_on_a_trained_checkpoint_matches_test_py(tmp_path, script):
    from tests.fixtures import TINY_RUN as TINY
    root, run = str(tmp_path / "root"), tmp_path / "runs" / "tiny_s0"
    train.main(["--config", "configs/synthetic.yaml", *TINY, f"data.root={root}",
                f"train.output_dir={run}", "train.max_steps=1"])
    ref = script("test.py").main(["--ckpt", str(run / "checkpoint.pth"), "--out",
                                  str(tmp_path / "eval"), "eval.threshold=fixed:0.5",
                                  "eval.test_sets=[synthetic:test_pairs,synthetic:test_duet]"])
    out = tmp_path / "leak"
    results = main(["--runs", str(tmp_path / "runs"), "--out", str(out),
                    "--sets", "synthetic:test_pairs", "synthetic:test_duet"])
    (got,) = results["tiny"]
    assert set(got) == {"synthetic:test_pairs frame", "synthetic:test_pairs per_frame",
                        "synthetic:test_duet frame"}  # a duet has one frame: one protocol
    for key, entry in (("synthetic:test_pairs frame", "synthetic:test_pairs"),
                       ("synthetic:test_duet frame", "synthetic:test_duet")):
        assert got[key]["CAP"] == ref[entry]["CAP"]
        assert got[key]["CIoU@0.3"] == ref[entry]["CIoU@0.3"]
        shares = sum(got[key][k] for k in ("own", "other", "silent", "background"))
        assert shares == pytest.approx(1.0)
        assert 0 <= got[key]["ambiguous"] <= 1
    assert got["synthetic:test_pairs per_frame"]["outside"] == 0.0
    assert got["synthetic:test_pairs frame"]["silent"] > 0  # the synthetic frames' distractors
    assert got["synthetic:test_duet frame"]["ambiguous"] == 0  # its distractors: other classes
    saved = json.load(open(str(out) + ".json"))
    assert saved["results"]["tiny"][0]["synthetic:test_duet frame"]["CAP"] == ref[
        "synthetic:test_duet"]["CAP"]
    assert "| tiny | synthetic:test_pairs per_frame | 1 |" in open(str(out) + ".md").read()
    with pytest.raises(SystemExit, match="'synthetic:test' has one source per item"):
        main(["--ckpt", str(run / "checkpoint.pth"), "--sets", "synthetic:test"])


@pytest.mark.parametrize("argv, message", [
    (["--runs", "x", "--threshold", "half"], "--threshold"),
    (["--runs", "x", "--compete-tau", "-1"], "--compete-tau must be >= 0"),
    (["--runs", "no/such/folder"], "--runs: no folder no/such/folder"),
    (["--ckpt", "c.pth", "--out", "o"], "--out goes with --runs")])
def test_bad_arguments_are_named_before_any_model_is_loaded(argv, message, tmp_path,
                                                            capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
