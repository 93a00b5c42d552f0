"""The synthetic benchmark on disk and as datasets (rendering: `datasets.render`).

Every item is a frame holding one sounding object and 2-3 silent distractors of *other* classes,
all drawn the same way from the same size distribution, on a cluttered background, and a sound
made of the sounding class's pitch, timbre (harmonics) and rhythm (amplitude pattern) plus noise.
Which object sounds can only be told from the audio, so a model that ignores it cannot localize.

* ``write_synthetic(out, ...)`` writes the VGG-SS-like layout read by the real loaders (frames,
  wavs, ``annotations.json``, lists, test pairs/trios, a MUSIC-Duet-like one-frame test, and
  ``all_objects.json`` with every object box for audio-blind baselines);
* ``SyntheticStream`` streams training items rendered from (seed, epoch, index);
* ``build_synthetic(cfg, split)`` generates the data root when needed and returns a dataset.
"""
import json
import logging
import os
import shutil

from PIL import Image

from .benchmarks import Benchmark, build_from_spec
from .dataset import AudioVisualDataset
from .image import render_boxes
from .records import Record
from utils.run_folder import replacing_data
from .render import (AREA_MAX, AREA_MIN, ASPECT_MAX, CLASS_NAMES, DEFAULT_SIZES, DISTRACTORS,
                     MIN_VISIBLE, OUTSIDE, PITCH_JITTER, SNR_DB, TEMPO_JITTER, item_rng,
                     render_audio, render_frame, render_item)

log = logging.getLogger("avgn." + __name__)  # shown by utils.logger.setup_logging

GENERATOR_VERSION = 1  # bump when rendering changes: data roots with another version regenerate


def load_all_objects(root):
    """``<root>/all_objects.json``: {id: [{"class", "bbox" (normalized xyxy), "sounding"}, ...]}."""
    with open(os.path.join(root, "all_objects.json")) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- files on disk

def _settings(seed, image_size, sample_rate, seconds, **sizes):
    """The generator settings stored in meta.json (a data root with others is regenerated)."""
    out = dict(generator="avgn-synthetic", version=GENERATOR_VERSION, seed=int(seed),
               image_size=int(image_size), sample_rate=int(sample_rate), seconds=float(seconds),
               design=dict(area=[AREA_MIN, AREA_MAX], aspect_max=ASPECT_MAX, outside=OUTSIDE,
                           min_visible=MIN_VISIBLE, distractors=list(DISTRACTORS),
                           snr_db=list(SNR_DB), pitch_jitter=PITCH_JITTER,
                           tempo_jitter=TEMPO_JITTER))
    out.update({k: int(sizes.get(k, v)) for k, v in DEFAULT_SIZES.items()})
    return out


def _save_item(out, id_, item, sample_rate):
    import soundfile as sf
    Image.fromarray(item.image).save(os.path.join(out, "frames", f"{id_}.jpg"), quality=90)
    sf.write(os.path.join(out, "audio", f"{id_}.wav"), item.audio, sample_rate, subtype="PCM_16")


def _objects_json(item):
    return [{"class": o.cls, "bbox": [round(c, 6) for c in o.box], "sounding": o.sounding}
            for o in item.objects]


def _xyxy_to_xywh(b):
    return [round(b[0], 6), round(b[1], 6), round(b[2] - b[0], 6), round(b[3] - b[1], 6)]


def _write_lines(path, rows):
    with open(path, "w") as f:
        f.writelines(",".join(r) + "\n" for r in rows)


def _groups(rng, ids, classes, k, count):
    """`count` tuples of k ids of pairwise different classes (deterministic for `rng`)."""
    out = []
    while len(out) < count:
        pick = rng.choice(len(ids), k, replace=False)
        if len({classes[i] for i in pick}) == k:
            out.append(sum(([ids[i], classes[i]] for i in pick), []))
    return out


def write_synthetic(out, seed=0, image_size=96, sample_rate=11025, seconds=1.0, automatic=False,
                    **sizes):
    """Write the synthetic benchmark to `out` (the layout of the module docstring / README).

    Args:
        out: data root (created; existing files with the same names are overwritten).
        seed: generator seed; item i of split s is `render_item(s, seed, i, ...)`.
        image_size: frames are image_size x image_size jpgs.
        sample_rate, seconds: mono wavs (16-bit).
        automatic: written by `ensure_synthetic` (may be regenerated when the settings change),
            not by a user (tools/make_synthetic.py: never replaced).
        sizes: num_train, num_val, num_test, num_duet, num_pairs, num_trios (see DEFAULT_SIZES).
    Returns:
        the settings dict written to ``<out>/meta.json``.
    """
    meta = _settings(seed, image_size, sample_rate, seconds, **sizes)
    for d in ("frames", "audio"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    annotations, all_objects, lists = [], {}, {}
    C = len(CLASS_NAMES)
    for split in ("train", "val", "test"):
        lists[split] = []
        for i in range(meta[f"num_{split}"]):
            id_, cls = f"{split}_{i:06d}", CLASS_NAMES[i % C]  # class-balanced lists
            item = render_item(split, seed, i, image_size, sample_rate, seconds, [cls])
            _save_item(out, id_, item, sample_rate)
            (box,) = [list(o.box) for o in item.sounding]
            annotations.append({"file": id_, "class": cls, "bbox": [[round(c, 6) for c in box]]})
            all_objects[id_] = _objects_json(item)
            lists[split].append((id_, cls))
        _write_lines(os.path.join(out, f"{split}.txt"), lists[split])
    duet, duet_ids = [], []
    for i in range(meta["num_duet"]):
        id_ = f"duet_{i:06d}"
        item = render_item("duet", seed, i, image_size, sample_rate, seconds, num_sources=2)
        _save_item(out, id_, item, sample_rate)
        (a, b) = item.sounding
        duet.append({"file": id_, "class_src1": a.cls, "bbox_src1": _xyxy_to_xywh(a.box),
                     "class_src2": b.cls, "bbox_src2": _xyxy_to_xywh(b.box)})
        all_objects[id_] = _objects_json(item)
        duet_ids.append((id_,))
    rng = item_rng("lists", seed, 0, "classes")
    test_ids, test_cls = [r[0] for r in lists["test"]], [r[1] for r in lists["test"]]
    _write_lines(os.path.join(out, "test_pairs.csv"), _groups(rng, test_ids, test_cls, 2, meta["num_pairs"]))
    _write_lines(os.path.join(out, "test_trios.csv"), _groups(rng, test_ids, test_cls, 3, meta["num_trios"]))
    _write_lines(os.path.join(out, "test_duet.csv"), duet_ids)
    _write_lines(os.path.join(out, "classes.txt"), [(c,) for c in CLASS_NAMES])
    for name, obj in (("annotations.json", annotations), ("test_duet.json", duet),
                      ("all_objects.json", all_objects),
                      ("meta.json", dict(meta, automatic=bool(automatic)))):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=1 if name == "meta.json" else None)
    return meta


def read_meta(root):
    """The settings in ``<root>/meta.json`` (without its 'automatic' flag), or None when
    absent/unreadable."""
    try:
        with open(os.path.join(root, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(meta, dict):
        meta.pop("automatic", None)
    return meta


def _made_automatically(root):
    try:
        with open(os.path.join(root, "meta.json")) as f:
            return json.load(f).get("automatic") is True
    except (OSError, ValueError, AttributeError):
        return False


def synthetic_roots(cfg):
    """The synthetic data roots a run of `cfg` reads (for `utils.run_folder.using_data`)."""
    uses = cfg.data.dataset == "synthetic" or any(
        e.partition(":")[0] == "synthetic" for e in cfg.eval.test_sets)
    return [cfg.data.root] if uses else []


def ensure_synthetic(root, seed=0, image_size=96, sample_rate=11025, seconds=1.0, **sizes):
    """Generate the benchmark in `root` unless its meta.json already matches these settings.

    Generation writes to a temporary sibling folder that is renamed into place, so concurrent
    callers (several DDP ranks) never see a half-written root; an existing root is replaced only
    when this function generated it (its meta.json says so) and no run reads it (DataInUse
    naming the runs, `utils.run_folder.replacing_data`), with a warning: a foreign folder or
    one written by tools/make_synthetic.py is never replaced (FileExistsError naming both
    settings).
    Returns:
        True when the data was (re)generated, False when it was already there.
    """
    wanted = _settings(seed, image_size, sample_rate, seconds, **sizes)
    old = read_meta(root)
    if old == wanted:
        return False
    root = os.path.abspath(root)
    if os.path.exists(root) and (old is None or old.get("generator") != wanted["generator"]):
        raise FileExistsError(f"{root} exists and is not a synthetic data root (no matching "
                              f"meta.json); remove it or choose another data.root")
    changed = old and {k: (old.get(k), v) for k, v in wanted.items() if old.get(k) != v}
    if old is not None and not _made_automatically(root):
        raise FileExistsError(
            f"{root} holds the synthetic benchmark with other settings than the config asks for "
            f"((found, wanted): {changed}), written by tools/make_synthetic.py or before data "
            "roots recorded who wrote them: it is never replaced. Choose another data.root "
            "(generated automatically), set the config's data.image_size and "
            "data.audio.sample_rate / seconds to the folder's, or remove the folder")
    if old is None:
        log.info("generating the synthetic benchmark in %s", root)
        return _generate(root, wanted)
    with replacing_data(root):  # refused while a run reads it
        if read_meta(root) == wanted:  # another process (a DDP rank) regenerated it meanwhile
            return False
        log.warning("regenerating the synthetic benchmark in %s, generated earlier with other "
                    "settings ((old, new): %s)", root, changed)
        return _generate(root, wanted)


def _generate(root, wanted):
    """Write the benchmark to a temporary sibling of `root`, then rename it into place."""
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    write_synthetic(tmp, automatic=True, **{k: v for k, v in wanted.items()
                                            if k not in ("generator", "version", "design")})
    if read_meta(root) == wanted:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    if os.path.exists(root):
        trash = f"{root}.old-{os.getpid()}"
        os.replace(root, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, root)
    except OSError:  # another process renamed its (identical) copy in between
        if read_meta(root) != wanted:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return True


# ----------------------------------------------------------------------------- datasets

class SyntheticStream(AudioVisualDataset):
    """Training items rendered in memory from (seed, epoch, index): unbounded, never repeated.

    Item i has the fixed class ``CLASS_NAMES[i % C]`` (so mixture partners and class-balanced
    batches work through the parent's machinery); its layout, distractors, colors, sound jitter
    and noise are redrawn every epoch (`set_epoch`). Mixtures (num_sources > 1) go through the
    parent: partner items of other classes, frames side by side, waveforms summed.

    Arguments: length (items per epoch), render settings, then as `AudioVisualDataset`.
    """

    def __init__(self, length, data_cfg, seed=0, num_sources=1, canvas="concat"):
        C = len(CLASS_NAMES)
        items = [Record(id=f"stream_{i:07d}", frame="", audio="", classes=[CLASS_NAMES[i % C]],
                        where=f"synthetic training stream item {i}", extra={"index": i})
                 for i in range(int(length))]
        self.render_seed = int(seed)
        self._boxes = {}  # (epoch, index) -> sounding boxes of the frames rendered last
        super().__init__(items, CLASS_NAMES, data_cfg, train=True, num_sources=num_sources,
                         canvas=canvas, seed=seed, origin="the synthetic training stream")

    def check_record(self, record):
        return None  # classes are ours, nothing is read from disk

    def load_frame(self, record):
        key = (self.epoch, record.extra["index"])
        image, objects = render_frame(item_rng("stream", self.render_seed, key[1], "frame", key[0]),
                                      record.classes, self.size)
        if len(self._boxes) > 64:
            self._boxes.clear()
        self._boxes[key] = [[o.box] for o in objects if o.sounding]
        return Image.fromarray(image)

    def load_source_masks(self, record, geometry):
        key = (self.epoch, record.extra["index"])
        if key not in self._boxes:  # called without load_frame: draw the frame for its boxes
            self.load_frame(record)
        return [render_boxes(boxes, geometry) for boxes in self._boxes[key]]

    def load_audio(self, record):
        a = self.audio_cfg
        rng = item_rng("stream", self.render_seed, record.extra["index"], "audio", self.epoch)
        return render_audio(rng, record.classes, a.sample_rate, a.seconds)


# the on-disk splits, read by the same code as the real benchmarks (VGG-SS / MUSIC-Duet formats)
DISK_SPECS = {
    "test": Benchmark("train.txt", "test.txt", "vggss", "annotations.json", val_list="val.txt"),
    "test_pairs": Benchmark("train.txt", "test_pairs.csv", "vggss", "annotations.json",
                            test_pairs=True, canvas="concat", val_list="val.txt"),
    "test_trios": Benchmark("train.txt", "test_trios.csv", "vggss", "annotations.json",
                            test_pairs=True, canvas="concat", val_list="val.txt"),
    "test_duet": Benchmark("train.txt", "test_duet.csv", "music", "test_duet.json",
                           canvas="single", val_list="val.txt"),
}
SPLITS = ("train", "train_files", "val", "test", "test_pairs", "test_trios", "test_duet")
DEFAULT_STREAM_LENGTH = 8000


def build_synthetic(cfg, split, class_names=None, report=None):
    """The synthetic benchmark's dataset for `split` (generating cfg.data.root when needed).

    split: 'train' (streamed, cfg.data.synthetic_train items per epoch, default
        DEFAULT_STREAM_LENGTH, rendered from (cfg.train.seed, epoch, index); cfg.data.num_sources
        mixtures), 'train_files' (the on-disk train.txt), 'val', 'test' (single source, VGG-SS
        format), 'test_pairs', 'test_trios' (2 / 3 test clips side by side), 'test_duet'
        (2 sources in one frame, MUSIC-Duet format).
    class_names: checked against CLASS_NAMES when given (e.g. from a checkpoint).
    report: checking mode, see `datasets.build_dataset`.
    The data root is rendered at cfg.data.image_size, cfg.data.audio.sample_rate and .seconds
    (seed 0, DEFAULT_SIZES); a root written with other settings is regenerated.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown synthetic split '{split}'; known: {SPLITS}")
    if class_names is not None and list(class_names) != CLASS_NAMES:
        raise ValueError(f"class names {list(class_names)} are not the synthetic classes {CLASS_NAMES}")
    d, a = cfg.data, cfg.data.audio
    if d.metadata and os.path.abspath(d.metadata) != os.path.abspath(d.root):
        raise ValueError("the synthetic benchmark keeps its lists in data.root: leave data.metadata "
                         f"empty (got '{d.metadata}')")
    ensure_synthetic(d.root, image_size=d.image_size, sample_rate=a.sample_rate, seconds=a.seconds)
    if split == "train":
        return SyntheticStream(d.synthetic_train or DEFAULT_STREAM_LENGTH, d, seed=cfg.train.seed,
                               num_sources=d.num_sources, canvas=d.canvas)
    if split in ("train_files", "val"):
        return build_from_spec(cfg, split[:5], DISK_SPECS["test"], "synthetic", CLASS_NAMES,
                               report)
    return build_from_spec(cfg, "test", DISK_SPECS[split], "synthetic", CLASS_NAMES, report)
