"""Datasets: `build_dataset(cfg, split)` for every benchmark, one pipeline underneath;
`build_loader(dataset, batch_size, train, num_workers)` batches it.

records.py parses every annotation format into `Record`s, benchmarks.py names each benchmark's
files, dataset.py makes samples (audio.py, image.py), loader.py batches, synthetic.py (render.py)
writes and streams the synthetic benchmark.
"""
from functools import partial
from typing import Optional, Sequence

from .benchmarks import BENCHMARKS, build_from_spec, training_lists  # noqa: F401
from .benchmarks import training_class_names as _benchmark_class_names
from .dataset import AudioVisualDataset, MixtureSampler, collate  # noqa: F401
from .loader import ClassBalancedBatchSampler, build_loader  # noqa: F401
from .records import (DataError, ListEntry, Record, canonical_class, read_list,  # noqa: F401
                      read_music_json, read_pair_list, read_vggss_json, read_vggsound_csv,
                      write_list)
from .render import CLASS_NAMES as SYNTHETIC_CLASSES
from .synthetic import build_synthetic

# name -> builder(cfg, split, class_names=None, report=None)
DATASETS = {name: partial(build_from_spec, spec=spec, name=name)
            for name, spec in BENCHMARKS.items()}
DATASETS["synthetic"] = build_synthetic


def build_dataset(cfg, split: str, name: Optional[str] = None,
                  class_names: Optional[Sequence[str]] = None,
                  report: Optional[list] = None) -> AudioVisualDataset:
    """Dataset `name` (default cfg.data.dataset) for split 'train' | 'val' | 'test' (the
    synthetic benchmark has more test splits, see datasets.synthetic).

    class_names: the training classes (e.g. from a checkpoint); default: read from the training
    list. Unknown name -> ValueError listing the known ones; unknown split -> ValueError.
    report: None (bad input raises, or is skipped per data.on_error), or a list: checking mode
    (tools/check_data.py), where every bad list line or entry of any split is dropped and its
    message appended to `report`.
    """
    name = name or cfg.data.dataset
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](cfg, split, class_names=class_names, report=report)


def training_class_names(cfg, name: Optional[str] = None) -> list:
    """The training classes of dataset `name` (default data.dataset), in class-index order (the
    sorted classes of its training list; the synthetic benchmark's fixed list), without building
    the dataset. Raises DataError when the training list is missing."""
    name = name or cfg.data.dataset
    return list(SYNTHETIC_CLASSES) if name == "synthetic" else _benchmark_class_names(cfg, name)
