"""torch.distributed helpers that also work in a world of one (not initialized).

`torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK; `init_distributed()` then starts the process group
(nccl on CUDA, gloo on CPU). Without those variables the same code runs as a single process.
"""
import datetime
import gc
import os

import torch
import torch.distributed as dist


def is_dist():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_dist() else 0


def get_world_size():
    return dist.get_world_size() if is_dist() else 1


def is_main_process():
    return get_rank() == 0


def init_distributed(device=None):
    """Initialize from the torchrun environment; return the torch.device of this process.

    Args:
        device: "cuda", "cpu" or None (cuda when available).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_dist():
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    if device == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def cleanup():
    """End the process group. Call it once the objects that use the group are out of scope: a
    DistributedDataParallel module sits in reference cycles, so only the garbage collector frees
    it. Left alive, the group is torn down during interpreter shutdown, where gloo can abort the
    process ("terminate called without an active exception", SIGABRT) after a finished run."""
    if is_dist():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def barrier():
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor):
    """Sum a tensor over processes (returns a new tensor; identity in a world of one)."""
    if not is_dist():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor


def all_gather_object(obj):
    """List with every process's `obj`, in rank order."""
    if not is_dist():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns to each process the gradient of its own slice, summed
    over all processes (an all-reduce), so a loss computed on gathered tensors trains exactly as
    the same loss in one process with the whole batch."""

    @staticmethod
    def forward(ctx, x):
        ctx.n = x.shape[0]
        out = [torch.empty_like(x) for _ in range(get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, 0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        r = get_rank()
        return grad[r * ctx.n:(r + 1) * ctx.n]


def all_gather_with_grad(x):
    """Concatenate `x` [n, ...] from all processes along dim 0 ([world * n, ...]); every process
    must pass the same n. Identity in a world of one."""
    if not is_dist():
        return x
    return _GatherWithGrad.apply(x)
