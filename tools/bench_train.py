"""Training-step throughput: forward + backward + Adam step of the model and criterion of train.py.

    python tools/bench_train.py --threads 2                # paper model, batch 8, random tensors
    python tools/bench_train.py --threads 2 --encoders-only       # the two ResNet18 encoders alone
    python tools/bench_train.py --threads 2 --variants full,enc --breakdown --profile --matmul
    python tools/bench_train.py --config configs/synthetic.yaml --batch 64
    python tools/bench_train.py --device cuda --batch 128 --variants fp32,bf16,bf16+cl,enc+bf16+cl
    python tools/bench_train.py --loader synthetic --workers 2  # end to end, utils/data.make_loader
    python tools/bench_train.py --loader files --workers 2      # ... over a root of jpg + wav files
    torchrun --nproc_per_node=1 tools/bench_train.py --device cuda  # DDP, gathered negatives

The model is `models.build_model(cfg)`, the loss `losses.build_criterion(cfg)`, the optimiser Adam
(fused on CUDA) as in train.py; inputs are random tensors of the config's sizes (image
[B, 3, S, S], spectrogram [B, 1, F, T]), one source per sample of a random class.
`enc` / --encoders-only: the same two ResNet18 encoders (with their 1x1 conv / Linear to D) and the
class-agnostic EZ-VSL loss (the `ezvsl` model through the same criterion), no AVCT / AVG / heads.
FLOPs per sample: `torch.utils.flop_counter.FlopCounterMode` over one eager forward + backward.
On CUDA, the achieved FLOP/s is compared with the card's dense bf16 peak (table PEAK_TFLOPS).

Variants (--variants, comma-separated; tokens joined by '+'): fp32 | bf16 (autocast, CUDA only),
cl (channels_last), compile (torch.compile), enc (encoders only). Default: from the flags.
Without PyYAML the configs cannot be read: the paper / synthetic settings below are used instead.
"""
import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from types import SimpleNamespace

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from losses import AVGNCriterion  # noqa: E402
from models import AVGN, EZVSL  # noqa: E402

# dense bf16 tensor-core peaks (TFLOP/s, fp32 accumulation, no sparsity), by device-name substring
PEAK_TFLOPS = [("H100 PCIe", 756), ("H100", 989), ("H200", 989), ("GH200", 989), ("A100", 312),
               ("L40S", 362), ("RTX 4090", 165), ("V100", 125)]  # V100: fp16 (no bf16)

# the settings of configs/paper.yaml and configs/synthetic.yaml, for machines without PyYAML
PRESETS = {
    "paper": dict(model=dict(dim=512, depth=3, heads=8, width=64, visual_stride=32),
                  image_size=224, freq_bins=257, frames=300),
    "synthetic": dict(model=dict(dim=128, depth=1, heads=4, width=16, visual_stride=8),
                      image_size=64, freq_bins=128, frames=64),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "paper.yaml"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile: +1)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--encoders-only", action="store_true")
    p.add_argument("--variants", default="",
                   help="e.g. fp32,bf16,bf16+cl,enc (overrides the flags)")
    p.add_argument("--num-classes", type=int, default=37, help="C")
    p.add_argument("--breakdown", action="store_true",
                   help="time encoders / AVCT+AVG+heads / loss (forward + backward) separately")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of the full step")
    p.add_argument("--matmul", action="store_true",
                   help="GFLOP/s of plain F.linear at the transformer's shapes")
    p.add_argument("--compare-amp", action="store_true",
                   help="loss terms of one batch in fp32 and under bf16 autocast (CUDA)")
    p.add_argument("--loader", default="none", choices=["none", "synthetic", "files"],
                   help="also time the real data loader alone and end to end")
    p.add_argument("--workers", type=int, default=2, help="loader workers")
    p.add_argument("--items", type=int, default=0, help="loader items (default: 4 batches + 1)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ setup
def load_settings(args):
    """(cfg, where): the Config from --config (or a PRESETS namespace without PyYAML)."""
    try:
        from utils.config import load_config
        cfg = load_config(args.config, ["model.pretrained=none",
                                        f"model.num_classes={args.num_classes}"] + args.overrides)
        return cfg, args.config
    except ImportError as e:  # no PyYAML on this machine
        name = "synthetic" if "synthetic" in os.path.basename(args.config) else "paper"
        p = PRESETS[name]
        m = SimpleNamespace(name="avgn", num_classes=args.num_classes, **p["model"])
        audio = SimpleNamespace(freq_bins=p["freq_bins"], n_fft=512, frames=p["frames"])
        data = SimpleNamespace(image_size=p["image_size"], audio=audio)
        cfg = SimpleNamespace(model=m, data=data, loss=None)
        return cfg, f"preset '{name}' ({e})"


def build(cfg, encoders_only):
    """(model, criterion): AVGN (or EZ-VSL for encoders only) and the training criterion."""
    m = cfg.model
    if encoders_only:
        model = EZVSL(num_classes=m.num_classes, dim=m.dim, width=m.width,
                      visual_stride=m.visual_stride)
    elif cfg.loss is not None:
        from models import build_model
        model = build_model(cfg)
    else:
        model = AVGN(num_classes=m.num_classes, dim=m.dim, depth=m.depth, heads=m.heads,
                     width=m.width, visual_stride=m.visual_stride)
    if cfg.loss is not None:
        from losses import build_criterion
        return model, build_criterion(cfg)
    return model, AVGNCriterion()


def spec_bins(cfg):
    a = cfg.data.audio
    return a.freq_bins or a.n_fft // 2 + 1, a.frames


def random_batch(cfg, batch, device, num_classes, seed=0):
    """A host batch (pinned on CUDA, as the loader's) copied to the device in every step."""
    g = torch.Generator().manual_seed(seed)
    S = cfg.data.image_size
    F_, T = spec_bins(cfg)
    classes = torch.randint(0, num_classes, (batch, 1), generator=g)
    out = {"image": torch.randn(batch, 3, S, S, generator=g),
           "spec": torch.randn(batch, 1, F_, T, generator=g), "classes": classes,
           "labels": torch.nn.functional.one_hot(classes[:, 0], num_classes).float()}
    if device is not None and device.type == "cuda":
        out = {k: v.pin_memory() for k, v in out.items()}
    return out


try:  # the exact helpers of the training loop
    from engine import autocast, to_device
except ImportError:  # engine needs tqdm / metrics deps; same behaviour
    def autocast(device, amp):
        if amp == "none" or device.type != "cuda":
            return nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def to_device(batch, device, channels_last=False):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
               for k, v in batch.items()}
        out["image"] = out["image"].contiguous(memory_format=fmt)
        out["spec"] = out["spec"].contiguous(memory_format=fmt)
        return out


class Trainer:
    """model + criterion + Adam as in train.py; `step(batch)` is one training step."""

    def __init__(self, cfg, device, amp="none", channels_last=False, compile=False,
                 encoders_only=False):
        torch.manual_seed(0)
        self.model, self.criterion = build(cfg, encoders_only)
        self.model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        cuda = device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4,
                                          **({"fused": True} if cuda else {}))
        self.eager = self.model
        self.run = torch.compile(self.model) if compile else self.model
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from torch.nn.parallel import DistributedDataParallel  # as train.py under torchrun
            self.run = DistributedDataParallel(self.run,
                                               device_ids=[device.index] if cuda else None)
        self.device, self.amp, self.channels_last = device, amp, channels_last

    def loss(self, batch, model=None):
        with autocast(self.device, self.amp):
            out = (model or self.run)(batch["image"], batch["spec"])
            return self.criterion(out, batch["classes"], batch["labels"])["total"]

    def step(self, batch):
        batch = to_device(batch, self.device, self.channels_last)
        loss = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def flops(self, batch):
        """FLOPs of one eager forward + backward (counted, not timed)."""
        from torch.utils.flop_counter import FlopCounterMode
        batch = to_device(batch, self.device, self.channels_last)
        counter = FlopCounterMode(display=False)
        with counter:
            self.loss(batch, self.eager).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_tflops(device):
    if device.type != "cuda":
        return None, ""
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_TFLOPS:
        if key in name:
            return peak, name
    return None, name


# ------------------------------------------------------------------------------ measurements
def parse_variant(v, args):
    toks = set(v.split("+")) if v else set()
    unknown = toks - {"fp32", "bf16", "cl", "compile", "enc", "full"}
    if unknown:
        raise SystemExit(f"unknown variant token(s) {sorted(unknown)} in {v!r}")
    if not v:
        return dict(amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                    encoders_only=args.encoders_only)
    return dict(amp="bf16" if "bf16" in toks else "none", channels_last="cl" in toks,
                compile="compile" in toks, encoders_only="enc" in toks)


def label(opts):
    parts = ["encoders only (EZ-VSL loss)" if opts["encoders_only"] else "full AVGN"]
    parts.append("bf16" if opts["amp"] == "bf16" else "fp32")
    if opts["channels_last"]:
        parts.append("channels_last")
    if opts["compile"]:
        parts.append("compile")
    return ", ".join(parts)


def measure_all(cfg, args, device, variants):
    """Build every variant, warm each up, then time the steps round-robin (one step of each variant
    per round), so a change of load on a shared machine hits all variants alike."""
    rows = []
    for opts in variants:
        try:
            trainer = Trainer(cfg, device, **opts)
            batch = random_batch(cfg, args.batch, device, cfg.model.num_classes)
            flops = trainer.flops(batch)
            t0 = time.perf_counter()
            trainer.step(batch)  # first step (compilation) timed on its own
            sync(device)
            first = time.perf_counter() - t0
            for _ in range(max(args.warmup - 1, 0) + (1 if opts["compile"] else 0)):
                trainer.step(batch)
            sync(device)
        except Exception as e:  # e.g. torch.compile without a working compiler
            print(f"FAILED {label(opts)}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        rows.append(dict(label=label(opts), opts=opts, first=first, flops=flops / args.batch,
                         trainer=trainer, batch=batch, times=[]))
    for _ in range(args.steps):
        for r in rows:
            t0 = time.perf_counter()
            r["trainer"].step(r["batch"])
            sync(device)
            r["times"].append(time.perf_counter() - t0)
    for r in rows:
        r["step"] = statistics.median(r["times"])
        r["rate"] = args.batch / r["step"]
        r["achieved"] = r["flops"] * args.batch / r["step"]
        print(f"  {r['label']}: steps {' '.join(f'{t * 1e3:.0f}' for t in r['times'])} ms "
              f"(first {r['first']:.1f} s)", flush=True)
    return rows


def breakdown(trainer, batch, steps, device):
    """Median seconds of forward + backward of (encoders, AVCT/AVG/heads, loss) separately, each
    on detached inputs with the real upstream gradients of a full step."""
    model, crit = trainer.eager, trainer.criterion
    b = to_device(batch, device, trainer.channels_last)
    with autocast(device, trainer.amp):
        fv, grid = model.visual(b["image"])
        fa = model.audio(b["spec"])
    gv, ga = torch.randn_like(fv), torch.randn_like(fa)

    def enc():
        with autocast(device, trainer.amp):
            x, _ = model.visual(b["image"])
            y = model.audio(b["spec"])
        torch.autograd.backward([x, y], [gv, ga])

    fv0, fa0 = fv.detach().requires_grad_(), fa.detach().requires_grad_()

    def heads_forward():
        with autocast(device, trainer.amp):
            ga_ = model.group(fa0, getattr(model, "avct_a", None), getattr(model, "avg_a", None))
            gv_ = model.group(fv0, getattr(model, "avct_v", None), getattr(model, "avg_v", None))
            return ga_, gv_, model.head_a(ga_), model.head_v(gv_), model.head_cls(model.tokens)

    outs = heads_forward()
    grads = [torch.randn_like(o) for o in outs]

    def mid():
        torch.autograd.backward(list(heads_forward()), grads)

    full = trainer.eager(b["image"], b["spec"])
    leaf = {k: (v.detach().requires_grad_() if torch.is_tensor(v) and v.is_floating_point() else v)
            for k, v in full.items()}

    def loss():
        with autocast(device, trainer.amp):
            total = crit(leaf, b["classes"], b["labels"])["total"]
        total.backward()

    parts = [("encoders", enc), ("AVCT + AVG + heads", mid), ("loss", loss)]
    times = {name: [] for name, _ in parts}
    for i in range(steps + 1):  # round-robin, the first round is warm-up
        for name, fn in parts:
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i:
                times[name].append(time.perf_counter() - t0)
    res = {name: statistics.median(t) for name, t in times.items()}
    trainer.optimizer.zero_grad(set_to_none=True)
    return res


def profile(trainer, batch, device, rows=15):
    from torch.profiler import ProfilerActivity, profile as tprofile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    trainer.step(batch)
    with tprofile(activities=acts) as prof:
        trainer.step(batch)
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def loader_rates(cfg, args, device, trainer):
    """(loader alone, end to end) samples/s of utils/data.make_loader over the synthetic stream or a
    root of jpg + wav files, at the model's sizes."""
    import copy
    if args.loader == "synthetic":
        try:
            import soundfile  # noqa: F401
        except ImportError:  # datasets/audio.py imports it; the synthetic stream reads no files
            import types
            sys.modules["soundfile"] = types.ModuleType("soundfile")
            print("(soundfile missing: stubbed, the synthetic stream renders audio in memory)")

    from datasets import AudioVisualDataset, media_record
    from datasets.synthetic import SyntheticStream
    from utils.data import make_loader
    data = copy.deepcopy(cfg.data)
    n = args.items or args.batch * 5 + 1
    if args.loader == "synthetic":
        dataset = SyntheticStream(n, data)
        what = "synthetic stream (rendered in the workers)"
    else:
        import tempfile
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        from bench_data import make_root
        folder = tempfile.mkdtemp(prefix="bench_train_")
        ids = make_root(folder, n)
        data.root = folder
        dataset = AudioVisualDataset([(media_record(folder, i, ["x"]),) for i in ids], ["x"], data,
                                     train=True)
        what = "jpg 854x480 + wav 10 s 44.1 kHz files"
    loader = make_loader(dataset, args.batch, True, args.workers, pin_memory=device.type == "cuda")

    def run(train):
        it = iter(loader)
        next(it)  # worker start-up and the first batch are not timed
        t0, count = time.perf_counter(), 0
        for b in it:
            if train:  # the dataset's classes padded to the model's C (same model, same cost)
                pad = cfg.model.num_classes - b["labels"].shape[1]
                b["labels"] = torch.nn.functional.pad(b["labels"], (0, pad))
                trainer.step(b)
            count += b["image"].shape[0]
        sync(device)
        return count / (time.perf_counter() - t0)
    alone = run(False)
    both = run(True)
    return what, alone, both


def compare_amp(cfg, args, device):
    """Each loss term of the same model and batch, fp32 (no TF32) vs bf16 autocast."""
    if device.type != "cuda":
        print("compare-amp skipped: bf16 autocast is CUDA-only in train.py")
        return
    trainer = Trainer(cfg, device)
    batch = to_device(random_batch(cfg, args.batch, device, cfg.model.num_classes), device)
    terms = {}
    for amp in ("none", "bf16"):
        with torch.no_grad(), autocast(device, amp):
            out = trainer.eager(batch["image"], batch["spec"])
            terms[amp] = {k: float(v) for k, v in
                          trainer.criterion(out, batch["classes"], batch["labels"]).items()}
    print(f"\nloss terms on one batch of {args.batch} (train mode), fp32 vs bf16 autocast:")
    print("| term | fp32 | bf16 | rel. difference |\n|---|---|---|---|")
    for k, v in terms["none"].items():
        w = terms["bf16"][k]
        print(f"| {k} | {v:.5f} | {w:.5f} | {abs(w - v) / max(abs(v), 1e-12):.2e} |")


# ------------------------------------------------------------------------------ main
def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def matmul_rates(cfg, batch, device, repeats=20):
    """GFLOP/s of plain F.linear at the shapes of the AVCT blocks (tokens x D -> 3D, 4D, D)."""
    m = cfg.model
    patches = (cfg.data.image_size // m.visual_stride) ** 2
    hidden = int(m.dim * m.mlp_ratio)
    shapes = [(batch * (patches + m.num_classes), m.dim, 3 * m.dim, "visual qkv"),
              (batch * (patches + m.num_classes), m.dim, hidden, "visual MLP in"),
              (batch * (patches + m.num_classes), hidden, m.dim, "visual MLP out"),
              (batch * (1 + m.num_classes), m.dim, hidden, "audio MLP in")]
    print("\nplain F.linear at the AVCT's shapes (fp32, forward):")
    print("| layer | tokens x in -> out | GFLOP/s |\n|---|---|---|")
    for rows, k, n, name in shapes:
        x, w = torch.randn(rows, k, device=device), torch.randn(n, k, device=device)
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.nn.functional.linear(x, w)
        sync(device)
        dt = (time.perf_counter() - t0) / repeats
        print(f"| {name} | {rows} x {k} -> {n} | {2 * rows * k * n / dt / 1e9:.0f} |")


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if "RANK" in os.environ:  # torchrun: DDP and (paper config) gathered negatives, as train.py
        from utils.dist import init_distributed
        device = init_distributed(device.type)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows are true fp32
        torch.backends.cudnn.allow_tf32 = False
    cfg, where = load_settings(args)
    F_, T = spec_bins(cfg)
    S = cfg.data.image_size
    peak, card = peak_tflops(device)
    m = cfg.model
    print(f"settings: {where} | C {m.num_classes}, D {m.dim}, L {m.depth}, width {m.width}, "
          f"image {S}x{S}, spectrogram {F_}x{T}, batch {args.batch}")
    print(f"device: {card or 'cpu'} | torch {torch.__version__} | {torch.get_num_threads()} "
          f"thread(s), {os.cpu_count()} cpus | median of {args.steps} steps after warm-up")
    variants = [parse_variant(v, args) for v in args.variants.split(",")] if args.variants \
        else [parse_variant("", args)]
    if args.compare_amp:
        compare_amp(cfg, args, device)
        if not args.variants:
            return []
    keep = []
    for opts in variants:
        if opts["amp"] == "bf16" and device.type != "cuda":
            print(f"skip {label(opts)}: bf16 autocast is CUDA-only in train.py")
        else:
            keep.append(opts)
    rows = measure_all(cfg, args, device, keep)
    print()
    print("| model | batch | step (ms, median) | samples/s | GFLOP/sample (fwd+bwd) | "
          "achieved TFLOP/s | of bf16 peak |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        frac = f"{100 * r['achieved'] / 1e12 / peak:.1f}%" if peak else "–"
        print(f"| {r['label']} | {args.batch} | {r['step'] * 1e3:.0f} | {r['rate']:.2f} | "
              f"{r['flops'] / 1e9:.2f} | {r['achieved'] / 1e12:.3f} | {frac} |")
    full = [r for r in rows if not r["opts"]["encoders_only"]]
    for e in (r for r in rows if r["opts"]["encoders_only"]):
        same = [r for r in full if {**r["opts"], "encoders_only": True} == e["opts"]]
        if same:
            print(f"\nAVGN part (AVCT, AVG, heads, class-aware loss) adds "
                  f"{100 * (same[0]['step'] / e['step'] - 1):+.1f}% to the encoders' step time "
                  f"({same[0]['label']} vs {e['label']})")
    if peak:
        print(f"peak used: {peak} TFLOP/s dense bf16 ({card})")

    if rows and args.breakdown:
        r = full[0] if full else rows[0]
        parts = breakdown(r["trainer"], r["batch"], args.steps, device)
        total = sum(parts.values())
        print(f"\nforward + backward by part ({r['label']}; optimiser step excluded):")
        print("| part | ms | share |\n|---|---|---|")
        for k, v in parts.items():
            print(f"| {k} | {v * 1e3:.0f} | {100 * v / total:.1f}% |")
        enc = [e for e in rows if e["opts"] == {**r["opts"], "encoders_only": True}]
        if enc:  # FLOP/s of each part: the encoders' FLOPs, and the rest of the full model's
            f_enc, f_rest = enc[0]["flops"] * args.batch, (r["flops"] - enc[0]["flops"]) * args.batch
            print(f"FLOPs: AVGN part {100 * f_rest / f_enc:.1f}% of the encoders'; achieved "
                  f"{f_enc / parts['encoders'] / 1e9:.0f} GFLOP/s (encoders), "
                  f"{f_rest / parts['AVCT + AVG + heads'] / 1e9:.0f} GFLOP/s (AVCT + AVG + heads)")
    if args.matmul:
        matmul_rates(cfg, args.batch, device)
    if rows and args.profile:
        r = full[0] if full else rows[0]
        print(f"\ntorch.profiler, one step of {r['label']} (top ops by self time):")
        print(profile(r["trainer"], r["batch"], device))
    if rows and args.loader != "none":
        r = rows[0]
        try:
            what, alone, both = loader_rates(cfg, args, device, r["trainer"])
        except ImportError as e:
            print(f"\nloader skipped: {e}")
        else:
            print(f"\nreal loader: {what}, {args.workers} workers, batch {args.batch}, "
                  f"{r['label']}")
            print("| measurement | samples/s | per worker |\n|---|---|---|")
            print(f"| loader alone | {alone:.1f} | {alone / max(args.workers, 1):.1f} |")
            print(f"| model step on random tensors | {r['rate']:.1f} | |")
            print(f"| end to end (loader + step) | {both:.1f} | |")
            verdict = "keeps up" if alone >= 1.1 * r["rate"] else "is the bottleneck"
            print(f"the loader {verdict} (loader alone {alone / r['rate']:.2f}x the step rate)")
    for r in rows:
        del r["trainer"]  # its DDP module must be gone before the process group ends
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from utils.dist import cleanup
        cleanup()
    return rows


if __name__ == "__main__":
    main()
