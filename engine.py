"""The training step loop and the evaluation loop, shared by train.py and test.py."""
import math
import time
from collections import defaultdict
from contextlib import nullcontext

import torch
from tqdm import tqdm

from metrics import MultiSourceEvaluator, SingleSourceEvaluator
from models import localization_maps, presence, upsample_maps
from utils.dist import all_reduce_sum, is_dist, is_main_process
from utils.logger import logger

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
        state: dict with 'epoch', 'step' (optimiser steps so far) and 'step_in_epoch', updated
            in place after every step.
        max_steps: stop once state['step'] reaches it (0: no limit).
        stop: a `StopRequested`; checked (collectively) every `log_every` steps.
        frozen_bn: BatchNorm layers use (and keep) their running statistics.
    Returns:
        dict of mean loss terms over this call's steps (summed over processes, then divided).
    """
    set_train_mode(model, frozen_bn)
    sums, count = defaultdict(float), 0
    bar = tqdm(loader, desc=f"epoch {state['epoch']}", disable=not is_main_process(),
               dynamic_ncols=True, leave=False)
    t0 = time.time()
    for batch in bar:
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
        if state["step"] % log_every == 0 and is_main_process():
            rate = count / (time.time() - t0)
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}", rate=f"{rate:.0f}/s")
            logger.info("epoch %d step %d lr %.3g %s (%.1f samples/s/process)", state["epoch"],
                        state["step"], optimizer.param_groups[0]["lr"],
                        " ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items()), rate)
        if max_steps and state["step"] >= max_steps:
            break
        if stop is not None and state["step"] % log_every == 0 and stop.agreed(device):
            break
    keys = sorted(sums)
    totals = all_reduce_sum(torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64,
                                         device=device)).tolist()
    return {k: v / max(totals[-1], 1) for k, v in zip(keys, totals)}


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
def evaluate(model, loader, evaluator, device, amp="none", desc="eval"):
    """Run the model over `loader` and return `evaluator.compute()` (gathered over processes),
    without recall@N for a class-agnostic model (its presence scores are uniform)."""
    model.eval()
    multi = isinstance(evaluator, MultiSourceEvaluator)
    class_aware = True
    for batch in tqdm(loader, desc=desc, disable=not is_main_process(), dynamic_ncols=True,
                      leave=False):
        gt = batch["gt"]  # [B, N, H, W]
        batch = to_device(batch, device)
        with autocast(device, amp):
            out = model(batch["image"], batch["spec"])
        class_aware = out["class_aware"]
        classes = batch["classes"]
        maps = upsample_maps(localization_maps(out, classes), gt.shape[-2:]).cpu()  # [B, N, H, W]
        scores = presence(out).float()
        if not multi:
            evaluator.update(maps[:, 0], gt[:, 0], batch["index"].cpu(), ids=batch["id"],
                             classes=classes[:, 0].cpu(), scores=scores.cpu())
            continue
        pred = predicted_classes(scores, classes)
        pred_maps = upsample_maps(localization_maps(out, pred), gt.shape[-2:]).cpu()
        evaluator.update(maps, pred_maps, gt, classes.cpu(), scores.cpu(),
                         batch["frame_slot"].cpu(), batch["index"].cpu(), ids=batch["id"])
    metrics = evaluator.compute()
    if not class_aware:  # uniform presence scores: the top-N "prediction" is a tie-break
        metrics.pop("recall@N", None)
    return metrics


def selection_metric(metrics):
    """The number model selection maximises: AP (single source) or CAP (multi-source)."""
    return metrics["AP"] if "AP" in metrics else metrics["CAP"]


def format_metrics(name, metrics):
    """One readable line per test set."""
    parts = [f"{k} {v:.4f}" if isinstance(v, float) and not math.isnan(v) else f"{k} {v}"
             for k, v in metrics.items()]
    return f"{name}: " + "  ".join(parts)
