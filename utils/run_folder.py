"""The run folder (train.output_dir): which config and checkpoint a command continues, and when a
folder may be started, continued or cleared. Nothing here writes before every check has passed.

A folder that holds one of RUN_FILES holds a run: a new run there is refused unless told to
--overwrite it; --resume continues it exactly, when the architecture, the optimizer and (after a
mid-epoch stop) the batch layout are the run's own. A running run holds the folder's lock file
(LOCK: its pid, host, start and command), so a second run into the same folder is refused while
the first one lives, whatever either one was told. A run also holds a shared lock on each data
root that could be regenerated under it (`using_data`), which a regeneration (`replacing_data`)
must take exclusively: refused, naming the runs, while any run reads the root.
"""
import contextlib
import fcntl
import json
import os
import shutil
import socket
import time

from .checkpoint import load_checkpoint
from .config import ConfigError, apply_overrides, from_dict, load_config, to_dict
from .dist import all_gather_object, barrier, get_world_size, is_main_process
from .errors import InputError
from .files import pid_alive, remove_stale
from .logger import logger

DEFAULT_CONFIG = "configs/synthetic.yaml"
LOCK = ".lock"  # held by the run using the folder
RUN_FILES = ("checkpoint.pth", "best.pth", "log.jsonl")  # a folder holding one of these holds a run
# what clear_run deletes besides RUN_FILES: the files a run writes, and its vis_* folders
WRITTEN = ("config.yaml", "train.log", "test.log", "results.json")
ARCHITECTURE_EXCEPT = ("num_classes", "pretrained", "pretrained_path")  # set by data / init only


def resolve_config(config, overrides, resume):
    """-> (config, path of the checkpoint to resume or '', that checkpoint loaded or None).

    The config is `config` (a path or a list of paths merged in order; default
    configs/synthetic.yaml) with the overrides; resuming without
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
        raise ConfigError(f"--resume {resume}: the run was trained with {'; '.join(differ)}. "
                         "Resume with the run's values, or start a new run in another "
                         "train.output_dir")
    layout = (get_world_size(), cfg.train.batch_size_per_gpu)
    if ckpt["step_in_epoch"] and tuple(ckpt.get("layout", layout)) != layout:
        raise ConfigError(f"--resume {resume} stopped mid-epoch with (processes, "
                         f"batch_size_per_gpu) = {tuple(ckpt['layout'])}; resume with the same, "
                         f"not {layout}")


def check_class_names(ckpt, class_names, resume):
    """Raise when the training list gives other classes than the checkpoint was trained on."""
    if list(ckpt["class_names"]) != list(class_names):
        raise ConfigError(f"--resume {resume}: the run was trained on {len(ckpt['class_names'])} "
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


class RunFolderInUse(InputError, RuntimeError):
    """Another live run holds the folder."""


class FolderLock:
    """An exclusive lock on `out_dir`/LOCK held for the life of this process's run: a `flock` on
    the file (the kernel drops it when the process ends, however it ends) and, in the file, the
    holder's pid, host, start and command, to name it to a refused run. what: how messages name
    the folder (train.output_dir; tools.get_data: --root)."""

    def __init__(self, out_dir, command="", what="train.output_dir"):
        self.path, self.command, self.what, self.fd = os.path.join(out_dir, LOCK), command, what, None

    def acquire(self):
        """Take the lock or raise RunFolderInUse naming its holder. A lock file left by a run that
        ended without releasing it, and the temporary files of an interrupted checkpoint save
        (`*.tmp.<pid>`), are taken over / removed with a warning once the lock is held."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_lock(fd)
                os.close(fd)
                who = (f"process {holder.get('pid')} on {holder.get('host')} since "
                       f"{holder.get('started')} ({holder.get('command') or 'no command'})"
                       if holder else "another run")
                raise RunFolderInUse(f"{self.what} {os.path.dirname(self.path)} is in use by "
                                     f"{who}: wait for it, or choose another {self.what}"
                                     ) from None
            try:  # the file may have been removed by its last holder between open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = _read_lock(fd)
        if left:
            logger.warning("%s: the run of process %s (started %s) ended without releasing the "
                           "folder; taking it over", self.path, left.get("pid"), left.get("started"))
        folder = os.path.dirname(self.path)
        for tmp in remove_stale(folder):
            logger.warning("removed %s, left by an interrupted save", tmp)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": self.command}).encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.remove(self.path)  # while held: a run that opened it before retries (acquire)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_lock(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 1 << 16).decode() or "{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def run_folder(out_dir, command="", clear=False):
    """Hold `out_dir` for the body: rank 0 takes its FolderLock (every process raises the same
    error when it cannot), then, with `clear`, the run there is deleted (`clear_run`, for
    --overwrite); the lock is released when the body ends, however it ends."""
    lock, error = None, None
    if is_main_process():
        try:
            lock = FolderLock(out_dir, command).acquire()
        except Exception as e:  # every rank leaves with it, none waits in a collective
            error = e
    errors = all_gather_object(None if error is None else (type(error).__name__, str(error)))
    if error is not None:
        raise error
    if errors[0] is not None:
        raise RunFolderInUse(errors[0][1]) if errors[0][0] == "RunFolderInUse" else \
            RuntimeError(f"rank 0 could not take {out_dir}: {errors[0][1]}")
    try:
        if clear:
            clear_run(out_dir)
        yield lock
    finally:
        if lock is not None:
            lock.release()


# ----------------------------------------------------------------------------- data in use
class DataInUse(InputError, RuntimeError):
    """A data root that a live run reads would be replaced."""


def _data_lock(root):
    """An open descriptor of `<root>.lock` (beside the root: it outlives the root's replacement),
    or None where it cannot be created (a read-only place, where nothing regenerates either)."""
    try:
        return os.open(os.path.abspath(root).rstrip(os.sep) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None


def _add_holder(fd, **fields):
    os.lseek(fd, 0, os.SEEK_END)
    os.write(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S"), **fields})
                  + "\n").encode())


def _live_holders(fd):
    """The holders a lock file names whose process may still run (all those of other hosts)."""
    os.lseek(fd, 0, os.SEEK_SET)
    out = []
    for line in os.read(fd, 1 << 20).decode(errors="replace").splitlines():
        try:
            h = json.loads(line)
        except ValueError:
            continue
        if isinstance(h, dict) and _alive(h):
            out.append(h)
    return out


def _alive(holder):
    """False only for a process of this host that no longer runs."""
    return holder.get("host") != socket.gethostname() or pid_alive(holder.get("pid", -1))


@contextlib.contextmanager
def using_data(roots, command=""):
    """Hold a shared lock on each of `roots` for the body (waiting while one is regenerated), and
    add this process to the lock file's holders, for `replacing_data` to name."""
    fds = []
    try:
        for root in dict.fromkeys(os.path.abspath(r) for r in roots):
            fd = _data_lock(root)
            if fd is None:
                continue
            fcntl.flock(fd, fcntl.LOCK_SH)
            fds.append(fd)
            _add_holder(fd, command=command)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # drops the lock


@contextlib.contextmanager
def replacing_data(root, patience=10.0):
    """Hold `root` exclusively for the body (its regeneration). Raises DataInUse naming the runs
    that read it (their `using_data`) rather than waiting for them; waits for another process
    that regenerates it (DDP ranks), after which the caller checks whether it is still to do."""
    fd = _data_lock(root)
    if fd is None:
        yield
        return
    try:
        deadline = time.time() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holders = _live_holders(fd)
                readers = [h for h in holders if not h.get("replacing")]
                if readers or (not holders and time.time() > deadline):
                    who = "; ".join(f"process {h.get('pid')} on {h.get('host')} since "
                                    f"{h.get('started')} ({h.get('command') or 'no command'})"
                                    for h in readers) or "a run"
                    raise DataInUse(f"data root {root} is in use by {who}: it is not replaced "
                                    "while a run reads it; wait for the run, or choose another "
                                    "data.root") from None
                if holders:  # another process replaces it: wait for that
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    break
                time.sleep(0.1)  # a reader between its lock and its line
        os.ftruncate(fd, 0)  # no reader is left: their lines go
        _add_holder(fd, replacing=True)
        yield
    finally:
        os.close(fd)  # drops the lock
