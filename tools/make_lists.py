r"""Your own frames and boxes -> train / val / test lists, their box annotations, and a config.

    python -m tools.make_lists --root data/mine --boxes data/mine/boxes.csv --units pixel
    python -m tools.make_lists --root data/mine --boxes boxes.csv --units normalized \
        --box-format xywh --val 0.1 --test 0.2 --seed 0 --out data/mine/metadata

Reads an ``id,class`` list (default ``<root>/videos.txt``, as tools.prepare_videos writes it)
and a box file, and writes to --out (default ``<root>/metadata``), under the file names of the
``vggsound_single`` benchmark so that its loader reads them:

* ``vggsound_single_train.txt``  id,class: the training items (no boxes needed);
* ``vggsound_single_val.csv``    id,class: picks best.pth (data.val_list);
* ``vggsound_single_test.csv``   id,class: the held-out test items;
* ``vggss.json``                 the boxes of every val and test item:
  ``[{"file": id, "class": name, "bbox": [[x1, y1, x2, y2], ...]}, ...]``, normalized xyxy
  (x from the left edge, y from the top edge, as fractions of the frame's width and height);
* ``config.yaml``                a config that points at them (``_base_`` --base, by default
  configs/vggsound_single.yaml, the paper config; configs/recipe/vggsound_single.yaml, the
  recipe; data.root, data.metadata, data.val_list, train.output_dir, eval.test_sets), also
  logged. Its paths are absolute: it works from any folder.

Box file: CSV with a header line, then one line per box. With ``--box-format xyxy`` (default)
the header is ``id,x1,y1,x2,y2``: the top-left (x1, y1) and bottom-right (x2, y2) corners; with
``--box-format xywh`` it is ``id,x,y,w,h``: the top-left corner, width and height. ``id`` is a
frame id of the list (the frame is ``<root>/frames/<id>.jpg``); an id with several lines has
several boxes (their union is the sounding region). ``--units pixel``: coordinates in pixels of
that jpg (edges: a box over pixel columns 10..19 has x1 = 10, x2 = 20; x in [0, width], y in
[0, height]); ``--units normalized``: fractions of the width and height, in [0, 1]. A box that
lies outside the frame by more than 1 % of its side, an inverted or empty box (x2 <= x1 or
y2 <= y1; w or h <= 0), a line with other than 5 fields or a non-number, and an id that is not in
the list are errors naming ``file:line``; coordinates within 1 % of the frame are clipped to it.

Splits are drawn by clip (`datasets.benchmarks.clip_of`: the id without the ``_<k:04d>`` of
prepare_videos --every, so ``guitar-01_0000`` .. ``guitar-01_0005`` are one clip): no clip is in two
splits. Per class (a clip's class is that of its first frame in the list), in a seeded random
order, ``round(test x clips)`` clips go to test and ``round(val x clips)`` to val (at least one
each when the fraction is > 0, at least one clip left for training), drawn only from the clips
whose every frame has a box. A clip with no box, or with boxes on some of its frames only, goes
to training (the latter are reported). Nothing is replaced: an output that exists is refused
unless --overwrite; each file is written whole or not at all.
"""
import argparse
import json
import math
import os
import shlex
import sys
from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np
import yaml

from datasets.benchmarks import BENCHMARKS, clip_of
from datasets.records import MARGIN, DataError, csv_rows, read_list, write_list
from utils.config import load_config
from utils.errors import InputError, run_cli
from utils.files import write_atomic
from utils.logger import logger, setup_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK = "vggsound_single"  # the benchmark whose file names the lists take
BASE_CONFIG = os.path.join(ROOT, "configs", "vggsound_single.yaml")
VAL_LIST = "vggsound_single_val.csv"  # data.val_list
CONFIG = "config.yaml"
HEADERS = {"xyxy": ["id", "x1", "y1", "x2", "y2"], "xywh": ["id", "x", "y", "w", "h"]}


class OutputExists(InputError, FileExistsError):
    """An output file exists and --overwrite was not given."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", required=True, help="data root holding frames/<id>.jpg (data.root)")
    p.add_argument("--list", default=None, help="id,class list (default: <root>/videos.txt)")
    p.add_argument("--boxes", required=True, help="box file: CSV with a header, one box a line")
    p.add_argument("--units", required=True, choices=["pixel", "normalized"],
                   help="box coordinates in pixels of frames/<id>.jpg, or fractions of its sides")
    p.add_argument("--box-format", default="xyxy", choices=["xyxy", "xywh"],
                   help="x1,y1,x2,y2 corners (default) or x,y,w,h")
    p.add_argument("--val", type=float, default=0.1, help="fraction of each class's clips "
                   "held out for val (default 0.1; 0: no val list, and train.py keeps no best.pth)")
    p.add_argument("--test", type=float, default=0.2, help="fraction of each class's clips "
                   "held out for test (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--out", default=None, help="folder of the lists, vggss.json and config.yaml "
                   "(data.metadata; default: <root>/metadata)")
    p.add_argument("--output-dir", default=None, help="train.output_dir of the config (default: "
                   "runs/<name of --root>)")
    p.add_argument("--base", default=BASE_CONFIG, help="the config the snippet inherits (_base_): "
                   "a config of the vggsound_single benchmark (default: the paper config; "
                   "configs/recipe/vggsound_single.yaml: the recipe)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    args = p.parse_args(argv)
    if not 0 <= args.val < 1 or not 0 < args.test < 1 or args.val + args.test >= 1:
        p.error(f"need 0 <= --val, 0 < --test and --val + --test < 1, got --val {args.val} "
                f"--test {args.test}")
    args.list = args.list or os.path.join(args.root, "videos.txt")
    args.out = args.out or os.path.join(args.root, "metadata")
    args.output_dir = args.output_dir or os.path.join(
        "runs", os.path.basename(os.path.normpath(os.path.abspath(args.root))))
    return args


# --------------------------------------------------------------------------- box file
def frame_size(root: str, id_: str, where: str) -> Tuple[int, int]:
    """(width, height) of <root>/frames/<id>.jpg, read from its header."""
    from PIL import Image
    path = os.path.join(root, "frames", id_ + ".jpg")
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: cannot read the frame {path} for the pixel size of "
                        f"'{id_}' ({type(e).__name__}: {e})") from None


def read_boxes(path: str, ids, root: str, units: str, box_format: str
               ) -> Dict[str, List[Tuple[float, float, float, float]]]:
    """The box file -> {id: [normalized xyxy boxes]} (see the module docstring for the format).
    ids: the ids of the list; root: the data root (frames/<id>.jpg give the pixel sizes)."""
    header, out, sizes = HEADERS[box_format], defaultdict(list), {}
    rows = iter(csv_rows(path))
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: empty box file (expected the header '{','.join(header)}')")
    where, row = first
    if [x.lower() for x in row] != header:
        other = [f for f, h in HEADERS.items() if h == [x.lower() for x in row]]
        hint = f" (that is --box-format {other[0]})" if other else ""
        raise DataError(f"{where}: expected the header '{','.join(header)}' of --box-format "
                        f"{box_format}, got '{','.join(row)}'{hint}")
    for where, row in rows:
        if len(row) != 5:
            raise DataError(f"{where}: expected 5 fields {','.join(header)}, got {row!r}")
        id_ = row[0]
        if id_ not in ids:
            raise DataError(f"{where}: unknown id '{id_}' (not in the list; ids are frame names "
                            "without .jpg)")
        try:
            v = [float(x) for x in row[1:]]
        except ValueError:
            raise DataError(f"{where}: expected 4 numbers after the id, got {row[1:]!r}") from None
        if not all(math.isfinite(x) for x in v):
            raise DataError(f"{where}: expected 4 finite numbers, got {row[1:]!r}")
        if box_format == "xywh":
            if v[2] <= 0 or v[3] <= 0:
                raise DataError(f"{where}: box {row[1:]!r} has a width or height <= 0")
            v = [v[0], v[1], v[0] + v[2], v[1] + v[3]]
        if v[2] <= v[0] or v[3] <= v[1]:
            raise DataError(f"{where}: box {row[1:]!r} is inverted or empty (x2 <= x1 or "
                            "y2 <= y1)")
        if units == "pixel":
            if id_ not in sizes:
                sizes[id_] = frame_size(root, id_, where)
            w, h = sizes[id_]
            v = [v[0] / w, v[1] / h, v[2] / w, v[3] / h]
            frame = f"the {w}x{h}-pixel frame"
        else:
            frame = "[0, 1] (normalized units; pixels need --units pixel)"
        if not all(-MARGIN <= x <= 1 + MARGIN for x in v):
            raise DataError(f"{where}: box {row[1:]!r} lies outside {frame}")
        out[id_].append(tuple(round(min(max(x, 0.0), 1.0), 6) for x in v))
    return dict(out)


# --------------------------------------------------------------------------- split
def count(fraction: float, n: int) -> int:
    """Clips a fraction of n asks for: rounded half up, at least 1 when fraction > 0."""
    return 0 if fraction <= 0 else max(1, int(math.floor(fraction * n + 0.5)))


def split_clips(entries, boxes, val: float, test: float, seed: int):
    """Split the clips per class, as the module docstring says. entries: the list's ListEntries;
    boxes: {id: boxes}. Returns ({clip: 'train' | 'val' | 'test'}, {clip: [its entries]}, the
    clips that have boxes on some of their frames only)."""
    clips, cls = {}, {}
    for e in entries:
        clips.setdefault(clip_of(e.id), []).append(e)
        cls.setdefault(clip_of(e.id), e.classes[0])
    by_class = defaultdict(list)
    for c in sorted(clips):
        by_class[cls[c]].append(c)
    full = {c for c, es in clips.items() if all(e.id in boxes for e in es)}
    partly = sorted(c for c, es in clips.items()
                    if c not in full and any(e.id in boxes for e in es))
    rng = np.random.default_rng(seed)
    splits = {c: "train" for c in clips}
    for name in sorted(by_class):
        members = by_class[name]
        n_test, n_val = count(test, len(members)), count(val, len(members))
        if n_test + n_val >= len(members):
            raise DataError(f"class '{name}' has {len(members)} clip(s) ({', '.join(members[:4])}"
                            f"{', ...' if len(members) > 4 else ''}): --test {test} and --val "
                            f"{val} take {n_test} + {n_val} of them and leave none for "
                            "training. Add clips, or lower the fractions (the frame ids "
                            "<stem>_<k:04d> of one video count as one clip)")
        order = [members[i] for i in rng.permutation(len(members)).tolist()]
        boxed = [c for c in order if c in full]
        if len(boxed) < n_test + n_val:
            logger.warning("class '%s': %d of its %d clips have a box on every frame; %d are "
                           "wanted for test and %d for val: test gets %d, val %d", name,
                           len(boxed), len(members), n_test, n_val, min(n_test, len(boxed)),
                           max(0, min(n_val, len(boxed) - n_test)))
        for c in boxed[:n_test]:
            splits[c] = "test"
        for c in boxed[n_test:n_test + n_val]:
            splits[c] = "val"
    for split, wanted in (("test", test), ("val", val)):
        if wanted > 0 and split not in splits.values():
            raise DataError(f"no clip with a box on every frame is left for {split}: box every "
                            f"frame of a few clips of each class (the box file names frame ids)")
    return splits, clips, partly


# --------------------------------------------------------------------------- outputs
def _text(path, text):
    with open(path, "w") as f:
        f.write(text)


def config_text(args, command: str, summary: str) -> str:
    """The config snippet (YAML) that points train.py / test.py at the lists."""
    data = {"root": os.path.abspath(args.root), "metadata": os.path.abspath(args.out)}
    if args.val > 0:
        data["val_list"] = VAL_LIST
    values = {"_base_": os.path.abspath(args.base), "data": data,
              "train": {"output_dir": os.path.abspath(args.output_dir)},
              "eval": {"test_sets": [BENCHMARK]}}
    return (f"# written by: {command}\n# {summary}\n"
            + yaml.safe_dump(values, sort_keys=False))


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    if load_config(args.base).data.dataset != BENCHMARK:
        raise InputError(f"--base {args.base}: the lists take the file names of {BENCHMARK}; "
                         f"its config sets data.dataset {load_config(args.base).data.dataset!r}")
    spec = BENCHMARKS[BENCHMARK]
    paths = {"train": os.path.join(args.out, spec.train_list),
             "val": os.path.join(args.out, VAL_LIST),
             "test": os.path.join(args.out, spec.test_list),
             "boxes": os.path.join(args.out, spec.annotation_file),
             "config": os.path.join(args.out, CONFIG)}
    if args.val <= 0:
        del paths["val"]
    inputs = {os.path.abspath(args.list), os.path.abspath(args.boxes)}
    clash = [p for p in paths.values() if os.path.abspath(p) in inputs]
    if clash:
        raise OutputExists(f"{clash[0]} is an input: choose another --out")
    taken = [p for p in paths.values() if os.path.exists(p)]
    if taken and not args.overwrite:
        raise OutputExists(f"{args.out} holds {', '.join(os.path.basename(p) for p in taken)}: "
                           "nothing written; replace with --overwrite, or choose another --out")

    entries = read_list(args.list, 2, 2)
    if not entries:
        raise DataError(f"{args.list} has no entries")
    seen = {}
    for e in entries:
        if e.id in seen:
            raise DataError(f"{e.where}: '{e.id}' is listed twice (also {seen[e.id]})")
        seen[e.id] = e.where
    boxes = read_boxes(args.boxes, seen, args.root, args.units, args.box_format)
    splits, clips, partly = split_clips(entries, boxes, args.val, args.test, args.seed)
    if partly:
        logger.warning("%d clip(s) have boxes on some of their frames only and go to training "
                       "(first: %s, frames without a box: %s)", len(partly), partly[0],
                       ", ".join(e.id for e in clips[partly[0]] if e.id not in boxes)[:200])
    unboxed = sum(1 for es in clips.values() if not any(e.id in boxes for e in es))
    by_split = {s: [e for e in entries if splits[clip_of(e.id)] == s]
                for s in ("train", "val", "test")}
    counts = {s: (len(es), len({clip_of(e.id) for e in es})) for s, es in by_split.items()}
    summary = (f"{len(clips)} clips of {len({e.classes[0] for e in entries})} classes: "
               + ", ".join(f"{s} {n} items ({c} clips)" for s, (n, c) in counts.items()))

    os.makedirs(args.out, exist_ok=True)
    for split in ("train", "val", "test"):
        if split in paths:
            rows = [(e.id, e.classes) for e in by_split[split]]
            write_atomic(paths[split], lambda p: write_list(rows, p))
    ann = [{"file": e.id, "class": e.classes[0], "bbox": [list(b) for b in boxes[e.id]]}
           for s in ("val", "test") for e in by_split[s]]
    write_atomic(paths["boxes"], lambda p: _text(p, "[\n" + ",\n".join(map(json.dumps, ann))
                                                 + "\n]\n"))  # one item a line
    command = "python -m tools.make_lists " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = config_text(args, command, summary)
    write_atomic(paths["config"], lambda p: _text(p, text))
    logger.info("%s; %d clip(s) without a box (training only)", summary, unboxed)
    logger.info("wrote %s\n%s", ", ".join(paths.values()), text)
    return {"splits": {s: [e.id for e in es] for s, es in by_split.items()},
            "paths": paths, "partly_boxed": partly}


if __name__ == "__main__":
    run_cli(main)
