"""Typed configuration: dataclasses are the schema, YAML files give values.

    cfg = load_config("configs/music_duet.yaml", ["train.epochs=10", "model.depth=1"])

* every field has a default and a one-line comment; an unknown key is an error that names it
  and suggests the closest valid key;
* ``_base_: other.yaml`` (path relative to the including file) inherits values, so a benchmark
  config only states what differs;
* ``key.sub=value`` overrides are parsed as YAML scalars/lists and type-checked;
* ``to_dict(cfg)`` is a plain dict (stored in checkpoints, dumped to the run directory) and
  ``from_dict(to_dict(cfg)) == cfg``.
"""
import dataclasses
import difflib
import logging
import os
import typing
from dataclasses import dataclass, field
from typing import List

import yaml


@dataclass
class ModelConfig:
    name: str = "avgn"  # avgn | ezvsl
    dim: int = 512  # D, embedding size of both modalities
    num_classes: int = 37  # C, number of audio-visual class tokens (set to the dataset's classes)
    depth: int = 3  # L, transformer blocks per modality over [f; c] (AVCT)
    heads: int = 8  # attention heads in the AVCT blocks
    mlp_ratio: float = 4.0  # hidden size of the AVCT MLPs, as a multiple of dim
    use_class_tokens: bool = True  # AVCT on (Table 3); off: raw tokens go straight to grouping
    use_grouping: bool = True  # AVG on (Table 3); off: g_i = c_i-hat
    assignment: str = "soft"  # soft | hard (straight-through one-hot, Gumbel noise in training)
    gumbel_tau: float = 1.0  # temperature of the Gumbel noise for hard assignment
    audio_tokens: str = "global"  # global (paper: one max-pooled token) | grid (layer4 cells)
    token_init_std: float = 0.02  # trunc-normal std of the class tokens
    loc_features: str = "modulated"  # modulated: cos(g^a, f^v * g^v) (Eq. 10) | raw: cos(g^a, f^v)
    width: int = 64  # base width of both ResNet18s (64 = standard; narrower only for CPU configs)
    visual_stride: int = 32  # output stride of the visual trunk: 32 (paper) | 16 | 8 (layer4/3 stride 1)
    pretrained: str = "none"  # none | imagenet (torchvision ResNet18 weights for the visual trunk)
    pretrained_path: str = ""  # local resnet18 .pth for pretrained=imagenet (else torch hub cache)


@dataclass
class LossConfig:
    tau: float = 0.03  # temperature of the localisation contrastive loss
    symmetric: bool = True  # add the image->audio direction (EZ-VSL / official code)
    gather_negatives: bool = False  # all-gather embeddings across DDP ranks for negatives
    w_loc: float = 1.0  # weight of L_loc
    w_cls_token: float = 1.0  # weight of CE(h_i, e_i) on the raw class tokens
    w_cls_audio: float = 1.0  # weight of BCE(y, p^a)
    w_cls_visual: float = 1.0  # weight of BCE(y, p^v)
    w_loc_agnostic: float = 0.0  # class-agnostic EZ-VSL term cos(f^a, f^v) added to AVGN (0: paper)
    patch_grad: bool = True  # class-aware L_loc trains the patch features f^v (false: only via loc_agnostic)


@dataclass
class AudioConfig:
    sample_rate: int = 22050  # Hz, audio is resampled to this
    seconds: float = 3.0  # window length centred on the frame
    n_fft: int = 512  # FFT size (n_fft // 2 + 1 frequency bins)
    hop: int = 220  # hop length in samples
    frames: int = 300  # spectrogram columns (cropped / padded to exactly this)
    freq_bins: int = 0  # keep the lowest bins only (0: all n_fft // 2 + 1)
    log_mean: float = -4.0  # affine normalisation: (log(power + 1e-7) - mean) / std
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
    canvas: str = "concat"  # concat (k frames side by side) | single (one frame, all sources)
    audio: AudioConfig = field(default_factory=AudioConfig)
    on_error: str = "raise"  # raise | skip: drop bad entries of training lists (test lists: raise)
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
    optimizer: str = "adam"  # adam (paper) | sgd (momentum 0.9)
    batchnorm: str = "batch"  # batch | sync (SyncBatchNorm across processes, CUDA) | frozen (running stats)
    schedule: str = "constant"  # constant | cosine (per step, with warm-up)
    warmup_steps: int = 0  # linear learning-rate warm-up steps
    clip_grad: float = 0.0  # max gradient norm (0: off)
    amp: str = "none"  # none | bf16 | fp16 (CUDA only; ignored on CPU)
    channels_last: bool = False  # channels_last memory format for the encoders
    compile: bool = False  # torch.compile the model
    eval_every: int = 1  # evaluate on the val split every k epochs (0: never)
    seed: int = 0  # seed of the weights, the sampler order and every per-item random draw
    deterministic: bool = False  # torch.use_deterministic_algorithms
    output_dir: str = "run"  # checkpoints, logs and results
    log_every: int = 20  # steps between log lines
    max_steps: int = 0  # stop after this many optimiser steps in total (0: no limit)


@dataclass
class EvalConfig:
    test_sets: List[str] = field(default_factory=list)  # benchmarks to test (default: data.dataset)
    protocol: str = "frame"  # frame (paper) | source (official code: each source on its own frame)
    threshold: str = "median"  # median | fixed:v | max_ratio:r  (binarisation for IoU)
    iou_thresholds: List[float] = field(default_factory=lambda: [0.3, 0.5])  # single-source IoU@t
    ciou_thresholds: List[float] = field(default_factory=lambda: [0.1, 0.3])  # multi-source CIoU@t
    batch_size: int = 32  # evaluation batch per process
    test_at_end: bool = True  # train.py tests best.pth (or the last checkpoint) on test_sets
    save_vis: int = 8  # overlays written per test set by the end-of-training test


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
            setattr(obj, key, _check_value(value, hints[key], where))


def _read_yaml(path, seen=()):
    """Read a YAML config, resolving `_base_` recursively (base first, then this file)."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"_base_ cycle through {path}")
    with open(path) as f:
        values = yaml.safe_load(f) or {}
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
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def apply_overrides(cfg, overrides):
    """Apply ['a.b=1', ...] to `cfg` in place (type-checked, unknown keys are errors); returns it."""
    _merge(cfg, parse_overrides(overrides))
    return cfg


def from_dict(values, stored=False):
    """Config from a plain dict (to_dict's inverse). stored=True (a checkpoint's config): fields
    of a section that this version of the schema no longer has are ignored with a warning
    instead of raising (an unknown section still raises)."""
    cfg, dropped = Config(), ([] if stored else None)
    _merge(cfg, values, dropped=dropped)
    if dropped:
        logging.getLogger("avgn").warning("ignored stored config keys this version does not "
                                          "have: %s", ", ".join(dropped))
    return cfg


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
