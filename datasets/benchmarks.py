"""The published benchmarks: which list and annotation files each reads, and
`build_from_spec`, which turns them into datasets of records (one pipeline for all).


    ds = build_dataset(cfg, "train")                 # cfg.data.dataset
    ds = build_dataset(cfg, "test", "vggsound_duet", class_names=ckpt["class_names"])

Splits: ``train``; ``val`` (an annotated list, ``data.val_list`` or the benchmark's own, read
like the test list; else a seeded carve-out of about ``data.val_fraction`` of the training list,
whole clips (`clip_of`), without boxes); ``test``. List and annotation files are read from
``data.metadata`` (default: ``data.root``), media from ``<data.root>/frames/<id>.jpg`` and
``<data.root>/audio/<id>.wav``.

What each name reads (all under data.metadata):

===========================  ==============================  =====================================
name                         train / val                     test
===========================  ==============================  =====================================
music_solo                   music_solo_train.txt            music_solo_test.csv + music_solo.json
music_duet (canvas single)   music_duet_train.txt (id,c1,c2) music_duet_test.csv + music_duet.json
vggsound_instruments         vgginstruments_train.txt        vgginstruments_test.csv + anno/<id>.pkl
vggsound_instruments_multi   vgginstruments_train.txt        vgginstruments_multi_test.csv (pairs)
                                                             + anno/<id>.pkl
vggsound_single              vggsound_single_train.txt [1]   vggsound_single_test.csv + vggss.json
vggss                        vggsound_single_train.txt [1]   vggss_test.csv + vggss.json
vggsound_duet                vggsound_single_train.txt [1]   vggsound_duet_test.csv (pairs)
                                                             + vggss.json
synthetic                    datasets.synthetic.build_synthetic(cfg, split)
===========================  ==============================  =====================================

[1] published with the released code (github.com/stoneMo/AVGN, metadata/; docs/data.md), or
built from VGGSound's vggsound.csv with `records.read_vggsound_csv` and `records.write_list`.

Bad input: a missing file, a list entry without annotation or an unknown class raises `DataError`
naming the file and the list line; ``data.on_error=skip`` drops such entries from training lists
(and the val carve-out) and logs the count. Evaluation lists are always used whole.

Pair lists put the two frames side by side (concat canvas, W = 2H); MUSIC-Duet frames hold both
sources on one frame (canvas single). Training mixtures of ``data.num_sources`` clips apply to
every benchmark whose frames hold one source. Class index = position in the sorted training
class names; pass the checkpoint's ``class_names`` when testing.
"""
import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .dataset import AudioVisualDataset, MixtureSampler
from .records import (DataError, ListEntry, Record, read_list, read_music_json, read_pair_list,
                      read_vggss_json)

logger = logging.getLogger("avgn." + __name__)  # shown by utils.logger.setup_logging

SPLITS = ("train", "val", "test")
VAL_SEED = 0  # the val carve-out and val pairs do not depend on the training seed
# MUSIC frame ids: frame numbers count at data.frame_rate (10) from the start of the video
MUSIC_ID = re.compile(r"^(?P<video>.+)_(?P<segment>\d+)_(?P<frame>\d+)$")


@dataclass(frozen=True)
class Benchmark:
    """Which files a benchmark reads (names relative to data.metadata)."""
    train_list: str  # id,class | id,c1,c2 (one frame with several sources)
    test_list: str  # id | id,class | id1,c1,id2,c2 (test_pairs)
    annotation: str  # vggss | music | pkl: format of the test annotation
    annotation_file: str  # vggss.json / music_*.json / folder of <id>.pkl masks
    test_pairs: bool = False  # test list holds pairs placed on a concat canvas
    canvas: str = ""  # forced canvas ('': data.canvas)
    val_list: str = ""  # published val list, annotated like test ('': carve-out of the train list)
    published_train: bool = True  # False: the user builds the training list (error says how)
    extra_train_lists: tuple = ()  # more training lists read after train_list (MUSIC solo + duet)
    music_ids: bool = False  # ids <video>_<segment>_<frame>: may fall back to <video>.wav


BENCHMARKS = {
    # MUSIC solo and duet training frames together (one frame holds one or two sources); its
    # default test is MUSIC-Solo, configs/music.yaml also tests MUSIC-Duet
    "music": Benchmark("music_solo_train.txt", "music_solo_test.csv", "music", "music_solo.json",
                       canvas="single", music_ids=True, extra_train_lists=("music_duet_train.txt",)),
    "music_solo": Benchmark("music_solo_train.txt", "music_solo_test.csv", "music",
                            "music_solo.json", music_ids=True),
    "music_duet": Benchmark("music_duet_train.txt", "music_duet_test.csv", "music",
                            "music_duet.json", canvas="single", music_ids=True),
    "vggsound_instruments": Benchmark("vgginstruments_train.txt", "vgginstruments_test.csv",
                                      "pkl", "anno"),
    "vggsound_instruments_multi": Benchmark("vgginstruments_train.txt",
                                            "vgginstruments_multi_test.csv", "pkl", "anno",
                                            test_pairs=True),
    "vggsound_single": Benchmark("vggsound_single_train.txt", "vggsound_single_test.csv", "vggss",
                                 "vggss.json", published_train=False),
    "vggss": Benchmark("vggsound_single_train.txt", "vggss_test.csv", "vggss", "vggss.json",
                       published_train=False),
    "vggsound_duet": Benchmark("vggsound_single_train.txt", "vggsound_duet_test.csv", "vggss",
                               "vggss.json", test_pairs=True, published_train=False),
}


def _metadata_path(cfg, name):
    return os.path.join(cfg.data.metadata or cfg.data.root, name)


def media_record(root: str, id_: str, classes: List[str], where: str = "", music_ids: bool = False,
                 frame_rate: float = 10.0, **fields) -> Record:
    """Record with media paths ``<root>/frames/<id>.jpg`` and ``<root>/audio/<id>.wav``.

    music_ids: when ``<id>.wav`` is absent and id is ``<video>_<segment>_<frame>``, use
    ``<video>.wav`` centered on frame / frame_rate seconds (MUSIC frames extracted at 10 fps,
    30 frames per 3-s segment, frame numbers counted from the start of the video).
    """
    audio, offset = os.path.join(root, "audio", id_ + ".wav"), None
    if music_ids and not os.path.isfile(audio):
        m = MUSIC_ID.match(id_)
        video = m and os.path.join(root, "audio", m["video"] + ".wav")
        if video and os.path.isfile(video):
            audio, offset = video, int(m["frame"]) / frame_rate
    return Record(id=id_, frame=os.path.join(root, "frames", id_ + ".jpg"), audio=audio,
                  classes=list(classes), audio_offset=offset, where=where, **fields)


class _Annotator:
    """Attach a benchmark's test annotation (classes, boxes or mask) to list entries."""

    def __init__(self, cfg, spec: Benchmark):
        self.cfg, self.spec = cfg, spec
        path = _metadata_path(cfg, spec.annotation_file)
        if spec.annotation == "vggss":
            self.ann = {k: [(c, b)] for k, (c, b) in read_vggss_json(path).items()}
        elif spec.annotation == "music":
            self.ann = read_music_json(path)
        elif spec.annotation == "pkl":
            self.ann, self.mask_dir = None, path
        else:
            raise ValueError(f"unknown annotation format '{spec.annotation}'")

    def __call__(self, e: ListEntry) -> Record:
        d, spec = self.cfg.data, self.spec
        if self.ann is None:  # pkl masks: classes come from the list
            if not e.classes:
                raise DataError(f"{e.where}: '{e.id}' has no class (expected id,class)")
            return media_record(d.root, e.id, e.classes, e.where, spec.music_ids, d.frame_rate,
                                mask_path=os.path.join(self.mask_dir, e.id + ".pkl"))
        if e.id not in self.ann:
            raise DataError(f"{e.where}: '{e.id}' has no annotation in {spec.annotation_file}")
        classes = [c for c, _ in self.ann[e.id]]
        if e.classes and e.classes != classes:
            raise DataError(f"{e.where}: list says {e.classes}, {spec.annotation_file} says "
                            f"{classes} for '{e.id}'")
        return media_record(d.root, e.id, classes, e.where, spec.music_ids, d.frame_rate,
                            boxes=[b for _, b in self.ann[e.id]])


def _train_lists(cfg, spec):
    return [_metadata_path(cfg, n) for n in (spec.train_list,) + tuple(spec.extra_train_lists)]


def training_lists(cfg, name: Optional[str] = None) -> List[str]:
    """Paths of the training list files benchmark `name` (default data.dataset) reads; [] for
    the synthetic benchmark (its training items are rendered in memory)."""
    spec = BENCHMARKS.get(name or cfg.data.dataset)
    return _train_lists(cfg, spec) if spec else []


def training_class_names(cfg, name: Optional[str] = None) -> List[str]:
    """The classes of benchmark `name`'s (default data.dataset) training list, sorted: class
    index = position, as in training here (`build_from_spec`) and in the released AVGN code."""
    name = name or cfg.data.dataset
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark '{name}'; known: {', '.join(sorted(BENCHMARKS))}")
    return _class_names(_read_train_list(cfg, name, BENCHMARKS[name]))


def _class_names(entries):
    """The sorted classes of training list entries: class index = position (the one rule)."""
    return sorted({c for e in entries for c in e.classes})


def _read_train_list(cfg, name, spec, report=None):
    entries = []
    for path in _train_lists(cfg, spec):
        if not os.path.isfile(path):
            hint = ("" if spec.published_train else
                    f" '{name}': get {os.path.basename(path)} from the released code's "
                    "metadata/ (github.com/stoneMo/AVGN), or build it (id,class per line) "
                    "from VGGSound's vggsound.csv with datasets.records.read_vggsound_csv and "
                    "write_list (docs/data.md)")
            raise DataError(f"training list not found: {path}.{hint}")
        if report is not None:
            entries += read_list(path, 2, 3, on_bad=report.append)
        elif cfg.data.on_error == "skip":
            entries += _lenient_list(path)
        else:
            entries += read_list(path, min_fields=2, max_fields=3)
    if not entries:
        raise DataError(f"training list {', '.join(_train_lists(cfg, spec))} has no entries")
    return entries


def _lenient_list(path):
    """read_list(path, 2, 3) that drops (and counts) malformed lines instead of raising."""
    bad = []
    good = read_list(path, 2, 3, on_bad=bad.append)
    if bad:
        logger.warning("dropped %d malformed lines of %s (data.on_error=skip); first: %s",
                       len(bad), path, bad[0])
    return good


def _duplicates(groups, path):
    """An evaluation list naming an item twice would count it twice: DataError naming both lines.
    A pair list (two clips side by side, drawn at random) may repeat a pair: the count of such
    repeats, scored as listed, with a warning (results.json: num_duplicates)."""
    first, repeats = {}, []
    for group in groups:
        key = tuple(e.id for e in group)
        if key in first and len(group) == 1:
            raise DataError(f"{group[0].where}: {key[0]} is listed twice in {path} (also "
                            f"{first[key]}): it would be counted twice; remove one line")
        if key in first:
            repeats.append(f"{group[0].where} = {first[key]}")
        first.setdefault(key, group[0].where)
    if repeats:
        logger.warning("%s: %d pair(s) are listed more than once and count as often as listed "
                       "(num_duplicates; the first: %s)", path, len(repeats), repeats[0])
    return len(repeats)


def clip_of(id_: str, music_ids: bool = False) -> str:
    """The clip a frame id comes from: the id without the ``_<k:04d>`` that prepare_videos
    --every appends (``guitar-01_0003`` -> ``guitar-01``), or with `music_ids` the video of
    MUSIC's ``<video>_<segment>_<frame>``; else the id itself (VGGSound's ``<ytid>_<start:06d>``,
    the synthetic ``train_000012``). A video named ``clip_0001`` prepared with --center would be
    taken for frame 1 of ``clip``: name such videos ``clip-0001``."""
    m = MUSIC_ID.match(id_) if music_ids else None
    return m["video"] if m else re.sub(r"_\d{4}$", "", id_) or id_


def _split_val(entries, fraction, music_ids=False):
    """Seeded carve-out by clip (`clip_of`): (train entries, val entries), no clip in both;
    whole clips are drawn until at least `fraction` of the entries are val."""
    n_val = int(round(len(entries) * fraction))
    clip = {e.id: clip_of(e.id, music_ids) for e in entries}
    clips = sorted(set(clip.values()))
    sizes = {c: 0 for c in clips}
    for e in entries:
        sizes[clip[e.id]] += 1
    val, taken = set(), 0
    for i in np.random.default_rng(VAL_SEED).permutation(len(clips)).tolist():
        if taken >= n_val:
            break
        val.add(clips[i])
        taken += sizes[clips[i]]
    return ([e for e in entries if clip[e.id] not in val],
            [e for e in entries if clip[e.id] in val])


def build_from_spec(cfg, split: str, spec: Benchmark, name: str = "",
                    class_names: Optional[Sequence[str]] = None,
                    report: Optional[list] = None) -> AudioVisualDataset:
    """Dataset of benchmark `spec` for `split` (see the module docstring and `build_dataset`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}', expected one of {SPLITS}")
    d = cfg.data
    # pair lists are always side by side; training follows data.canvas unless the benchmark fixes it
    canvas = spec.canvas or (d.canvas if split == "train" else "concat")
    train_path = _metadata_path(cfg, spec.train_list)
    have_train = os.path.isfile(train_path)
    need_train = split != "test" or (have_train and class_names is None)
    train_entries = _read_train_list(cfg, name, spec, report) if need_train else None
    if class_names is None and train_entries is not None:
        class_names = _class_names(train_entries)

    def plain(e):
        return media_record(d.root, e.id, e.classes, e.where, spec.music_ids, d.frame_rate)

    if d.val_list:
        if split == "val" and not os.path.isfile(_metadata_path(cfg, d.val_list)):
            raise DataError(f"data.val_list {d.val_list}: no such file in data.metadata "
                            f"({_metadata_path(cfg, d.val_list)})")
        spec = dataclasses.replace(spec, val_list=d.val_list)
    if split == "test" or (split == "val" and spec.val_list):
        # evaluation lists are used whole: a bad entry always raises (data.on_error=skip is for
        # training lists), so no metric is ever computed on a silently smaller set
        d = dataclasses.replace(d, on_error="raise")
        annotate = _Annotator(cfg, spec)
        path = _metadata_path(cfg, spec.test_list if split == "test" else spec.val_list)
        bad = None if report is None else report.append
        if split == "test" and spec.test_pairs:
            groups = read_pair_list(path, on_bad=bad)
        else:
            groups = [(e,) for e in read_list(path, 1, 3, on_bad=bad)]
        duplicates = _duplicates(groups, path)
        items = []
        for group in groups:
            try:
                items.append(tuple(annotate(e) for e in group))
            except DataError as e:
                if report is None:
                    raise
                report.append(str(e))
        if not items and groups:  # in a check: every entry failed, each one reported
            raise DataError(f"{split} list {path}: none of its {len(groups)} entries can be used "
                            f"(the first: {report[-len(groups)]})")
        if not items:
            raise DataError(f"{split} list {path} has no entries")
        if class_names is None:
            class_names = sorted({c for it in items for r in it for c in r.classes})
            logger.warning("%s: training list %s not found and no class_names given: class "
                           "indices follow the %d classes of the test set", name, train_path,
                           len(class_names))
        dataset = AudioVisualDataset(items, class_names, d, train=False, canvas=canvas,
                                     seed=VAL_SEED, origin=path, report=report)
        dataset.duplicates = duplicates
        return dataset

    train_e, val_e = ((train_entries, []) if spec.val_list else
                      _split_val(train_entries, d.val_fraction, spec.music_ids))
    origin = ", ".join(_train_lists(cfg, spec))
    if split == "train":
        return AudioVisualDataset([(plain(e),) for e in train_e], class_names, d, train=True,
                                  num_sources=d.num_sources, canvas=canvas, seed=cfg.train.seed,
                                  origin=origin, report=report)
    # val carve-out: test transforms; mirrors the test split (pairs for pair benchmarks)
    items = [(plain(e),) for e in val_e]
    if spec.test_pairs and len(items) > 1:
        mixer = MixtureSampler([it[0].classes for it in items], 2, VAL_SEED)
        items = [it + items[mixer.partners(i, 0)[0]] for i, it in enumerate(items)]
    return AudioVisualDataset(items, class_names, d, train=False, canvas=canvas, seed=VAL_SEED,
                              origin=f"val carve-out of {origin}", report=report)
