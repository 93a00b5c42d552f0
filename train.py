"""Train AVGN (or EZ-VSL).

    python train.py --config configs/synthetic.yaml                     # CPU quick-start
    torchrun --nproc_per_node=4 train.py --config configs/music_duet.yaml
    python train.py --config configs/music.yaml train.epochs=50 model.depth=1
    python train.py --resume run/checkpoint.pth                          # after preemption
    python train.py --config configs/synthetic.yaml --resume auto        # start, or continue

A folder that already holds a run (checkpoint.pth, best.pth or log.jsonl) is never overwritten:
continue it with --resume auto, choose another train.output_dir, or start it anew with
--overwrite. Every config value, the resumed checkpoint and every test set are checked before the
first step.

One code path for one process and for torchrun (DDP, nccl on CUDA, gloo on CPU). The global batch
is train.batch_size_per_gpu x processes; the learning rate is used as given.
"""
import argparse
import json
import math
import os
import shutil
import signal
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from datasets import build_dataset, build_loader
from engine import (StopRequested, build_evaluator, build_test_sets, evaluate, format_metrics,
                    load_trained, run_tests, selection_metric, train_one_epoch)
from losses import build_criterion
from models import build_model
from utils.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from utils.config import apply_overrides, dump_config, from_dict, load_config, to_dict
from utils.dist import barrier, cleanup, get_world_size, init_distributed, is_main_process
from utils.logger import append_jsonl, git_sha, logger, release_log, setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=None, help="YAML config (default: configs/synthetic.yaml, "
                   "or the config stored in the --resume checkpoint)")
    p.add_argument("--resume", default="", help="checkpoint to continue from exactly; 'auto': "
                   "<output_dir>/checkpoint.pth when it exists")
    p.add_argument("--overwrite", action="store_true", help="start anew in an output_dir that "
                   "holds a run: its checkpoints, logs and results are deleted first")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    if args.overwrite and args.resume:
        p.error("--overwrite starts anew; it does not go with --resume")
    return args


def build_scheduler(optimizer, cfg, total_steps):
    t = cfg.train

    def factor(step):
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "constant":
            return 1.0
        progress = (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(model, cfg, cuda):
    t = cfg.train
    if t.optimizer == "adam":  # the paper's optimizer; fused kernel on CUDA
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                                **({"fused": True} if cuda else {}))
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def restore_hyperparameters(optimizer, scheduler, cfg):
    """After loading optimizer and scheduler states: the config's lr and weight decay apply from
    here on (the states hold the checkpoint's); the schedule itself is the config's already. With
    an unchanged config the learning rate is bit-identical to the checkpoint's."""
    scheduler.base_lrs = [cfg.train.lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = cfg.train.lr
        group["lr"] = cfg.train.lr * factor(scheduler.last_epoch)
        group["weight_decay"] = cfg.train.weight_decay


def resolve_config(args):
    """-> (config, path of the checkpoint to resume or '', that checkpoint loaded or None). The
    config is --config (default configs/synthetic.yaml) with the overrides; resuming without
    --config, it is the checkpoint's own config with the overrides."""
    cfg = load_config(args.config or "configs/synthetic.yaml", args.overrides)
    resume = args.resume
    if resume == "auto":
        resume = os.path.join(cfg.train.output_dir, "checkpoint.pth")
        resume = resume if os.path.isfile(resume) else ""
    elif resume and not os.path.isfile(resume):
        raise FileNotFoundError(f"--resume {resume}: checkpoint not found")
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None and not args.config:
        cfg = apply_overrides(from_dict(ckpt["config"], stored=True), args.overrides)
    return cfg, resume, ckpt


RUN_FILES = ("checkpoint.pth", "best.pth", "log.jsonl")  # a folder holding one of these holds a run


def check_output_dir(out_dir, resume, overwrite, requested=""):
    """Refuse to start a new run in a folder that holds one (nothing is lost to a typo). Returns
    True when that run is to be deleted (`overwrite`; `clear_run`, once every start-up check has
    passed). Resuming a checkpoint of this folder continues its run. requested: the --resume
    given ('auto' that found no checkpoint leaves `resume` empty)."""
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(out_dir, f))]
    same_run = resume and os.path.dirname(os.path.abspath(resume)) == os.path.abspath(out_dir)
    if not found or same_run:
        return False
    if not overwrite:
        how = ("--resume auto continues it" if not requested else
               "--resume auto has no checkpoint.pth there to continue" if requested == "auto" else
               f"--resume {resume} is another run's checkpoint")
        raise FileExistsError(f"train.output_dir {out_dir} already holds a run ({', '.join(found)})"
                              f": {how}; or choose another train.output_dir=...; or start it "
                              "anew with --overwrite (deletes it)")
    return True


def clear_run(out_dir):
    """Delete the files a run wrote to `out_dir` (rank 0, between barriers)."""
    barrier()  # every process has looked before rank 0 deletes
    if is_main_process():
        for name in os.listdir(out_dir):
            path = os.path.join(out_dir, name)
            if name in RUN_FILES + ("config.yaml", "train.log", "test.log", "results.json") or \
                    name.startswith("samples_") and name.endswith(".csv"):
                os.remove(path)
            elif name.startswith("vis_") and os.path.isdir(path):
                shutil.rmtree(path)
    barrier()


ARCHITECTURE_EXCEPT = ("num_classes", "pretrained", "pretrained_path")  # set by data / init only


def check_resumable(ckpt, cfg, resume):
    """Raise, naming the keys, when `ckpt` cannot continue with `cfg`: another architecture
    (model.* keys), another optimizer (its state would not fit), or a mid-epoch stop with another
    (processes, batch_size_per_gpu), whose batches could not be replayed."""
    stored = from_dict(ckpt["config"], stored=True)
    differ = [f"model.{k}={getattr(stored.model, k)!r} (command: {getattr(cfg.model, k)!r})"
              for k in to_dict(cfg.model) if k not in ARCHITECTURE_EXCEPT
              and getattr(stored.model, k) != getattr(cfg.model, k)]
    if stored.train.optimizer != cfg.train.optimizer:
        differ.append(f"train.optimizer={stored.train.optimizer!r} (command: "
                      f"{cfg.train.optimizer!r})")
    if differ:
        raise ValueError(f"--resume {resume}: the run was trained with {'; '.join(differ)}. "
                         "Resume with the run's values, or start a new run in another "
                         "train.output_dir")
    layout = (get_world_size(), cfg.train.batch_size_per_gpu)
    if ckpt["step_in_epoch"] and tuple(ckpt.get("layout", layout)) != layout:
        raise ValueError(f"--resume {resume} stopped mid-epoch with (processes, "
                         f"batch_size_per_gpu) = {tuple(ckpt['layout'])}; resume with the same, "
                         f"not {layout}")


def main(argv=None):
    args = parse_args(argv)
    device = init_distributed(args.device)
    sigterm = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL  # fit() installs its own
    try:
        fit(args, device, sys.argv if argv is None else ["train.py"] + argv)
    finally:  # a caller's process (and what it forks later) gets its own handler back
        signal.signal(signal.SIGTERM, sigterm)
    cleanup()  # after fit(): its DDP model, out of scope, is collected before the group ends


def fit(args, device, command):
    """Train, then test when eval.test_at_end. What it builds goes out of scope when it returns."""
    cfg, resume, ckpt = resolve_config(args)
    out_dir = cfg.train.output_dir
    # nothing is written to out_dir (nor deleted, with --overwrite) before every start-up check
    # has passed: the log is held until then
    overwrite = check_output_dir(out_dir, resume, args.overwrite, args.resume)
    if ckpt is not None:
        check_resumable(ckpt, cfg, resume)
    if cfg.train.batchnorm == "sync" and device.type != "cuda":
        raise ValueError("train.batchnorm=sync needs CUDA (SyncBatchNorm); use batch or frozen")
    setup_logging(out_dir, hold=True)
    logger.info("git %s | %s", git_sha(), " ".join(command))
    torch.manual_seed(cfg.train.seed)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)

    train_set = build_dataset(cfg, "train")
    if ckpt is not None and list(ckpt["class_names"]) != list(train_set.class_names):
        raise ValueError(f"--resume {resume}: the run was trained on {len(ckpt['class_names'])} "
                         f"classes {ckpt['class_names'][:5]}..., the training list now gives "
                         f"{len(train_set.class_names)} {train_set.class_names[:5]}...")
    if cfg.model.num_classes != len(train_set.class_names):
        logger.info("model.num_classes = %d (the training classes)", len(train_set.class_names))
        cfg.model.num_classes = len(train_set.class_names)
    val_set = build_dataset(cfg, "val") if cfg.train.eval_every > 0 else None
    if cfg.eval.test_at_end:  # a broken test list fails now, not after training
        build_test_sets(cfg, train_set.class_names)
    if overwrite:
        clear_run(out_dir)
    release_log()
    if is_main_process():
        dump_config(cfg, os.path.join(out_dir, "config.yaml"))

    torch.manual_seed(cfg.train.seed)  # same initial weights on every process
    model = build_model(cfg).to(device)
    if cfg.train.batchnorm == "sync" and get_world_size() > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model_without_ddp = model
    criterion = build_criterion(cfg)
    cuda = device.type == "cuda"
    optimizer = build_optimizer(model, cfg, cuda)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.train.amp == "fp16")

    world = get_world_size()
    train_loader = build_loader(train_set, cfg.train.batch_size_per_gpu, True, cfg.data.num_workers,
                                cfg.train.seed, pin_memory=cuda,
                                class_balanced=cfg.data.class_balanced)
    steps_per_epoch = len(train_loader.batch_sampler)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training items ({train_set.origin}) give no full "
                         f"batch of {cfg.train.batch_size_per_gpu} x {world} processes")
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    logger.info("model %s: %.2fM parameters; %d training items, %d steps/epoch; global batch %d "
                "(%d x %d processes), lr %.3g", cfg.model.name,
                sum(p.numel() for p in model.parameters()) / 1e6, len(train_set), steps_per_epoch,
                cfg.train.batch_size_per_gpu * world, cfg.train.batch_size_per_gpu, world,
                cfg.train.lr)

    state = {"epoch": 0, "step": 0, "step_in_epoch": 0, "best": -math.inf}
    if resume:
        model_without_ddp.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_hyperparameters(optimizer, scheduler, cfg)
        scaler.load_state_dict(ckpt["scaler"])
        state.update({k: ckpt[k] for k in state})
        set_rng_state(ckpt["rng"])
        del ckpt  # its tensors are copied into the model and optimizer
        logger.info("resumed from %s at epoch %d, step %d", resume, state["epoch"], state["step"])

    if cfg.train.compile:
        model = torch.compile(model)
    if world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    def checkpoint(path):
        save_checkpoint({
            "model": model_without_ddp.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            **state, "rng": rng_state(), "config": to_dict(cfg),
            "layout": [world, cfg.train.batch_size_per_gpu],
            "class_names": list(train_set.class_names)}, path)

    stop = StopRequested()
    signal.signal(signal.SIGTERM, stop)
    val_loader = None
    if val_set is not None:
        val_loader = build_loader(val_set, cfg.eval.batch_size, False, cfg.data.num_workers)
    last_path, best_path = os.path.join(out_dir, "checkpoint.pth"), os.path.join(out_dir, "best.pth")
    start = time.time()
    while state["epoch"] < cfg.train.epochs:
        epoch = state["epoch"]
        train_set.set_epoch(epoch)
        train_loader.batch_sampler.set_epoch(epoch, skip=state["step_in_epoch"])
        stats = train_one_epoch(model, criterion, train_loader, optimizer, scheduler, scaler,
                                device, state, amp=cfg.train.amp, clip_grad=cfg.train.clip_grad,
                                channels_last=cfg.train.channels_last,
                                max_steps=cfg.train.max_steps, log_every=cfg.train.log_every,
                                stop=stop, frozen_bn=cfg.train.batchnorm == "frozen")
        finished = state["step_in_epoch"] >= steps_per_epoch
        if finished:
            state["epoch"] += 1
            state["step_in_epoch"] = 0
        record = {"epoch": epoch, "step": state["step"], "lr": optimizer.param_groups[0]["lr"],
                  "time": round(time.time() - start, 1), **{f"train_{k}": v for k, v in stats.items()}}
        done = state["epoch"] >= cfg.train.epochs or (cfg.train.max_steps and
                                                        state["step"] >= cfg.train.max_steps)
        if val_loader is not None and (done or (finished and state["epoch"] % cfg.train.eval_every == 0)):
            metrics = evaluate(model, val_loader, build_evaluator(val_set, cfg.eval), device,
                               cfg.train.amp, desc="val", compete_tau=cfg.eval.compete_tau)
            logger.info(format_metrics(f"val (epoch {epoch})", metrics))
            record.update({f"val_{k}": v for k, v in metrics.items()})
            if math.isnan(selection_metric(metrics)):
                logger.warning("val has no annotated item (AP/CAP undefined): best.pth is not "
                               "written, and testing uses the latest checkpoint")
            elif is_main_process() and selection_metric(metrics) > state["best"]:
                state["best"] = selection_metric(metrics)
                checkpoint(best_path)
        if is_main_process():
            checkpoint(last_path)
        append_jsonl(os.path.join(out_dir, "log.jsonl"), record)
        logger.info("epoch %d done: %s", epoch, json.dumps(record))
        if stop.agreed(device):  # collective: every process leaves the loop together
            logger.info("stop requested: saved %s at step %d, exiting", last_path, state["step"])
            break
        if done:
            break
    logger.info("training took %.1f min", (time.time() - start) / 60)

    if cfg.eval.test_at_end and not stop.flag:
        barrier()  # rank 0 has written the checkpoints
        tested = best_path if os.path.isfile(best_path) else last_path
        logger.info("testing %s", tested)
        run_tests(*load_trained(tested, device), out_dir, device, save_vis=cfg.eval.save_vis)


if __name__ == "__main__":
    main()
