"""Training-step throughput: forward + backward + Adam step of train.py's model and criterion.

    python -m benchmarks.bench_train --threads 2                # paper model, batch 8, random tensors
    python -m benchmarks.bench_train --device cuda --batch 128 --variants fp32,bf16+cl,bf16+cl+compile
    python -m benchmarks.bench_train --loader synthetic --workers 2    # + the real loader, end to end
    torchrun --nproc_per_node=1 -m benchmarks.bench_train --device cuda  # DDP, as train.py

Random inputs of the config's sizes. Variant tokens: fp32 | bf16 (autocast, CUDA only), cl
(channels_last), compile, enc (the encoders and the class-agnostic loss alone: `ezvsl`). FLOPs:
FlopCounterMode over one eager forward + backward, compared on CUDA with the dense bf16 peak.
Variants are timed round-robin, so a change of load on a shared machine hits them alike.
"""
import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine import autocast, to_device
from losses import build_criterion
from models import build_model
from utils.config import load_config
from utils.dist import cleanup, init_distributed, is_dist

# dense bf16 tensor-core peaks (TFLOP/s, fp32 accumulation, no sparsity), by device-name substring
PEAK_TFLOPS = [("H100 PCIe", 756), ("H100", 989), ("H200", 989), ("GH200", 989), ("A100", 312),
               ("L40S", 362), ("RTX 4090", 165), ("V100", 125)]  # V100: fp16 (no bf16)
TOKENS = {"fp32", "bf16", "cl", "compile", "enc"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="configs/paper.yaml")
    p.add_argument("--batch", type=int, default=8, help="per process")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile: +1)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: as is)")
    p.add_argument("--variants", default="fp32", help=f"comma-separated; tokens {sorted(TOKENS)}")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one step")
    p.add_argument("--loader", default="none", choices=["none", "synthetic"],
                   help="also time datasets.build_loader over the synthetic stream")
    p.add_argument("--workers", type=int, default=2, help="loader workers")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    args.variants = [set(v.split("+")) for v in args.variants.split(",")]
    if set().union(*args.variants) - TOKENS:
        p.error(f"--variants: unknown {sorted(set().union(*args.variants) - TOKENS)}")
    return args


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, device):
    """Seconds of `step()`, its device work included."""
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - t0


class Trainer:
    """Model, criterion and Adam as train.py builds them; `step(batch)` is one training step."""

    def __init__(self, cfg, device, variant):
        if "enc" in variant:  # EZ-VSL has one form
            cfg.model.name, cfg.model.arch = "ezvsl", "paper"
        torch.manual_seed(0)
        self.eager = build_model(cfg).to(device)
        self.criterion = build_criterion(cfg, self.eager)
        self.cl, self.amp = "cl" in variant, "bf16" if "bf16" in variant else "none"
        self.eager = self.eager.to(memory_format=torch.channels_last if self.cl else
                                   torch.contiguous_format)
        self.optimizer = torch.optim.Adam(self.eager.parameters(), lr=1e-4,
                                          **({"fused": True} if device.type == "cuda" else {}))
        self.run = torch.compile(self.eager) if "compile" in variant else self.eager
        if is_dist():
            self.run = torch.nn.parallel.DistributedDataParallel(
                self.run, device_ids=[device.index] if device.type == "cuda" else None)
        self.device = device

    def loss(self, batch, model):
        with autocast(self.device, self.amp):
            out = model(batch["image"], batch["spec"])
            return self.criterion(out, batch["classes"], batch["labels"])["total"]

    def step(self, batch):
        loss = self.loss(to_device(batch, self.device, self.cl), self.run)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def flops(self, batch):
        """FLOPs of one eager forward + backward (counted, not timed)."""
        counter = FlopCounterMode(display=False)
        with counter:
            self.loss(to_device(batch, self.device, self.cl), self.eager).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def random_batch(cfg, batch, device):
    """A host batch (pinned on CUDA, as the loader's) copied to the device in every step."""
    g = torch.Generator().manual_seed(0)
    a, S, C = cfg.data.audio, cfg.data.image_size, cfg.model.num_classes
    classes = torch.randint(0, C, (batch, 1), generator=g)
    out = {"image": torch.randn(batch, 3, S, S, generator=g),
           "spec": torch.randn(batch, 1, a.freq_bins or a.n_fft // 2 + 1, a.frames, generator=g),
           "classes": classes, "labels": torch.nn.functional.one_hot(classes[:, 0], C).float()}
    return {k: v.pin_memory() for k, v in out.items()} if device.type == "cuda" else out


def measure(cfg, args, device):
    """One row per variant: samples/s (median step), FLOPs per sample, seconds of the first step."""
    rows = []
    for variant in args.variants:
        if "bf16" in variant and device.type != "cuda":
            print(f"skip {'+'.join(sorted(variant))}: bf16 autocast is CUDA-only in train.py")
            continue
        trainer = Trainer(load_config(args.config, args.base), device, variant)  # a fresh config
        batch = random_batch(cfg, args.batch, device)
        flops = trainer.flops(batch) / args.batch
        first = timed(lambda: trainer.step(batch), device)  # compilation: timed on its own
        for _ in range(args.warmup + ("compile" in variant)):
            trainer.step(batch)
        rows.append(dict(label="+".join(sorted(variant)), trainer=trainer, batch=batch, flops=flops,
                         first=first, times=[]))
    for _ in range(args.steps):
        for r in rows:
            r["times"].append(timed(lambda: r["trainer"].step(r["batch"]), device))
    for r in rows:
        r["rate"] = args.batch / statistics.median(r["times"])
    return rows


def loader_rates(cfg, args, trainer):
    """(loader alone, end to end) samples/s of datasets.build_loader over the synthetic stream."""
    from datasets import build_loader, synthetic
    dataset = synthetic.SyntheticStream(args.batch * (args.steps + 2), cfg.data)
    loader = build_loader(dataset, args.batch, True, args.workers,
                          pin_memory=trainer.device.type == "cuda")
    rates = []
    for train in (False, True):
        it = iter(loader)
        next(it)  # worker start-up and the first batch are not timed
        t0, count = time.perf_counter(), 0
        for b in it:
            if train:  # the dataset's classes padded to the model's C (same model, same cost)
                pad = cfg.model.num_classes - b["labels"].shape[1]
                trainer.step(dict(b, labels=torch.nn.functional.pad(b["labels"], (0, pad))))
            count += b["image"].shape[0]
        sync(trainer.device)
        rates.append(count / (time.perf_counter() - t0))
    return rates


def main(argv=None):
    args = parse_args(argv)
    device = init_distributed(args.device)  # torchrun: DDP, as train.py
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # true fp32
    args.base = ["model.pretrained=none", *args.overrides]
    cfg = load_config(args.config, args.base)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((p for key, p in PEAK_TFLOPS if key in name), None)
    print(f"{args.config} {' '.join(args.overrides)} | batch {args.batch} | {name} | torch "
          f"{torch.__version__} | {torch.get_num_threads()} threads | median of {args.steps} steps")
    rows = measure(cfg, args, device)
    print("\n| variant | samples/s | GFLOP/sample (fwd+bwd) | TFLOP/s | of bf16 peak | 1st step |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        tflops = r["flops"] * r["rate"] / 1e12
        print(f"| {r['label']} | {r['rate']:.1f} | {r['flops'] / 1e9:.2f} | {tflops:.3f} | "
              f"{f'{100 * tflops / peak:.1f}%' if peak else '-'} | {r['first']:.1f} s |")
    if rows and args.profile:
        from torch.profiler import ProfilerActivity, profile
        cuda = [ProfilerActivity.CUDA] if device.type == "cuda" else []
        with profile(activities=[ProfilerActivity.CPU] + cuda) as prof:
            rows[0]["trainer"].step(rows[0]["batch"])
            sync(device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\none step of {rows[0]['label']}, top 10 by self time:")
        print(prof.key_averages().table(sort_by=sort, row_limit=10))
    if rows and args.loader != "none":
        alone, both = loader_rates(cfg, args, rows[0]["trainer"])
        print(f"\nsynthetic loader, {args.workers} workers: alone {alone:.1f} samples/s, end to "
              f"end {both:.1f} samples/s ({100 * both / rows[0]['rate']:.0f}% of the model-only "
              f"rate of {rows[0]['label']})")
    for r in rows:
        del r["trainer"]  # its DDP module must be gone before the process group ends
    cleanup()
    return rows


if __name__ == "__main__":
    main()
