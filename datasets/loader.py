"""Batches: the samplers and `build_loader` (same code for one process and for DDP)."""
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from utils.dist import get_rank, get_world_size

from .dataset import collate


class ClassBalancedBatchSampler(torch.utils.data.Sampler):
    """Batches with as few same-class items as possible, every item once per epoch.

    Each epoch the items of every class are shuffled; round r takes the r-th item of each class
    that still has one, classes in random order; the concatenation is cut into global batches of
    batch_size * num_replicas, of which this rank takes its slice (incomplete batches dropped).

    item_classes: per item a class id (the first source's); batch_size: per process;
    num_replicas / rank: DDP world (default: a world of one); seed: int.
    """

    def __init__(self, item_classes: Sequence[int], batch_size: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        self.item_classes = np.asarray(item_classes, dtype=np.int64)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.num_replicas, self.rank, self.epoch = int(num_replicas), int(rank), 0
        self.per_class = [np.flatnonzero(self.item_classes == c)
                          for c in np.unique(self.item_classes)]
        self.global_batch = self.batch_size * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.item_classes) // self.global_batch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 11])
        shuffled = [rng.permutation(ix) for ix in self.per_class]
        rounds = max((len(ix) for ix in shuffled), default=0)
        order = []
        for r in range(rounds):
            present = [ix[r] for ix in shuffled if len(ix) > r]
            order.extend(rng.permutation(np.asarray(present, dtype=np.int64)).tolist())
        for b in range(len(self)):
            start = b * self.global_batch + self.rank * self.batch_size
            yield order[start:start + self.batch_size]


class ResumableBatches(torch.utils.data.Sampler):
    """Wraps a batch sampler; `set_epoch(epoch, skip)` restarts an epoch after `skip` batches, so a
    run resumed mid-epoch sees exactly the batches the interrupted run would have seen."""

    def __init__(self, batch_sampler):
        self.batch_sampler, self.skip = batch_sampler, 0

    def set_epoch(self, epoch, skip=0):
        self.skip = skip
        for s in (self.batch_sampler, getattr(self.batch_sampler, "sampler", None)):
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)

    def __len__(self):
        return len(self.batch_sampler) - self.skip

    def __iter__(self):
        for i, batch in enumerate(self.batch_sampler):
            if i >= self.skip:
                yield batch


def build_loader(dataset, batch_size, train, num_workers, seed=0, pin_memory=False,
                 class_balanced=False):
    """DataLoader over this process's share of `dataset` (batch_size: per process).

    train: shuffled (seeded per epoch), incomplete last batch dropped, resumable mid-epoch
    (`loader.batch_sampler.set_epoch(epoch, skip)`); class_balanced: batches with few same-class
    items (`ClassBalancedBatchSampler` over each item's first class; training only).
    eval: in order, every item seen once over all processes (DistributedSampler pads with repeats,
    which the evaluators de-duplicate by sample index).
    """
    world, rank = get_world_size(), get_rank()
    if class_balanced:
        first_class = [dataset.class_index[dataset.item_classes(i)[0]] for i in range(len(dataset))]
        batch_sampler = ClassBalancedBatchSampler(first_class, batch_size, seed, world, rank)
    else:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=train,
                                     seed=seed, drop_last=train)
        batch_sampler = BatchSampler(sampler, batch_size, drop_last=train)
    if train:
        batch_sampler = ResumableBatches(batch_sampler)
    kwargs = {}
    if num_workers > 0:
        kwargs = dict(persistent_workers=True, prefetch_factor=4)
    # the loader's own generator: starting an iterator draws its worker seed from it, never from
    # the global torch RNG (which the model's random ops use), so a resumed run stays exact
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin_memory, generator=generator, **kwargs)
