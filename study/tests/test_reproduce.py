"""study.reproduce, study.report and study.figures: run planning, aggregation, tables, presence
metrics."""
import math
import os

import numpy as np
import pytest

from study.figures import presence_metrics
from study.report import (aggregate, finite, fmt_change, fmt_stat, markdown_table, mean_std,
                          write_report)
from study.reproduce import curve_points, plan_runs
from utils.config import load_config


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
    with pytest.raises(ValueError, match=r"one cell per header \(2\); got \['1'\]"):
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


def test_figure_embeddings_are_the_class_groups_of_avgn_and_pooled_features_of_ezvsl():
    import torch
    from models import build_model
    from study.figures import model_outputs
    from utils.config import load_config

    class Items(torch.utils.data.Dataset):  # samples of the dataset contract, random content
        def __len__(self):
            return 6

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"image": torch.randn(3, 32, 32, generator=g),
                    "spec": torch.randn(1, 64, 48, generator=g),
                    "labels": torch.nn.functional.one_hot(torch.tensor(i % 5), 5).float(),
                    "classes": torch.tensor([i % 5]), "gt": torch.zeros(1, 32, 32),
                    "frame_slot": torch.tensor([0]), "id": f"x{i}", "index": i}

    tiny = ["model.dim=32", "model.heads=4", "model.width=8", "model.depth=1", "model.num_classes=5"]
    for name, raw, group in (("avgn", "raw", True), ("avgn", "modulated", True), ("ezvsl", "raw", False)):
        model = build_model(load_config(None, tiny + [f"model.name={name}",
                                                      f"model.loc_features={raw}"])).eval()
        with torch.no_grad():
            out = model_outputs(model, Items(), batch_size=4)
        assert out["visual_is_group"].all() == group and out["audio_is_group"].all() == group
        assert out["visual_emb"].shape == (6, 32) and np.allclose(
            np.linalg.norm(out["visual_emb"], axis=1), 1.0, atol=1e-5)
        if group:  # g^v and g^a of the labeled class
            with torch.no_grad():
                out_all = model(torch.stack([Items()[i]["image"] for i in range(6)]),
                                torch.stack([Items()[i]["spec"] for i in range(6)]))
            for key, groups in (("visual_emb", out_all["visual_groups"]),
                                ("audio_emb", out_all["audio_groups"])):
                ref = torch.nn.functional.normalize(groups[torch.arange(6), torch.arange(6) % 5], dim=-1)
                assert np.allclose(out[key], ref.numpy(), atol=1e-5), key


def test_report_from_a_summary_alone(tmp_path):
    run = {"frame": {"synthetic:test": {"AP": 0.4}, "synthetic:test_pairs": {"CAP": 0.5}}}
    summary = {"command": "python -m study.reproduce --quick", "mode": "quick", "seeds": [0, 1],
               "steps": 8, "extra": [], "select": "last",
               "baselines": {"center": {"frame": {"synthetic:test": {"AP": 0.2}}}},
               "variant_labels": {"avgn": "AVGN"}, "iou_key": "IoU@0.5", "ciou_key": "CIoU@0.3",
               "runs": {"avgn_s0": {"variants": ["avgn"], "seed": 0, "results": run},
                        "avgn_s1": {"variants": ["avgn"], "seed": 1, "results": {
                            "frame": {"synthetic:test": {"AP": 0.6}}}}}}
    tables = write_report(summary, str(tmp_path))
    assert tables["table1_2"]["AVGN"]["AP"]["mean"] == pytest.approx(0.5)
    assert tables["table1_2"]["AVGN"]["pairs/frame CAP"]["n"] == 1  # seed 1 lacks the pairs
    text = (tmp_path / "tables.md").read_text()
    assert "| AVGN | 0.500 ± 0.141 |" in text and "python -m study.reproduce --quick" in text
    assert tables["protocols"]["AVGN"]["frame CAP"]["mean"] == pytest.approx(0.5)
    assert "| 0.500 (n=1) |" in text  # the pairs of seed 0 only
    assert "| center (no audio) | 0.200 |" in text  # computed once: no n
    summary["not_trained"] = ["avgn_s2"]
    write_report(summary, str(tmp_path))
    assert "Not trained yet, left out (1): avgn_s2." in (tmp_path / "tables.md").read_text()


def test_a_checkpoint_of_an_earlier_version_resumes_in_the_reproduction(tmp_path):
    """Stored configs with loss.symmetric true and without model.assign_eps are today's
    anchor_class and 1e-6, not 'another config'."""
    from study.reproduce import checkpoint_step
    from utils.checkpoint import save_checkpoint
    from utils.config import to_dict
    run = plan_runs(["avgn"], [0], 8, str(tmp_path), [], str(tmp_path / "data"))[0]
    old = to_dict(load_config("configs/synthetic.yaml", run.overrides))
    old["loss"]["symmetric"] = True
    del old["model"]["assign_eps"]
    save_checkpoint({"model": {}, "config": old, "class_names": [], "step": 8}, run.ckpt)
    assert checkpoint_step(run) == 8


def test_a_stored_run_is_neither_trained_nor_evaluated_again(tmp_path):
    """A run folder kept in git without its checkpoint: its log reaches the run's steps."""
    import json
    from study.reproduce import evaluate_run, finished, stored, train
    run = plan_runs(["avgn"], [0], 8, str(tmp_path), [], str(tmp_path / "data"))[0]
    calls = []

    class Runner:
        dry_run = False

        def __call__(self, argv, log, tag):
            calls.append(argv)

    os.makedirs(os.path.join(run.dir, "eval_frame_last"))
    with open(os.path.join(run.dir, "log.jsonl"), "w") as f:
        f.write(json.dumps({"epoch": 0, "step": 4}) + "\n")
    assert not stored(run) and not finished(run)  # stopped early: trained anew (--no-train: left out)
    train(run, Runner())
    assert calls[-1][3] == "--overwrite"
    with open(os.path.join(run.dir, "log.jsonl"), "a") as f:
        f.write(json.dumps({"epoch": 1, "step": 8}) + "\n")
    with open(os.path.join(run.dir, "eval_frame_last", "results.json"), "w") as f:
        json.dump({"results": {"synthetic:test": {"AP": 0.5}}}, f)
    calls.clear()
    assert stored(run) and finished(run) and not train(run, Runner())
    assert evaluate_run(run, Runner(), [], "last") == {"frame": {"synthetic:test": {"AP": 0.5}}}
    assert calls == []


def test_the_stand_in_trunk_is_made_once_for_its_sizes(tmp_path, monkeypatch):
    import json
    import study.reproduce as reproduce
    monkeypatch.setattr(reproduce, "STAND_IN", str(tmp_path / "trunk.pth"))
    calls = []
    runner = lambda argv, log, tag: calls.append(argv)  # noqa: E731
    reproduce.stand_in(runner, [], str(tmp_path))
    assert calls and calls[0][:2] == ["-m", "study.pretrain_visual"]
    (tmp_path / "trunk.pth").write_bytes(b"")
    (tmp_path / "trunk.json").write_text(json.dumps({"width": 16, "visual_stride": 8,
                                                     "image_size": 64}))
    calls.clear()
    reproduce.stand_in(runner, [], str(tmp_path))  # made for configs/synthetic.yaml: kept
    assert calls == []
    with pytest.raises(SystemExit, match="was made for"):
        reproduce.stand_in(runner, ["model.width=8"], str(tmp_path))


def test_the_separation_set_also_tests_its_runs_with_competing_maps(tmp_path):
    import json
    from study.reproduce import COMPETE, COMPETE_TAU, SET_EVALS, evaluate_run
    evals = {v: SET_EVALS["separation"] for v in ("avgn",)}
    runs = plan_runs(["avgn", "depth1", "ezvsl"], [0], 8, str(tmp_path), [],
                     str(tmp_path / "data"), evals)
    assert runs[0].variants == ["avgn", "depth1"] and runs[0].evals == tuple(COMPETE)
    assert runs[1].evals == ()  # ezvsl: not asked for
    calls = []

    class Runner:
        dry_run = False

        def __call__(self, argv, log, tag):  # writes what test.py would
            calls.append(argv)
            out = argv[argv.index("--out") + 1]
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump({"results": {"synthetic:test_pairs": {"CAP": 0.5 + 0.1 * (
                    f"eval.compete_tau={COMPETE_TAU}" in argv)}}}, f)

    results = evaluate_run(runs[0], Runner(), [], "last")
    assert set(results) == {"frame", "source", "per_frame", "frame_thr0.5", "duet_thr0.5",
                            "frame_compete", "per_frame_compete", "frame_thr0.5_compete",
                            "duet_thr0.5_compete"}
    competing = [c for c in calls if f"eval.compete_tau={COMPETE_TAU}" in c]
    assert len(competing) == 4 and all(os.path.basename(c[c.index("--out") + 1]).startswith(
        "eval_") and "_compete_" in c[c.index("--out") + 1] for c in competing)
    summary = {"command": "c", "mode": "full", "seeds": [0], "steps": 8, "extra": [],
               "select": "last", "baselines": {}, "compete_tau": COMPETE_TAU,
               "variant_labels": {"authors_code_pt": "A"}, "iou_key": "IoU@0.5",
               "ciou_key": "CIoU@0.3",
               "runs": {"authors_code_pt_s0": {"variants": ["authors_code_pt"], "seed": 0,
                                               "results": results}}}
    table = write_report(summary, str(tmp_path))["separation"]
    assert table["A"]["pairs CAP"]["mean"] == pytest.approx(0.5)
    assert table[f"A + competing maps (τ_c {COMPETE_TAU})"]["pairs CAP"]["mean"] == pytest.approx(0.6)
    assert summary["variant_labels"] == {"authors_code_pt": "A"}  # the summary is not changed


def test_a_dirty_tree_is_refused_unless_told(tmp_path, monkeypatch):
    """A table comes from runs of one commit: uncommitted code changes stop the reproduction
    before anything runs; --dry-run and --allow-dirty go on."""
    import study.reproduce as reproduce
    monkeypatch.setattr(reproduce, "git_sha", lambda: "abc1234-dirty")
    with pytest.raises(SystemExit, match=r"uncommitted changes \(abc1234-dirty\)"):
        reproduce.main(["--only", "released", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    reproduce.main(["--only", "released", "--dry-run", "--out", str(tmp_path / "out")])


def test_the_released_set_trains_the_released_model_beside_its_cosine_form_and_eq10():
    """released: model.arch=authors (what the paper configs train) at the CPU size; Eq. 10 and the
    cosine form with the paper configs' epsilon and initialization (not the recipe's)."""
    from study.reproduce import SETS, VARIANTS
    from utils.config import load_config
    assert len(SETS["released"]) == 10 and "released_pt" in SETS["released"]
    cfg = {name: load_config("configs/synthetic.yaml", list(VARIANTS[name].overrides))
           for name in ("released", "cosine_own_class", "eq10_paper")}
    assert cfg["released"].model.arch == "authors"
    for c in cfg.values():
        assert (c.model.assign_eps, c.model.zero_init_residual) == (1.0, False)
        assert (c.loss.w_loc_agnostic, c.loss.patch_grad, c.loss.gather_negatives) == (0, True, False)
    assert (cfg["eq10_paper"].model.arch, cfg["eq10_paper"].model.loc_features,
            cfg["eq10_paper"].loss.symmetric) == ("paper", "modulated", "none")
    assert (cfg["cosine_own_class"].model.loc_features,
            cfg["cosine_own_class"].loss.symmetric) == ("raw", "own_class")


def test_released_tau_changes_only_tau_to_the_cosine_forms_logit_scale_at_init():
    """released_tau: the released model with one key changed, loss.tau = 0.03 x the length of
    its audio group token at init, so that <f^v_p, g^a_c> / tau starts at the scale of cos / 0.03."""
    import torch

    from models import build_model
    from study.reproduce import SETS, VARIANTS
    from utils.config import load_config, to_dict
    assert SETS["released_scale"] == ("released", "released_tau")
    cfg = {name: load_config("configs/synthetic.yaml",
                             list(VARIANTS[name].overrides) + ["model.num_classes=10"])
           for name in SETS["released_scale"]}
    a, b = to_dict(cfg["released"]), to_dict(cfg["released_tau"])
    a["loss"].pop("tau"), b["loss"].pop("tau")
    assert a == b
    torch.manual_seed(0)
    model = build_model(cfg["released"]).eval()
    side = cfg["released"].data.image_size
    with torch.no_grad():  # the audio encoder pools globally: any spectrogram size will do
        out = model(torch.randn(4, 3, side, side), torch.randn(4, 1, 64, 64))
    length = out["audio_groups"].norm(dim=-1).mean().item()
    assert cfg["released_tau"].loss.tau == pytest.approx(cfg["released"].loss.tau * length, rel=0.02)


def test_the_released_logits_start_far_above_the_cosine_forms_scale():
    """study.logit_scale at the CPU size: the released model's logit scale is |g^a| / tau, its
    loc term at init far above chance; the cosine form's scale is 1 / tau, its loc near chance."""
    from study.logit_scale import FORMS, SIZES, at_init
    config, base = SIZES["CPU size (configs/synthetic.yaml)"]
    released, cosine = (at_init(config, tuple(base) + keys, batch=8) for keys in FORMS.values())
    assert released["scale"] == pytest.approx(released["|g^a|"] / 0.03)
    assert released["|g^a|"] == pytest.approx(128 ** 0.5, rel=0.05)  # the LayerNorm's output
    assert cosine["scale"] == pytest.approx(1 / 0.03)
    assert released["loc"] > 2 * released["chance"]
    assert cosine["loc"] == pytest.approx(cosine["chance"], rel=0.1)
