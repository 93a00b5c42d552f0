"""Atomic checkpoints that load with torch.load(weights_only=True)."""
import os
import random

import numpy as np
import torch


def rng_state():
    """Every RNG the training loop draws from, as plain tensors and lists."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_pos": random.getstate()[2], "numpy": torch.from_numpy(np_state[1].copy()),
             "numpy_pos": int(np_state[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy(), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(state, path):
    """Write to a temporary file, then rename: a crash never leaves a half-written `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint written by `save_checkpoint`, with a clear error when it is missing,
    truncated or not one of ours."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # not torch's text: it may advise weights_only=False (unsafe)
        raise RuntimeError(f"cannot read checkpoint {path}: not a checkpoint written by train.py, "
                           f"or truncated ({type(e).__name__})") from None
    if not isinstance(ckpt, dict):
        raise RuntimeError(f"{path} is not an AVGN checkpoint (holds a {type(ckpt).__name__})")
    missing = [k for k in ("model", "config", "class_names") if k not in ckpt]
    if missing:
        raise RuntimeError(f"{path} is not an AVGN checkpoint (missing {missing})")
    return ckpt

