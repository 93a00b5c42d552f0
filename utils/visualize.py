"""Overlays a person can read: the frame, then one heat-map per source, labeled with its class
and audio presence score, with the ground-truth region outlined."""


def plot_overlay(path, rgb, maps, gts, names, scores=None, title=None):
    """Write one PNG.

    Args:
        rgb: [H, W, 3] frame (canvas) in [0, 1]; maps: [N, H, W] scores; gts: [N, H, W] masks;
        names: N class names; scores: N presence scores or None.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
