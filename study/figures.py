"""Figures from a checkpoint: t-SNE of the class-aware embeddings (the paper's Figure 4), and the
model outputs behind them (embeddings, audio presence, map peaks) for any benchmark.

    python -m study.figures --ckpt run/checkpoint.pth --tsne tsne.png
    python -m study.figures --ckpt run/best.pth --tsne tsne_val.png --split val --max-items 300 \
        data.root=/data/vggss

Embeddings per test item b with (first) labeled class c_b: AVGN (class-aware) uses g^a[b, c_b]
(audio_groups) and g^v[b, c_b] (visual_groups, also when the maps use raw patch features); EZ-VSL and the
AVGN variant without tokens and grouping use f^a (the pooled audio token) and the patch features
f^v max-pooled over the patches. Embeddings are L2-normalized before t-SNE. The class-aware
embeddings are indexed by the labeled class, so they start apart (each class has its own token);
what training changes is how tightly the items of a class gather around it. Localization overlays come from
`python test.py --ckpt X --save-vis N`.
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from datasets import build_dataset, build_loader
from engine import load_trained, to_device
from models import localization_maps, presence


@torch.no_grad()
def model_outputs(model, dataset, device="cpu", batch_size=64, max_items=0, num_workers=0):
    """Run `model` over (the first `max_items` items of) `dataset`; one row per item.

    Returns dict of numpy arrays (M items, C classes, D embedding size):
        index [M] dataset index; cls [M] first labeled class; labels [M, C] multi-hot;
        presence [M, C] audio presence p^a; audio_emb, visual_emb [M, D] (see module docstring);
        peak [M] max over the feature grid of the raw cosine map of class cls;
        audio_is_group, visual_is_group [M] bool: the embedding is a class group (else f^a / pooled f^v).
    """
    if max_items and len(dataset) > max_items:
        dataset = torch.utils.data.Subset(dataset, range(max_items))
    loader = build_loader(dataset, batch_size, False, num_workers)
    rows = {k: [] for k in ("index", "cls", "labels", "presence", "audio_emb", "visual_emb", "peak",
                            "audio_is_group", "visual_is_group")}
    for batch in loader:
        batch = to_device(batch, device)
        out = model(batch["image"], batch["spec"])
        cls = batch["classes"][:, :1]  # [B, 1] first source
        idx = cls.unsqueeze(-1).expand(-1, -1, out["fv"].shape[-1])  # [B, 1, D]
        ga = out["audio_groups"]  # [B, C, D] class-aware, or [B, 1, D]
        audio = ga.gather(1, idx) if ga.shape[1] > 1 else ga  # [B, 1, D]
        gv = out["visual_groups"]
        visual = gv.gather(1, idx) if gv is not None else out["fv"].amax(dim=1, keepdim=True)
        maps = localization_maps(out, cls, model.modulate)  # [B, 1, h, w]
        rows["index"].append(batch["index"].cpu())
        rows["cls"].append(cls[:, 0].cpu())
        rows["labels"].append(batch["labels"].cpu())
        rows["presence"].append(presence(out).float().cpu())
        rows["audio_emb"].append(F.normalize(audio[:, 0].float(), dim=-1).cpu())  # [B, D]
        rows["visual_emb"].append(F.normalize(visual[:, 0].float(), dim=-1).cpu())  # [B, D]
        rows["peak"].append(maps.flatten(1).amax(dim=1).float().cpu())  # [B]
        rows["audio_is_group"].append(torch.full((cls.shape[0],), ga.shape[1] > 1))
        rows["visual_is_group"].append(torch.full((cls.shape[0],), gv is not None))
    return {k: torch.cat(v).numpy() for k, v in rows.items()}


def presence_metrics(scores, labels, threshold=0.5):
    """Micro-averaged precision / recall / F1 of `scores >= threshold` against multi-hot `labels`,
    and top-1 accuracy (the highest score is a labeled class).

    Args:
        scores: [M, C] presence scores; labels: [M, C] {0, 1}.
    Returns:
        dict precision, recall, f1, top1, num_items (precision is NaN when nothing is predicted).
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0.5
    assert scores.shape == labels.shape and scores.ndim == 2, \
        f"scores {scores.shape} and labels {labels.shape} must both be [M, C]"
    pred = scores >= threshold
    tp = float((pred & labels).sum())
    precision = tp / pred.sum() if pred.sum() else float("nan")
    recall = tp / labels.sum() if labels.sum() else float("nan")
    if np.isnan(precision) or np.isnan(recall):
        f1 = float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    top1 = (float(labels[np.arange(len(scores)), scores.argmax(axis=1)].mean()) if len(scores)
            else float("nan"))
    return dict(precision=float(precision), recall=float(recall), f1=float(f1), top1=top1,
                num_items=int(len(scores)))


def _silhouette(emb, cls):
    """Cosine silhouette of the classes in the embedding space (NaN with fewer than 2 classes)."""
    from sklearn.metrics import silhouette_score
    if len(np.unique(cls)) < 2 or len(cls) <= len(np.unique(cls)):
        return float("nan")
    return float(silhouette_score(emb, cls, metric="cosine"))


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (a tools-only dependency, imported late)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def tsne_figure(ckpt_path, out_png, split="test", max_items=500, overrides=(), device="cpu",
                title=None, seed=0):
    """t-SNE of the audio and visual embeddings of `split` (colored by class) -> `out_png`.

    Args:
        ckpt_path: checkpoint written by train.py (its config gives model and data).
        split: dataset split of cfg.data.dataset ('test', 'val', or a synthetic test split).
        max_items: first items of the split used (t-SNE is quadratic).
        overrides: config overrides (e.g. data.root=...).
    Returns:
        dict silhouette_audio, silhouette_visual (cosine, in the embedding space), audio_embedding,
        visual_embedding (which embedding was shown), num_items.
    """
    from sklearn.manifold import TSNE
    plt = pyplot()

    ckpt, cfg, model = load_trained(ckpt_path, device, overrides)
    dataset = build_dataset(cfg, split, class_names=ckpt["class_names"])
    out = model_outputs(model, dataset, device, cfg.eval.batch_size, max_items)
    names, cls = list(ckpt["class_names"]), out["cls"]
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    stats = {"num_items": int(len(cls))}
    for ax, key, label in zip(axes, ("audio_emb", "visual_emb"), ("audio", "visual")):
        emb = out[key]
        kind = {("audio", True): "g^a", ("audio", False): "f^a", ("visual", True): "g^v",
                ("visual", False): "max-pooled f^v"}[label, bool(out[f"{label}_is_group"].all())]
        stats[f"silhouette_{label}"] = _silhouette(emb, cls)
        perplexity = float(min(30.0, max(2.0, (len(emb) - 1) / 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                  metric="cosine").fit_transform(emb)  # [M, 2]
        for c in np.unique(cls):
            m = cls == c
            ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(int(c) % cmap.N), label=names[int(c)])
        stats[f"{label}_embedding"] = kind
        ax.set_title(f"{label}: {kind} (silhouette {stats[f'silhouette_{label}']:.2f})")
        ax.set_xticks([])
        ax.set_yticks([])
    if len(names) <= 20:
        axes[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2)
    run = os.path.basename(os.path.dirname(os.path.abspath(ckpt_path)))
    fig.suptitle(title or f"{cfg.model.name}: {run} ({split}, {len(cls)} items)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return stats


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--tsne", required=True, help="PNG to write (t-SNE of audio / visual embeddings)")
    p.add_argument("--split", default="test", help="split of the checkpoint's dataset")
    p.add_argument("--max-items", type=int, default=500, help="first items of the split used")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value (e.g. data.root=...)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stats = tsne_figure(args.ckpt, args.tsne, args.split, args.max_items, args.overrides, args.device)
    print(json.dumps({"tsne": args.tsne, **stats}))
    return stats


if __name__ == "__main__":
    main()
