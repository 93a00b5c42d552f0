"""Decode every item of every split a config names, and report the bad ones in one file.

    python -m tools.check_data --config configs/vggsound_single.yaml data.root=/data/vggsound
    python -m tools.check_data --config configs/music.yaml --workers 8 --clean-train cleaned/

Splits: train (each clip alone, whatever data.num_sources says), val, and every eval.test_sets
entry. Every list line is parsed, every entry matched with its annotation and class, and every
item goes through the loader's own code (frame, audio window, masks, spectrogram) in worker
processes. Writes <out>/check_data.tsv (split, list entry, reason; one line per bad entry) and,
with --clean-train DIR, a copy of each training list without its bad lines (train and val
entries: the val carve-out comes from the training list). Test lists are never cleaned: fix them,
or write a smaller list on purpose. Exit status 1 when anything is bad.
"""
import argparse
import dataclasses
import os
import re
import time
from collections import Counter

from datasets import build_dataset, training_lists
from datasets.decode import decode_all
from utils.errors import InputError, run_cli
from utils.config import load_config
from utils.files import write_atomic
from utils.logger import logger, setup_logging

WHERE = re.compile(r"^(?P<a>.+?:\d+): |\(list entry (?P<b>[^)]+?:\d+)[,)]")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, action="append", help="YAML config whose data and "
                   "test sets to check (given twice: merged in order, as train.py)")
    p.add_argument("--splits", default="train,val,test", help="comma-separated: train, val, test")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    p.add_argument("--out", default=".", help="folder for check_data.tsv")
    p.add_argument("--clean-train", default="", metavar="DIR",
                   help="write a copy of each training list without its bad lines to DIR "
                   "(never over the list itself, nor over an existing file without --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="--clean-train may replace copies "
                   "that DIR holds already")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    unknown = set(args.splits.split(",")) - {"train", "val", "test"}
    if unknown:
        p.error(f"--splits: unknown {sorted(unknown)}; use train, val, test")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def _where(message):
    m = WHERE.search(message)
    return (m["a"] or m["b"]) if m else "-"


def check_split(cfg, split, name, class_names, workers, decode=True):
    """-> (dataset or None, rows [(split, list entry, reason)], items decoded). Without
    `decode`, only the start-up checks run (lists, annotations, classes, files present)."""
    report, label = [], split if split != "test" else f"test {name}"
    try:
        entry_split = name.partition(":")[2] if split == "test" and ":" in name else split
        dataset = build_dataset(cfg, entry_split, name.partition(":")[0], class_names, report)
    except (ValueError, OSError) as e:  # a whole file unusable: its entries' rows, one for it
        return None, [(label, _where(m), m) for m in report] + [(label, "-", str(e))], 0
    rows = [(label, _where(m), m) for m in report]
    if not decode:
        return dataset, rows, 0
    for index, reason in decode_all(dataset, workers, label):
        records = dataset.records(index)
        named = [r for r in records if r.frame and (r.frame in reason or r.audio in reason)]
        where = ", ".join(r.where or r.id for r in named or records)  # a pair's bad clip, if named
        rows.append((label, where, re.sub(r" \(list entry [^)]*\)$", "", reason)))
    return dataset, rows, len(dataset)


def summary(rows, first=3):
    """Console lines for the bad `rows`: the most common kind of failure (its reason with names
    and numbers blanked) when it covers most of them, then the first `first` rows."""
    if not rows:
        return []
    kinds = Counter(re.sub(r"'[^']*'|\S*[/\\]\S*|\d+", "…", reason) for _, _, reason in rows)
    kind, count = kinds.most_common(1)[0]
    lines = [f"{count} of the {len(rows)} bad entries fail the same way: {kind}"] \
        if count > len(rows) / 2 and len(rows) > 1 else []
    return lines + [f"{split} {where}: {reason}" for split, where, reason in rows[:first]]


def clean_target(path, out_dir, overwrite):
    """Where the cleaned copy of list `path` goes; InputError when it would replace the list
    itself, FileExistsError when it would replace an existing file without `overwrite`."""
    target = os.path.join(out_dir, os.path.basename(path))
    if os.path.abspath(target) == os.path.abspath(path):
        raise InputError(f"--clean-train {out_dir}: the copy of {path} would replace the list "
                         "itself; choose another folder (the list stays as it is)")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"--clean-train {out_dir}: {target} exists; choose another "
                              "folder, or replace it with --overwrite")
    return target


def write_clean_lists(cfg, rows, out_dir, overwrite=False):
    """Copies of the training lists without the lines that `rows` of train / val name. Nothing is
    written (InputError, one line) when a copy would replace its own list, would replace an
    existing file without `overwrite`, or would keep no line of a list that has some (every
    entry failed: a wrong data.root, most likely). Each copy appears complete or not at all."""
    bad, reason = {}, {}
    for split, where, why in rows:
        if split in ("train", "val") and where != "-":
            for w in where.split(", "):
                path, _, line = w.rpartition(":")
                if path and line.isdigit():  # a list line (not an in-memory item)
                    bad.setdefault(os.path.abspath(path), set()).add(int(line))
                    reason.setdefault(os.path.abspath(path), why)
    copies = []
    for path in training_lists(cfg):
        drop = bad.get(os.path.abspath(path), set())
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().splitlines(keepends=True)
        kept = [x for n, x in enumerate(lines, 1) if n not in drop]
        target = clean_target(path, out_dir, overwrite)
        if lines and not kept:
            raise InputError(f"--clean-train: every line of {path} failed (the first: "
                             f"{reason[os.path.abspath(path)]}); nothing written: check data.root "
                             "and data.metadata")
        copies.append((target, kept, len(lines)))
    os.makedirs(out_dir, exist_ok=True)
    for target, kept, total in copies:
        def copy(tmp, kept=kept):
            with open(tmp, "w", newline="") as f:
                f.writelines(kept)
        write_atomic(target, copy)
        logger.info("wrote %s: %d of %d lines (%d bad dropped)", target, len(kept), total,
                    total - len(kept))


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, args.overrides)
    cfg.data = dataclasses.replace(cfg.data, num_sources=1)  # every clip checked alone
    splits = args.splits.split(",")
    if args.clean_train:  # refused now, not after decoding everything
        for path in training_lists(cfg):
            clean_target(path, args.clean_train, args.overwrite)
    rows, class_names, total, t0 = [], None, 0, time.time()
    if "train" in splits or "test" in splits:  # the test sets take the training classes
        ds, found, total = check_split(cfg, "train", cfg.data.dataset, None, args.workers,
                                       decode="train" in splits)
        class_names = ds.class_names if ds is not None else None
        rows += found if "train" in splits else []
    if "val" in splits:
        _, found, n = check_split(cfg, "val", cfg.data.dataset, class_names, args.workers)
        rows += found
        total += n
    if "test" in splits:
        for entry in cfg.eval.test_sets or [cfg.data.dataset]:
            _, found, n = check_split(cfg, "test", entry, class_names, args.workers)
            rows += found
            total += n
    seen = set()  # val reads the training list again: its line errors are the train split's
    rows = [r for r in rows if (r[1], r[2]) not in seen and not seen.add((r[1], r[2]))]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "check_data.tsv")
    with open(path, "w") as f:
        f.write("split\tlist entry\treason\n")
        f.writelines("\t".join(x.replace("\t", " ") for x in r) + "\n" for r in rows)
    wall = time.time() - t0
    logger.info("checked %d items in %.1f s (%.0f items/s, %d workers): %d bad; wrote %s", total,
                wall, total / max(wall, 1e-9), args.workers, len(rows), path)
    for line in summary(rows):
        logger.warning(line)
    if args.clean_train:
        write_clean_lists(cfg, rows, args.clean_train, args.overwrite)
    return rows


if __name__ == "__main__":
    run_cli(lambda: 1 if main() else 0)  # 1: bad entries found (in the report)
