import os
import pytest
import yaml

from utils.config import (Config, ConfigError, dump_config, from_dict, load_config, parse_overrides,
                          to_dict)


def test_defaults_roundtrip_through_yaml(tmp_path):
    cfg = load_config(None, ["model.depth=6", "eval.iou_thresholds=[0.1, 0.7]", "train.lr=3e-4"])
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    again = load_config(str(path))
    assert again == cfg
    assert from_dict(to_dict(cfg)) == cfg
    assert again.model.depth == 6 and again.eval.iou_thresholds == [0.1, 0.7]
    assert isinstance(again.train.lr, float) and again.train.lr == 3e-4


def test_stored_config_with_a_removed_key_loads_with_a_warning(caplog):
    stored = to_dict(load_config(None, ["model.depth=2"]))
    stored["eval"]["num_sources"] = 2  # a key an older version wrote
    with pytest.raises(ConfigError, match="eval.num_sources"):
        from_dict(stored)
    with caplog.at_level("WARNING", logger="avgn"):
        cfg = from_dict(stored, stored=True)
    assert cfg.model.depth == 2 and "eval.num_sources" in caplog.text
    with pytest.raises(ConfigError, match="backbone"):  # an unknown section still raises
        from_dict({"backbone": "vit"}, stored=True)
    stored["model"]["depth"] = "three"  # a wrong type still raises
    with pytest.raises(ConfigError, match="model.depth"):
        from_dict(stored, stored=True)


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {dim: 64, depth: 1}\ntrain: {epochs: 5}\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nmodel: {depth: 2}\n")
    cfg = load_config(str(tmp_path / "child.yaml"), ["train.epochs=7"])
    assert (cfg.model.dim, cfg.model.depth, cfg.train.epochs) == (64, 2, 7)


def test_unknown_key_names_it_and_suggests(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.dpeth.*did you mean 'model\.depth'"):
        load_config(None, ["model.dpeth=3"])
    (tmp_path / "bad.yaml").write_text("train: {batch_size: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.batch_size'.*batch_size_per_gpu"):
        load_config(str(tmp_path / "bad.yaml"))


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match=r"'model\.depth' expects int, got 'three'"):
        load_config(None, ["model.depth=three"])
    with pytest.raises(ConfigError, match=r"'loss\.symmetric' must be one of none, own_class, "
                                          r"anchor_class; got 3"):
        load_config(None, ["loss.symmetric=3"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(None, ["model=3"])


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["model.depth"])


def test_every_shipped_config_loads():
    import glob
    paths = sorted(glob.glob("configs/*.yaml") + glob.glob("configs/recipe/*.yaml"))
    for p in paths:
        assert isinstance(load_config(p), Config), p


def test_stored_boolean_symmetric_reads_as_its_named_form():
    stored = to_dict(Config())
    stored["loss"]["symmetric"] = True  # checkpoints written before the term had three forms
    assert from_dict(stored, stored=True).loss.symmetric == "anchor_class"
    stored["loss"]["symmetric"] = False
    assert from_dict(stored, stored=True).loss.symmetric == "none"
    assert load_config(None, ["loss.symmetric=own_class"]).loss.symmetric == "own_class"


# the keys of this project's recipe (configs/synthetic.yaml) that the recipe configs set
RECIPE_KEYS = {("model", "loc_features"), ("model", "assign_eps"), ("model", "zero_init_residual"),
               ("loss", "w_loc_agnostic"), ("loss", "patch_grad"), ("loss", "symmetric")}


def test_paper_configs_run_the_authors_objective_and_recipe_configs_the_measured_recipe():
    import glob
    recipe = to_dict(load_config("configs/synthetic.yaml"))
    authors = {("model", "loc_features"): "raw", ("loss", "symmetric"): "own_class",
               ("model", "assign_eps"): 1.0, ("model", "zero_init_residual"): False,
               ("loss", "w_loc_agnostic"): 0.0, ("loss", "patch_grad"): True}
    paths = sorted(glob.glob("configs/recipe/*.yaml"))
    assert len(paths) == 7
    for path in paths:
        paper = to_dict(load_config(os.path.join("configs", os.path.basename(path))))
        ours = to_dict(load_config(path))
        assert all(paper[s][k] == v for (s, k), v in authors.items()), path
        differ = {(s, k) for s in paper for k in paper[s] if paper[s][k] != ours[s][k]}
        assert differ - {("train", "output_dir")} <= RECIPE_KEYS, path
        assert all(ours[s][k] == recipe[s][k] for s, k in RECIPE_KEYS), path


def test_a_stored_config_without_later_keys_reads_as_it_was_trained():
    """Checkpoints written before model.assign_eps / zero_init_residual were keys were trained with
    1e-6 and zero-init; today's defaults (the authors' 1.0 and false) must not change them."""
    stored = to_dict(load_config(None))
    del stored["model"]["assign_eps"], stored["model"]["zero_init_residual"]
    cfg = from_dict(stored, stored=True)
    assert (cfg.model.assign_eps, cfg.model.zero_init_residual) == (1e-6, True)
    assert (Config().model.assign_eps, Config().model.zero_init_residual) == (1.0, False)
