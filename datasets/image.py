"""Images: frame transforms, box / mask rendering on the transformed frame, canvases.

A frame transform is a `Geometry`: resize the frame to (rw, rh), crop (x0, y0, size, size), then
optionally flip horizontally. The image and every ground-truth mask go through the same geometry,
so masks follow crops and flips; boxes are rendered directly at the output resolution.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Geometry:
    rw: int  # resized width
    rh: int  # resized height
    x0: int  # crop origin in the resized frame
    y0: int
    w: int  # output width
    h: int  # output height
    flip: bool


def eval_geometry(size: int) -> Geometry:
    """Test: resize to size x size."""
    return Geometry(size, size, 0, 0, size, size, False)


def train_geometry(width: int, height: int, size: int, resize_scale: float,
                   rng: np.random.Generator) -> Geometry:
    """Train: resize the short side to round(size * resize_scale), random size x size crop,
    horizontal flip with probability 1/2."""
    short = max(int(round(size * resize_scale)), size)
    if width <= height:
        rw, rh = short, max(int(round(height * short / width)), short)
    else:
        rw, rh = max(int(round(width * short / height)), short), short
    x0 = int(rng.integers(0, rw - size + 1))
    y0 = int(rng.integers(0, rh - size + 1))
    return Geometry(rw, rh, x0, y0, size, size, bool(rng.random() < 0.5))


INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def apply_image(img: Image.Image, g: Geometry, interpolation: str = "bilinear") -> torch.Tensor:
    """PIL RGB frame -> ImageNet-normalized float tensor [3, h, w]; resized with
    `interpolation` (bilinear, or bicubic as the released datasets.py)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got "
                         f"{interpolation!r}")
    if img.mode != "RGB":
        img = img.convert("RGB")
    img = img.resize((g.rw, g.rh), INTERPOLATIONS[interpolation])
    if (g.x0, g.y0, g.w, g.h) != (0, 0, g.rw, g.rh):
        img = img.crop((g.x0, g.y0, g.x0 + g.w, g.y0 + g.h))
    if g.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # [3, h, w]
    x = x.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """The inverse of the normalization: [3, H, W] tensor -> [H, W, 3] float in [0, 1]."""
    rgb = image.detach().cpu().permute(1, 2, 0).numpy() * IMAGENET_STD + np.array(IMAGENET_MEAN)
    return np.clip(rgb, 0, 1)


def boxes_to_mask(boxes: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    """Union of normalized xyxy boxes -> binary float32 mask [h, w].

    Box (x1, y1, x2, y2) covers columns round(x1 * w) .. round(x2 * w) - 1 and likewise rows, so its
    area in pixels is (round(x2 w) - round(x1 w)) * (round(y2 h) - round(y1 h)); empty boxes add
    nothing.
    """
    return render_boxes(boxes, Geometry(w, h, 0, 0, w, h, False))


def render_boxes(boxes: Sequence[Sequence[float]], g: Geometry) -> np.ndarray:
    """Normalized xyxy boxes of the original frame -> binary mask [g.h, g.w] after geometry g."""
    m = np.zeros((g.h, g.w), dtype=np.float32)
    for x1, y1, x2, y2 in boxes:
        c1 = min(max(int(round(x1 * g.rw)) - g.x0, 0), g.w)
        c2 = min(max(int(round(x2 * g.rw)) - g.x0, 0), g.w)
        r1 = min(max(int(round(y1 * g.rh)) - g.y0, 0), g.h)
        r2 = min(max(int(round(y2 * g.rh)) - g.y0, 0), g.h)
        if c2 > c1 and r2 > r1:
            m[r1:r2, c1:c2] = 1.0
    return m[:, ::-1].copy() if g.flip else m


def render_array_mask(mask: np.ndarray, g: Geometry) -> np.ndarray:
    """2-D mask of the original frame (any size) -> binary mask [g.h, g.w] after geometry g
    (nearest resize of mask > 0, then crop and flip)."""
    img = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    img = img.resize((g.rw, g.rh), Image.NEAREST)
    m = (np.asarray(img) > 0).astype(np.float32)[g.y0:g.y0 + g.h, g.x0:g.x0 + g.w]
    return m[:, ::-1].copy() if g.flip else m


def place_on_canvas(frames: List[torch.Tensor]) -> torch.Tensor:
    """k frames [3, h, w] side by side -> [3, h, k * w]."""
    return torch.cat(frames, dim=2)


def source_mask_on_canvas(mask: Optional[np.ndarray], slot: int, k: int, h: int, w: int) -> torch.Tensor:
    """A source's mask [h, w] of frame `slot` -> [h, k * w] with zeros outside its frame
    (all zeros when mask is None)."""
    out = torch.zeros(h, k * w)
    if mask is not None:
        out[:, slot * w:(slot + 1) * w] = torch.from_numpy(mask)
    return out
