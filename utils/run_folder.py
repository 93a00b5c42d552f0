"""The run folder (train.output_dir): which config and checkpoint a command continues, and when a
folder may be started, continued or cleared. Nothing here writes before every check has passed.

A folder that holds one of RUN_FILES holds a run: a new run there is refused unless told to
--overwrite it; --resume continues it exactly, when the architecture, the optimizer and (after a
mid-epoch stop) the batch layout are the run's own.
"""
import os
import shutil

from .checkpoint import load_checkpoint
from .config import apply_overrides, from_dict, load_config, to_dict
from .dist import barrier, get_world_size, is_main_process

DEFAULT_CONFIG = "configs/synthetic.yaml"
RUN_FILES = ("checkpoint.pth", "best.pth", "log.jsonl")  # a folder holding one of these holds a run
# what clear_run deletes besides RUN_FILES: the files a run writes, and its vis_* folders
WRITTEN = ("config.yaml", "train.log", "test.log", "results.json")
ARCHITECTURE_EXCEPT = ("num_classes", "pretrained", "pretrained_path")  # set by data / init only


def resolve_config(config, overrides, resume):
    """-> (config, path of the checkpoint to resume or '', that checkpoint loaded or None).

    The config is `config` (default configs/synthetic.yaml) with the overrides; resuming without
    `config`, it is the checkpoint's own config with the overrides. resume: a checkpoint path,
    'auto' (<output_dir>/checkpoint.pth when it exists) or ''."""
    cfg = load_config(config or DEFAULT_CONFIG, overrides)
    if resume == "auto":
        resume = os.path.join(cfg.train.output_dir, "checkpoint.pth")
        resume = resume if os.path.isfile(resume) else ""
    elif resume and not os.path.isfile(resume):
        raise FileNotFoundError(f"--resume {resume}: checkpoint not found")
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None and not config:
        cfg = apply_overrides(from_dict(ckpt["config"], stored=True), overrides)
    return cfg, resume, ckpt


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
            if name in RUN_FILES + WRITTEN or name.startswith("samples_") and name.endswith(".csv"):
                os.remove(path)
            elif name.startswith("vis_") and os.path.isdir(path):
                shutil.rmtree(path)
    barrier()


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


def check_class_names(ckpt, class_names, resume):
    """Raise when the training list gives other classes than the checkpoint was trained on."""
    if list(ckpt["class_names"]) != list(class_names):
        raise ValueError(f"--resume {resume}: the run was trained on {len(ckpt['class_names'])} "
                         f"classes {ckpt['class_names'][:5]}..., the training list now gives "
                         f"{len(class_names)} {class_names[:5]}...")


def restore_hyperparameters(optimizer, scheduler, cfg):
    """After loading optimizer and scheduler states: the config's lr and weight decay apply from
    here on (the states hold the checkpoint's); the schedule itself is the config's already. With
    an unchanged config the learning rate is bit-identical to the checkpoint's."""
    scheduler.base_lrs = [cfg.train.lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = cfg.train.lr
        group["lr"] = cfg.train.lr * factor(scheduler.last_epoch)
        group["weight_decay"] = cfg.train.weight_decay
