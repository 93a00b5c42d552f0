"""Typed configuration: dataclasses are the schema, YAML files give values.

    cfg = load_config("configs/music_duet.yaml", ["train.epochs=10", "model.depth=1"])

* every field has a default and a one-line comment; an unknown key is an error that names it
  and suggests the closest valid key;
* ``_base_: other.yaml`` (path relative to the including file) inherits values, so a benchmark
  config only states what differs;
* ``key.sub=value`` overrides are parsed as YAML scalars/lists and type-checked;
* a key with a fixed set of values is a ``Literal``; a key with a range states it beside its
  default (``dim: int = ranged(512, "> 0")``); `validate` checks the ranges and the form of
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

from .errors import InputError
from .thresholds import parse_threshold


# What a value must be beyond its type, in the words of the error message -> the test. A field
# states its range with `ranged(default, what)`; a list's range holds for each of its items.
RANGE_TESTS = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "> 0 and finite": lambda v: 0 < v < math.inf,
    ">= 0 and finite": lambda v: 0 <= v < math.inf,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "finite": math.isfinite,
}


def ranged(default, what):
    """A dataclass field with `default` (a list is copied for each instance) whose value must be
    `what`, a key of RANGE_TESTS; `validate` checks it."""
    if what not in RANGE_TESTS:
        raise ValueError(f"unknown range {what!r}; known: {list(RANGE_TESTS)}")
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"range": what})
    return field(default=default, metadata={"range": what})


@dataclass
class ModelConfig:
    name: Literal["avgn", "ezvsl"] = "avgn"  # the model (Table 1-2: AVGN and the EZ-VSL baseline)
    # avgn's form: paper (Eq. 2-10 as printed) | authors (the released code, models/authors.py)
    arch: Literal["paper", "authors"] = "paper"
    dim: int = ranged(512, "> 0")  # D, embedding size of both modalities
    num_classes: int = ranged(37, "> 0")  # C, class tokens (set to the number of training classes)
    depth: int = ranged(3, ">= 0")  # L, transformer blocks per modality over [f; c] (AVCT)
    heads: int = ranged(8, "> 0")  # attention heads in the AVCT blocks
    mlp_ratio: float = ranged(4.0, "> 0")  # hidden size of the AVCT MLPs, as a multiple of dim
    use_class_tokens: bool = True  # AVCT on (Table 3); off: raw tokens go straight to grouping
    use_grouping: bool = True  # AVG on (Table 3); off: g_i = c_i-hat
    assignment: Literal["soft", "hard"] = "soft"  # hard: straight-through one-hot (+ Gumbel noise)
    gumbel_tau: float = ranged(1.0, "> 0")  # temperature of the Gumbel noise for hard assignment
    assign_eps: float = ranged(1.0, "> 0")  # epsilon of the grouping denominator, Eq. 8 (authors')
    audio_tokens: Literal["global", "grid"] = "global"  # paper: one max-pooled token | layer4 cells
    token_init_std: float = ranged(0.02, ">= 0")  # trunc-normal std of the class tokens
    # maps and L_loc: modulated cos(g^a, f^v * g^v) (Eq. 10) | raw cos(g^a, f^v) (authors' code)
    loc_features: Literal["modulated", "raw"] = "modulated"
    width: int = ranged(64, "> 0")  # base width of both ResNet18s (64: standard; less: CPU configs)
    visual_stride: Literal[32, 16, 8] = 32  # visual trunk: 32 (paper); 16, 8: layer4 / 3 stride 1
    pretrained: Literal["none", "imagenet"] = "none"  # imagenet: torchvision ResNet18 visual trunk
    pretrained_path: str = ""  # local resnet18 .pth for pretrained=imagenet (else torch hub cache)
    zero_init_residual: bool = False  # true: last BN of each encoder block starts at 0 (not authors')


@dataclass
class LossConfig:
    tau: float = ranged(0.03, "> 0")  # temperature of the localization contrastive loss
    # image->audio term: none (Eq. 10 as printed) | own_class (the authors' code) | anchor_class
    # (this project's variant); see losses.py. Stored true / false read as anchor_class / none
    symmetric: Literal["none", "own_class", "anchor_class"] = "none"
    gather_negatives: bool = False  # all-gather embeddings across DDP ranks for negatives
    w_loc: float = ranged(1.0, ">= 0 and finite")  # weight of L_loc
    w_cls_token: float = ranged(1.0, ">= 0 and finite")  # weight of CE(h_i, e_i) on the raw tokens
    w_cls_audio: float = ranged(1.0, ">= 0 and finite")  # weight of BCE(y, p^a)
    w_cls_visual: float = ranged(1.0, ">= 0 and finite")  # weight of BCE(y, p^v)
    # weight of the class-agnostic EZ-VSL term cos(f^a, f^v) added to AVGN (0: paper)
    w_loc_agnostic: float = ranged(0.0, ">= 0 and finite")
    patch_grad: bool = True  # class-aware L_loc trains the patch features f^v (false: only via loc_agnostic)
    # [beyond] weight of the term that pushes apart the maps of a mixture's sources (0: paper)
    w_separation: float = ranged(0.0, ">= 0 and finite")
    separation_tau: float = ranged(0.1, "> 0")  # temperature of the separation term's patch softmax


@dataclass
class AudioConfig:
    sample_rate: int = ranged(22050, "> 0")  # Hz, audio is resampled to this
    seconds: float = ranged(3.0, "> 0")  # window length centered on the frame
    n_fft: int = ranged(512, "> 0")  # FFT size (n_fft // 2 + 1 frequency bins)
    hop: int = ranged(220, "> 0")  # hop length in samples
    frames: int = ranged(300, "> 0")  # spectrogram columns (cropped / padded to exactly this)
    freq_bins: int = ranged(0, ">= 0")  # keep the lowest bins only (0: all n_fft // 2 + 1)
    log_mean: float = ranged(-4.0, "finite")  # normalization: (log(power + 1e-7) - mean) / std
    log_std: float = ranged(4.0, "> 0")  # std of that normalization
    # stft: centered Hann STFT (torch) | released: scipy.signal.spectrogram as the released code
    # (Tukey window, frames not centered, density scaling; n_fft and n_fft - hop its nperseg and
    # noverlap)
    frontend: Literal["stft", "released"] = "stft"


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # training benchmark, see datasets.build_dataset
    root: str = "data/synthetic"  # <root>/frames/<id>.jpg, <root>/audio/<id>.wav
    metadata: str = ""  # folder with the list/annotation files (default: root)
    image_size: int = ranged(224, "> 0")  # frames are resized to image_size x image_size
    # frames resized bilinear (this project) | bicubic (the released datasets.py)
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    resize_scale: float = ranged(1.1, ">= 1")  # train: short side to image_size * this, random crop
    # MUSIC ids <video>_<seg>_<frame>: seconds = frame / this (in <video>.wav)
    frame_rate: float = ranged(10.0, "> 0")
    num_sources: int = ranged(1, "> 0")  # k clips mixed per training sample (1: single-source)
    canvas: Literal["concat", "single"] = "concat"  # k frames side by side | one frame, all sources
    audio: AudioConfig = field(default_factory=AudioConfig)
    on_error: Literal["raise", "skip"] = "raise"  # skip: drop bad training entries (not test)
    # annotated val list (in data.metadata, the test list's format and annotation file) that picks
    # best.pth; '': the benchmark's own, else a carve-out of the training list (no boxes)
    val_list: str = ""
    val_fraction: float = ranged(0.05, "in [0, 1)")  # of the training clips held out as val (seeded)
    max_items: int = ranged(0, ">= 0")  # truncate each list to this many items (0: all)
    num_workers: int = ranged(4, ">= 0")  # data-loader workers per process
    class_balanced: bool = False  # batches with few same-class items (training)
    synthetic_train: int = ranged(0, ">= 0")  # synthetic only: streamed training items per epoch


@dataclass
class TrainConfig:
    epochs: int = ranged(100, "> 0")  # training epochs
    batch_size_per_gpu: int = ranged(32, "> 0")  # per process; the global batch: this x world size
    lr: float = ranged(1e-4, "> 0 and finite")  # learning rate for the global batch (no scaling)
    weight_decay: float = ranged(0.0, ">= 0")  # Adam weight decay
    optimizer: Literal["adam", "sgd"] = "adam"  # adam (paper) | sgd (momentum 0.9)
    # sync: SyncBatchNorm across processes (CUDA) | frozen: running statistics
    batchnorm: Literal["batch", "sync", "frozen"] = "batch"
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: per step, after the warm-up
    warmup_steps: int = ranged(0, ">= 0")  # linear learning-rate warm-up steps
    clip_grad: float = ranged(0.0, ">= 0")  # max gradient norm (0: off)
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision (CUDA only; ignored on CPU)
    channels_last: bool = False  # channels_last memory format for the encoders
    compile: bool = False  # torch.compile the model
    eval_every: int = ranged(1, ">= 0")  # evaluate on the val split every k epochs (0: never)
    seed: int = 0  # seed of the weights, the sampler order and every per-item random draw
    deterministic: bool = False  # torch.use_deterministic_algorithms
    output_dir: str = "run"  # checkpoints, logs and results
    log_every: int = ranged(20, "> 0")  # steps between log lines
    max_steps: int = ranged(0, ">= 0")  # stop after this many optimizer steps in all (0: no limit)


@dataclass
class EvalConfig:
    test_sets: List[str] = field(default_factory=list)  # benchmarks to test (default: data.dataset)
    # frame (the paper's text) | source: each whole-canvas map cropped to its source's frame |
    # per_frame (the authors' code): the model sees each frame alone with the mixture's audio
    protocol: Literal["frame", "source", "per_frame"] = "frame"
    threshold: str = "median"  # IoU binarization: median | fixed:v (0<=v<=1) | max_ratio:r (0<r<=1)
    iou_thresholds: List[float] = ranged([0.3, 0.5], "in [0, 1]")  # single-source IoU@t
    ciou_thresholds: List[float] = ranged([0.1, 0.3], "in [0, 1]")  # multi-source CIoU@t
    batch_size: int = ranged(32, "> 0")  # evaluation batch per process
    test_at_end: bool = True  # train.py tests best.pth (or the last checkpoint) on test_sets
    save_vis: int = ranged(8, ">= 0")  # overlays written per test set by the end-of-training test
    # maps to the image size: bilinear (this project) | bicubic (the released evaluation)
    upsample: Literal["bilinear", "bicubic"] = "bilinear"
    # [beyond the paper] > 0: a mixture's sources compete for each pixel at this temperature
    # (models.compete_maps); 0: off, the paper's maps
    compete_tau: float = ranged(0.0, ">= 0 and finite")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(InputError, ValueError):
    """A config value (or a run's stored one) that cannot be used; the message names the key."""


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
            values = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if values is None:  # an empty file would run every default without a word
        raise ConfigError(f"{path}: the config file is empty")
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


def _ranged_values(obj, prefix=""):
    """(key, value, what) of every `ranged` field of dataclass `obj`, sections included."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _ranged_values(value, f"{prefix}{f.name}.")
        elif "range" in f.metadata:
            yield prefix + f.name, value, f.metadata["range"]


def validate(cfg, stored=False):
    """Check what the types alone do not: ranges, eval.threshold's form, that model.dim splits
    into model.heads, and that the audio keys agree (`check_audio`; stored=True, a checkpoint's
    config: a warning). Raises ConfigError naming the key; returns `cfg`."""
    for key, value, what in _ranged_values(cfg):
        ok = RANGE_TESTS[what]
        if not (all(map(ok, value)) if isinstance(value, list) else ok(value)):
            raise ConfigError(f"config key '{key}' must be {what}; got {value!r}")
    try:
        parse_threshold(cfg.eval.threshold)
    except ValueError as e:
        raise ConfigError(f"config key 'eval.threshold': {e}") from None
    if cfg.model.dim % cfg.model.heads:
        raise ConfigError(f"config key 'model.dim' ({cfg.model.dim}) must be divisible by "
                          f"model.heads ({cfg.model.heads})")
    try:
        check_audio(cfg.data.audio)
    except ConfigError as e:
        if not stored:
            raise
        logging.getLogger("avgn").warning("%s", e)
    return cfg


MAX_PADDING = 0.1  # share of the spectrogram columns that may be padding


def check_audio(a):
    """The data.audio keys depend on each other: seconds x sample_rate samples give a number of
    spectrogram columns at `hop` (frontend stft: 1 + samples // hop, centered frames; released:
    (samples - n_fft) // hop + 1); `frames` crops or pads to exactly that many. Raises
    ConfigError when more than MAX_PADDING of the frames would be padding (e.g. seconds changed
    alone), or freq_bins asks for more bins than n_fft gives."""
    samples = round(a.seconds * a.sample_rate)
    columns = (1 + samples // a.hop if a.frontend == "stft"
               else (max(samples, a.n_fft) - a.n_fft) // a.hop + 1)
    if a.frames - columns > MAX_PADDING * a.frames:
        hop = max(1, samples // a.frames) if a.frontend == "stft" else \
            max(1, (samples - a.n_fft) // max(1, a.frames - 1))
        raise ConfigError(
            f"data.audio: seconds {a.seconds} x sample_rate {a.sample_rate} = {samples} samples "
            f"give {columns} spectrogram columns at hop {a.hop} ({a.frontend}), but frames is "
            f"{a.frames}: {a.frames - columns} of them would be padding. Set data.audio.frames="
            f"{columns}, or data.audio.hop={hop}, or the seconds / sample_rate the frames were "
            "meant for")
    if a.freq_bins > a.n_fft // 2 + 1:
        raise ConfigError(f"data.audio.freq_bins ({a.freq_bins}) is more than the "
                          f"{a.n_fft // 2 + 1} bins of n_fft {a.n_fft}")


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
    return validate(cfg, stored)


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def load_config(path=None, overrides=()):
    """Defaults <- YAML file (with `_base_`) <- `key=value` overrides. `path` may be a list of
    files, merged in order: `["configs/music.yaml", "configs/cpu.yaml"]` is the MUSIC benchmark
    at CPU sizes."""
    cfg = Config()
    for p in [path] if isinstance(path, str) else path or ():
        _merge(cfg, _read_yaml(p))
    return apply_overrides(cfg, overrides)


def dump_config(cfg, path):
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def main(argv=None):
    """python -m utils.config CONFIG [CONFIG ...] [key=value ...]: print the resolved config (as
    train.py would run it) as YAML."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(main.__doc__)
        return
    config = load_config([a for a in argv if "=" not in a], [a for a in argv if "=" in a])
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")


if __name__ == "__main__":
    from .errors import run_cli
    run_cli(main)
