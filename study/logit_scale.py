"""The released model's localization logit <f^v_p, g^a_c> / tau, with g^a not normalized, against
the cosine forms' cos(f^v_p, g^a_c) / tau: at initialization and in trained runs.

    python -m study.logit_scale --out study/results/released_scale/logit_scale.md
    python -m study.logit_scale --runs study/results/released/runs --data-root data/synthetic \
        --out study/results/released_scale/logit_scale_trained.md

At initialization (seeded random weights and inputs of each config's sizes, a batch of B per
process, eval mode): the mean length of the audio group tokens g^a, the logit scale |g^a| / tau
(the largest logit a patch can reach; the cosine forms' is 1 / tau), and the `loc` term against
its value at chance, 2 ln B (both directions of a B x B cross-entropy), for the released model
(`model.arch=authors`) and the cosine form of its objective (`model.arch=paper
model.loc_features=raw loss.symmetric=own_class`), at configs/synthetic.yaml's CPU size with the
paper configs' epsilon and initialization (as study.reproduce's `released` variant) and at
configs/paper.yaml's size.

With --runs DIR: every DIR/<run>/checkpoint.pth on the first --items items of synthetic:test:
the mean |g^a|, and how much the audio presence logits logits_a [B, C] move with the sound, the
standard deviation over the items (mean over the classes), beside their spread over the classes
(standard deviation over the classes, mean over the items).
"""
import argparse
import math
import os
import re
import sys

import torch

from engine import build_test_sets, load_trained
from losses import build_criterion
from models import build_model
from study.reproduce import PAPER_INIT
from utils.config import load_config
from utils.errors import run_cli
from utils.logger import git_sha

SIZES = {  # name -> (config, overrides)
    "CPU size (configs/synthetic.yaml)": ("configs/synthetic.yaml", PAPER_INIT),
    "paper size (configs/paper.yaml)": ("configs/paper.yaml", ("model.pretrained=none",)),
}
FORMS = {"released (model.arch=authors)": ("model.arch=authors", "loss.symmetric=none"),
         "cosine form (model.arch=paper, raw, own_class)": (
             "model.arch=paper", "model.loc_features=raw", "loss.symmetric=own_class")}


@torch.no_grad()
def at_init(config, overrides, batch, seed=0):
    """{dim, tau, '|g^a|', scale, loc, chance} of a fresh model of `config` + `overrides` on a random
    batch of single sources."""
    cfg = load_config(config, list(overrides) + ["model.num_classes=10"])
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    criterion = build_criterion(cfg, model)
    audio = cfg.data.audio
    bins = audio.freq_bins or audio.n_fft // 2 + 1
    image = torch.randn(batch, 3, cfg.data.image_size, cfg.data.image_size)
    spec = torch.randn(batch, 1, bins, audio.frames)
    classes = torch.randint(0, 10, (batch, 1))
    labels = torch.nn.functional.one_hot(classes[:, 0], 10).float()
    out = model(image, spec)
    length = out["audio_groups"].norm(dim=-1).mean().item()
    scale = (length if not out.get("cosine", True) else 1.0) / cfg.loss.tau
    return {"dim": cfg.model.dim, "tau": cfg.loss.tau, "|g^a|": length, "scale": scale,
            "loc": criterion(out, classes, labels)["loc"].item(), "chance": 2 * math.log(batch)}


@torch.no_grad()
def trained(ckpt, data_root, items):
    """{'|g^a|', 'over items', 'over classes'} of a trained checkpoint on synthetic:test."""
    overrides = ["eval.test_sets=[synthetic:test]"] + ([f"data.root={data_root}"] if data_root
                                                        else [])
    saved, cfg, model = load_trained(ckpt, "cpu", overrides)
    (_, dataset), = build_test_sets(cfg, saved["class_names"])
    batch = [dataset[i] for i in range(min(items, len(dataset)))]
    out = model(torch.stack([b["image"] for b in batch]), torch.stack([b["spec"] for b in batch]))
    if out["token_logits"] is None:  # EZ-VSL: no class tokens, no presence logits
        return None
    logits = out["logits_a"]  # [B, C]
    return {"|g^a|": out["audio_groups"].norm(dim=-1).mean().item(),
            "over items": logits.std(dim=0).mean().item(),
            "over classes": logits.std(dim=1).mean().item(),
            "arch": cfg.model.arch, "tau": cfg.loss.tau}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--batch", type=int, default=32, help="batch at init (32: per GPU in the "
                   "paper configs)")
    p.add_argument("--runs", default=None, help="folder of run folders: report trained runs")
    p.add_argument("--data-root", default=None, help="data.root of the runs' synthetic benchmark")
    p.add_argument("--items", type=int, default=128)
    args = p.parse_args(argv)
    lines = [f"`python -m study.logit_scale {' '.join(argv if argv is not None else sys.argv[1:])}`"
             f" (commit {git_sha()})", ""]
    if args.runs is None:
        lines += ["| size | form | D | tau | mean g^a length | logit scale | loc at init | "
                  "loc at chance (2 ln B) |", "|---|---|---|---|---|---|---|---|"]
        for size, (config, base) in SIZES.items():
            for form, keys in FORMS.items():
                r = at_init(config, tuple(base) + keys, args.batch)
                lines.append(f"| {size} | {form} | {r['dim']} | {r['tau']} | {r['|g^a|']:.2f} | "
                             f"{r['scale']:.0f} | {r['loc']:.2f} | {r['chance']:.2f} |")
    else:
        lines += ["| run | arch | tau | mean g^a length | logits_a std over items | "
                  "logits_a std over classes |", "|---|---|---|---|---|---|"]
        names = sorted(n for n in os.listdir(args.runs)
                       if os.path.isfile(os.path.join(args.runs, n, "checkpoint.pth")))
        if not names:
            p.error(f"--runs {args.runs}: no <run>/checkpoint.pth in it")
        names.sort(key=lambda n: (re.sub(r"_s\d+$", "", n), n))
        for name in names:
            r = trained(os.path.join(args.runs, name, "checkpoint.pth"), args.data_root,
                        args.items)
            if r is None:
                continue
            lines.append(f"| {name} | {r['arch']} | {r['tau']} | {r['|g^a|']:.2f} | "
                         f"{r['over items']:.4f} | {r['over classes']:.4f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    run_cli(main)  # a missing folder or a checkpoint that does not load: one line, exit 2
