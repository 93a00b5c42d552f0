"""Reproduce the paper's claims on the synthetic benchmark with fixed seeds: the trainings and
evaluations -> study/results/tables/summary.json; study.report turns it into tables.md and the figures.

    python -m study.reproduce                  # full: 12 variants (9 trainings) x 3 seeds (~2 h, 2 CPUs)
    python -m study.reproduce --quick          # EZ-VSL vs AVGN, seed 0, 640 steps
    python -m study.reproduce --dry-run        # print every command, run nothing
    python -m study.reproduce --only ezvsl,avgn,depth3 --seeds 0 1 --steps 256 --out results_b
    python -m study.reproduce --only decisive --out study/results/decisive   # 42 trainings (~4.5 h)
    python -m study.reproduce --only separation --out study/results/separation  # 9 trainings (~1.5 h)
    python -m study.reproduce --only released --out study/results/released  # 30 trainings (~3.5 h)
    python -m study.reproduce --only released_scale --out study/results/released_scale  # 6 (~40 min)

Every training is `python train.py --config configs/synthetic.yaml train.output_dir=<out>/runs/<run>
train.seed=<s> ... <--extra> <variant overrides> train.max_steps=N train.epochs=E`
(one schedule for every variant), resumed with `--resume auto`; every evaluation is
`python test.py --ckpt <run>/checkpoint.pth --out <run>/eval_<name> eval.test_sets=[...]` with
the same evaluation settings for every variant (EVALS: protocols frame, source and per_frame, and
frame binarized at half the map's range; the runs of the set `separation` also each of them but
source with competing maps, COMPETE). A run whose checkpoint has reached N steps is not
trained again and an evaluation newer than its checkpoint is not repeated, so an interrupted
reproduction continues where it stopped; a run folder trained with another config is an error.
Variants whose resolved configs are identical (e.g. `depth1` and `avgn`: the config has depth 1)
share one run.

Writes <out>/summary.json (every number, per seed) and, through study.report, <out>/tables.md
(mean ± sample std over seeds; the command and wall time at the top) and PNGs:
  Tables 1-2  EZ-VSL vs AVGN (+ audio-blind maps): single source (synthetic:test) AP, IoU@0.5, AUC;
              two sources (synthetic:test_pairs) CAP, PIAP, CIoU@0.3, AUC, protocols frame / source
  Table 3     class tokens x grouping;   Table 4  depth 1/3/6, soft vs hard assignment
  Sources     trained on single sources, tested on 2 (pairs, duet) and 3 (trios) sources
  Figure 4    fig4_tsne_<variant>.png: t-SNE of the class-aware audio / visual embeddings
  Figure 5    fig5_presence.png: audio-presence precision / recall / F1 (p^a >= 0.5) and top-1 on
              val over training (the AVGN run of the first seed trained in chunks, exact resume)
  Negatives   true audio vs silence vs white noise: map peak and max p^a (fig_negative_audio.png)
Models are compared at their last checkpoint (fixed schedule; `--select best` uses best.pth).
"""
import argparse
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import time
import zlib

import numpy as np

from datasets.dataset import AudioVisualDataset
from study.report import (DECISIVE, DUET, PAIRS, RELEASED, RELEASED_SCALE, SEPARATION, SINGLE, TABLE3,
                          TABLE4, TRIOS, finite, mean_std, write_report)
from utils.config import from_dict, load_config, to_dict
from utils.logger import git_sha, logger, setup_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/synthetic.yaml holds the working recipe (loc_features raw, w_loc_agnostic 1, patch_grad
# false, symmetric anchor_class; study/README.md); the `paper_objective` variant undoes the
# first three (its name is kept for the stored runs; it is not the paper's objective)
CONFIG = "configs/synthetic.yaml"
STEPS = 640  # = the quick-start's 5 epochs of 8192 streamed items, batch 64
CURVE_POINTS = {"full": 8, "quick": 4}  # Figure 5 checkpoints (chunks of the first-seed AVGN run)
# evaluations of every run: name -> (eval.protocol, threshold or None for the config's, test sets).
# "frame_thr0.5": under the median threshold half of a two-frame canvas is switched on, so no
# source box (about 7 % of the canvas) reaches ciou 0.3; a threshold at half the map's range can.
EVALS = {"frame": ("frame", None, [SINGLE, PAIRS, TRIOS, DUET]),
         "source": ("source", None, [PAIRS, TRIOS]),
         "per_frame": ("per_frame", None, [PAIRS, TRIOS]),
         "frame_thr0.5": ("frame", "fixed:0.5", [PAIRS, TRIOS]),
         "duet_thr0.5": ("frame", "fixed:0.5", [DUET])}
# [beyond the paper] the same evaluations with the competing maps of eval.compete_tau
# (docs/model.md), run on the runs of the sets that ask for them (SET_EVALS); tau_c was picked
# from one look at one avgn_pt run, not tuned
COMPETE_TAU = 0.03
COMPETE = {name + "_compete": (protocol, threshold, sets)
           for name, (protocol, threshold, sets) in EVALS.items() if name != "source"}


# a cosine form of the released objective (raw cosine maps, own_class term) on top of
# configs/synthetic.yaml; _CODE: also the released epsilon and initialization (model.arch=paper)
AUTHORS = ("model.loc_features=raw", "loss.w_loc_agnostic=0", "loss.patch_grad=true",
           "loss.symmetric=own_class")
AUTHORS_CODE = AUTHORS + ("model.assign_eps=1.0", "model.zero_init_residual=false")
# the paper configs' epsilon, initialization and objective switches on top of configs/synthetic.yaml
PAPER_INIT = ("model.assign_eps=1.0", "model.zero_init_residual=false", "loss.w_loc_agnostic=0",
              "loss.patch_grad=true")


@dataclasses.dataclass(frozen=True)
class Variant:
    label: str  # row label in the tables
    overrides: tuple  # config overrides after --extra


VARIANTS = {
    "ezvsl": Variant("EZ-VSL", ("model.name=ezvsl",)),
    "avgn": Variant("AVGN", ()),
    "paper_objective": Variant("AVGN, modulated maps, anchor_class term (no recipe)",
                               ("model.loc_features=modulated", "loss.w_loc_agnostic=0",
                                "loss.patch_grad=true")),
    # Table 3: class tokens (AVCT) x grouping (AVG)
    "tokens0_grouping0": Variant("no tokens, no grouping",
                                 ("model.use_class_tokens=false", "model.use_grouping=false")),
    "tokens1_grouping0": Variant("tokens, no grouping",
                                 ("model.use_class_tokens=true", "model.use_grouping=false")),
    "tokens0_grouping1": Variant("no tokens, grouping",
                                 ("model.use_class_tokens=false", "model.use_grouping=true")),
    "tokens1_grouping1": Variant("tokens + grouping",
                                 ("model.use_class_tokens=true", "model.use_grouping=true")),
    # Table 4: depth of the AVCT transformers, soft vs hard assignment
    "depth1": Variant("depth 1", ("model.depth=1",)),
    "depth3": Variant("depth 3", ("model.depth=3",)),
    "depth6": Variant("depth 6", ("model.depth=6",)),
    "soft": Variant("soft assignment", ("model.assignment=soft",)),
    "hard": Variant("hard assignment", ("model.assignment=hard",)),
    # the decisive table: the paper's forms of the objective against the recipe
    "eq10": Variant("Eq. 10 as printed (modulated, no image->audio term)",
                    ("model.loc_features=modulated", "loss.w_loc_agnostic=0", "loss.patch_grad=true",
                     "loss.symmetric=none")),
    "modulated_own": Variant("modulated, own_class term",
                             ("model.loc_features=modulated", "loss.w_loc_agnostic=0",
                              "loss.patch_grad=true", "loss.symmetric=own_class")),
    "authors": Variant("cosine form of the released objective (raw maps, own_class term)",
                       AUTHORS),
    "authors_code": Variant("the same with the released epsilon and initialization", AUTHORS_CODE),
    # the released model (what configs/paper.yaml trains) and the forms it is compared with
    "released": Variant("the released model (model.arch=authors)",
                        PAPER_INIT + ("model.arch=authors", "loss.symmetric=none")),
    "cosine_own_class": Variant("this project's cosine form of it (raw maps, own_class term)",
                                PAPER_INIT + ("model.loc_features=raw", "loss.symmetric=own_class")),
    "eq10_paper": Variant("Eq. 10 as printed, the paper configs' epsilon and initialization",
                          PAPER_INIT + ("model.loc_features=modulated", "loss.symmetric=none")),
    # one key on the released model: tau x sqrt(D) (0.03 x 11.4 at configs/synthetic.yaml's D 128,
    # the length of its audio group token at init), which starts its logits <f^v_p, g^a_c> / tau
    # at the scale of the cosine forms' cos / 0.03 instead of about 11 times it
    "released_tau": Variant("the released model, tau 0.34 (= 0.03 x |g^a| at init)",
                            PAPER_INIT + ("model.arch=authors", "loss.symmetric=none",
                                          "loss.tau=0.34")),
    # beyond the paper: keeping a mixture's sources apart (trained on two-clip mixtures)
    "authors_code_mix2": Variant("the authors' code trained on two-clip mixtures",
                                 AUTHORS_CODE + ("data.num_sources=2",)),
    "authors_code_mix2_sep": Variant("the same + separation term (beyond the paper)",
                                     AUTHORS_CODE + ("data.num_sources=2", "loss.w_separation=1.0")),
}
# the ImageNet stand-in (python -m study.pretrain_visual, made when missing) and, for every
# variant, the same from that trunk
STAND_IN = "data/trunk_synthetic.pth"
for _name, _v in list(VARIANTS.items()):
    VARIANTS[_name + "_pt"] = Variant(_v.label + ", stand-in trunk", _v.overrides + (
        "model.pretrained=imagenet", f"model.pretrained_path={STAND_IN}"))
QUICK_VARIANTS = ("ezvsl", "avgn")
SETS = {"paper": ("ezvsl", "avgn", "paper_objective") + TABLE3 + TABLE4,
        "decisive": DECISIVE + tuple(v + "_pt" for v in DECISIVE), "separation": SEPARATION,
        "released": RELEASED + tuple(v + "_pt" for v in RELEASED),
        "released_scale": RELEASED_SCALE}
SET_EVALS = {"separation": tuple(COMPETE)}  # evaluations besides EVALS of a set's runs
# keys that may differ between a run's stored config and the requested one
_IGNORED_KEYS = {("train", "output_dir"), ("train", "max_steps"), ("model", "num_classes")}


# ----------------------------------------------------------------------------- aggregation, tables

# ----------------------------------------------------------------------------- runs

@dataclasses.dataclass
class Run:
    name: str  # folder under <out>/runs
    variants: list  # variant names sharing this run
    seed: int
    overrides: list  # train.py overrides (schedule last)
    steps: int
    dir: str
    config: dict  # resolved config (what train.py will store, but model.num_classes)
    evals: tuple = ()  # evaluations of COMPETE besides EVALS

    @property
    def ckpt(self):
        return os.path.join(self.dir, "checkpoint.pth")


def variant_overrides(name, extra):
    return list(extra) + list(VARIANTS[name].overrides)


def schedule_overrides(base_overrides, steps):
    """train.max_steps = steps and enough epochs for them, so every variant runs `steps` steps."""
    cfg = load_config(os.path.join(ROOT, CONFIG), base_overrides)
    from datasets.synthetic import DEFAULT_STREAM_LENGTH
    per_epoch = (cfg.data.synthetic_train or DEFAULT_STREAM_LENGTH) // cfg.train.batch_size_per_gpu
    if per_epoch < 1:
        raise ValueError(f"data.synthetic_train {cfg.data.synthetic_train} gives no full batch of "
                         f"{cfg.train.batch_size_per_gpu}")
    return [f"train.max_steps={steps}", f"train.epochs={math.ceil(steps / per_epoch)}"]


def plan_runs(variants, seeds, steps, out, extra, data_root, evals=None):
    """One Run per distinct resolved config; variants resolving to the same config share it.
    evals: {variant: names in COMPETE} evaluated besides EVALS (a shared run gets every one)."""
    runs, by_key, evals = [], {}, evals or {}
    for seed in seeds:
        for name in variants:
            base = [f"train.seed={seed}", "eval.test_at_end=false", "eval.save_vis=0",
                    f"data.root={data_root}"] + variant_overrides(name, extra)
            overrides = base + schedule_overrides(base, steps)
            cfg = to_dict(load_config(os.path.join(ROOT, CONFIG), overrides))
            key = json.dumps({s: {k: v for k, v in sec.items() if (s, k) not in _IGNORED_KEYS}
                              for s, sec in cfg.items()}, sort_keys=True)
            if key in by_key:
                run = by_key[key]
                run.variants.append(name)
                run.evals = tuple(dict.fromkeys(run.evals + tuple(evals.get(name, ()))))
                continue
            run_name = f"{name}_s{seed}"
            run_dir = os.path.join(out, "runs", run_name)
            run = Run(run_name, [name], seed, [f"train.output_dir={run_dir}"] + overrides, steps,
                      run_dir, cfg, tuple(evals.get(name, ())))
            by_key[key] = run
            runs.append(run)
    return runs


def runs_of(runs, variant, seeds):
    """The run of `variant` for each seed (in seed order; missing seeds skipped)."""
    return [r for s in seeds for r in runs if variant in r.variants and r.seed == s]


def config_differences(stored, wanted, ignored):
    """'section.key: stored vs wanted' for each key of the config dict `wanted` that the stored
    config dict holds with another value; keys in `ignored` ((section, key) pairs) are skipped."""
    return [f"{s}.{k}: {stored.get(s, {}).get(k)!r} (stored) vs {v!r}"
            for s, sec in wanted.items() for k, v in sec.items()
            if (s, k) not in ignored and stored.get(s, {}).get(k) != v]


def stand_in(runner, extra, out):
    """Make the stand-in trunk (study.pretrain_visual) for the config with --extra, unless one
    made for the same width, stride and image size is there."""
    cfg = load_config(os.path.join(ROOT, CONFIG), extra)
    want = {"width": cfg.model.width, "visual_stride": cfg.model.visual_stride,
            "image_size": cfg.data.image_size}
    report = os.path.splitext(os.path.join(ROOT, STAND_IN))[0] + ".json"
    if os.path.isfile(os.path.join(ROOT, STAND_IN)) and os.path.isfile(report):
        with open(report) as f:
            made = json.load(f)
        made = {k: made.get(k) for k in want}
        if made == want:
            return
        raise SystemExit(f"{STAND_IN} was made for {made}, the runs need {want}: remove it")
    runner(["-m", "study.pretrain_visual", "--config", CONFIG, "--out", STAND_IN, *extra],
           os.path.join(out, "pretrain_visual.txt"), "pretrain_visual")


def checkpoint_step(run):
    """Optimizer steps of the run's checkpoint (0 when absent); raises when its config differs."""
    if not os.path.isfile(run.ckpt):
        return 0
    from utils.checkpoint import load_checkpoint
    ckpt = load_checkpoint(run.ckpt)
    stored_cfg = to_dict(from_dict(ckpt["config"], stored=True))  # earlier versions' values read
    diff = config_differences(stored_cfg, run.config, _IGNORED_KEYS)  # as today's
    if diff:
        raise RuntimeError(f"{run.dir} was trained with another config ({'; '.join(diff[:5])}); "
                           "remove the folder or choose another --out")
    return int(ckpt["step"])


class Runner:
    """Runs (or, dry, prints) the train.py / test.py commands; logs their output to files."""

    def __init__(self, dry_run=False, device=None):
        self.dry_run, self.device, self.times = dry_run, device, {}

    def __call__(self, argv, log_path, tag):
        cmd = [sys.executable] + argv + (["--device", self.device] if self.device else [])
        logger.info("$ %s", shlex.join(cmd))
        if self.dry_run:
            return
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        t0 = time.time()
        with open(log_path, "a") as log:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.times[tag] = self.times.get(tag, 0.0) + time.time() - t0
        if proc.returncode:
            with open(log_path) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n"
                               f"--- end of {log_path} ---\n{tail}")
        logger.info("  done in %.0f s", time.time() - t0)


def stored(run):
    """A run kept in git without its checkpoint (the run folders' small outputs are committed,
    their checkpoints are not): its log.jsonl reaches the run's steps and its first evaluation
    is there (a run stored before it was evaluated is trained again)."""
    path = os.path.join(run.dir, "log.jsonl")
    first = os.path.join(run.dir, f"eval_{next(iter(EVALS))}_last", "results.json")
    if os.path.isfile(run.ckpt) or not os.path.isfile(path) or not os.path.isfile(first):
        return False
    with open(path) as f:
        steps = [json.loads(line).get("step", 0) for line in f if line.strip()]
    return bool(steps) and steps[-1] >= run.steps


def finished(run):
    """Trained for all its steps: stored, or its checkpoint has them."""
    return stored(run) or checkpoint_step(run) >= run.steps


def train(run, runner, upto=None):
    """Train `run` to `upto` steps (default run.steps), resuming its checkpoint; a stored run
    is not trained again, one that lost its checkpoint before all its evaluations is trained
    anew (same seed: the same run on the same machine)."""
    upto = upto or run.steps
    how = ["--resume", "auto"]
    if not runner.dry_run:
        step = checkpoint_step(run)
        if step >= upto or stored(run):
            return False
        if step == 0 and os.path.isfile(os.path.join(run.dir, "log.jsonl")):
            how = ["--overwrite"]
    overrides = [o for o in run.overrides if not o.startswith("train.max_steps=")]
    runner(["train.py", "--config", CONFIG, *how, *overrides, f"train.max_steps={upto}"],
           os.path.join(run.dir, "stdout.txt"), f"train {run.name}")
    return True


def evaluate_run(run, runner, eval_fixed, select):
    """test.py with each of EVALS and the run's evaluations of COMPETE
    -> {evaluation name: {set: metrics}}."""
    ckpt = os.path.join(run.dir, "best.pth" if select == "best" else "checkpoint.pth")
    if select == "best" and not runner.dry_run and not os.path.isfile(ckpt):
        ckpt = run.ckpt
    results = {}
    evals = [*EVALS.items(), *((name, COMPETE[name]) for name in run.evals)]
    for name, (protocol, threshold, sets) in evals:
        out = os.path.join(run.dir, f"eval_{name}_{select}")
        path = os.path.join(out, "results.json")
        fresh = os.path.isfile(path) and (not os.path.isfile(ckpt)  # a stored run
                                          or os.path.getmtime(path) > os.path.getmtime(ckpt))
        if not fresh and not runner.dry_run and stored(run):
            logger.warning("%s: stored without its checkpoint, so not evaluated with %s (its "
                           "cells stay empty; remove the run folder to train it again)",
                           run.name, name)
            continue
        if not fresh:
            runner(["test.py", "--ckpt", ckpt, "--out", out, "--overwrite",  # a stale evaluation
                    "eval.test_sets=[" + ",".join(sets) + "]",
                    f"eval.protocol={protocol}", *eval_fixed,
                    *([f"eval.threshold={threshold}"] if threshold else []),
                    *([f"eval.compete_tau={COMPETE_TAU}"] if name in COMPETE else [])],
                   os.path.join(out, "stdout.txt"), f"test {run.name}")
        if not runner.dry_run:
            with open(path) as f:
                results[name] = json.load(f)["results"]
    return results


def eval_overrides(base_cfg):
    """The evaluation settings every variant is tested with (the config's)."""
    e = base_cfg.eval
    return [f"eval.threshold={e.threshold}", f"eval.iou_thresholds={json.dumps(e.iou_thresholds)}",
            f"eval.ciou_thresholds={json.dumps(e.ciou_thresholds)}"]


# ----------------------------------------------------------------------------- analyses in process

def _device(name):
    import torch
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def presence_curve(run, runner, points, device):
    """Train `run` in chunks ending at `points` steps; after each, audio-presence P / R / F1 on
    val (stored in <run>/presence_curve.json). Returns {step: metrics} (sorted)."""
    from datasets import build_dataset
    from engine import load_trained
    from study.figures import model_outputs, presence_metrics
    path = os.path.join(run.dir, "presence_curve.json")
    curve = {}
    if os.path.isfile(path):
        with open(path) as f:
            curve = {int(k): v for k, v in json.load(f).items()}
    for step in points:
        trained = train(run, runner, upto=step)
        if runner.dry_run:
            continue
        if step in curve or (not trained and checkpoint_step(run) != step):
            continue  # already measured, or the run went past this point before the curve
        ckpt, cfg, model = load_trained(run.ckpt, device)
        val = build_dataset(cfg, "val", class_names=ckpt["class_names"])
        out = model_outputs(model, val, device, cfg.eval.batch_size)
        curve[step] = presence_metrics(out["presence"], out["labels"])
        with open(path, "w") as f:
            json.dump(finite(curve), f, indent=1)
    return dict(sorted(curve.items()))


def curve_points(steps, count):
    return sorted({max(1, int(round(steps * (i + 1) / count))) for i in range(count)})


class NegativeAudio(AudioVisualDataset):
    """An evaluation dataset with the frames and masks of `base` and the audio replaced.

    mode 'silence': zeros; 'noise': white noise N(0, 0.1²) seeded by (0, crc32(record id)).
    """

    def __init__(self, base, mode):
        if mode not in ("silence", "noise"):
            raise ValueError(f"mode must be silence or noise, got {mode!r}")
        self.base, self.mode = base, mode
        super().__init__(base.items, base.class_names, base.cfg, train=False, canvas=base.canvas,
                         seed=base.seed, check=False)

    def load_frame(self, record):
        return self.base.load_frame(record)

    def load_source_masks(self, record, geometry):
        return self.base.load_source_masks(record, geometry)

    def load_audio(self, record):
        n = int(round(self.audio_cfg.seconds * self.audio_cfg.sample_rate))
        if self.mode == "silence":
            return np.zeros(n, np.float32)
        rng = np.random.default_rng([0, zlib.crc32(record.id.encode())])
        return rng.normal(0.0, 0.1, n).astype(np.float32)


def negative_audio(run, device):
    """Mean map peak (raw cosine, labeled class) and max p^a on synthetic:test with the true
    audio, silence and white noise."""
    from datasets import build_dataset
    from engine import load_trained
    from study.figures import model_outputs
    ckpt, cfg, model = load_trained(run.ckpt, device)
    base = build_dataset(cfg, "test", "synthetic", class_names=ckpt["class_names"])
    out = {}
    for mode in ("true", "silence", "noise"):
        ds = base if mode == "true" else NegativeAudio(base, mode)
        o = model_outputs(model, ds, device, cfg.eval.batch_size)
        out[mode] = {"peak": float(o["peak"].mean()), "presence_max": float(o["presence"].max(1).mean())}
    for mode in ("silence", "noise"):
        for k in ("peak", "presence_max"):
            t = out["true"][k]
            out[mode][f"{k}_change"] = (out[mode][k] - t) / abs(t) if t else float("nan")
    out["presence_is_constant"] = cfg.model.name == "ezvsl"  # EZ-VSL has no presence head
    return out


def audio_blind_baselines(cfg):
    """Center prior, every object, and every object + 0.5 center, scored like the models
    -> {baseline: {evaluation name: {test_set: metrics}}}."""
    import torch
    from datasets import build_dataset
    from datasets.render import baseline_map
    from datasets.synthetic import load_all_objects
    from engine import build_evaluator
    from metrics import MultiSourceEvaluator
    from datasets import build_loader
    objects = load_all_objects(cfg.data.root) if os.path.isfile(
        os.path.join(cfg.data.root, "all_objects.json")) else None
    kinds = ("center prior", "every object", "every object + 0.5 center")
    out = {k: {name: {} for name in EVALS} for k in kinds}
    for name, (protocol, threshold, sets) in EVALS.items():
        for entry in sets:
            ds = build_dataset(cfg, entry.partition(":")[2], "synthetic")
            objects = objects or load_all_objects(cfg.data.root)
            ecfg = dataclasses.replace(cfg.eval, protocol=protocol,
                                       threshold=threshold or cfg.eval.threshold)
            evals = {k: build_evaluator(ds, ecfg) for k in kinds}
            multi = isinstance(next(iter(evals.values())), MultiSourceEvaluator)
            for batch in build_loader(ds, 64, False, 0):
                gt = batch["gt"]  # [B, N, H, W]
                H = gt.shape[-2]
                per = {k: torch.from_numpy(np.stack([baseline_map(objects, i, H, kind)
                                                     for i in batch["id"]]))  # [B, H, W]
                       for k, kind in (("center prior", "center"), ("every object", "objects"))}
                per["every object + 0.5 center"] = per["every object"] + 0.5 * per["center prior"]
                for k, ev in evals.items():
                    m = per[k]
                    if not multi:
                        ev.update(m, gt[:, 0], batch["index"], ids=batch["id"])
                        continue
                    maps = m.unsqueeze(1).expand_as(gt)  # the same map for every source
                    scores = torch.zeros(gt.shape[0], len(ds.class_names))
                    ev.update(maps, maps, gt, batch["classes"], scores, batch["frame_slot"],
                              batch["index"], ids=batch["id"])
            for k, ev in evals.items():
                metrics = ev.compute()
                metrics.pop("recall@N", None)  # no audio: meaningless
                out[k][name][entry] = metrics
    return out


# ----------------------------------------------------------------------------- figures

# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"EZ-VSL vs AVGN, first seed only, "
                   f"{CURVE_POINTS['quick']} curve points")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (--quick: 0)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"train.max_steps of every run (default {STEPS})")
    p.add_argument("--only", default=None, help=f"comma-separated variants (VARIANTS) or sets "
                   f"({', '.join(SETS)}); default: the set 'paper'")
    p.add_argument("--out", default=None,
                   help="output folder, runs in <out>/runs (default: study/results/tables, --quick: study/results/quick)")
    p.add_argument("--data-root", default="data/synthetic", help="synthetic data root (data.root)")
    p.add_argument("--extra", nargs="*", default=[], help="config overrides for every run (after "
                   "the recipe, before the variant's own), e.g. for a smoke test")
    p.add_argument("--curve-points", type=int, default=None, help="Figure 5 checkpoints")
    p.add_argument("--select", default="last", choices=["last", "best"],
                   help="checkpoint tested: last (fixed schedule) or best.pth (val AP)")
    p.add_argument("--tsne-items", type=int, default=500, help="test items in the t-SNE figures")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--allow-dirty", action="store_true", help="train and evaluate from a tree "
                   "with uncommitted changes (refused by default: a table comes from one commit; "
                   "every run's train.log records the commit, '-dirty' when it had changes)")
    p.add_argument("--no-train", action="store_true", help="summarize the runs already trained "
                   "(evaluating them where needed); the others are left out and named")
    return p.parse_args(argv)


def _short(path):
    """`path` relative to the repository (where the commands run) when inside it, else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    t_start = time.time()
    mode = "quick" if args.quick else "full"
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    steps = args.steps or STEPS
    variants = (args.only.split(",") if args.only else
                list(QUICK_VARIANTS) if args.quick else list(SETS["paper"]))
    evals = {}  # the evaluations some sets ask for, for their variants
    for name in variants:
        for v in SETS.get(name, ()):
            evals[v] = tuple(dict.fromkeys(evals.get(v, ()) + SET_EVALS.get(name, ())))
    variants = [v for name in variants for v in SETS.get(name, (name,))]  # sets by their name
    variants = list(dict.fromkeys(variants))  # each once, or its seeds would count twice
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    out = args.out or os.path.join("study", "results", "quick" if args.quick else "tables")
    out, data_root = _short(out), _short(args.data_root)
    os.chdir(ROOT)  # commands and paths are relative to the repository
    commit = git_sha()
    if commit.endswith("-dirty") and not (args.dry_run or args.allow_dirty):
        raise SystemExit(f"the tree has uncommitted changes ({commit}): a table comes from runs "
                         "of one commit; commit them (or check the commit out in a git worktree "
                         "and run there with --out here), or pass --allow-dirty")
    setup_logging(None if args.dry_run else out, "reproduce.log")
    runs = plan_runs(variants, seeds, steps, out, args.extra, data_root, evals)
    runner = Runner(args.dry_run, args.device)
    if not args.no_train and any(f"model.pretrained_path={STAND_IN}" in r.overrides for r in runs):
        stand_in(runner, args.extra, out)
    base_cfg = load_config(os.path.join(ROOT, CONFIG), [f"data.root={data_root}", *args.extra])
    eval_fixed = eval_overrides(base_cfg)
    logger.info("%d trainings of %d steps (%s); shared: %s", len(runs), steps,
                ", ".join(r.name for r in runs), [r.variants for r in runs if len(r.variants) > 1])

    # training (the first-seed AVGN run in chunks for Figure 5) and evaluation
    curve_run = next(iter(runs_of(runs, "avgn", seeds[:1])), None)
    curve = {}
    if curve_run is not None:
        if curve_run.config["train"]["schedule"] != "constant":  # chunks would change the schedule
            curve_run = dataclasses.replace(
                curve_run, name=curve_run.name + "_curve", variants=[],
                dir=curve_run.dir + "_curve",
                overrides=[f"train.output_dir={curve_run.dir}_curve"] + curve_run.overrides[1:])
        count = args.curve_points or CURVE_POINTS[mode]
        if args.no_train and not finished(curve_run):
            logger.info("--no-train: no Figure 5, %s is not trained yet", curve_run.name)
        else:
            curve = presence_curve(curve_run, runner, curve_points(steps, count),
                                   _device(args.device))
    results = {}
    if args.no_train:
        missing = [r.name for r in runs if not finished(r)]
        runs = [r for r in runs if r.name not in missing]
        logger.info("--no-train: %d runs not trained yet are left out: %s", len(missing),
                    ", ".join(missing) or "none")
    for run in runs:
        train(run, runner)
        results[run.name] = evaluate_run(run, runner, eval_fixed, args.select)
    if args.dry_run:
        return None

    device = _device(args.device)
    summary = {"command": "python -m study.reproduce " + shlex.join(argv), "mode": mode,
               "not_trained": missing if args.no_train else [],
               "seeds": seeds, "steps": steps, "extra": args.extra, "data_root": data_root,
               "select": args.select, "eval_overrides": eval_fixed, "compete_tau": COMPETE_TAU,
               "variant_labels": {v: VARIANTS[v].label for v in variants},
               "iou_key": f"IoU@{max(base_cfg.eval.iou_thresholds):g}",
               "ciou_key": f"CIoU@{base_cfg.eval.ciou_thresholds[0]:g}",
               "runs": {r.name: {"variants": r.variants, "seed": r.seed,
                                 "command": "python train.py --config " + CONFIG + " "
                                            + shlex.join(r.overrides),
                                 "results": results[r.name]} for r in runs},
               "baselines": audio_blind_baselines(base_cfg)}

    # Figure 4 (t-SNE), negative audio, Figure 5 (presence over training)
    from study.figures import tsne_figure
    figs, negatives = {}, {}
    for v in ("ezvsl", "avgn"):
        vr = runs_of(runs, v, seeds)
        if not vr or not all(os.path.isfile(r.ckpt) for r in vr):
            logger.info("no figure 4 / negative audio for %s: %s", v,
                        "not run" if not vr else "stored runs without checkpoints")
            continue
        png = os.path.join(out, f"fig4_tsne_{v}.png")
        figs[png] = tsne_figure(vr[0].ckpt, png, "test", args.tsne_items, device=device,
                                title=f"{VARIANTS[v].label} (seed {vr[0].seed}): synthetic test")
        per_seed = [negative_audio(r, device) for r in vr]
        negatives[VARIANTS[v].label] = {
            "per_seed": per_seed, "presence_is_constant": per_seed[0]["presence_is_constant"],
            **{f"{m}_{k}": mean_std([p[m][k] for p in per_seed])
               for m in ("true", "silence", "noise") for k in ("peak", "presence_max")},
            **{f"{m}_{k}_change": mean_std([p[m][f"{k}_change"] for p in per_seed])
               for m in ("silence", "noise") for k in ("peak", "presence_max")}}
    summary.update(tsne=figs, negative_audio=negatives,
                   presence_curve={"run": curve_run.name if curve_run else None, "points": curve},
                   wall_time_s=round(time.time() - t_start, 1),
                   subprocess_time_s={k: round(v, 1) for k, v in runner.times.items()},
                   git=git_sha())
    summary["tables"] = write_report(finite(summary), out)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(finite(summary), f, indent=1)
    logger.info("wrote %s in %.1f min", os.path.join(out, "summary.json"), summary["wall_time_s"] / 60)
    return summary


if __name__ == "__main__":
    main()
