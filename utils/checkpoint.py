"""Atomic checkpoints that load with torch.load(weights_only=True)."""
import os
import random

import numpy as np
import torch

from .errors import CheckpointError
from .files import write_atomic


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
    write_atomic(path, lambda tmp: torch.save(state, tmp))


# numpy scalars, which checkpoints of other code hold (the released AVGN's train.py stores numpy
# floats such as best_Precision): data only, safe to rebuild with weights_only=True; the scalar
# also under numpy 1's module name, the one in files written with numpy 1
_SCALAR = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar  # numpy 2 / 1
NUMPY_SCALARS = [np.dtype, _SCALAR, (_SCALAR, "numpy.core.multiarray.scalar"),
                 *(type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4", "?"))]  # dtypes rebuilt


def load_checkpoint(path, map_location="cpu", required=("model", "config", "class_names")):
    """Load a checkpoint written by `save_checkpoint` (or another dict of tensors, with the
    `required` keys), with a clear error when it is missing, truncated or not one of ours."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALARS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # not torch's text: it may advise weights_only=False (unsafe)
        raise CheckpointError(f"cannot read checkpoint {path}: not a checkpoint written by train.py, "
                           f"or truncated ({type(e).__name__})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not an AVGN checkpoint (holds a {type(ckpt).__name__})")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an AVGN checkpoint (missing {missing})")
    return ckpt
