"""Overlays a person can read. plot_overlay: the frame, then one heat-map per source, labeled
with its class and audio presence score, with the ground-truth region outlined (test.py).
Overlay: the heat-maps of several classes blended onto a video frame in one color each, with a
legend of names and scores (demo.py)."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# class colors, by class index (assign_colors); neighbors are far apart
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128))


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


def assign_colors(keys):
    """Class index -> PALETTE[index % len(PALETTE)], so a class has the same color in every video
    of a checkpoint; when two classes of one video would share a color, the later one (in order
    of first appearance) takes the next free one. A negative key (class-agnostic) starts at the
    first color. Returns {key: (r, g, b)}."""
    colors = {}
    for k in keys:
        if k in colors:
            continue
        first = max(k, 0) % len(PALETTE)
        free = [PALETTE[(first + j) % len(PALETTE)] for j in range(len(PALETTE))
                if PALETTE[(first + j) % len(PALETTE)] not in colors.values()]
        colors[k] = free[0] if free else PALETTE[first]
    return colors


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def legend(lines, height):
    """RGBA legend image, one row per (color or None, text): a color square (if any), the text.
    The font size follows the `height` of the frame it goes on."""
    size = max(10, int(round(height / 36)))
    font = _font(size)
    pad, gap = max(2, size // 4), size + max(2, size // 3)
    width = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font))
                for _, text in lines) + 2 * pad + gap
    img = Image.new("RGBA", (width, len(lines) * gap + 2 * pad), (0, 0, 0, 150))
    d = ImageDraw.Draw(img)
    for row, (color, text) in enumerate(lines):
        y = pad + row * gap
        if color is not None:
            d.rectangle((pad, y + 1, pad + size - 2, y + size - 1), fill=tuple(color) + (255,))
        d.text((pad + (gap if color is not None else 0), y), text, font=font,
               fill=(255, 255, 255, 255))
    return img


class Overlay:
    """Heat-maps and a legend at display size, ready to blend:
    out = frame * keep + paint (keep [H, W, 1], paint [H, W, 3], float32), the legend top-left.

    Args:
        maps: [N, H, W] float tensor of scores at display size (None or N = 0: no heat-map);
            each map is min-max normalized, its opacity 0.7 * normalized ** 2.
        colors: N (r, g, b) colors, one per map.
        lines: legend rows, (color or None, text) each (see `legend`).
        display: (H, W) of the frames.
    """

    def __init__(self, maps, colors, lines, display):
        H, W = display
        keep = np.ones((H, W, 1), np.float32)
        paint = np.zeros((H, W, 3), np.float32)
        if len(colors):
            lo = maps.flatten(1).amin(1)[:, None, None]
            hi = maps.flatten(1).amax(1)[:, None, None]
            alpha = (0.7 * ((maps - lo) / (hi - lo).clamp_min(1e-6)) ** 2).numpy()  # [N, H, W]
            rgb = np.array(colors, np.float32)  # [N, 3]
            total = alpha.sum(0)[..., None]  # [H, W, 1]
            mixed = np.einsum("nhw,nc->hwc", alpha, rgb) / np.maximum(total, 1e-6)  # [H, W, 3]
            a = 1.0 - np.prod(1.0 - alpha, axis=0)[..., None]  # [H, W, 1] combined opacity
            keep, paint = 1.0 - a, mixed * a
        self.keep, self.paint = keep, paint
        lg = legend(lines, H)
        lw, lh = min(lg.width, W), min(lg.height, H)
        m = max(1, H // 60)
        lw, lh = min(lw, W - m), min(lh, H - m)
        rgba = np.asarray(lg, np.float32)[:lh, :lw] / 255.0  # [lh, lw, 4]
        la = rgba[..., 3:]
        self.keep[m:m + lh, m:m + lw] *= 1.0 - la
        self.paint[m:m + lh, m:m + lw] = self.paint[m:m + lh, m:m + lw] * (1.0 - la) \
            + rgba[..., :3] * 255.0 * la

    def blend(self, rgb):
        """rgb [H, W, 3] uint8 -> blended [H, W, 3] uint8."""
        return np.clip(rgb * self.keep + self.paint + 0.5, 0, 255).astype(np.uint8)
