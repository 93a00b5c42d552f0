"""Overlays a person can read: the frame, then one heat-map per source, labelled with its class
and audio presence score, with the ground-truth region outlined."""
import os

import numpy as np
import torch

from models import localization_maps, presence, upsample_maps

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def to_rgb(image):
    """ImageNet-normalised [3, H, W] tensor -> [H, W, 3] float in [0, 1]."""
    return np.clip(image.permute(1, 2, 0).cpu().numpy() * STD + MEAN, 0, 1)


def plot_overlay(path, image, maps, gts, names, scores=None, title=None):
    """Write one PNG.

    Args:
        image: [3, H, W] normalised frame (canvas); maps: [N, H, W] scores; gts: [N, H, W] masks;
        names: N class names; scores: N presence scores or None.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = to_rgb(image)
    n = len(names)
    h, w = rgb.shape[:2]
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1) * w / h, 3.4), squeeze=False)
    axes = axes[0]
    axes[0].imshow(rgb)
    axes[0].set_title(title or "frame", fontsize=9)
    for i in range(n):
        m = maps[i].float().cpu().numpy()
        m = (m - m.min()) / (m.max() - m.min() + 1e-12)
        axes[i + 1].imshow(rgb)
        axes[i + 1].imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        label = names[i] if scores is None else f"{names[i]} (p={float(scores[i]):.2f})"
        axes[i + 1].set_title(label, fontsize=9)
        for ax in (axes[0], axes[i + 1]):
            if gts[i].sum() > 0:
                ax.contour(gts[i].cpu().numpy(), levels=[0.5], colors="white", linewidths=1.5)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@torch.no_grad()
def save_overlays(model, dataset, class_names, device, out_dir, count):
    """Overlays of the first `count` items of `dataset` under `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    for i in range(min(count, len(dataset))):
        s = dataset[i]
        out = model(s["image"][None].to(device), s["spec"][None].to(device))
        classes = s["classes"][None].to(device)  # [1, N]
        maps = upsample_maps(localization_maps(out, classes), s["gt"].shape[-2:])[0]
        p = presence(out)[0]
        names = [class_names[c] for c in s["classes"].tolist()]
        safe = "".join(ch if ch.isalnum() or ch in "-_+" else "_" for ch in s["id"])[:80]
        plot_overlay(os.path.join(out_dir, f"{i:03d}_{safe}.png"), s["image"], maps, s["gt"],
                     names, p[s["classes"]].cpu(), title=s["id"][:40])
