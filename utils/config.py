"""Typed configuration: dataclasses are the schema, YAML files give values.

    cfg = load_config("configs/music_duet.yaml", ["train.epochs=10", "model.depth=1"])

* every field has a default and a one-line comment; an unknown key is an error that names it
  and suggests the closest valid key;
* ``_base_: other.yaml`` (path relative to the including file) inherits values, so a benchmark
  config only states what differs;
* ``key.sub=value`` overrides are parsed as YAML scalars/lists and type-checked;
* a key with a fixed set of values is a ``Literal``, and `validate` checks ranges and the form of
  ``eval.threshold``: every bad value fails when the config is loaded (also a checkpoint's stored
  config), with one line naming the key, the value and what is allowed;
* ``to_dict(cfg)`` is a plain dict (stored in checkpoints, dumped to the run directory) and
  ``from_dict(to_dict(cfg)) == cfg``.
"""
import dataclasses
import difflib
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from typing import List, Literal

import yaml

from .thresholds import parse_threshold


@dataclass
class ModelConfig:
    name: Literal["avgn", "ezvsl"] = "avgn"  # the model (Table 1-2: AVGN and the EZ-VSL baseline)
    dim: int = 512  # D, embedding size of both modalities
    num_classes: int = 37  # C, number of audio-visual class tokens (set to the dataset's classes)
    depth: int = 3  # L, transformer blocks per modality over [f; c] (AVCT)
    heads: int = 8  # attention heads in the AVCT blocks
    mlp_ratio: float = 4.0  # hidden size of the AVCT MLPs, as a multiple of dim
    use_class_tokens: bool = True  # AVCT on (Table 3); off: raw tokens go straight to grouping
    use_grouping: bool = True  # AVG on (Table 3); off: g_i = c_i-hat
    assignment: Literal["soft", "hard"] = "soft"  # hard: straight-through one-hot (+ Gumbel noise)
    gumbel_tau: float = 1.0  # temperature of the Gumbel noise for hard assignment
    assign_eps: float = 1.0  # epsilon of the grouping denominator, Eq. 8 (as the authors' code)
    audio_tokens: Literal["global", "grid"] = "global"  # paper: one max-pooled token | layer4 cells
    token_init_std: float = 0.02  # trunc-normal std of the class tokens
    # maps and L_loc: modulated cos(g^a, f^v * g^v) (Eq. 10) | raw cos(g^a, f^v) (authors' code)
    loc_features: Literal["modulated", "raw"] = "modulated"
    width: int = 64  # base width of both ResNet18s (64 = standard; narrower only for CPU configs)
    visual_stride: Literal[32, 16, 8] = 32  # visual trunk: 32 (paper); 16, 8: layer4 / 3 stride 1
    pretrained: Literal["none", "imagenet"] = "none"  # imagenet: torchvision ResNet18 visual trunk
    pretrained_path: str = ""  # local resnet18 .pth for pretrained=imagenet (else torch hub cache)
    zero_init_residual: bool = False  # true: last BN of each encoder block starts at 0 (not authors')


@dataclass
class LossConfig:
    tau: float = 0.03  # temperature of the localization contrastive loss
    # image->audio term: none (Eq. 10 as printed) | own_class (the authors' code) | anchor_class
    # (this project's variant); see losses.py. Stored true / false read as anchor_class / none
    symmetric: Literal["none", "own_class", "anchor_class"] = "none"
    gather_negatives: bool = False  # all-gather embeddings across DDP ranks for negatives
    w_loc: float = 1.0  # weight of L_loc
    w_cls_token: float = 1.0  # weight of CE(h_i, e_i) on the raw class tokens
    w_cls_audio: float = 1.0  # weight of BCE(y, p^a)
    w_cls_visual: float = 1.0  # weight of BCE(y, p^v)
    w_loc_agnostic: float = 0.0  # class-agnostic EZ-VSL term cos(f^a, f^v) added to AVGN (0: paper)
    patch_grad: bool = True  # class-aware L_loc trains the patch features f^v (false: only via loc_agnostic)
    w_separation: float = 0.0  # [beyond] pushes apart the maps of a mixture's sources (0: paper)
    separation_tau: float = 0.1  # temperature of the patch softmax of the separation term


@dataclass
class AudioConfig:
    sample_rate: int = 22050  # Hz, audio is resampled to this
    seconds: float = 3.0  # window length centered on the frame
    n_fft: int = 512  # FFT size (n_fft // 2 + 1 frequency bins)
    hop: int = 220  # hop length in samples
    frames: int = 300  # spectrogram columns (cropped / padded to exactly this)
    freq_bins: int = 0  # keep the lowest bins only (0: all n_fft // 2 + 1)
    log_mean: float = -4.0  # affine normalization: (log(power + 1e-7) - mean) / std
    log_std: float = 4.0


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # training benchmark, see datasets.build_dataset
    root: str = "data/synthetic"  # <root>/frames/<id>.jpg, <root>/audio/<id>.wav
    metadata: str = ""  # folder with the list/annotation files (default: root)
    image_size: int = 224  # frames are resized to image_size x image_size
    resize_scale: float = 1.1  # train: short side resized to image_size * this, then random crop
    frame_rate: float = 10.0  # MUSIC ids <video>_<seg>_<frame>: seconds = frame / this (<video>.wav)
    num_sources: int = 1  # k clips mixed per training sample (1: single-source training)
    canvas: Literal["concat", "single"] = "concat"  # k frames side by side | one frame, all sources
    audio: AudioConfig = field(default_factory=AudioConfig)
    on_error: Literal["raise", "skip"] = "raise"  # skip: drop bad training entries (not test)
    val_fraction: float = 0.05  # fraction of the training list held out as val (seeded)
    max_items: int = 0  # truncate each list to this many items (0: all; for smoke tests)
    num_workers: int = 4  # data-loader workers per process
    class_balanced: bool = False  # batches with few same-class items (training)
    synthetic_train: int = 0  # synthetic only: streamed training items per epoch


@dataclass
class TrainConfig:
    epochs: int = 100  # training epochs
    batch_size_per_gpu: int = 32  # per process; the global batch is this x world size
    lr: float = 1e-4  # Adam learning rate (for the global batch as given, no auto-scaling)
    weight_decay: float = 0.0  # Adam weight decay
    optimizer: Literal["adam", "sgd"] = "adam"  # adam (paper) | sgd (momentum 0.9)
    # sync: SyncBatchNorm across processes (CUDA) | frozen: running statistics
    batchnorm: Literal["batch", "sync", "frozen"] = "batch"
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: per step, after the warm-up
    warmup_steps: int = 0  # linear learning-rate warm-up steps
    clip_grad: float = 0.0  # max gradient norm (0: off)
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision (CUDA only; ignored on CPU)
    channels_last: bool = False  # channels_last memory format for the encoders
    compile: bool = False  # torch.compile the model
    eval_every: int = 1  # evaluate on the val split every k epochs (0: never)
    seed: int = 0  # seed of the weights, the sampler order and every per-item random draw
    deterministic: bool = False  # torch.use_deterministic_algorithms
    output_dir: str = "run"  # checkpoints, logs and results
    log_every: int = 20  # steps between log lines
    max_steps: int = 0  # stop after this many optimizer steps in total (0: no limit)


@dataclass
class EvalConfig:
    test_sets: List[str] = field(default_factory=list)  # benchmarks to test (default: data.dataset)
    # frame (the paper's text) | source: each whole-canvas map cropped to its source's frame |
    # per_frame (the authors' code): the model sees each frame alone with the mixture's audio
    protocol: Literal["frame", "source", "per_frame"] = "frame"
    threshold: str = "median"  # IoU binarization: median | fixed:v (0<=v<=1) | max_ratio:r (0<r<=1)
    iou_thresholds: List[float] = field(default_factory=lambda: [0.3, 0.5])  # single-source IoU@t
    ciou_thresholds: List[float] = field(default_factory=lambda: [0.1, 0.3])  # multi-source CIoU@t
    batch_size: int = 32  # evaluation batch per process
    test_at_end: bool = True  # train.py tests best.pth (or the last checkpoint) on test_sets
    save_vis: int = 8  # overlays written per test set by the end-of-training test
    # [beyond the paper] > 0: a mixture's sources compete for each pixel at this temperature
    # (models.compete_maps); 0: off, the paper's maps
    compete_tau: float = 0.0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    pass


def _fields(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def _hints(cls):
    return typing.get_type_hints(cls)


def _suggest(key, choices):
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_value(value, tp, where):
    """Return `value` converted to type `tp`, or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[0]):
            return value
        names = ", ".join(map(str, allowed))
        hint = (_suggest(value, allowed) if isinstance(value, str)
                and all(isinstance(a, str) for a in allowed) else "")
        raise ConfigError(f"config key '{where}' must be one of {names}; got {value!r}{hint}")
    if origin in (list, List):
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '3e-4' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"config key '{where}' expects {getattr(tp, '__name__', tp)}, "
                      f"got {value!r} ({type(value).__name__})")


# values of earlier versions, read as today's: {key: {old value: new value}}
LEGACY_VALUES = {"loss.symmetric": {True: "anchor_class", False: "none"}}
# keys added after checkpoints were written, read with the value those were trained with (not
# today's default) when a stored config lacks them
STORED_DEFAULTS = {("model", "assign_eps"): 1e-6, ("model", "zero_init_residual"): True}


def _merge(obj, values, prefix="", dropped=None):
    """Write a nested dict of values into dataclass `obj` in place, with checks. Unknown keys
    raise, or are appended to the list `dropped` when one is given."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, "
                          f"got {values!r}")
    fields, hints = _fields(type(obj)), _hints(type(obj))
    for key, value in values.items():
        where = prefix + str(key)
        if key not in fields:
            if dropped is not None and prefix:  # a field of a known section
                dropped.append(where)
                continue
            full = [prefix + k for k in fields]
            raise ConfigError(f"unknown config key '{where}'{_suggest(where, full)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, where + ".", dropped)
        else:
            legacy = LEGACY_VALUES.get(where, {})
            if isinstance(value, bool) and value in legacy:
                value = legacy[value]
            setattr(obj, key, _check_value(value, hints[key], where))


def _read_yaml(path, seen=()):
    """Read a YAML config, resolving `_base_` recursively (base first, then this file)."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"_base_ cycle through {path}")
    try:
        with open(path, encoding="utf-8-sig") as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = values.pop("_base_", None)
    if base is None:
        return values
    merged = _read_yaml(os.path.join(os.path.dirname(path), base), seen + (path,))
    return _deep_update(merged, values)


def _deep_update(base, new):
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(overrides):
    """['a.b=1', 'c=[1, 2]'] -> {'a': {'b': 1}, 'c': [1, 2]} (values parsed as YAML)."""
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"override '{item}': the value of '{key.strip()}' is not valid "
                              f"YAML ({problem})") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def apply_overrides(cfg, overrides):
    """Apply ['a.b=1', ...] to `cfg` in place (type-checked, unknown keys are errors, values
    checked by `validate`); returns it."""
    _merge(cfg, parse_overrides(overrides))
    return validate(cfg)


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _unit(v):
    return 0 <= v <= 1


# Ranges the types alone do not state: (key, test, what the value must be).
RANGES = [
    ("model.dim", _positive, "> 0"), ("model.num_classes", _positive, "> 0"),
    ("model.depth", _non_negative, ">= 0"), ("model.heads", _positive, "> 0"),
    ("model.mlp_ratio", _positive, "> 0"), ("model.gumbel_tau", _positive, "> 0"),
    ("model.assign_eps", _positive, "> 0"),
    ("model.token_init_std", _non_negative, ">= 0"), ("model.width", _positive, "> 0"),
    ("loss.tau", _positive, "> 0"),
    ("data.image_size", _positive, "> 0"), ("data.resize_scale", lambda v: v >= 1, ">= 1"),
    ("data.frame_rate", _positive, "> 0"), ("data.num_sources", _positive, "> 0"),
    ("data.val_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.max_items", _non_negative, ">= 0"), ("data.num_workers", _non_negative, ">= 0"),
    ("data.synthetic_train", _non_negative, ">= 0"),
    ("data.audio.sample_rate", _positive, "> 0"), ("data.audio.seconds", _positive, "> 0"),
    ("data.audio.n_fft", _positive, "> 0"), ("data.audio.hop", _positive, "> 0"),
    ("data.audio.frames", _positive, "> 0"), ("data.audio.freq_bins", _non_negative, ">= 0"),
    ("data.audio.log_std", _positive, "> 0"),
    ("train.epochs", _positive, "> 0"), ("train.batch_size_per_gpu", _positive, "> 0"),
    ("train.lr", lambda v: 0 < v < math.inf, "> 0 and finite"),
    *((f"loss.{w}", lambda v: 0 <= v < math.inf, ">= 0 and finite")
      for w in ("w_loc", "w_cls_token", "w_cls_audio", "w_cls_visual", "w_loc_agnostic",
                "w_separation")),
    ("loss.separation_tau", _positive, "> 0"),
    ("data.audio.log_mean", math.isfinite, "finite"), ("train.weight_decay", _non_negative, ">= 0"),
    ("train.warmup_steps", _non_negative, ">= 0"), ("train.clip_grad", _non_negative, ">= 0"),
    ("train.eval_every", _non_negative, ">= 0"), ("train.log_every", _positive, "> 0"),
    ("train.max_steps", _non_negative, ">= 0"),
    ("eval.iou_thresholds", lambda v: all(map(_unit, v)), "in [0, 1]"),
    ("eval.ciou_thresholds", lambda v: all(map(_unit, v)), "in [0, 1]"),
    ("eval.batch_size", _positive, "> 0"), ("eval.save_vis", _non_negative, ">= 0"),
    ("eval.compete_tau", lambda v: 0 <= v < math.inf, ">= 0 and finite"),
]


def validate(cfg):
    """Check what the types alone do not: ranges, eval.threshold's form, and that model.dim
    splits into model.heads. Raises ConfigError naming the key; returns `cfg`."""
    for key, ok, what in RANGES:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if not ok(value):
            raise ConfigError(f"config key '{key}' must be {what}; got {value!r}")
    try:
        parse_threshold(cfg.eval.threshold)
    except ValueError as e:
        raise ConfigError(f"config key 'eval.threshold': {e}") from None
    if cfg.model.dim % cfg.model.heads:
        raise ConfigError(f"config key 'model.dim' ({cfg.model.dim}) must be divisible by "
                          f"model.heads ({cfg.model.heads})")
    return cfg


def from_dict(values, stored=False):
    """Config from a plain dict (to_dict's inverse). stored=True (a checkpoint's config): fields
    of a section that this version of the schema no longer has are ignored with a warning
    instead of raising (an unknown section still raises)."""
    cfg, dropped = Config(), ([] if stored else None)
    if stored:
        for (section, key), value in STORED_DEFAULTS.items():
            if isinstance(values.get(section), dict) and key not in values[section]:
                setattr(getattr(cfg, section), key, value)
    _merge(cfg, values, dropped=dropped)
    if dropped:
        logging.getLogger("avgn").warning("ignored stored config keys this version does not "
                                          "have: %s", ", ".join(dropped))
    return validate(cfg)


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def load_config(path=None, overrides=()):
    """Defaults <- YAML file (with `_base_`) <- `key=value` overrides."""
    cfg = Config()
    if path:
        _merge(cfg, _read_yaml(path))
    return apply_overrides(cfg, overrides)


def dump_config(cfg, path):
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
