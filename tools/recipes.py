"""The recipe search of README "Making class-aware maps localise" -> results/recipes/.

    python tools/recipes.py              # 12 trainings (seed 0), ~23 min on 2 CPUs
    python tools/recipes.py --only 1,8   # some rows
    python tools/recipes.py --dry-run    # print the commands

Every row is one training of the quick-start's model and data, starting from the paper's
objective (PAPER: modulated maps, no class-agnostic term, L_loc's gradient into the patches; the
three overrides undo the quick-start recipe of configs/synthetic.yaml) plus the row's overrides:

    python train.py --config configs/synthetic.yaml --resume auto \\
        train.output_dir=<out>/runs/row<i> <PAPER> <row overrides> train.epochs=<E> \\
        eval.test_at_end=false

The learning rate is constant, so epoch 2 of a 4-epoch run is a 2-epoch run. The number reported
is the val AP (single source) of the maps the model is evaluated with (class-aware for AVGN),
read from each run's log.jsonl. A run whose log holds its last epoch is not trained again; a run
folder trained with another config (say, other --extra) is an error. Writes <out>/recipes.md (the
table, with the commits the runs were trained at and their training time), <out>/recipes.json
and a copy of each run's log.jsonl and train.log under <out>/logs/ (the run folders, with their
checkpoints, stay out of git).
"""
import argparse
import json
import os
import re
import shutil
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from reproduce import CONFIG, Runner, config_differences, markdown_table  # noqa: E402
from utils.config import load_config, to_dict  # noqa: E402
from utils.logger import logger, setup_logging  # noqa: E402

PAPER = ("model.loc_features=modulated", "loss.w_loc_agnostic=0", "loss.patch_grad=true")
RECIPE = ("loss.w_loc_agnostic=1", "loss.patch_grad=false", "model.loc_features=raw")

# (label, overrides on top of PAPER, epochs)
ROWS = [
    ("`model.name=ezvsl` (class-agnostic baseline)", ("model.name=ezvsl",), 2),
    ("none (the paper's objective)", (), 2),
    ("`model.loc_features=raw`", ("model.loc_features=raw",), 2),
    ("`loss.symmetric=false`", ("loss.symmetric=false",), 2),
    ("`model.loc_features=raw loss.symmetric=false`",
     ("model.loc_features=raw", "loss.symmetric=false"), 2),
    ("4 + `loss.w_loc_agnostic=1`",
     ("model.loc_features=raw", "loss.symmetric=false", "loss.w_loc_agnostic=1"), 2),
    ("`loss.w_loc=0 loss.w_cls_token=0 loss.w_cls_audio=0 loss.w_cls_visual=0 "
     "loss.w_loc_agnostic=1` (AVGN trained as EZ-VSL; its class-aware maps are untrained)",
     ("loss.w_loc=0", "loss.w_cls_token=0", "loss.w_cls_audio=0", "loss.w_cls_visual=0",
      "loss.w_loc_agnostic=1"), 2),
    ("`loss.w_loc_agnostic=1 loss.patch_grad=false`", RECIPE[:2], 2),
    ("7 + `model.loc_features=raw` (**the quick-start recipe**)", RECIPE, 4),
    ("8 + `model.audio_tokens=grid`", RECIPE + ("model.audio_tokens=grid",), 4),
    ("8 + `loss.symmetric=false`", RECIPE + ("loss.symmetric=false",), 4),
    ("7 + `loss.symmetric=false`", RECIPE[:2] + ("loss.symmetric=false",), 2),
]
REPORTED_EPOCHS = (2, 4)


def command(i, out, extra):
    overrides = [f"train.output_dir={out}/runs/row{i}", *PAPER, *ROWS[i][1], *extra,
                 f"train.epochs={ROWS[i][2]}", "eval.test_at_end=false"]
    return ["train.py", "--config", CONFIG, "--resume", "auto", *overrides]


def val_ap(run_dir):
    """{epoch number (1-based): val AP} from a run's log.jsonl."""
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {r["epoch"] + 1: r["val_AP"] for r in records if "val_AP" in r}


def read_seconds(path):
    """The number in a wall_s.txt (0 when absent)."""
    if not os.path.isfile(path):
        return 0.0
    with open(path) as f:
        return float(f.read())


def add_seconds(path, seconds):
    """Add `seconds` to the wall_s.txt at `path` (training time of a run over invocations)."""
    total = read_seconds(path) + seconds  # read before "w" truncates the file
    with open(path, "w") as f:
        f.write(f"{total:.1f}\n")


def trained_at(run_dir):
    """The commits a run was trained at (the `git <sha>` line train.py logs at every start)."""
    path = os.path.join(run_dir, "train.log")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        shas = re.findall(r" INFO git (\S+) \| ", f.read())
    return sorted(set(shas), key=shas.index)


def check_config(i, run_dir, out, extra):
    """Raise when run_dir holds a run of row i trained with another config."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        stored = yaml.safe_load(f)
    argv = command(i, out, extra)
    wanted = to_dict(load_config(argv[2], argv[5:]))
    diff = config_differences(stored, wanted, {("train", "epochs"), ("model", "num_classes")})
    if diff:
        raise SystemExit(f"{run_dir} was trained with another config ({'; '.join(diff[:5])}); "
                         "remove the folder or choose another --out")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated row numbers (default: all)")
    p.add_argument("--out", default="results/recipes")
    p.add_argument("--extra", nargs="*", default=[], help="config overrides for every run")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--dry-run", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        rows = [int(i) for i in args.only.split(",")] if args.only else list(range(len(ROWS)))
    except ValueError:
        raise SystemExit(f"--only takes comma-separated row numbers, got {args.only!r}") from None
    if any(not 0 <= i < len(ROWS) for i in rows):
        raise SystemExit(f"--only: rows are 0 to {len(ROWS) - 1}, got {args.only}")
    out = args.out.rstrip(os.sep)
    os.chdir(ROOT)
    setup_logging(None if args.dry_run else out, "recipes.log")
    runner = Runner(args.dry_run, args.device)
    run_dirs = [os.path.join(out, "runs", f"row{i}") for i in range(len(ROWS))]
    for i in rows:
        check_config(i, run_dirs[i], out, args.extra)
        if ROWS[i][2] in val_ap(run_dirs[i]):
            logger.info("row %d: trained (%s)", i, run_dirs[i])
            continue
        runner(command(i, out, args.extra), os.path.join(run_dirs[i], "stdout.txt"), f"row{i}")
        add_seconds(os.path.join(run_dirs[i], "wall_s.txt"), runner.times[f"row{i}"])
    if args.dry_run:
        return None

    results, wall, commits = {}, {}, []
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    for i, run_dir in enumerate(run_dirs):
        results[i] = val_ap(run_dir)
        if os.path.isfile(os.path.join(run_dir, "wall_s.txt")):
            wall[f"row{i}"] = read_seconds(os.path.join(run_dir, "wall_s.txt"))
        commits += [c for c in trained_at(run_dir) if c not in commits]
        for name, ext in (("log.jsonl", "jsonl"), ("train.log", "log")):
            if os.path.isfile(os.path.join(run_dir, name)):
                shutil.copyfile(os.path.join(run_dir, name),
                                os.path.join(out, "logs", f"row{i}.{ext}"))
    table = []
    for i, (label, _, epochs) in enumerate(ROWS):
        cells = [f"{results[i][e]:.3f}" if e <= epochs and e in results[i] else ""
                 for e in REPORTED_EPOCHS]
        table.append([str(i), label, *cells])
    headers = ["#", "overrides (on top of the paper's AVGN: " + " ".join(f"`{o}`" for o in PAPER)
               + ")", *(f"val AP, {e} epochs" for e in REPORTED_EPOCHS)]
    md = ["# Making class-aware maps localise: the recipe search (seed 0)", "",
          f"`python tools/recipes.py`; runs trained at git {', '.join(commits) or '-'} in "
          f"{sum(wall.values()) / 60:.1f} min "
          f"({'; '.join(f'{k} {v / 60:.1f}' for k, v in wall.items())}; "
          "per row, summed over the invocations that trained it). Logs: `logs/`.",
          "", "Each run: `python " + " ".join(command(0, out, [])[:5])
          + f" train.output_dir={out}/runs/row<i> <PAPER> <row overrides> "
          + "".join(f"{e} " for e in args.extra) + "train.epochs=<E> eval.test_at_end=false`", "",
          markdown_table(headers, table), ""]
    with open(os.path.join(out, "recipes.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(out, "recipes.json"), "w") as f:
        json.dump({"trained_at": commits, "paper": PAPER, "wall_s": wall, "rows": [
            {"row": i, "label": label, "overrides": list(ov), "epochs": epochs,
             "command": ["python", *command(i, out, args.extra)],
             "trained_at": trained_at(run_dirs[i]),
             "val_AP": {str(e): ap for e, ap in sorted(results[i].items())}}
            for i, (label, ov, epochs) in enumerate(ROWS)]}, f, indent=1)
    print("\n".join(md))
    return results


if __name__ == "__main__":
    main()
