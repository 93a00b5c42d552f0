"""Every paper config runs end to end through test.py against the real list and annotation
files, on a tiny stand-in data root (plain frames and noise wavs named after the first ids of
each list; pickled masks for VGGSound-Instruments) and a narrow untrained model."""
import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import load_script
from datasets import BENCHMARKS, build_dataset
from datasets.records import read_list, read_pair_list
from models import build_model
from utils.checkpoint import save_checkpoint
from utils.config import load_config, to_dict

PAPER_CONFIGS = ["music", "music_solo", "music_duet", "vggsound_instruments",
                 "vggsound_instruments_multi", "vggsound_single", "vggsound_duet"]
NARROW = ["model.width=8", "model.dim=32", "model.heads=4", "model.depth=1",
          "model.pretrained=none", "data.num_workers=0", "data.max_items=3", "eval.batch_size=4",
          "train.amp=none"]


def _first_ids(path, pairs, n=3):
    if pairs:
        return [e.id for p in read_pair_list(path)[:n] for e in p]
    return [e.id for e in read_list(path, 1, 3)[:n]]


def _stand_in_root(root, metadata, cfg, rng):
    """Frames, wavs (and masks) for the first ids of every test list the config names."""
    os.makedirs(os.path.join(root, "frames"), exist_ok=True)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    for name in cfg.eval.test_sets:
        spec = BENCHMARKS[name]
        for id_ in _first_ids(os.path.join(metadata, spec.test_list), spec.test_pairs):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
                os.path.join(root, "frames", id_ + ".jpg"))
            sf.write(os.path.join(root, "audio", id_ + ".wav"),
                     0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
            if spec.annotation == "pkl":
                os.makedirs(os.path.join(metadata, spec.annotation_file), exist_ok=True)
                mask = np.zeros((36, 48), np.uint8)
                mask[5:20, 10:30] = 1
                with open(os.path.join(metadata, spec.annotation_file, id_ + ".pkl"), "wb") as f:
                    pickle.dump(mask, f)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_config_runs_end_to_end(name, tmp_path, metadata_dir):
    metadata = tmp_path / "metadata"  # the real lists, plus stand-in masks
    shutil.copytree(metadata_dir, metadata)
    root = tmp_path / "data"
    cfg = load_config(f"configs/{name}.yaml", NARROW + [f"data.root={root}",
                                                        f"data.metadata={metadata}"])
    assert cfg.model.dim == 32 and cfg.loss.tau == 0.03  # the paper config underneath
    _stand_in_root(str(root), str(metadata), cfg, np.random.default_rng(0))
    # the training classes: from the training list when published, else from the test set
    class_names = build_dataset(cfg, "test", cfg.eval.test_sets[0]).class_names
    cfg.model.num_classes = len(class_names)
    ckpt = tmp_path / "ckpt.pth"
    save_checkpoint({"model": build_model(cfg).state_dict(), "config": to_dict(cfg),
                     "class_names": list(class_names)}, str(ckpt))
    results = load_script("test.py").main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out")])
    assert set(results) == set(cfg.eval.test_sets)
    for test_set, metrics in results.items():
        key = "CAP" if BENCHMARKS[test_set].test_pairs or test_set == "music_duet" else "AP"
        assert 0 <= metrics[key] <= 1, (test_set, metrics)
        assert metrics["num_samples"] == 3
