import dataclasses
import inspect
import os
import re
import typing
from typing import Literal

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


# the paper's settings (README, "Benchmarks"), which every benchmark config inherits
PAPER = {"model.name": "avgn", "model.arch": "authors", "loss.gather_negatives": False,
         "model.dim": 512, "model.depth": 3, "model.pretrained": "imagenet",
         "loss.tau": 0.03, "data.image_size": 224, "data.audio.n_fft": 512,
         "data.audio.frames": 276, "data.audio.hop": 238, "data.audio.frontend": "released",
         "data.interpolation": "bicubic", "eval.upsample": "bicubic", "train.epochs": 100,
         "train.batch_size_per_gpu": 32, "train.lr": 1e-4, "train.optimizer": "adam", "train.amp": "none"}
BENCHMARKS = ("music", "music_duet", "music_solo", "vggsound_duet", "vggsound_instruments",
              "vggsound_instruments_multi", "vggsound_single")


def _flat(cfg):
    out = {}
    for section, values in to_dict(cfg).items():
        for k, v in values.items():
            items = v.items() if isinstance(v, dict) else [(None, v)]
            out.update({".".join(filter(None, (section, k, sub))): x for sub, x in items})
    return out


def test_every_shipped_config_loads_with_the_paper_settings_and_its_own_data():
    """Each benchmark has a paper config with the paper's settings and a recipe config that
    differs from it only in the recipe's keys (and its run folder); each trains and tests the
    benchmark it is named after."""
    from datasets import DATASETS
    names = lambda folder: sorted(n[:-5] for n in os.listdir(folder) if n.endswith(".yaml"))  # noqa: E731
    assert names("configs") == sorted(BENCHMARKS + ("cpu", "paper", "synthetic"))
    assert names("configs/recipe") == sorted(BENCHMARKS)
    recipe_keys = {"model.arch", "loss.gather_negatives", "model.loc_features", "model.assign_eps", "model.zero_init_residual",
                   "loss.w_loc_agnostic", "loss.patch_grad", "loss.symmetric", "train.output_dir"}
    for name in BENCHMARKS:
        paper = _flat(load_config(f"configs/{name}.yaml"))
        assert {k: paper[k] for k in PAPER} == PAPER, name
        assert paper["data.dataset"] in DATASETS, name
        assert name.startswith(paper["data.dataset"]) or paper["data.dataset"].startswith(name)
        assert paper["train.output_dir"] == f"runs/{name}"
        recipe = _flat(load_config(f"configs/recipe/{name}.yaml"))
        differ = {k for k in paper if paper[k] != recipe[k]}
        assert {"model.arch", "loss.w_loc_agnostic", "train.output_dir"} <= differ <= recipe_keys, \
            (name, differ)
        assert recipe["train.output_dir"] == f"runs/recipe_{name}"
    quick = load_config("configs/synthetic.yaml")
    assert quick.data.dataset == "synthetic" and quick.model.pretrained == "none"


def test_the_cpu_overlay_gives_any_benchmark_the_quick_start_sizes_and_nothing_else():
    """configs/cpu.yaml after a benchmark config: the quick start's sizes (model, frames, audio,
    batch, lr), every other key the benchmark's own."""
    quick = _flat(load_config("configs/synthetic.yaml"))
    import yaml

    def named(d, prefix=""):  # the keys a YAML file sets
        return {k for key, v in d.items() for k in (named(v, f"{prefix}{key}.") if
                                                   isinstance(v, dict) else {prefix + key})}
    keys = named(yaml.safe_load(open("configs/cpu.yaml")))
    assert {"model.dim", "data.image_size", "data.audio.seconds", "data.audio.hop"} <= keys
    for name in BENCHMARKS:
        paper = _flat(load_config(f"configs/{name}.yaml"))
        cpu = _flat(load_config([f"configs/{name}.yaml", "configs/cpu.yaml"]))
        assert {k: cpu[k] for k in keys} == {k: quick[k] for k in keys}, name
        assert {k: v for k, v in cpu.items() if k not in keys} == \
            {k: v for k, v in paper.items() if k not in keys}, name


def test_stored_boolean_symmetric_reads_as_its_named_form():
    stored = to_dict(Config())
    stored["loss"]["symmetric"] = True  # checkpoints written before the term had three forms
    assert from_dict(stored, stored=True).loss.symmetric == "anchor_class"
    stored["loss"]["symmetric"] = False
    assert from_dict(stored, stored=True).loss.symmetric == "none"
    assert load_config(None, ["loss.symmetric=own_class"]).loss.symmetric == "own_class"


# the keys of this project's recipe (configs/synthetic.yaml) that the recipe configs set
# the recipe (configs/synthetic.yaml, as measured) on the equations as printed
RECIPE_KEYS = {("model", "loc_features"), ("model", "assign_eps"), ("model", "zero_init_residual"),
               ("loss", "w_loc_agnostic"), ("loss", "patch_grad"), ("loss", "symmetric")}


def test_paper_configs_train_the_released_model_and_recipe_configs_the_measured_recipe():
    import glob
    recipe = to_dict(load_config("configs/synthetic.yaml"))
    paths = sorted(glob.glob("configs/recipe/*.yaml"))
    assert len(paths) == 7
    for path in paths:
        paper = to_dict(load_config(os.path.join("configs", os.path.basename(path))))
        ours = to_dict(load_config(path))
        assert (paper["model"]["arch"], paper["loss"]["gather_negatives"]) == ("authors", False)
        assert (ours["model"]["arch"], ours["loss"]["gather_negatives"]) == ("paper", True)
        differ = {(s, k) for s in paper for k in paper[s] if paper[s][k] != ours[s][k]}
        assert differ - {("train", "output_dir"), ("model", "arch"), ("loss", "gather_negatives")} \
            <= RECIPE_KEYS, path
        assert all(ours[s][k] == recipe[s][k] for s, k in RECIPE_KEYS), path


def test_a_stored_config_without_later_keys_reads_as_it_was_trained():
    """Checkpoints written before model.assign_eps / zero_init_residual were keys were trained with
    1e-6 and zero-init; today's defaults (the authors' 1.0 and false) must not change them."""
    stored = to_dict(load_config(None))
    del stored["model"]["assign_eps"], stored["model"]["zero_init_residual"]
    cfg = from_dict(stored, stored=True)
    assert (cfg.model.assign_eps, cfg.model.zero_init_residual) == (1e-6, True)
    assert (Config().model.assign_eps, Config().model.zero_init_residual) == (1.0, False)


# ----------------------------------------------------------------------------- stated once
# Each default and allowed value is stated in the schema; the constructors that a build_* feeds
# keep defaults (and lists of allowed values) for callers without a config, and these tests check
# that they agree with it, and that docs/model.md's table of keys does.

def _schema_field(key):
    """('model.dim') -> the dataclasses.Field of that key in the schema."""
    *sections, name = key.split(".")
    cls = Config
    for s in sections:
        cls = typing.get_type_hints(cls)[s]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert name in fields and not dataclasses.is_dataclass(typing.get_type_hints(cls)[name]), \
        f"{key} is not a key of the schema"
    return fields[name], typing.get_type_hints(cls)[name]


def _schema_default(key):
    f, _ = _schema_field(key)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _constructors():
    """(callable, {parameter: schema key}) for every constructor in models/ and losses.py whose
    parameters take schema values; a parameter missing from the map has no schema key."""
    from losses import AuthorsCriterion, AVGNCriterion
    from models.authors import AuthorsAVGN
    from models.avgn import AVGN, Block, ClassTokenTransformer, Grouping
    from models.encoders import AudioEncoder, ResNet18Trunk, VisualEncoder, load_imagenet_weights
    from models.ezvsl import EZVSL
    model = {f.name: f"model.{f.name}" for f in dataclasses.fields(Config().model)}
    return [
        (AVGN, model),
        (AuthorsAVGN, model),
        (EZVSL, model),
        (Block, model),
        (ClassTokenTransformer, model),
        (Grouping, dict(model, eps="model.assign_eps")),
        (VisualEncoder, dict(model, output_stride="model.visual_stride")),
        (AudioEncoder, dict(model, tokens="model.audio_tokens")),
        (ResNet18Trunk, dict(model, output_stride="model.visual_stride")),
        (load_imagenet_weights, {"path": "model.pretrained_path"}),
        (AVGNCriterion, {f.name: f"loss.{f.name}" for f in dataclasses.fields(Config().loss)}),
        (AuthorsCriterion, {"tau": "loss.tau"}),
    ]


# parameters with a default that no schema key gives (the criterion's `weights` and `modulated`
# are checked below)
NOT_IN_SCHEMA = {("ResNet18Trunk", "in_channels"), ("AVGNCriterion", "weights"),
                 ("AVGNCriterion", "modulated"), ("AuthorsCriterion", "weights")}


def test_constructor_defaults_are_the_schemas():
    from losses import AuthorsCriterion, AVGNCriterion
    checked = 0
    for fn, keys in _constructors():
        for name, p in inspect.signature(fn).parameters.items():
            if p.default is inspect.Parameter.empty or (fn.__name__, name) in NOT_IN_SCHEMA:
                continue
            assert name in keys, (f"{fn.__name__}({name}={p.default!r}): a default with no "
                                  f"schema key; map it in _constructors or add it to NOT_IN_SCHEMA")
            want = _schema_default(keys[name])
            assert p.default == want and type(p.default) is type(want), \
                f"{fn.__name__}({name}={p.default!r}) but the schema's {keys[name]} is {want!r}"
            checked += 1
    assert checked >= 30  # every constructor was read
    # the criterion: its default weights are the schema's loss.w_*, its default `modulated` that
    # of the schema's default model
    assert AVGNCriterion().weights == {k: _schema_default(f"loss.w_{k}")
                                       for k in AVGNCriterion().weights}
    assert AVGNCriterion().modulated == (_schema_default("model.loc_features") == "modulated")
    assert AuthorsCriterion().weights == {k: _schema_default(f"loss.w_{k}")
                                          for k in AuthorsCriterion().weights}


def test_allowed_values_outside_the_schema_are_the_schemas():
    import losses
    from datasets import audio, image
    from models import avgn, encoders
    for fn, arg, key in [(avgn.upsample_maps, "mode", "eval.upsample"),
                         (image.apply_image, "interpolation", "data.interpolation"),
                         (audio.log_spectrogram, "frontend", "data.audio.frontend")]:
        default = inspect.signature(fn).parameters[arg].default  # a direct caller's default
        assert default == _schema_field(key)[0].default, (key, default)
    for values, key in [(avgn.UPSAMPLING, "eval.upsample"), (tuple(image.INTERPOLATIONS),
                                                             "data.interpolation"),
                        (audio.FRONTENDS, "data.audio.frontend"),
                        (losses.SYMMETRIC, "loss.symmetric"),
                        (avgn.LOC_FEATURES, "model.loc_features"),
                        (avgn.ASSIGNMENTS, "model.assignment"),
                        (encoders.OUTPUT_STRIDES, "model.visual_stride"),
                        (encoders.PRETRAINED, "model.pretrained"),
                        (encoders.AUDIO_TOKENS, "model.audio_tokens")]:
        _, tp = _schema_field(key)
        assert typing.get_origin(tp) is Literal, key
        assert values == typing.get_args(tp), (key, values)


def _doc_key_rows(path="docs/model.md"):
    """(keys, defaults cell, values cell) of each row of the tables headed | key | default |
    values | ...; a row's first key is a full key, the others short names in its section."""
    rows, in_table = [], False
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") \
            else None
        if cells is None:
            in_table = False
        elif cells[:3] == ["key", "default", "values"]:
            in_table = True
        elif in_table and not set(cells[0]) <= set("-"):
            names = re.findall(r"`([^`]+)`", cells[0])
            if names:
                prefix = names[0].rsplit(".", 1)[0] + "."
                keys = [n if "." in n else prefix + n for n in names]
                rows.append((keys, cells[1], cells[2]))
    return rows


def test_docs_model_table_matches_the_schema():
    """Every key of docs/model.md's table exists; its default column gives the schema's default
    of each key in order; its values column names every allowed value and the range."""
    rows = _doc_key_rows()
    assert len(rows) >= 25
    for keys, defaults, values in rows:
        written = [d.strip().strip("`") for d in defaults.split(",")]
        assert len(written) == len(keys), (keys, defaults)
        for key, text in zip(keys, written):
            f, tp = _schema_field(key)
            want, got = _schema_default(key), yaml.safe_load(text)
            assert got == want and isinstance(got, bool) == isinstance(want, bool), \
                f"docs/model.md gives {key} the default {text!r}; the schema: {want!r}"
            if typing.get_origin(tp) is Literal:
                missing = [v for v in typing.get_args(tp) if f"`{v}`" not in values]
                assert not missing, f"docs/model.md: {key} lacks the allowed values {missing}"
            if "range" in f.metadata:
                assert f.metadata["range"] in values, \
                    f"docs/model.md: {key} must be {f.metadata['range']}, not stated in {values!r}"


def test_a_released_checkpoint_reads_its_inputs_as_the_paper_configs():
    """engine.RELEASED_INPUTS (how test.py and demo.py read a released checkpoint's inputs) are
    the paper configs' values: the released spectrogram and bicubic frames and maps."""
    from engine import RELEASED_INPUTS
    paper = _flat(load_config("configs/paper.yaml"))
    assert {k: paper[k] for k in RELEASED_INPUTS} == RELEASED_INPUTS


def test_python_m_utils_config_prints_the_resolved_config(capsys):
    """`python -m utils.config A.yaml B.yaml key=value` prints what train.py would run."""
    import yaml
    from utils.config import main
    main(["configs/music_duet.yaml", "configs/cpu.yaml", "train.epochs=3"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == to_dict(load_config(["configs/music_duet.yaml", "configs/cpu.yaml"],
                                          ["train.epochs=3"]))
    assert printed["train"]["epochs"] == 3 and printed["model"]["dim"] == 128
