"""Logging: INFO on rank 0 (console + <output_dir>/train.log), WARNING elsewhere."""
import json
import logging
import os
import subprocess
import sys

from .dist import is_main_process

logger = logging.getLogger("avgn")


def setup_logging(output_dir=None, filename="train.log"):
    main = is_main_process()
    logger.handlers.clear()
    logger.setLevel(logging.INFO if main else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    if main and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, filename))
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def git_sha():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        # "-dirty": tracked code differs from HEAD (changes to the committed results/ do not count)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=here, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append_jsonl(path, record):
    if is_main_process():
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
