"""Train AVGN (or EZ-VSL).

    python train.py --config configs/synthetic.yaml                     # CPU quick-start
    python train.py --config configs/recipe/music_duet.yaml --config configs/cpu.yaml  # CPU sizes
    torchrun --nproc_per_node=4 train.py --config configs/music_duet.yaml
    python train.py --config configs/music.yaml train.epochs=50 model.depth=1
    python train.py --resume run/checkpoint.pth                          # after preemption
    python train.py --config configs/synthetic.yaml --resume auto        # start, or continue

A folder holding a run (checkpoint.pth, best.pth or log.jsonl) is never overwritten: continue it
with --resume auto, choose another train.output_dir, or start anew with --overwrite; while a run
uses a folder, a second run into it is refused. Every config value, the resumed checkpoint and
every test set are checked before the first step (utils/run_folder.py); bad input ends in one
line, exit code 2 (utils/errors.py); SIGTERM saves checkpoint.pth at the next step and exits with
code 3 (EXIT_STOPPED; under torchrun, torchrun's failure code), and --resume auto continues. One
code path for one process and for torchrun (DDP); the global batch is
train.batch_size_per_gpu x processes, the lr used as given. Config keys:
utils/config.py, one commented line each (docs/model.md, docs/training.md); a run writes its
resolved config to <train.output_dir>/config.yaml before its first step, and
`python -m utils.config CONFIG [CONFIG] [key=value ...]` prints it without running.
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import torch
from torch.nn.parallel import DistributedDataParallel

from datasets import build_dataset, build_loader
from datasets.synthetic import synthetic_roots
from engine import (StopRequested, build_evaluator, build_test_sets, decode_test_sets, evaluate,
                    format_metrics, load_trained, run_tests, selection_metric, train_one_epoch)
from losses import build_criterion
from models import build_model
from utils.checkpoint import rng_state, save_checkpoint, set_rng_state
from utils.config import ConfigError, dump_config, to_dict
from utils.dist import barrier, cleanup, get_world_size, init_distributed, is_main_process
from utils.errors import EXIT_STOPPED, run_cli
from utils.logger import append_jsonl, git_sha, logger, release_log, setup_logging
from utils.run_folder import (check_class_names, check_output_dir, check_resumable,
                              resolve_config, restore_hyperparameters, run_folder, using_data)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", action="append", default=None, help="YAML config (default: "
                   "configs/synthetic.yaml, or the config stored in the --resume checkpoint); "
                   "given twice, the second is merged over the first (--config configs/cpu.yaml)")
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


class Training:
    """What one run trains: the model (and its DDP / compiled form), criterion, optimizer, schedule,
    gradient scaler and training loader, the loop's counters, and the checkpoint they make."""

    def __init__(self, cfg, train_set, device):
        cuda, world, t = device.type == "cuda", get_world_size(), cfg.train
        self.cfg, self.class_names, self.device = cfg, list(train_set.class_names), device
        torch.manual_seed(t.seed)  # same initial weights on every process
        model = build_model(cfg).to(device)
        if t.batchnorm == "sync" and world > 1:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = self.model_without_ddp = model
        self.criterion = build_criterion(cfg, model)
        self.optimizer = build_optimizer(model, cfg, cuda)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and t.amp == "fp16")
        self.loader = build_loader(train_set, t.batch_size_per_gpu, True, cfg.data.num_workers,
                                   t.seed, pin_memory=cuda, class_balanced=cfg.data.class_balanced)
        self.steps_per_epoch = len(self.loader.batch_sampler)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"{len(train_set)} training items ({train_set.origin}) give no full "
                             f"batch of {t.batch_size_per_gpu} x {world} processes")
        total_steps = t.epochs * self.steps_per_epoch
        total_steps = min(total_steps, t.max_steps) if t.max_steps else total_steps
        self.scheduler = build_scheduler(self.optimizer, cfg, total_steps)
        self.state = {"epoch": 0, "step": 0, "step_in_epoch": 0, "best": -math.inf}
        logger.info("model %s: %.2fM parameters; %d training items, %d steps/epoch; global batch "
                    "%d (%d x %d processes), lr %.3g", cfg.model.name,
                    sum(p.numel() for p in model.parameters()) / 1e6, len(train_set),
                    self.steps_per_epoch, t.batch_size_per_gpu * world, t.batch_size_per_gpu,
                    world, t.lr)

    def load(self, ckpt):
        """Continue exactly where `ckpt` stopped: weights, optimizer, schedule, counters, RNGs."""
        self.model_without_ddp.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        restore_hyperparameters(self.optimizer, self.scheduler, self.cfg)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state.update({k: ckpt[k] for k in self.state})
        set_rng_state(ckpt["rng"])

    def wrap(self):
        """torch.compile (train.compile) and DDP (more than one process), after loading."""
        if self.cfg.train.compile:
            self.model = torch.compile(self.model)
        if get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)

    def save(self, path):
        save_checkpoint({
            "model": self.model_without_ddp.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            **self.state, "rng": rng_state(), "config": to_dict(self.cfg),
            "layout": [get_world_size(), self.cfg.train.batch_size_per_gpu],
            "class_names": self.class_names}, path)


def main(argv=None):
    args = parse_args(argv)
    device = init_distributed(args.device)
    sigterm = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL  # fit() installs its own
    try:
        stopped = fit(args, device, sys.argv if argv is None else ["train.py"] + argv)
    finally:  # a caller's process (and what it forks later) gets its own handler back
        signal.signal(signal.SIGTERM, sigterm)
    cleanup()  # after fit(): its DDP model, out of scope, is collected before the group ends
    return EXIT_STOPPED if stopped else 0


def fit(args, device, command):
    """Train, then test when eval.test_at_end; True when stopped by SIGTERM (saved, not tested).
    What it builds goes out of scope when it returns."""
    cfg, resume, ckpt = resolve_config(args.config, args.overrides, args.resume)
    out_dir = cfg.train.output_dir
    # nothing is written to out_dir (nor deleted, with --overwrite) before every start-up check
    # has passed: the log is held until then
    overwrite = check_output_dir(out_dir, resume, args.overwrite, args.resume)
    if ckpt is not None:
        check_resumable(ckpt, cfg, resume)
    if cfg.train.batchnorm == "sync" and device.type != "cuda":
        raise ConfigError("train.batchnorm=sync needs CUDA (SyncBatchNorm); use batch or frozen")
    setup_logging(out_dir, hold=True)
    logger.info("git %s | %s", git_sha(), " ".join(command))
    torch.manual_seed(cfg.train.seed)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)

    train_set = build_dataset(cfg, "train")
    if ckpt is not None:
        check_class_names(ckpt, train_set.class_names, resume)
    if cfg.model.num_classes != len(train_set.class_names):
        logger.info("model.num_classes = %d (the training classes)", len(train_set.class_names))
        cfg.model.num_classes = len(train_set.class_names)
    val_set = build_dataset(cfg, "val") if cfg.train.eval_every > 0 else None
    if cfg.eval.test_at_end:  # a broken test list or file fails now, not after training
        decode_test_sets(build_test_sets(cfg, train_set.class_names), cfg.data.num_workers)
    run = Training(cfg, train_set, device)  # the model and loss check their keys too
    # locked: one run in the folder at a time, and no regeneration of the data it reads
    with run_folder(out_dir, " ".join(command), clear=overwrite), \
            using_data(synthetic_roots(cfg), " ".join(command)):
        release_log()
        if is_main_process():
            dump_config(cfg, os.path.join(out_dir, "config.yaml"))
        if ckpt is not None:
            run.load(ckpt)
            del ckpt  # its tensors are copied into the model and optimizer
            logger.info("resumed from %s at epoch %d, step %d", resume, run.state["epoch"],
                        run.state["step"])
        run.wrap()
        stop = StopRequested()
        signal.signal(signal.SIGTERM, stop)
        last_path, best_path = train_epochs(run, train_set, val_set, out_dir, stop)

        if cfg.eval.test_at_end and not stop.flag:
            barrier()  # rank 0 has written the checkpoints
            tested = best_path if os.path.isfile(best_path) else last_path
            logger.info("testing %s", tested)
            run_tests(*load_trained(tested, device), out_dir, device, save_vis=cfg.eval.save_vis)
    return stop.flag


def train_epochs(run, train_set, val_set, out_dir, stop):
    """The epoch loop: train, validate (every train.eval_every epochs and at the end; best.pth
    keeps the best val AP / CAP), checkpoint, log; leaves early, saved, when `stop` is agreed.
    Returns the paths of the last and the best checkpoint."""
    cfg, device, state, t = run.cfg, run.device, run.state, run.cfg.train
    val_loader = None
    if val_set is not None:
        val_loader = build_loader(val_set, cfg.eval.batch_size, False, cfg.data.num_workers)
    last_path, best_path = os.path.join(out_dir, "checkpoint.pth"), os.path.join(out_dir, "best.pth")
    start, unannotated = time.time(), False
    while state["epoch"] < t.epochs:
        epoch = state["epoch"]
        train_set.set_epoch(epoch)
        run.loader.batch_sampler.set_epoch(epoch, skip=state["step_in_epoch"])
        stats = train_one_epoch(run.model, run.criterion, run.loader, run.optimizer, run.scheduler,
                                run.scaler, device, state, amp=t.amp, clip_grad=t.clip_grad,
                                channels_last=t.channels_last, max_steps=t.max_steps,
                                log_every=t.log_every, stop=stop, frozen_bn=t.batchnorm == "frozen")
        finished = state["step_in_epoch"] >= run.steps_per_epoch
        if finished:
            state["epoch"] += 1
            state["step_in_epoch"] = 0
        record = {"epoch": epoch, "step": state["step"], "lr": run.optimizer.param_groups[0]["lr"],
                  "time": round(time.time() - start, 1), **{f"train_{k}": v for k, v in stats.items()}}
        done = state["epoch"] >= t.epochs or (t.max_steps and state["step"] >= t.max_steps)
        if val_loader is not None and (done or (finished and state["epoch"] % t.eval_every == 0)):
            metrics = evaluate(run.model, val_loader, build_evaluator(val_set, cfg.eval), device,
                               t.amp, desc="val", compete_tau=cfg.eval.compete_tau,
                               upsample=cfg.eval.upsample)
            logger.info(format_metrics(f"val (epoch {epoch})", metrics))
            record.update({f"val_{k}": v for k, v in metrics.items()})
            if math.isnan(selection_metric(metrics)):
                if not unannotated:  # said once
                    logger.warning("val has no annotated item (AP/CAP undefined; data.val_list "
                                   "takes an annotated list): no best.pth is chosen, testing "
                                   "uses the latest checkpoint")
                unannotated = True
            elif is_main_process() and selection_metric(metrics) > state["best"]:
                state["best"] = selection_metric(metrics)
                run.save(best_path)
        if is_main_process():
            run.save(last_path)
        append_jsonl(os.path.join(out_dir, "log.jsonl"), record)
        logger.info("epoch %d done: %s", epoch, json.dumps(record))
        if stop.agreed(device):  # collective: every process leaves the loop together
            logger.info("stop requested: saved %s at step %d, exiting", last_path, state["step"])
            break
        if done:
            break
    logger.info("training took %.1f min", (time.time() - start) / 60)
    return last_path, best_path


if __name__ == "__main__":
    run_cli(main)
