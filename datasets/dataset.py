"""One loading pipeline for every benchmark: records -> samples -> batches.

    ds = AudioVisualDataset(items, class_names, cfg.data, train=True, num_sources=2)
    ds.set_epoch(epoch)                      # new mixture partners and augmentations
    loader = DataLoader(ds, batch_size=..., collate_fn=collate)

Sample, for a canvas of k frames of size S = data.image_size:
    image [3, S, k*S] float (ImageNet-normalized) · spec [1, F, T] float · labels [C] multi-hot
    classes [N] long · gt [N, S, k*S] float in {0, 1} (zeros where a source has no box, and outside
    its frame) · frame_slot [N] long · id str (ids joined by '+') · index int (dataset index).
"""
import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .audio import SILENT_PEAK, load_window, peak_limit, spectrogram_from_config
from .image import (apply_image, eval_geometry, render_array_mask, render_boxes,
                    source_mask_on_canvas, train_geometry)
from .records import DataError, Record, load_mask_pkl

logger = logging.getLogger("avgn." + __name__)  # shown by utils.logger.setup_logging

CANVASES = ("concat", "single")


class MixtureSampler:
    """Seeded per-epoch partners: item i is joined by k-1 items whose classes are disjoint from i's
    and from each other's ("never the same class").

    A partner is uniform over all compatible items: pick a group of items with the same class set
    (weighted by its size) among the compatible groups, then an item of that group. Groups and
    their index arrays are built once; a draw costs O(groups), never a scan of the dataset.
    partners(i, epoch) depends only on (seed, epoch, i, k), so it is the same in every worker.

    item_classes: per item the list of its class names (or ids); k: sources per sample; seed: int.
    """

    def __init__(self, item_classes: Sequence[Sequence], k: int, seed: int = 0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.seed = k, int(seed)
        keys = [frozenset(c) for c in item_classes]
        group_of, groups = {}, []
        self.item_group = np.empty(len(keys), dtype=np.int64)
        for i, key in enumerate(keys):
            if key not in group_of:
                group_of[key] = len(groups)
                groups.append([])
            self.item_group[i] = group_of[key]
            groups[group_of[key]].append(i)
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.sizes = np.asarray([len(g) for g in groups], dtype=np.float64)
        vocab = sorted({c for key in group_of for c in key}, key=str)
        self.col = {c: j for j, c in enumerate(vocab)}
        self.group_keys = list(group_of)
        self.member = np.zeros((len(groups), len(vocab)), dtype=bool)  # [G, C]
        for key, g in group_of.items():
            self.member[g, [self.col[c] for c in key]] = True
        if k > 1 and len(vocab) < k:
            raise ValueError(f"cannot mix {k} sources of distinct classes from {len(vocab)} classes")

    def partners(self, index: int, epoch: int) -> List[int]:
        """The k-1 partner indices of item `index` for `epoch`."""
        if self.k == 1:
            return []
        rng = np.random.default_rng([self.seed, int(epoch), int(index), 7])
        used = self.member[self.item_group[index]].copy()  # [C]
        out = []
        for _ in range(self.k - 1):
            ok = ~(self.member & used).any(axis=1)  # [G] groups sharing no class with `used`
            w = np.cumsum(self.sizes * ok)
            if w[-1] == 0:
                raise ValueError(f"item {index}: no item with classes disjoint from "
                                 f"{sorted(np.flatnonzero(used))} to mix")
            g = int(np.searchsorted(w, rng.random() * w[-1], side="right"))
            j = int(self.groups[g][rng.integers(len(self.groups[g]))])
            out.append(j)
            used |= self.member[g]
        return out

    def pairs(self, epoch: int) -> np.ndarray:
        """All partners for `epoch`: [num_items, k-1] (for inspection and tests)."""
        return np.asarray([self.partners(i, epoch) for i in range(len(self.item_group))],
                          dtype=np.int64).reshape(len(self.item_group), self.k - 1)


class AudioVisualDataset(torch.utils.data.Dataset):
    """Records -> samples, for every benchmark.

    Arguments:
        items: list of items; an item is a sequence of `Record`s placed side by side on the canvas
            (one record: one frame, which may hold several sources, e.g. MUSIC-Duet).
        class_names: sorted training class names; class index = position.
        data_cfg: `DataConfig` (image_size, resize_scale, audio, on_error, ...).
        train: random resize-crop + flip and per-epoch mixtures; else resize only.
        num_sources: k (train only): each item (of one record) is joined by k-1 partner items of
            other classes, drawn per epoch by `MixtureSampler`; their frames go side by side
            (concat canvas) and their waveforms are summed then peak-limited to [-1, 1].
        canvas: 'concat' (k frames side by side, W = k * H) or 'single' (one frame; mixing refused).
        seed: seed of the mixtures and augmentations (same seed and epoch -> same samples).
        origin: where the items come from (e.g. the list files), for messages.
        report: None, or a list (checking mode): every bad item is dropped at start-up and its
            message appended, whatever data_cfg.on_error says.

    Extension points (a subclass may render items in memory instead of reading files):
        load_frame(record) -> PIL.Image RGB, the full frame;
        load_audio(record) -> np.ndarray float32 [round(seconds * sample_rate)], mono, already the
            window (centered on record.audio_offset or the clip center);
        load_source_masks(record, geometry) -> per source a mask [h, w] or None (no annotation);
        check_record(record) -> error message or None (start-up check; default: files exist,
            classes known, mask files present).
    Bad input: with data_cfg.on_error == 'raise' the first bad item found at start-up
    raises `DataError` naming the file and the list line; with 'skip' bad items are dropped at
    start-up and counted in one log line. A file that exists but cannot be decoded always raises
    when loaded — another sample is never substituted.
    """

    def __init__(self, items: Sequence[Sequence[Record]], class_names: Sequence[str], data_cfg,
                 train: bool, num_sources: int = 1, canvas: str = "concat", seed: int = 0,
                 check: bool = True, origin: str = "", report: Optional[list] = None):
        if canvas not in CANVASES:
            raise ValueError(f"canvas must be one of {CANVASES}, got '{canvas}'")
        if data_cfg.on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error must be 'raise' or 'skip', got '{data_cfg.on_error}'")
        self.items = [tuple(it) if isinstance(it, (list, tuple)) else (it,) for it in items]
        self.class_names = list(class_names)
        self.class_index = {c: i for i, c in enumerate(self.class_names)}
        self.cfg, self.train, self.canvas, self.seed = data_cfg, bool(train), canvas, int(seed)
        self.origin = origin or "items given in memory"
        self.num_sources = int(num_sources) if train else 1
        self.size = int(data_cfg.image_size)
        self.audio_cfg = data_cfg.audio
        if canvas == "single" and any(len(it) > 1 for it in self.items):
            raise ValueError("canvas 'single' holds one frame per item; got items of several frames")
        if self.num_sources > 1 and canvas == "single":
            raise ValueError("canvas 'single' cannot mix clips (data.num_sources > 1): use "
                             "canvas 'concat', or num_sources 1 for frames that already hold "
                             "several sources (MUSIC-Duet)")
        if self.num_sources > 1 and any(len(it) > 1 for it in self.items):
            raise ValueError("training mixtures need items of one frame")
        if data_cfg.max_items and len(self.items) > data_cfg.max_items:
            self.items = self.items[:data_cfg.max_items]
        self.num_dropped = 0
        if check:
            self._check_items(report)
        self.mixer = MixtureSampler([self.item_classes(i) for i in range(len(self.items))],
                                    self.num_sources, self.seed) if self.num_sources > 1 else None
        self._epoch = torch.zeros(1, dtype=torch.long).share_memory_()  # seen by live workers

    # ------------------------------------------------------------------ hooks
    def load_frame(self, record: Record) -> Image.Image:
        try:
            with Image.open(record.frame) as img:
                short = (max(int(round(self.size * self.cfg.resize_scale)), self.size)
                         if self.train else self.size)
                img.draft("RGB", (short, short))  # JPEG: decode at 1/2, 1/4.. when still >= short
                return img.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"frame not found: {record.frame}") from None
        except Exception as e:
            raise DataError(f"cannot decode frame {record.frame}: {e}") from e

    def load_audio(self, record: Record) -> np.ndarray:
        a = self.audio_cfg
        return load_window(record.audio, a.sample_rate, a.seconds, record.audio_offset)

    def load_source_masks(self, record: Record, geometry) -> List[Optional[np.ndarray]]:
        masks = [None] * len(record.classes)
        if record.mask_path is not None:
            masks[0] = render_array_mask(load_mask_pkl(record.mask_path), geometry)
        elif record.boxes is not None:
            for n, boxes in enumerate(record.boxes):
                masks[n] = render_boxes(boxes, geometry)
        return masks

    def check_record(self, record: Record) -> Optional[str]:
        for c in record.classes:
            if c not in self.class_index:
                return f"unknown class '{c}' (not among the {len(self.class_names)} training classes)"
        if record.boxes is not None and len(record.boxes) != len(record.classes):
            return f"{len(record.classes)} classes but {len(record.boxes)} box lists"
        for path, what in ((record.frame, "frame"), (record.audio, "audio"),
                           (record.mask_path, "mask")):
            if path is not None and not os.path.isfile(path):
                return f"{what} file not found: {path}"
        return None

    # ------------------------------------------------------------------ bookkeeping
    def _check_items(self, report=None):
        kept, bad, first = [], 0, None
        for it in self.items:
            msg = next(((r, m) for r in it for m in [self.check_record(r)] if m), None)
            if msg is None:
                kept.append(it)
                continue
            r, m = msg
            text = f"{m} (list entry {r.where or r.id})"
            if report is not None:
                report.append(text)
            elif self.cfg.on_error == "raise":
                raise DataError(text + "; data.on_error=skip drops such items from training "
                                "lists (test lists are used whole: to evaluate a subset, write a "
                                "list without them)")
            bad += 1
            first = first or text
        if bad and not kept and report is None:
            raise DataError(f"all {bad} items of {self.origin} have bad input "
                            f"(data.on_error=skip); first: {first}")
        if bad and report is None:
            logger.warning("dropped %d of %d items of %s with bad input (data.on_error=skip); "
                           "first: %s", bad, len(self.items), self.origin, first)
        self.items = kept
        self.num_dropped = bad

    def item_classes(self, index: int) -> List[str]:
        return [c for r in self.items[index] for c in r.classes]

    def set_epoch(self, epoch: int) -> None:
        """New mixture partners and augmentations; visible to running (even persistent) workers."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def records(self, index: int) -> List[Record]:
        """The records of sample `index` this epoch (the item, then its mixture partners)."""
        recs = list(self.items[index])
        if self.mixer is not None:
            for j in self.mixer.partners(index, self.epoch):
                recs.extend(self.items[j])
        return recs

    def __len__(self) -> int:
        return len(self.items)

    # ------------------------------------------------------------------ sample
    def __getitem__(self, index: int) -> dict:
        recs = self.records(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 3])
        try:
            return self._sample(index, recs, rng)
        except DataError as e:
            where = ", ".join(r.where or r.id for r in recs)
            raise DataError(f"{e} (list entry {where})") from e

    def _sample(self, index, recs, rng):
        s, k = self.size, len(recs)
        frames, classes, slots, masks = [], [], [], []
        for slot, rec in enumerate(recs):
            img = self.load_frame(rec)
            g = (train_geometry(img.width, img.height, s, self.cfg.resize_scale, rng)
                 if self.train else eval_geometry(s))
            frames.append(apply_image(img, g, self.cfg.interpolation))  # [3, s, s]
            for n, m in enumerate(self.load_source_masks(rec, g)):
                classes.append(self.class_index[rec.classes[n]])
                slots.append(slot)
                masks.append(source_mask_on_canvas(m, slot, k, s, s))  # [s, k*s]
        image = torch.cat(frames, dim=2)  # [3, s, k*s]
        waves = [self.load_audio(rec) for rec in recs]
        n = int(round(self.audio_cfg.seconds * self.audio_cfg.sample_rate))
        for rec, w in zip(recs, waves):
            if w.ndim != 1 or len(w) != n:
                raise ValueError(f"load_audio({rec.id}) returned shape {w.shape}, expected [{n}]")
        wave = waves[0] if k == 1 else peak_limit(np.sum(waves, axis=0))
        labels = torch.zeros(len(self.class_names))
        labels[classes] = 1.0
        return {
            "image": image,
            "spec": spectrogram_from_config(wave, self.audio_cfg),  # [1, F, T]
            "labels": labels,  # [C]
            "classes": torch.tensor(classes, dtype=torch.long),  # [N]
            "gt": torch.stack(masks) if masks else torch.zeros(0, s, k * s),  # [N, s, k*s]
            "frame_slot": torch.tensor(slots, dtype=torch.long),  # [N]
            "id": "+".join(r.id for r in recs),
            "index": int(index),
            # evaluation: a source whose window is silent is scored, but counted (num_silent)
            "silent": not self.train and any(float(np.abs(w).max(initial=0.0)) < SILENT_PEAK
                                             for w in waves),
        }


def collate(batch: List[dict]) -> dict:
    """List of samples -> batch; N padded to the largest with -1 (classes, frame_slot) and zero
    masks (gt). Output: image [B, 3, H, W], spec [B, 1, F, T], labels [B, C], classes [B, N],
    gt [B, N, H, W], frame_slot [B, N], id list[str], index [B] long, silent [B] bool."""
    n = max(len(b["classes"]) for b in batch)
    h, w = batch[0]["image"].shape[1:]
    classes = torch.full((len(batch), n), -1, dtype=torch.long)
    slots = torch.full((len(batch), n), -1, dtype=torch.long)
    gt = torch.zeros(len(batch), n, h, w)
    for i, b in enumerate(batch):
        m = len(b["classes"])
        classes[i, :m] = b["classes"]
        slots[i, :m] = b["frame_slot"]
        gt[i, :m] = b["gt"]
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "spec": torch.stack([b["spec"] for b in batch]),
        "labels": torch.stack([b["labels"] for b in batch]),
        "classes": classes,
        "gt": gt,
        "frame_slot": slots,
        "id": [b["id"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
        "silent": torch.tensor([b.get("silent", False) for b in batch]),
    }
