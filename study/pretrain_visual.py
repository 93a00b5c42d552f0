"""An ImageNet stand-in for the synthetic benchmark: pretrain the visual ResNet18 trunk on
object recognition of rendered frames, with no audio, and write it in torchvision's layout.

    python -m study.pretrain_visual --config configs/synthetic.yaml --out data/trunk_synthetic.pth
    python train.py --config configs/synthetic.yaml model.pretrained=imagenet \\
        model.pretrained_path=data/trunk_synthetic.pth

The paper starts its visual encoder from ImageNet; here ImageNet cannot be downloaded, so this
trains the same trunk (the config's model.width, model.visual_stride and data.image_size) on a
multi-label task, "which object classes are visible", on frames drawn from their own seed space
(datasets.render split 'pretrain': disjoint from every benchmark item) and in another style than
the benchmark's frames, as ImageNet differs from VGGSound: a high-contrast patterned background
instead of low-contrast clutter, 1 to 4 objects of any classes drawn on a canvas 1 to 1.6 times
larger and resized (smaller objects, other placements), 0 to 2 occluding rectangles, flips and
brightness changes. The head (global average pooling + fc) is saved as `fc.*`, which the loader
drops, like ImageNet's classifier. Reports per-class accuracy, exact-match rate and mAP on
held-out frames, and writes them beside the weights (<out>.json).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import average_precision_score

from datasets.image import IMAGENET_MEAN, IMAGENET_STD
from datasets.render import CLASS_NAMES, draw_objects, item_rng
from models.encoders import ResNet18Trunk
from utils.config import load_config
from utils.logger import logger, progress, setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="config whose visual trunk to pretrain")
    p.add_argument("--out", required=True, help="state dict to write (torchvision layout)")
    p.add_argument("--items", type=int, default=16000, help="training frames (rendered once)")
    p.add_argument("--held-out", type=int, default=1000, help="frames for the report")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0, help="generator and weight seed")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = p.parse_intermixed_args(argv)
    for key in ("items", "held_out", "epochs", "batch"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.items < args.batch:
        p.error(f"--items {args.items} gives no full batch of --batch {args.batch}")
    return args


def _pattern(rng, size):
    """High-contrast background: two crossed colored sinusoids, unlike the benchmark's clutter."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    for ch in range(3):
        fx, fy = rng.uniform(1, 6, size=2)
        img[..., ch] = 0.5 + 0.35 * np.sin(2 * math.pi * (fx * x + fy * y) + rng.uniform(0, 6.3))
    return img


def render_frame(index, size, seed):
    """Frame `index` of the pretraining split -> (image [S, S, 3] uint8, labels [C] multi-hot)."""
    rng = item_rng("pretrain", seed, index, "frame")
    k = int(rng.integers(1, 5))
    classes = [CLASS_NAMES[i] for i in rng.choice(len(CLASS_NAMES), k, replace=False)]
    canvas = int(round(size * rng.uniform(1.0, 1.6)))  # objects drawn smaller than the benchmark's
    img, _, _ = draw_objects(rng, classes, canvas, _pattern)
    img = np.clip(img * rng.uniform(0.7, 1.2), 0, 1)  # brightness
    frame = Image.fromarray((img * 255 + 0.5).astype(np.uint8)).resize((size, size),
                                                                       Image.BILINEAR)
    image = np.asarray(frame).copy()
    for _ in range(int(rng.integers(0, 3))):  # occluders, at most a quarter of the side each
        h, w = (int(v) for v in rng.integers(size // 10, size // 4 + 1, size=2))
        y0, x0 = (int(v) for v in rng.integers(0, size - h + 1, size=2))
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, size=3)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    labels = np.zeros(len(CLASS_NAMES), np.float32)
    labels[[CLASS_NAMES.index(c) for c in classes]] = 1
    return np.ascontiguousarray(image), labels


def render_set(first, count, size, seed):
    """Frames first .. first + count - 1 as normalized tensors [N, 3, S, S] and labels [N, C]."""
    images, labels = zip(*(render_frame(i, size, seed)
                           for i in progress(range(first, first + count), desc="render")))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)  # [N, 3, S, S]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    x = (x - mean) / std
    return x, torch.from_numpy(np.stack(labels))


class Classifier(nn.Module):
    """The visual trunk, global average pooling and a linear layer named as torchvision's `fc`."""

    def __init__(self, width, stride, num_classes):
        super().__init__()
        self.trunk = ResNet18Trunk(3, width, stride)
        self.fc = nn.Linear(self.trunk.out_channels, num_classes)

    def forward(self, x):
        return self.fc(self.trunk(x).mean(dim=(2, 3)))  # [B, C] logits


@torch.no_grad()
def held_out_metrics(model, x, y, batch=256):
    model.eval()
    scores = torch.cat([model(x[i:i + batch]).sigmoid() for i in range(0, len(x), batch)])
    pred = scores >= 0.5
    return {"per_class_accuracy": float((pred == y.bool()).float().mean()),
            "exact_match": float((pred == y.bool()).all(dim=1).float().mean()),
            "mAP": float(average_precision_score(y.numpy(), scores.numpy(), average="macro"))}


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, args.overrides)
    m, size, t0 = cfg.model, cfg.data.image_size, time.time()
    torch.manual_seed(args.seed)
    model = Classifier(m.width, m.visual_stride, len(CLASS_NAMES))
    x, y = render_set(0, args.items, size, args.seed)
    x_test, y_test = render_set(args.items, args.held_out, size, args.seed)
    logger.info("rendered %d + %d frames of %d px in %.0f s", args.items, args.held_out, size,
                time.time() - t0)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        order = torch.randperm(len(x), generator=g)
        steps = len(x) // args.batch
        for step in progress(range(steps), desc=f"epoch {epoch}"):
            idx = order[step * args.batch:(step + 1) * args.batch]
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        logger.info("epoch %d: loss %.4f; held out: %s", epoch, total / steps,
                    json.dumps(held_out_metrics(model, x_test, y_test)))
    given = sys.argv[1:] if argv is None else argv
    report = {"command": "python -m study.pretrain_visual " + " ".join(given),
              "config": args.config, "width": m.width, "visual_stride": m.visual_stride,
              "image_size": size, "items": args.items, "epochs": args.epochs, "seed": args.seed,
              "held_out": held_out_metrics(model, x_test, y_test),
              "minutes": round((time.time() - t0) / 60, 2)}
    state = {k.removeprefix("trunk."): v for k, v in model.state_dict().items()}  # torchvision's
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(state, args.out)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(report, f, indent=1)
    logger.info("wrote %s in %.1f min; held out: %s", args.out, report["minutes"],
                report["held_out"])
    return report


if __name__ == "__main__":
    main()
