"""AVGN: audio-visual class tokens (AVCT, Eq. 2-5), grouping (AVG, Eq. 6-8), heads (Eq. 9) and
class-aware localization maps (Eq. 10). Shapes: B batch, P visual patches, Na audio tokens,
C classes (= tokens), D embedding size, N sources asked for per sample.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoders import AudioEncoder, VisualEncoder

# The allowed values of model.loc_features and model.assignment, for callers that do not go
# through the config; the schema (utils/config.py) states them, and a test checks they agree.
LOC_FEATURES = ("modulated", "raw")
ASSIGNMENTS = ("soft", "hard")


def modulated_cosine(a, f, g=None, pairwise=False, eps=1e-6):
    """cos(a, f_p ⊙ g) for every patch p (Eq. 10); with g=None plain cos(a, f_p) (Eq. 1).

    The Hadamard product is never materialised per patch: a·(f⊙g) = (a⊙g)·f and
    |f⊙g|² = (f²)·(g²).

    Args:
        a: [S, K, D] query embeddings (audio groups).
        f: [S, P, D] patch features (pairwise=False) or [M, P, D] (pairwise=True).
        g: None, or [S, K, D] / [S, M, D] visual group embeddings that modulate f.
        pairwise: False: query (s, k) against the patches of item s -> [S, K, P].
            True: a is [S, D]; query s against the patches of every item m, modulated by
            g[s, m] -> [S, M, P].
    """
    if pairwise:
        ag = a.unsqueeze(1) if g is None else a.unsqueeze(1) * g  # [S, M, D] (or [S, 1, D])
        num = torch.einsum("smd,mpd->smp", ag.expand(-1, f.shape[0], -1), f)
        if g is None:
            den = f.norm(dim=-1).unsqueeze(0)  # [1, M, P]
        else:
            den = torch.einsum("smd,mpd->smp", g * g, f * f).clamp_min(eps * eps).sqrt()
        return num / (den.clamp_min(eps) * a.norm(dim=-1).clamp_min(eps)[:, None, None])
    ag = a if g is None else a * g  # [S, K, D]
    num = torch.einsum("skd,spd->skp", ag, f)
    if g is None:
        den = f.norm(dim=-1).unsqueeze(1)  # [S, 1, P]
    else:
        den = torch.einsum("skd,spd->skp", g * g, f * f).clamp_min(eps * eps).sqrt()
    return num / (den.clamp_min(eps) * a.norm(dim=-1).clamp_min(eps).unsqueeze(-1))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # [B, heads, T, D / heads]
        return self.proj(x.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassTokenTransformer(nn.Module):
    """AVCT for one modality (Eq. 2-5): self-attention over the concatenation [f; c].

    Input f [B, P, D], tokens c [C, D] -> (f̂ [B, P, D], ĉ [B, C, D]).
    """

    def __init__(self, dim, depth, heads, mlp_ratio):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, f, c):
        P = f.shape[1]
        x = torch.cat([f, c.unsqueeze(0).expand(f.shape[0], -1, -1)], dim=1)  # [B, P + C, D]
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, :P], x[:, P:]


class Grouping(nn.Module):
    """AVG for one modality (Eq. 6-8).

    A[p, i] = softmax_i((W_q f̂_p)·(W_k ĉ_i) / sqrt(D));
    g_i = ĉ_i + W_o(Σ_p A[p, i] W_v f̂_p / (Σ_p A[p, i] + eps)).
    `hard`: A is the one-hot of argmax_i (with Gumbel noise in training), with the soft
    assignment's gradient (straight-through).

    Input f̂ [B, P, D], ĉ [B, C, D] -> (g [B, C, D], A [B, P, C]).
    """

    def __init__(self, dim, assignment="soft", gumbel_tau=1.0, eps=1.0):
        super().__init__()
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be {' or '.join(ASSIGNMENTS)}, got {assignment!r}")
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.assignment, self.gumbel_tau, self.eps = assignment, gumbel_tau, eps

    def forward(self, f, c):
        logits = self.q(f) @ self.k(c).transpose(1, 2) / math.sqrt(f.shape[-1])  # [B, P, C]
        if self.assignment == "soft":
            A = logits.softmax(dim=-1)
        else:
            if self.training:
                u = torch.rand_like(logits).clamp_(1e-9, 1 - 1e-9)
                logits = logits - torch.log(-torch.log(u))  # Gumbel noise
            soft = (logits / self.gumbel_tau).softmax(dim=-1)
            hard = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
            A = hard - soft.detach() + soft
        pooled = A.transpose(1, 2) @ self.v(f)  # [B, C, D]
        pooled = pooled / (A.sum(dim=1).unsqueeze(-1) + self.eps)
        return c + self.o(pooled), A


class AVGN(nn.Module):
    """Audio-Visual Grouping Network.

    forward(image [B, 3, H, W], spec [B, 1, F, T]) returns a dict:
        fv [B, P, D] visual patch features; grid (h, w) with P = h * w;
        fa [B, 1, D] the class-agnostic audio embedding (audio tokens pooled);
        audio_groups [B, K, D] (K = C: g^a; class-agnostic ablation: K = 1, f^a);
        visual_groups [B, C, D] g^v (None: class-agnostic ablation);
        logits_a, logits_v [B, C] presence logits (p = sigmoid); token_logits [C, C] (Eq. 9).
    Attributes: class_aware (False with both AVCT and AVG off), modulate (loc_features ==
    'modulated': the maps use f^v * g^v, Eq. 10).
    Maps: `localization_maps(out, classes [B, N], model.modulate)` -> [B, N, h, w].
    Arguments: the keys of the schema's `model` section (utils/config.py), with its defaults (a
    test checks that they agree); `models.build_model` passes every one.
    """

    def __init__(self, num_classes, dim=512, depth=3, heads=8, mlp_ratio=4.0, use_class_tokens=True,
                 use_grouping=True, assignment="soft", gumbel_tau=1.0, assign_eps=1.0,
                 audio_tokens="global",
                 token_init_std=0.02, loc_features="modulated", width=64, visual_stride=32,
                 pretrained="none", pretrained_path="", zero_init_residual=False):
        super().__init__()
        if loc_features not in LOC_FEATURES:
            raise ValueError(f"loc_features must be {' or '.join(LOC_FEATURES)}, "
                             f"got {loc_features!r}")
        self.visual = VisualEncoder(dim, width, visual_stride, pretrained, pretrained_path,
                                    zero_init_residual)
        self.audio = AudioEncoder(dim, width, audio_tokens, zero_init_residual)
        self.tokens = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.trunc_normal_(self.tokens, std=token_init_std)
        self.use_class_tokens, self.use_grouping = use_class_tokens, use_grouping
        if use_class_tokens:
            self.avct_a = ClassTokenTransformer(dim, depth, heads, mlp_ratio)
            self.avct_v = ClassTokenTransformer(dim, depth, heads, mlp_ratio)
        if use_grouping:
            self.avg_a = Grouping(dim, assignment, gumbel_tau, assign_eps)
            self.avg_v = Grouping(dim, assignment, gumbel_tau, assign_eps)
        self.head_cls = nn.Linear(dim, num_classes)  # FC_cls on the raw tokens
        self.head_a = nn.Linear(dim, 1)  # FC_a, shared across classes
        self.head_v = nn.Linear(dim, 1)  # FC_v
        self.class_aware = use_class_tokens or use_grouping
        self.modulate = loc_features == "modulated"
        self.num_classes = num_classes

    def group(self, f, transformer, grouping):
        """f [B, Np, D] -> g [B, C, D] (AVCT then AVG, each optional)."""
        c = self.tokens.unsqueeze(0).expand(f.shape[0], -1, -1)  # [B, C, D]
        if self.use_class_tokens:
            f, c = transformer(f, self.tokens)
        if self.use_grouping:
            c, _ = grouping(f, c)
        return c

    def forward(self, image, spec):
        fv, grid = self.visual(image)  # [B, P, D]
        fa = self.audio(spec)  # [B, Na, D]
        ga = self.group(fa, getattr(self, "avct_a", None), getattr(self, "avg_a", None))
        gv = self.group(fv, getattr(self, "avct_v", None), getattr(self, "avg_v", None))
        out = {
            "fv": fv, "grid": grid,
            "fa": F.normalize(fa.mean(dim=1, keepdim=True), dim=-1),  # [B, 1, D] class-agnostic
            "logits_a": self.head_a(ga).squeeze(-1),  # [B, C]
            "logits_v": self.head_v(gv).squeeze(-1),  # [B, C]
            "token_logits": self.head_cls(self.tokens),  # [C, C]
        }
        if self.class_aware:
            out["audio_groups"], out["visual_groups"] = ga, gv
        else:  # both switches off: the EZ-VSL map (Eq. 1) on the pooled audio token
            out["audio_groups"], out["visual_groups"] = out["fa"], None
        return out


def localization_maps(out, classes, modulated=False):
    """Class-aware maps on the feature grid: cos(g^a_c, f^v_p * g^v_c) (modulated, Eq. 10) or
    cos(g^a_c, f^v_p); a class-agnostic output (visual_groups None) gives cos(f^a, f^v_p); an
    output with `cosine` False (model.arch=authors) gives the released code's <g^a_c, f^v_p>, the
    normalized patches against the group token as it is (models/authors.py).

    Args:
        out: a model's forward output.
        classes: [B, N] long class ids per sample, -1 for padding.
        modulated: the model's `modulate` (loc_features == 'modulated').
    Returns:
        [B, N, h, w] cosine maps in [-1, 1] (or those dot products); zeros where the class is -1.
    """
    B, N = classes.shape
    h, w = out["grid"]
    valid = classes >= 0
    if out["visual_groups"] is not None:  # class-aware
        idx = classes.clamp(min=0).unsqueeze(-1).expand(-1, -1, out["audio_groups"].shape[-1])
        a = out["audio_groups"].gather(1, idx)  # [B, N, D]
        g = out["visual_groups"].gather(1, idx) if modulated else None
    else:
        a, g = out["audio_groups"].expand(-1, N, -1), None  # same map for every class
    if out.get("cosine", True):
        m = modulated_cosine(a, out["fv"], g)  # [B, N, P]
    else:  # the released code's logit (times tau)
        m = torch.einsum("bnd,bpd->bnp", a, out["fv"])  # [B, N, P]
    m = m * valid.unsqueeze(-1).to(m.dtype)
    return m.view(B, N, h, w)


def compete_maps(maps, classes, tau):
    """[beyond the paper] The sources of one sample compete for each pixel: the map of source n
    becomes (S_n + 1) / 2 * softmax_n(S_n / tau) over the sample's labeled sources, so where
    another source's map is higher, n's map falls toward 0. A sample with one source, or a
    class-agnostic model (the same map for every class), keeps its ranking of pixels.

    Args:
        maps: [B, N, H, W] cosine maps in [-1, 1] (`localization_maps`, upsampled or not).
        classes: [B, N] class ids, -1 for padding.
        tau: softmax temperature (> 0); small: the highest source takes the pixel.
    Returns:
        [B, N, H, W] maps in [0, 1]; zeros where the class is -1.
    """
    valid = (classes >= 0)[:, :, None, None]
    logits = (maps.float() / tau).masked_fill(~valid, float("-inf"))
    share = logits.softmax(dim=1).nan_to_num(0.0)  # a sample without sources: zeros
    return ((maps.float() + 1) / 2 * share).masked_fill(~valid, 0.0).to(maps.dtype)


def presence(out):
    """Audio presence scores p^a [B, C] in (0, 1)."""
    return out["logits_a"].sigmoid()


UPSAMPLING = ("bilinear", "bicubic")


def upsample_maps(maps, size, mode="bilinear"):
    """[B, N, h, w] -> [B, N, H, W] at the image size: bilinear (this project), or bicubic (the
    released code's evaluation, train.py:310)."""
    if mode not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {mode!r}")
    return F.interpolate(maps.float(), size=tuple(size), mode=mode, align_corners=False)
