"""AVGN as the authors released it (github.com/stoneMo/AVGN, commit 5ab8cab): `model.arch: authors`.

The released code differs from the paper's equations (models/avgn.py) in its grouping block
(GroupViT's), its transformer blocks (stochastic depth, biased projections, no final norm), its
initialization (zero class tokens, trunc-normal Linears, audio BatchNorm weights around 1) and its
localization logit, which compares the L2-normalized patches with the audio group token as it
leaves the grouping block, *not normalized*: `<f^v_p, g^a_c> / tau`, so the length of g^a (about
sqrt(D) after the block's LayerNorm, then learned) scales the logits. Each module below names the
file and lines of the released code it follows; `convert_authors_state_dict` reads the released
checkpoints (their train.py's `torch.save`), and tests/test_authors_code.py checks losses, maps
and gradients against a fixture written by the released code itself
(tests/authors_code/make_fixture.py).

Shapes: B batch, P visual patches, C classes (= group tokens), D embedding size.
The output dict is AVGN's (models/avgn.py), plus `cosine` (False: the maps and the criterion use
the dot product above) and `first_frame` (True when training cut a canvas to its first frame).
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .avgn import ASSIGNMENTS, Block
from .encoders import AudioEncoder, VisualEncoder

DROP_PATH = 0.1  # stochastic depth of every transformer block (model.py:64 and :83)
TOKEN_MLP_RATIO = 0.5  # hidden size of the grouping's token-mixing MLP, x D (grouping.py:191, 205)


class DropPath(nn.Module):
    """Stochastic depth (timm's DropPath, which grouping.py:522 uses): in training each sample's
    residual branch is dropped with probability `p` and kept ones are scaled by 1 / (1 - p)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # [B, 1, ...]
        return x * mask / keep


class MLP(nn.Module):
    """Linear -> GELU -> Linear (grouping.py:9-26, Mlp)."""

    def __init__(self, dim, hidden, out):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class AuthorsBlock(Block):
    """Pre-norm block with stochastic depth (grouping.py:499-530, AttnBlock, with qkv bias as
    model.py:60 and :79 ask): x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim, heads, mlp_ratio, drop_path):
        super().__init__(dim, heads, mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class AuthorsTransformer(nn.Module):
    """The transformer of one modality over [f; c] (grouping.py:661-770, ModalityTrans, without
    its grouping block and without the unused `han_encoder`): `depth` AuthorsBlocks and no final
    LayerNorm.

    Input f [B, Np, D], tokens c [C, D] -> (f̂ [B, Np, D], ĉ [B, C, D]).
    """

    def __init__(self, dim, depth, heads, mlp_ratio, drop_path):
        super().__init__()
        self.blocks = nn.ModuleList(AuthorsBlock(dim, heads, mlp_ratio, drop_path)
                                    for _ in range(depth))

    def forward(self, f, c):
        P = f.shape[1]
        x = torch.cat([f, c.unsqueeze(0).expand(f.shape[0], -1, -1)], dim=1)  # [B, Np + C, D]
        for blk in self.blocks:
            x = blk(x)
        return x[:, :P], x[:, P:]


class CrossAttention(nn.Module):
    """Multi-head attention of queries over other tokens, biased q/k/v/out projections
    (grouping.py:384-458, Attention with qkv_fuse=False).

    Input q [B, N, D], kv [B, S, D] -> [B, N, D].
    """

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, q, kv):
        B, N, D = q.shape
        split = lambda x: x.view(B, -1, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        x = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(kv)), split(self.v(kv)))
        return self.proj(x.transpose(1, 2).reshape(B, N, D))  # [B, N, D]


class CrossAttentionBlock(nn.Module):
    """Post-norm cross-attention block (grouping.py:461-496, CrossAttnBlock with post_norm=True,
    as grouping.py:210-211 builds it): x = q + Attn(q, kv); x = x + MLP(LN(x)); LN(x)."""

    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.attn = CrossAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, q, kv):
        x = q + self.attn(q, kv)
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x)


class Assignment(nn.Module):
    """Token-to-group assignment, one head, biased projections (grouping.py:70-155,
    AssignAttention; gumbel_softmax and hard_softmax, grouping.py:35-67).

    A[i, p] = softmax over the groups i of (q(ĉ_i) · k(f̂_p)) / sqrt(D); `hard`: the one-hot of
    the argmax with the soft assignment's gradient (straight-through), on logits with Gumbel noise
    divided by `gumbel_tau` in training. Each group then averages its patches with the weights
    A[i, p] / (Σ_p A[i, p] + eps): out_i = o(Σ_p A[i, p] v(f̂_p) / (Σ_p A[i, p] + eps)).

    Input tokens [B, C, D], f [B, P, D] -> (out [B, C, D], A [B, C, P]).
    """

    def __init__(self, dim, assignment, gumbel_tau, eps):
        super().__init__()
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be {' or '.join(ASSIGNMENTS)}, got {assignment!r}")
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.assignment, self.gumbel_tau, self.eps = assignment, gumbel_tau, eps

    def forward(self, tokens, f):
        logits = self.q(tokens) @ self.k(f).transpose(1, 2) * f.shape[-1] ** -0.5  # [B, C, P]
        if self.assignment == "soft":
            A = logits.softmax(dim=1)
        else:
            if self.training:
                gumbel = -torch.empty_like(logits).exponential_().log()
                logits = (logits + gumbel) / self.gumbel_tau
            soft = logits.softmax(dim=1)
            hard = F.one_hot(soft.argmax(dim=1), soft.shape[1]).transpose(1, 2).to(soft.dtype)
            A = hard - soft.detach() + soft
        weights = A / (A.sum(dim=-1, keepdim=True) + self.eps)  # [B, C, P]
        return self.o(weights @ self.v(f)), A


class AuthorsGrouping(nn.Module):
    """The grouping block of one modality (grouping.py:166-272, GroupingBlock, as
    grouping.py:723-733 builds it with model.py:54-91's arguments: out_dim = dim, so its
    `reduction` is the identity; 8 heads in the cross-attention, model.heads here).

    t = LN(MixMLP(LN(ĉ)))   (token mixing over the C groups: C -> D/2 -> C, grouping.py:235-249)
    t = CrossAttentionBlock(t, LN(f̂))
    g = Assignment(t, LN(f̂)) + t
    g = g + MLP(LN(g))      (D -> 4D -> D)

    Input f̂ [B, Np, D], ĉ [B, C, D] -> (g [B, C, D], A [B, C, Np]).
    """

    def __init__(self, dim, num_classes, heads, mlp_ratio, assignment, gumbel_tau, eps):
        super().__init__()
        self.norm_tokens = nn.LayerNorm(dim)
        self.token_mlp = MLP(num_classes, int(TOKEN_MLP_RATIO * dim), num_classes)
        self.norm_mixed = nn.LayerNorm(dim)
        self.norm_x = nn.LayerNorm(dim)
        self.cross = CrossAttentionBlock(dim, heads, mlp_ratio)
        self.assign = Assignment(dim, assignment, gumbel_tau, eps)
        self.norm_out = nn.LayerNorm(dim)
        self.out_mlp = MLP(dim, int(dim * mlp_ratio), dim)

    def forward(self, f, c):
        f = self.norm_x(f)
        t = self.token_mlp(self.norm_tokens(c).transpose(1, 2)).transpose(1, 2)  # [B, C, D]
        t = self.cross(self.norm_mixed(t), f)
        g, A = self.assign(t, f)
        g = g + t
        return g + self.out_mlp(self.norm_out(g)), A


def first_frame(image):
    """A canvas of k frames side by side [B, 3, H, k·H] -> its first frame [B, 3, H, H] (the
    released code trains on image[:, 0] of a mixture, model.py:128-131); a single frame is
    returned as it is."""
    H, W = image.shape[-2:]
    if W == H:
        return image
    if W % H:
        raise ValueError(f"a training canvas must be k frames of {H}x{H} side by side, got "
                         f"{H}x{W}")
    return image[..., :H]


class AuthorsAVGN(nn.Module):
    """The released AVGN (model.py:11-183) on this project's encoders (the same ResNet18s).

    forward(image [B, 3, H, W], spec [B, 1, F, T]) returns AVGN's dict (models/avgn.py):
        fv [B, P, D] the L2-normalized patches (model.py:137-140); grid (h, w);
        fa [B, 1, D] the L2-normalized audio embedding (model.py:143-146);
        audio_groups, visual_groups [B, C, D] the grouping blocks' outputs, not normalized;
        logits_a, logits_v [B, C] presence logits (p = sigmoid, model.py:166-171);
        token_logits [C, C] FC_cls on the raw tokens (model.py:163);
        cosine False: maps and loss use <f^v_p, g^a_c> (model.py:111), not a cosine;
        first_frame: True when training cut a canvas of k > 1 frames to its first frame
            (model.py:128-131); evaluation always sees the whole input.
    Attributes as AVGN's: class_aware (True), modulate (False: the maps compare raw patches).
    Arguments: the keys of the schema's `model` section that this form reads (utils/config.py;
    a test checks the defaults agree); `models.build_model` passes every one.
    """

    def __init__(self, num_classes, dim=512, depth=3, heads=8, mlp_ratio=4.0, assignment="soft",
                 gumbel_tau=1.0, assign_eps=1.0, width=64, visual_stride=32, pretrained="none",
                 pretrained_path=""):
        super().__init__()
        self.visual = VisualEncoder(dim, width, visual_stride, pretrained, pretrained_path)
        self.audio = AudioEncoder(dim, width, "global")
        self.tokens = nn.Parameter(torch.zeros(num_classes, dim))  # model.py:52: zeros
        self.avct_a = AuthorsTransformer(dim, depth, heads, mlp_ratio, DROP_PATH)
        self.avct_v = AuthorsTransformer(dim, depth, heads, mlp_ratio, DROP_PATH)
        grouping = (dim, num_classes, heads, mlp_ratio, assignment, gumbel_tau, assign_eps)
        self.avg_a, self.avg_v = AuthorsGrouping(*grouping), AuthorsGrouping(*grouping)
        self.head_cls = nn.Linear(dim, num_classes)  # fc_cls
        self.head_a = nn.Linear(dim, 1)  # fc_prob_a
        self.head_v = nn.Linear(dim, 1)  # fc_prob_v
        self.class_aware, self.modulate, self.num_classes = True, False, num_classes
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """The released initialization (model.py:33-44, then model.py:98-107): audio trunk and
        projections as below, then every Linear trunc-normal (std 0.02) with zero bias and every
        LayerNorm 1 / 0; the class tokens stay zero and the visual trunk keeps its own (or the
        ImageNet) weights."""
        for net in (self.audio.trunk, self.visual.proj):
            for m in net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.normal_(m.weight, mean=1.0, std=0.02)
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, image, spec):
        cut = self.training and image.shape[-1] != image.shape[-2]
        if self.training:
            image = first_frame(image)  # [B, 3, H, H]
        fv, grid = self.visual(image)  # [B, P, D], L2-normalized
        fa = self.audio(spec)  # [B, 1, D], L2-normalized
        fv_hat, cv = self.avct_v(fv, self.tokens)  # [B, P, D], [B, C, D]
        fa_hat, ca = self.avct_a(fa, self.tokens)  # [B, 1, D], [B, C, D]
        gv, _ = self.avg_v(fv_hat, cv)  # [B, C, D]
        ga, _ = self.avg_a(fa_hat, ca)  # [B, C, D]
        return {
            "fv": fv, "grid": grid, "fa": fa,
            "audio_groups": ga, "visual_groups": gv,
            "logits_a": self.head_a(ga).squeeze(-1),  # [B, C]
            "logits_v": self.head_v(gv).squeeze(-1),  # [B, C]
            "token_logits": self.head_cls(self.tokens),  # [C, C]
            "cosine": False, "first_frame": cut,
        }


# ----------------------------------------------------------------------------- released weights
# (pattern of a released key, this project's key), applied in order to every key after the
# `module.` prefix of DistributedDataParallel is removed
_RENAMES = [
    (r"^imgnet\.", "visual.trunk."),
    (r"^img_proj\.", "visual.proj."),
    (r"^audnet\.", "audio.trunk."),
    (r"^aud_proj\.", "audio.proj."),
    (r"^av_token$", "tokens"),
    (r"^fc_cls\.", "head_cls."),
    (r"^fc_prob_a\.", "head_a."),
    (r"^fc_prob_v\.", "head_v."),
    (r"^audio_encoder\.blocks\.", "avct_a.blocks."),
    (r"^visual_encoder\.blocks\.", "avct_v.blocks."),
    (r"^audio_encoder\.grouping\.", "avg_a."),
    (r"^visual_encoder\.grouping\.", "avg_v."),
    # inside a transformer block (avgn.Block's MLP is a Sequential)
    (r"^(avct_.\.blocks\.\d+)\.mlp\.fc1\.", r"\1.mlp.0."),
    (r"^(avct_.\.blocks\.\d+)\.mlp\.fc2\.", r"\1.mlp.2."),
    # inside a grouping block
    (r"^(avg_.)\.mlp_inter\.", r"\1.token_mlp."),
    (r"^(avg_.)\.norm_post_tokens\.", r"\1.norm_mixed."),
    (r"^(avg_.)\.pre_assign_attn\.attn\.(q|k|v)_proj\.", r"\1.cross.attn.\2."),
    (r"^(avg_.)\.pre_assign_attn\.norm2\.", r"\1.cross.norm_mlp."),
    (r"^(avg_.)\.pre_assign_attn\.norm_post\.", r"\1.cross.norm_out."),
    (r"^(avg_.)\.pre_assign_attn\.", r"\1.cross."),
    (r"^(avg_.)\.assign\.(q|k|v)_proj\.", r"\1.assign.\2."),
    (r"^(avg_.)\.assign\.proj\.", r"\1.assign.o."),
    (r"^(avg_.)\.norm_new_x\.", r"\1.norm_out."),
    (r"^(avg_.)\.mlp_channels\.", r"\1.out_mlp."),
]
# released parameters that take no part in the forward pass: the audio ModalityTrans builds a
# GroupingBlock_Han (grouping.py:706-718) that AVGN.forward never calls (x_other is None)
_UNUSED = re.compile(r"^(audio|visual)_encoder\.han_encoder\.")


def convert_authors_state_dict(state):
    """A state dict of the released AVGN (their train.py saves `model.state_dict()`, under DDP
    with `module.` prefixes) -> the state dict of `AuthorsAVGN`, without the parameters of the
    unused `han_encoder`. Only the keys change; the values are the same objects.

    Raises ValueError naming a key that no rename maps (not a key of the released AVGN).
    """
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if _UNUSED.match(key):
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if new == key:
            raise ValueError(f"{key!r} is not a key of the released AVGN (model.py)")
        out[new] = value
    return out


def is_authors_state_dict(state):
    """True for a state dict of the released AVGN (its class tokens are `av_token`)."""
    return isinstance(state, dict) and any(k in ("av_token", "module.av_token") for k in state)


def authors_sizes(state):
    """(num_classes, dim, depth) of a converted released state dict; its audio and visual
    transformers must have the same depth (this project has one model.depth)."""
    C, D = state["tokens"].shape
    depths = [len({k.split(".")[2] for k in state if k.startswith(f"avct_{m}.blocks.")})
              for m in "av"]
    if depths[0] != depths[1]:
        raise ValueError(f"the released checkpoint's audio and visual transformers have depths "
                         f"{depths[0]} and {depths[1]}; model.depth gives both one depth")
    return C, D, depths[0]
