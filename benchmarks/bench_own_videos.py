"""docs/data.md "Your own videos", measured: generated clips -> held-out AP over training seeds.

    python -m benchmarks.bench_own_videos                  # 4 classes x 25 clips of 6 s, 3 seeds
    python -m benchmarks.bench_own_videos --clips 6 --seeds 1 --out /tmp/own_dry train.epochs=1

Writes 4 classes x --clips videos (tests.fixtures.write_clip, 128x96 px, 15 fps, each clip its
own seed: the class's shape moves across one half, left to right or back, while its sound plays;
a shape of another class sits silent in the other half), then runs the commands of the doc as subprocesses from the repository root:
``tools.prepare_videos --every 1.0`` (frames at 0.5, 1.5, ... s), a pixel box file of the
sounding shape on every frame, ``tools.make_lists --val 0.1 --test 0.2``, and per seed
``train.py --config <lists>/config.yaml --config configs/cpu.yaml train.seed=S`` (plus the
overrides given here) and ``test.py --ckpt <run>/best.pth``. The held-out test clips' AP is
compared with two maps that ignore the audio and the image, scored by the same evaluator on the
same test items: a center prior (`datasets.render.center_map`) and the mean box mask of the
training frames (where the sounding shape usually is). Writes <out>/results.json: per seed AP,
IoU@0.5, AUC, recall@N, best epoch and training time; their mean and std (over seeds, ddof 1);
the priors; every command.

Caveat: the clips come in four layouts (which half holds the sounding shape, which way it
moves), so test clips resemble training clips: the AP says that the path from videos to a model
works and learns to follow the sound, not that it generalizes to new footage; the
mean-training-box prior shows what the position alone gives.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from datasets import build_dataset, build_loader, read_list
from datasets.image import boxes_to_mask
from datasets.render import center_map
from engine import build_evaluator
from tests.fixtures import write_clip
from utils.config import load_config
from utils.files import write_atomic
from utils.logger import git_sha

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["disc", "square", "triangle", "ring"]  # folder names = the sounding shapes
METRICS = ["AP", "IoU@0.5", "AUC", "recall@N"]
TEST_SET = "vggsound_single"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clips", type=int, default=25, help="clips per class")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each clip")
    p.add_argument("--size", default="128x96", help="WxH of the clips")
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0 .. N-1")
    p.add_argument("--split-seed", type=int, default=0, help="tools.make_lists --seed")
    p.add_argument("--work", default="", help="folder for the clips, data and runs (default: a "
                   "new temporary folder, kept)")
    p.add_argument("--base", default="configs/vggsound_single.yaml", help="tools.make_lists --base: "
                   "the paper config (default) or configs/recipe/vggsound_single.yaml")
    p.add_argument("--out", default="results/own_videos", help="folder of results.json")
    p.add_argument("overrides", nargs="*", help="train.py config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    if args.seeds < 1 or args.clips < 1:
        p.error("--seeds and --clips must be >= 1")
    return args


def write_clips(folder, clips, seconds, width, height):
    """<folder>/<class>/<class>-<j>.mp4 -> {frame id: pixel xyxy box of the sounding shape} for
    the frames of prepare_videos --every 1.0 (times k + 0.5)."""
    boxes = {}
    for i, cls in enumerate(CLASSES):
        os.makedirs(os.path.join(folder, cls), exist_ok=True)
        others = CLASSES[i + 1:] + CLASSES[:i]
        for j in range(clips):
            stem = f"{cls}-{j:02d}"
            clip = write_clip(os.path.join(folder, cls, stem + ".mp4"), seconds, 15, width, height,
                              22050, sounding=cls, distractor=others[j % len(others)],
                              seed=1000 * i + j)
            for k in range(max(int(seconds // 1.0), 1)):
                boxes[f"{stem}_{k:04d}"] = clip["box"](k + 0.5)
    return boxes


def run(command, log):
    """Run a command from the repository root; stop on failure."""
    print("$ " + " ".join(command), flush=True)
    log.append(" ".join(command))
    subprocess.run(command, cwd=ROOT, check=True)


def prior_scores(cfg, train_boxes):
    """{prior: metrics} of the audio-blind maps on cfg's test set (evaluated as test.py does)."""
    ds = build_dataset(cfg, "test")
    size = cfg.data.image_size
    priors = {"center prior": torch.from_numpy(center_map(size, size)),
              "mean training box": torch.from_numpy(np.mean([boxes_to_mask([b], size, size)
                                                             for b in train_boxes], axis=0))}
    evaluators = {k: build_evaluator(ds, cfg.eval) for k in priors}
    for batch in build_loader(ds, cfg.eval.batch_size, False, 0):
        gt = batch["gt"][:, 0]  # [B, H, W]: one source per test item
        for k, ev in evaluators.items():
            ev.update(priors[k].expand_as(gt), gt, batch["index"], ids=batch["id"])
    out = {}
    for k, ev in evaluators.items():
        metrics = ev.compute()
        out[k] = {m: metrics[m] for m in METRICS[:3]} | {"num_samples": metrics["num_samples"]}
    return out


def best_epoch(run_dir):
    """(epoch, val AP) of the best val AP in <run>/log.jsonl."""
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    scored = [(r["val_AP"], r["epoch"]) for r in records if r.get("val_AP") is not None]
    ap, epoch = max(scored)
    return epoch, ap


def main(argv=None):
    args = parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="bench_own_videos_"))
    videos, root = os.path.join(work, "videos"), os.path.join(work, "data")
    lists = os.path.join(root, "metadata")
    commands, t0, py = [], time.time(), sys.executable
    boxes = write_clips(videos, args.clips, args.seconds, width, height)
    print(f"wrote {len(CLASSES)} x {args.clips} clips of {args.seconds:g} s ({args.size}) under "
          f"{videos} in {time.time() - t0:.0f} s", flush=True)
    run([py, "-m", "tools.prepare_videos", "--videos", videos, "--out", root, "--every", "1.0"],
        commands)
    with open(os.path.join(root, "boxes.csv"), "w") as f:
        f.write("id,x1,y1,x2,y2\n")
        f.writelines(f"{i},{x1},{y1},{x2},{y2}\n" for i, (x1, y1, x2, y2) in boxes.items())
    run([py, "-m", "tools.make_lists", "--root", root, "--boxes", os.path.join(root, "boxes.csv"),
         "--units", "pixel", "--val", "0.1", "--test", "0.2", "--seed", str(args.split_seed),
         "--output-dir", os.path.join(work, "runs", "default"), "--base", args.base,
         "--overwrite"], commands)
    config = os.path.join(lists, "config.yaml")
    prepared = time.time() - t0

    seeds = []
    for seed in range(args.seeds):
        run_dir = os.path.join(work, "runs", f"seed{seed}")
        t = time.time()
        run([py, "train.py", "--config", config, "--config", "configs/cpu.yaml",
             f"train.seed={seed}", f"train.output_dir={run_dir}", "eval.test_at_end=false",
             *args.overrides], commands)
        train_s = time.time() - t
        run([py, "test.py", "--ckpt", os.path.join(run_dir, "best.pth")], commands)
        with open(os.path.join(run_dir, "results.json")) as f:
            result = json.load(f)["results"][TEST_SET]
        epoch, val_ap = best_epoch(run_dir)
        seeds.append({"seed": seed, **{m: result.get(m) for m in METRICS},
                      "num_samples": result["num_samples"], "best_epoch": epoch,
                      "val_AP": val_ap, "train_s": round(train_s, 1)})
        print(f"seed {seed}: test AP {result['AP']:.3f} (best epoch {epoch}, val AP "
              f"{val_ap:.3f}), trained in {train_s / 60:.1f} min", flush=True)

    cfg = load_config([config, os.path.join(ROOT, "configs", "cpu.yaml")], args.overrides)
    w, h = width, height
    train_ids = [e.id for e in read_list(os.path.join(lists, "vggsound_single_train.txt"), 2, 2)]
    train_boxes = [(x1 / w, y1 / h, x2 / w, y2 / h) for x1, y1, x2, y2 in
                   (boxes[i] for i in train_ids)]
    priors = prior_scores(cfg, train_boxes)
    values = {m: [s[m] for s in seeds if s[m] is not None] for m in METRICS}
    summary = {m: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
               for m, v in values.items() if v}
    record = {
        "command": "python -m benchmarks.bench_own_videos " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "git": git_sha(), "work": work,
        "data": {"classes": CLASSES, "clips_per_class": args.clips, "seconds": args.seconds,
                 "size": args.size, "frames": len(boxes), "train_frames": len(train_ids),
                 "test_frames": seeds[0]["num_samples"]},
        "seeds": seeds, "summary": summary, "priors": priors,
        "commands": commands, "prepare_s": round(prepared, 1),
        "wall_s": round(time.time() - t0, 1), "torch_threads": torch.get_num_threads(),
    }
    out = os.path.join(ROOT, args.out)  # an absolute --out stays as it is
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")

    def dump(tmp):
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
    write_atomic(path, dump)
    print("held-out AP over {} seed(s): {:.3f} ± {:.3f}; center prior {:.3f}, mean training box "
          "{:.3f}; wrote {} ({:.1f} min)".format(
              len(seeds), summary["AP"]["mean"], summary["AP"]["std"],
              priors["center prior"]["AP"], priors["mean training box"]["AP"], path,
              (time.time() - t0) / 60))
    return record


if __name__ == "__main__":
    main()
