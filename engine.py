"""The training step loop, the evaluation loop, the test driver and the one checkpoint -> model
loader, shared by train.py, test.py, demo.py and the tools.

    ckpt, cfg, model = load_trained("run/best.pth", device)        # clear errors, eval mode
    results = run_tests(ckpt, cfg, model, "run", device)           # every test set of cfg
"""
import dataclasses
import json
import math
import os
import time
from collections import defaultdict
from contextlib import nullcontext

import torch

from datasets import build_dataset, build_loader, training_class_names
from datasets.audio import SILENT_PEAK
from datasets.decode import decode_all
from datasets.records import DataError
from datasets.image import to_rgb
from metrics import MultiSourceEvaluator, SingleSourceEvaluator
from models import build_model, compete_maps, localization_maps, presence, upsample_maps
from models.authors import authors_sizes, convert_authors_state_dict, is_authors_state_dict
from utils.checkpoint import load_checkpoint
from utils.config import Config, ConfigError, apply_overrides, from_dict, to_dict
from utils.dist import all_gather_object, all_reduce_sum, is_dist, is_main_process
from utils.errors import CheckpointError, InputError
from utils.files import write_atomic
from utils.logger import logger, progress
from utils.visualize import plot_overlay

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, amp):
    """bf16/fp16 autocast on CUDA; a no-op on CPU or with amp='none'."""
    if amp != "none" and amp not in AMP_DTYPES:
        raise ValueError(f"train.amp must be none, bf16 or fp16, got {amp!r}")
    if amp == "none" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=AMP_DTYPES[amp])


def to_device(batch, device, channels_last=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    out["image"] = out["image"].contiguous(memory_format=fmt)
    out["spec"] = out["spec"].contiguous(memory_format=fmt)
    return out


class StopRequested:
    """Set by the SIGTERM handler; `agreed()` (collective) makes every process see, and keep in
    `flag`, the same decision: stop when any process was asked to."""

    def __init__(self):
        self.flag = False

    def __call__(self, *args):
        self.flag = True

    def agreed(self, device):
        if is_dist():
            self.flag = bool(all_reduce_sum(torch.tensor([float(self.flag)], device=device)).item())
        return self.flag


def unwrap(model):
    """The model under the DistributedDataParallel and torch.compile wrappers (its attributes)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def set_train_mode(model, frozen_bn=False):
    """model.train(); with frozen_bn the BatchNorm layers keep their running statistics."""
    model.train()
    if frozen_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_one_epoch(model, criterion, loader, optimizer, scheduler, scaler, device, state, *,
                    amp="none", clip_grad=0.0, channels_last=False, max_steps=0, log_every=20,
                    stop=None, frozen_bn=False):
    """One pass over `loader` (which may start mid-epoch after a resume).

    Args:
        state: dict with 'epoch', 'step' (optimizer steps so far) and 'step_in_epoch', updated
            in place after every step.
        max_steps: stop once state['step'] reaches it (0: no limit).
        stop: a `StopRequested`; checked (collectively) every `log_every` steps.
        frozen_bn: BatchNorm layers use (and keep) their running statistics.
    Returns:
        dict of mean loss terms over this call's steps (summed over processes, then divided),
        plus samples_per_s (this process) and data_wait (the share of the time this process
        waited for the loader; the step ends with a host sync, so it is also the share of time
        the device had nothing to do for want of data), both after the first step (worker
        start-up, compilation).
    """
    set_train_mode(model, frozen_bn)
    sums, count, wait = defaultdict(float), 0, 0.0
    first = None  # (time, samples, wait) when the first step ended
    bar = progress(loader, desc=f"epoch {state['epoch']}")
    batches = iter(bar)
    t0 = time.time()
    while True:
        t_wait = time.time()
        batch = next(batches, None)
        wait += time.time() - t_wait
        if batch is None:
            break
        batch = to_device(batch, device, channels_last)
        with autocast(device, amp):
            out = model(batch["image"], batch["spec"])
            losses = criterion(out, batch["classes"], batch["labels"])
        if not torch.isfinite(losses["total"]):
            terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise FloatingPointError(f"non-finite loss at step {state['step']} "
                                     f"(epoch {state['epoch']}): {terms}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        state["step"] += 1
        state["step_in_epoch"] += 1
        n = batch["image"].shape[0]
        for k, v in losses.items():
            sums[k] += float(v.detach()) * n
        count += n
        first = first or (time.time(), count, wait)
        if state["step"] % log_every == 0 and is_main_process():
            rate = count / (time.time() - t0)
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}", rate=f"{rate:.0f}/s")
            logger.info("epoch %d step %d lr %.3g %s (%.1f samples/s/process, %.0f%% waiting for "
                        "data)", state["epoch"], state["step"], optimizer.param_groups[0]["lr"],
                        " ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items()), rate,
                        100 * wait / (time.time() - t0))
        if max_steps and state["step"] >= max_steps:
            break
        if stop is not None and state["step"] % log_every == 0 and stop.agreed(device):
            break
    t1, count1, wait1 = first if first and count > first[1] else (t0, 0, 0.0)
    elapsed = max(time.time() - t1, 1e-9)
    keys = sorted(sums)
    totals = all_reduce_sum(torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64,
                                         device=device)).tolist()
    stats = {k: v / max(totals[-1], 1) for k, v in zip(keys, totals)}
    return dict(stats, samples_per_s=round((count - count1) / elapsed, 2),
                data_wait=round((wait - wait1) / elapsed, 4))


def max_sources(dataset):
    """The largest number of sources of an item of an (evaluation) dataset."""
    return max((len(dataset.item_classes(i)) for i in range(len(dataset))), default=1)


def build_evaluator(dataset, eval_cfg):
    """Single-source evaluator for one-source test sets, multi-source otherwise."""
    if max_sources(dataset) > 1:
        return MultiSourceEvaluator(ciou_thresholds=tuple(eval_cfg.ciou_thresholds),
                                    threshold=eval_cfg.threshold, protocol=eval_cfg.protocol)
    return SingleSourceEvaluator(iou_thresholds=tuple(eval_cfg.iou_thresholds),
                                 threshold=eval_cfg.threshold)


def predicted_classes(scores, classes):
    """Top-N classes by audio presence, N = each sample's number of sources ([B, N], -1 pad)."""
    pred = scores.topk(classes.shape[1], dim=1).indices
    return torch.where(classes >= 0, pred, torch.full_like(pred, -1))


@torch.no_grad()
def evaluate(model, loader, evaluator, device, amp="none", desc="eval", compete_tau=0.0,
             upsample="bilinear"):
    """Run the model over `loader` and return `evaluator.compute()` (gathered over processes),
    without recall@N for a class-agnostic model (its presence scores are uniform).
    compete_tau > 0: a mixture's maps compete for each pixel (`compete_maps`, beyond the paper).
    upsample: how the maps reach the image size (eval.upsample)."""
    model.eval()
    multi = isinstance(evaluator, MultiSourceEvaluator)
    per_frame = multi and evaluator.protocol == "per_frame"
    module = unwrap(model)
    silent = set()  # ids of items with a silent source (the sampler may repeat some)
    for batch in progress(loader, desc=desc):
        if "silent" in batch:  # datasets.collate's batches say it; a hand-made batch may not
            silent.update(i for i, quiet in zip(batch["id"], batch["silent"].tolist()) if quiet)
        gt = batch["gt"]  # [B, N, H, W]
        batch = to_device(batch, device)
        image = batch["image"]  # [B, 3, H, W], W = k * H for k frames side by side
        frames = image.split(image.shape[-2], dim=-1) if per_frame else (image,)
        with autocast(device, amp):
            outs = [model(frame, batch["spec"]) for frame in frames]

        def canvas_maps(cls):  # [B, N, H, W]: each frame's part from the model's output on it
            maps = torch.cat([upsample_maps(localization_maps(o, cls, module.modulate),
                                            (gt.shape[-2], f.shape[-1]), upsample)
                              for o, f in zip(outs, frames)], dim=-1).cpu()
            return compete_maps(maps, cls.cpu(), compete_tau) if compete_tau > 0 else maps
        classes = batch["classes"]
        maps = canvas_maps(classes)
        scores = presence(outs[0]).float()  # p^a: from the audio alone, the same for every frame
        if not multi:
            evaluator.update(maps[:, 0], gt[:, 0], batch["index"].cpu(), ids=batch["id"],
                             classes=classes[:, 0].cpu(), scores=scores.cpu())
            continue
        pred = predicted_classes(scores, classes)
        pred_maps = canvas_maps(pred)
        evaluator.update(maps, pred_maps, gt, classes.cpu(), scores.cpu(),
                         batch["frame_slot"].cpu(), batch["index"].cpu(), ids=batch["id"])
    metrics = evaluator.compute()
    silent = sorted(set().union(*all_gather_object(silent)))
    metrics["num_silent"] = len(silent)
    if silent:
        logger.warning("%s: %d item(s) with a silent source (every sample below %g) are scored; "
                       "their maps follow no sound (num_silent; the first: %s)", desc,
                       len(silent), SILENT_PEAK, ", ".join(silent[:3]))
    if not module.class_aware:  # uniform presence scores: the top-N "prediction" is a tie-break
        metrics.pop("recall@N", None)
    return metrics


def selection_metric(metrics):
    """The number model selection maximizes: AP (single source) or CAP (multi-source)."""
    return metrics["AP"] if "AP" in metrics else metrics["CAP"]


def format_metrics(name, metrics):
    """One readable line per test set."""
    parts = [f"{k} {v:.4f}" if isinstance(v, float) and not math.isnan(v) else f"{k} {v}"
             for k, v in metrics.items()]
    return f"{name}: " + "  ".join(parts)


# ----------------------------------------------------------------------------- trained models
def model_from_checkpoint(ckpt, cfg, device):
    """The weights of `ckpt` (a loaded checkpoint dict) in the model `cfg` describes, in eval mode
    on `device`. The ImageNet initialization is skipped: every weight comes from the checkpoint."""
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                           pretrained="none")))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise ConfigError(f"the checkpoint's weights do not fit the {cfg.model.name} model its "
                         f"config describes (was a model.* key overridden?): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return model.to(device).eval()


# what the released code fixes and its checkpoints do not record (model.py:54-91: 8 heads)
RELEASED_FIXED = {"model.arch": "authors", "model.heads": 8}
# the released code's input pipeline (configs/paper.yaml's values; a test checks they agree):
# its spectrogram (datasets.py:41-44, /12), bicubic frames and maps (datasets.py, train.py:310)
RELEASED_INPUTS = {"data.audio.frontend": "released", "data.audio.hop": 238,
                   "data.audio.frames": 276, "data.audio.log_mean": 0.0,
                   "data.audio.log_std": 12.0, "data.interpolation": "bicubic",
                   "eval.upsample": "bicubic"}


def released_checkpoint(ckpt, overrides, path):
    """A checkpoint of the released AVGN code (stoneMo/AVGN train.py:228-234: {'model' (with
    'module.' prefixes under DDP), 'optimizer', 'epoch', 'best_Precision', ...}, no config) -> a
    checkpoint dict of ours: the weights through `convert_authors_state_dict`; a config of
    model.arch=authors at the weights' sizes (C x D class tokens, transformer depth) that reads
    its inputs as the released code does (RELEASED_INPUTS), then `overrides` (data.*, eval.*, and model.assignment=hard for a model trained with
    --attn_assign hard: the weights do not tell); the class names are the sorted classes of the
    training list of data.dataset, the numbering of the released datasets.py, so data.dataset
    (and data.root / data.metadata) must name the data it was trained on."""
    try:
        state = convert_authors_state_dict(ckpt["model"])
        C, D, depth = authors_sizes(state)
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: not a checkpoint of the released AVGN code: {e}") from None
    fixed = dict(RELEASED_FIXED, **{"model.dim": D, "model.num_classes": C, "model.depth": depth})
    cfg = apply_overrides(Config(), [f"{k}={v}" for k, v in {**RELEASED_INPUTS, **fixed}.items()]
                          + list(overrides))
    changed = [f"{k}={v}" for k, v in fixed.items()
               if getattr(cfg.model, k.split(".")[1]) != v]
    if changed:
        raise ConfigError(f"{path} is a checkpoint of the released AVGN code, which needs "
                         f"{', '.join(changed)}; do not override them")
    names = training_class_names(cfg)
    if len(names) != C:
        raise ConfigError(f"{path} is a checkpoint of the released AVGN code with {C} classes, but "
                         f"the training list of data.dataset={cfg.data.dataset} has {len(names)}: "
                         f"its class names are the sorted classes of the list it was trained on; "
                         f"set data.dataset (and data.root / data.metadata) to that data")
    logger.info("%s: a checkpoint of the released AVGN code (epoch %s), read as model.arch=authors "
                "with C=%d, D=%d, depth %d", path, ckpt.get("epoch"), C, D, depth)
    return {"model": state, "config": to_dict(cfg), "class_names": names,
            "epoch": ckpt.get("epoch")}


def load_trained(path, device, overrides=()):
    """Checkpoint file written by train.py -> (checkpoint dict, its config with `overrides`
    applied, the model in eval mode on `device`). Every failure is one line naming `path`:
    missing or unreadable file (FileNotFoundError / RuntimeError), a stored config or override
    this schema rejects (ConfigError), class names or weights that do not fit (ValueError).
    A checkpoint of the released AVGN code is read through `released_checkpoint`."""
    ckpt = load_checkpoint(path, required=("model",))
    if "config" not in ckpt and is_authors_state_dict(ckpt["model"]):
        ckpt = released_checkpoint(ckpt, overrides, path)
    missing = [k for k in ("config", "class_names") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an AVGN checkpoint (missing {missing})")
    try:
        stored = from_dict(ckpt["config"], stored=True)
    except ConfigError as e:
        raise ConfigError(f"{path} is not an AVGN checkpoint of this version: its config does "
                          f"not fit ours ({e})") from None
    cfg = apply_overrides(stored, overrides)
    names = ckpt["class_names"]
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)
            and len(names) == cfg.model.num_classes):
        raise ConfigError(f"{path}: class_names must be {cfg.model.num_classes} names "
                         f"(model.num_classes), got {str(names)[:200]}")
    try:
        return ckpt, cfg, model_from_checkpoint(ckpt, cfg, device)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


@torch.no_grad()
def save_overlays(model, dataset, class_names, device, out_dir, count, upsample="bilinear"):
    """Overlays of the first `count` items of `dataset` under `out_dir` (maps upsampled by
    `upsample`, eval.upsample)."""
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    for i in range(min(count, len(dataset))):
        s = dataset[i]
        out = model(s["image"][None].to(device), s["spec"][None].to(device))
        classes = s["classes"][None].to(device)  # [1, N]
        maps = localization_maps(out, classes, model.modulate)
        maps = upsample_maps(maps, s["gt"].shape[-2:], upsample)[0]
        p = presence(out)[0]
        names = [class_names[c] for c in s["classes"].tolist()]
        safe = "".join(ch if ch.isalnum() or ch in "-_+" else "_" for ch in s["id"])[:80]
        plot_overlay(os.path.join(out_dir, f"{i:03d}_{safe}.png"), to_rgb(s["image"]), maps, s["gt"],
                     names, p[s["classes"]].cpu(), title=s["id"][:40])


# ----------------------------------------------------------------------------- test driver
def decode_test_sets(test_sets, workers):
    """Load every item of every test set [(entry, dataset)] once, as evaluation will (rank 0, in
    `workers` processes): a corrupt jpg or wav, or audio with NaN samples, fails before training,
    naming the file and its list line, not after it. Raises DataError."""
    bad = []
    if is_main_process():
        t0 = time.time()
        for entry, dataset in test_sets:
            bad += [(entry, why) for _, why in decode_all(dataset, workers, f"decode {entry}")]
        logger.info("decoded the %d test items in %.1f s", sum(len(d) for _, d in test_sets),
                    time.time() - t0)
    bad = all_gather_object(bad)[0]
    if bad:
        raise DataError(f"{len(bad)} test item(s) cannot be loaded, the first: "
                        + "; ".join(f"{entry}: {why}" for entry, why in bad[:3])
                        + " (python -m tools.check_data lists every one)")


def build_test_sets(cfg, class_names, split="test"):
    """[(entry, dataset)] for every entry of cfg.eval.test_sets (default: data.dataset); an entry
    is 'name' or 'name:split' (e.g. synthetic:test_pairs; its own split is used when `split` is
    'test'). Building a set parses its lists and annotations and checks its classes and files,
    so train.py calls this before the first step: a broken test list fails then, not after
    training."""
    out = []
    for entry in cfg.eval.test_sets or [cfg.data.dataset]:
        name, _, own_split = entry.partition(":")
        dataset = build_dataset(cfg, own_split if own_split and split == "test" else split, name,
                                class_names=class_names)
        if len(dataset) == 0:
            raise ConfigError(f"test set '{entry}' ({split}) has no items: {dataset.origin}")
        out.append((entry, dataset))
    return out


COVERAGE = "get_data_coverage.json"  # written into data.root by tools.get_data


def list_coverage(cfg, dataset):
    """On how much of its benchmark a test set is measured: {list, items}, and when
    <data.root>/get_data_coverage.json (tools.get_data) counts a list of that name (the
    published one, or the `.available` copy a config points at), its published items and the
    share scored."""
    name = os.path.basename(dataset.origin)
    out = {"list": dataset.origin, "items": len(dataset)}
    try:
        with open(os.path.join(cfg.data.root, COVERAGE)) as f:
            report = json.load(f)
    except (OSError, ValueError):
        return out
    stem, ext = os.path.splitext(name)
    published = report.get(name) or report.get(stem.replace(".available", "") + ext)
    if isinstance(published, dict) and published.get("items"):
        out.update(published_items=published["items"],
                   share=round(len(dataset) / published["items"], 4))
        logger.info("%s: %d of the %d published items (%.1f %%; %s)", name, len(dataset),
                    published["items"], 100 * out["share"], COVERAGE)
    return out


def run_tests(ckpt, cfg, model, out_dir, device, split="test", save_vis=0):
    """Evaluate `model` (loaded from `ckpt` with config `cfg`) on every test set of the config;
    writes results.json and one per-sample CSV per test set (and `save_vis` overlays per set) to
    `out_dir`. Returns {entry: metrics}."""
    results, coverage = {}, {}
    os.makedirs(out_dir, exist_ok=True)
    for entry, dataset in build_test_sets(cfg, ckpt["class_names"], split):
        coverage[entry] = list_coverage(cfg, dataset)
        loader = build_loader(dataset, cfg.eval.batch_size, False, cfg.data.num_workers)
        evaluator = build_evaluator(dataset, cfg.eval)
        metrics = evaluate(model, loader, evaluator, device, cfg.train.amp, desc=entry,
                           compete_tau=cfg.eval.compete_tau, upsample=cfg.eval.upsample)
        if getattr(dataset, "duplicates", 0):  # pairs listed twice (named when the list was read)
            metrics["num_duplicates"] = dataset.duplicates
        results[entry] = metrics
        tag = entry.replace(":", "_")
        # collective (gathers every process's rows), writes on rank 0
        evaluator.write_csv(os.path.join(out_dir, f"samples_{tag}_{split}.csv"))
        if is_main_process():
            logger.info(format_metrics(f"{entry} [{split}]", metrics))
            if metrics.get("num_excluded"):  # named, not silently dropped
                logger.warning("%s [%s]: %d item(s) with an empty box (zero area) are not "
                               "scored (num_excluded in results.json)",
                               entry, split, metrics["num_excluded"])
            if save_vis:
                save_overlays(model, dataset, ckpt["class_names"], device,
                              os.path.join(out_dir, f"vis_{tag}"), save_vis,
                              cfg.eval.upsample)
    if is_main_process():
        path = os.path.join(out_dir, "results.json")
        record = {"split": split, "config": to_dict(cfg), "results": results,
                  "coverage": coverage}

        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump(record, f, indent=1)
        write_atomic(path, dump)
        logger.info("wrote %s", path)
    empty = [entry for entry, metrics in results.items() if math.isnan(selection_metric(metrics))]
    if empty:  # a number that measures nothing is not a result
        raise InputError(f"nothing to score in {', '.join(empty)} [{split}]: no item with an "
                         f"annotated box (AP / CAP undefined; recorded as NaN in results.json)")
    return results
