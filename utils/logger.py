"""Logging: INFO on rank 0 (console + <output_dir>/train.log), WARNING elsewhere.

Every module of the project logs to a child of the "avgn" logger (``logging.getLogger("avgn." +
__name__)``), and Python warnings (``warnings.warn``, e.g. torch's) are captured too, so all of
them reach the console and train.log once `setup_logging` has run."""
import json
import logging
import os
import subprocess
import sys

from tqdm import tqdm

from .dist import is_main_process

logger = logging.getLogger("avgn")


class HeldFile(logging.Handler):
    """Holds the log records until `write_held()` writes them to `path` and keeps writing there:
    a run folder gets its train.log only once the run has passed every start-up check. (Not
    `release`: logging.Handler.release unlocks the handler after every record.)"""

    def __init__(self, path):
        super().__init__()
        self.path, self.records, self.file = path, [], None

    def emit(self, record):
        if self.file is None:
            self.records.append(record)
        else:
            self.file.emit(record)

    def write_held(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.file = logging.FileHandler(self.path)
        self.file.setFormatter(self.formatter)
        for record in self.records:
            self.file.emit(record)
        self.records = []

    def close(self):
        if self.file is not None:
            self.file.close()
        super().close()


def setup_logging(output_dir=None, filename="train.log", hold=False):
    """Console (and, on rank 0, <output_dir>/<filename>) handlers for the project's loggers and
    Python warnings. hold: the file is written only from `release_log()` on, with every record
    logged before it."""
    main = is_main_process()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stdout)]
    if main and output_dir:
        path = os.path.join(output_dir, filename)
        if hold:
            handlers.append(HeldFile(path))
        else:
            os.makedirs(output_dir, exist_ok=True)
            handlers.append(logging.FileHandler(path))
    logging.captureWarnings(False)  # then True: installs the capture again if it was replaced
    logging.captureWarnings(True)
    for target in (logger, logging.getLogger("py.warnings")):
        for h in target.handlers:
            h.close()
        target.handlers.clear()
        target.setLevel(logging.INFO if main else logging.WARNING)
        target.propagate = False
        for h in handlers:
            h.setFormatter(fmt)
            target.addHandler(h)
    return logger


def release_log():
    """Start writing a held log file (see `setup_logging(hold=True)`)."""
    for h in logger.handlers:
        if isinstance(h, HeldFile):
            h.write_held()


def git_sha():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        # "-dirty": tracked code differs from HEAD (changes to committed results do not count)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)study/results"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append_jsonl(path, record):
    if is_main_process():
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def progress(iterable=None, **kwargs):
    """A tqdm bar on rank 0 when stderr is a terminal: a redirected run's output stays clean
    (train.log holds the log lines either way)."""
    kwargs = {"dynamic_ncols": True, "leave": False, **kwargs}
    return tqdm(iterable, disable=None if is_main_process() else True, **kwargs)
