"""Decode every item of a dataset, as training or evaluation would load it, in worker processes;
return the ones that fail with their reasons (tools.check_data, and train.py on its test sets
before the first step)."""
import multiprocessing
import signal

import torch

from utils.logger import progress

_DATASET = None  # the dataset the worker processes read (inherited through fork)


def _decode(index):
    """Worker: load item `index`; None or (index, the reason it fails)."""
    try:
        _DATASET[index]
        return None
    except Exception as e:  # every failure is reported, none stops the check
        return index, str(e) or type(e).__name__


def _init_worker():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # whatever handler the parent had installed
    torch.set_num_threads(1)


def decode_all(dataset, workers, desc="decode"):
    """[(index, reason)] of the items of `dataset` that fail to load, in index order."""
    global _DATASET
    _DATASET = dataset
    bad = []
    if workers <= 1:
        results = map(_decode, range(len(dataset)))
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker)
        results = pool.imap_unordered(_decode, range(len(dataset)), chunksize=8)
    try:
        for r in progress(results, total=len(dataset), desc=desc):
            if r is not None:
                bad.append(r)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        _DATASET = None
    if pool is not None:
        pool.close()
        pool.join()
    return sorted(bad)
