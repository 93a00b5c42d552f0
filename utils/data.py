"""Data loaders for training and evaluation (same code for one process and for DDP)."""
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from datasets import collate
from utils.dist import get_rank, get_world_size


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


def make_loader(dataset, batch_size, train, num_workers, seed=0, pin_memory=False,
                batch_sampler=None):
    """DataLoader over this process's share of `dataset`.

    train: shuffled (seeded per epoch), incomplete last batch dropped, resumable mid-epoch;
    eval: in order, every item seen once over all processes (DistributedSampler pads with repeats,
    which the evaluators de-duplicate by sample index).
    """
    world, rank = get_world_size(), get_rank()
    if batch_sampler is None:
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
