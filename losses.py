"""AVGN training objective L = L_loc + L_group (Eq. 11).

L_loc (Eq. 1 / Eq. 10): for sample b and each of its sources n of class c (an anchor),
    s(b, m) = max_p cos(g^a_{b,c}, f^v_{m,p} ⊙ g^v_{m,c}) / tau   for every image m,
cross-entropy with target m = b (negatives: the other images seen through the same class c).
`symmetric` adds an image->audio direction [choice]:
    none          Eq. 10 as printed (audio->image only);
    own_class     the authors' code: one logit matrix L[anchor, image] with each audio seen through
                  its *own* class group g^a_{m,c_m}; for image b, a softmax over the anchors of every
                  image (the other anchors of image b itself left out), target b's anchor;
    anchor_class  this project's variant: image b against every audio m seen through b's class c
                  (g^a_{m,c}), which is neither the paper nor the authors' code.
With one anchor per sample, own_class is the authors' max_xmil_loss exactly: CE over the rows and
over the columns of logits[n, m] = max_p cos(f^v_{n,p}, g^a_{m,c_m}) / tau.
A class-agnostic model (EZ-VSL) has one anchor per sample: cos(f^a_b, f^v_{m,p}).
L_group (Eq. 9): CE(FC_cls(c_i), i) + BCE(y, p^a) + BCE(y, p^v), each averaged over its terms.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.authors import AuthorsAVGN
from models.avgn import localization_maps, modulated_cosine
from utils.dist import all_gather_with_grad, get_rank
from utils.errors import require


# the forms of the image->audio term; the same as the schema's loss.symmetric (a test checks it),
# written here for callers that do not go through the config
SYMMETRIC = ("none", "own_class", "anchor_class")


def contrastive_localization(audio, fv, visual, anchors, tau, symmetric, gather=False):
    """Multiple-instance contrastive loss over patches, per class.

    Args:
        audio: [B, K, D] audio groups (K = C, or 1 for a class-agnostic model).
        fv: [B, P, D] patch features.
        visual: [B, K, D] visual groups modulating fv, or None (plain cos).
        anchors: ([S] sample index, [S] group index) of the sources to localize.
        tau: temperature.
        symmetric: 'none' | 'own_class' | 'anchor_class': the image->audio direction added to the
            audio->image one (module docstring).
        gather: use the embeddings of all processes as negatives. Every process averages over
            its own anchors and DDP averages the processes, so this equals the one-process loss
            when every process has the same number of anchors (e.g. a fixed number of sources).
    Returns:
        scalar loss averaged over the S anchors.
    """
    if symmetric not in SYMMETRIC:
        raise ValueError(f"symmetric must be one of {SYMMETRIC}, got {symmetric!r}")
    b, c = anchors
    B = audio.shape[0]
    audio_all, fv_all, visual_all = audio, fv, visual  # [M, ...], M = B or world * B
    if gather:
        audio_all, fv_all = all_gather_with_grad(audio), all_gather_with_grad(fv)
        visual_all = None if visual is None else all_gather_with_grad(visual)
    target = b + (get_rank() * B if gather else 0)

    # Indices repeat (every anchor of class c, every source of sample b), so they are taken with
    # index_select: its backward (index_add_) sums in a fixed order on the CPU, where the
    # backward of x[:, c] (index_put_ with accumulate) does not unless
    # torch.use_deterministic_algorithms is on, so runs with a seed would not repeat.
    K = audio.shape[1]
    bc = b * K + c  # (sample, group) -> row of x.flatten(0, 1)
    # audio b (class c) against every image m seen through class c
    a = audio.flatten(0, 1).index_select(0, bc)  # [S, D]
    g = None if visual_all is None else visual_all.index_select(1, c).transpose(0, 1)  # [S, M, D]
    logits = modulated_cosine(a, fv_all, g, pairwise=True).amax(dim=-1) / tau  # [S, M]
    loss = F.cross_entropy(logits, target)
    if symmetric == "own_class":  # image b against the anchors of every image, each audio
        # through its own class: logits[n, s'] for the local images n and all anchors s'
        a_all, b_all, c_all = a, target, c  # [S', D], [S'], [S'] (S' = S, or all processes')
        own = torch.arange(len(b), device=b.device)  # the column of each local anchor
        if gather:  # processes may hold different numbers of anchors (frames with one or two
            # sources): each pads to the largest count, padded columns never compete
            counts = all_gather_with_grad(c.new_tensor([len(c)]))
            pad = int(counts.max()) - len(c)
            a_all, b_all, c_all = (all_gather_with_grad(F.pad(x, p, value=v)) for x, p, v in (
                (a, (0, 0, 0, pad), 0.0), (target, (0, pad), -1), (c, (0, pad), 0)))
            own = own + get_rank() * int(counts.max())
        g = None if visual is None else visual.index_select(1, c_all).transpose(0, 1)  # [S', B, D]
        logits = modulated_cosine(a_all, fv, g, pairwise=True).amax(dim=-1).t() / tau  # [B, S']
        logits = logits.index_select(0, b)  # [S, S'] the image of each local anchor
        other_anchor_same_image = (b_all[None, :] == target[:, None]) & \
            (torch.arange(len(b_all), device=b.device)[None, :] != own[:, None])
        logits = logits.masked_fill(other_anchor_same_image | (b_all < 0)[None, :], float("-inf"))
        loss = loss + F.cross_entropy(logits, own)
    elif symmetric == "anchor_class":  # image b (class c) against every audio m of class c
        a = audio_all.index_select(1, c).transpose(0, 1)  # [S, M, D]
        g = None if visual is None else \
            visual.flatten(0, 1).index_select(0, bc).unsqueeze(1).expand_as(a)  # [S, M, D]
        logits = modulated_cosine(a, fv.index_select(0, b), g).amax(dim=-1) / tau  # [S, M]
        loss = loss + F.cross_entropy(logits, target)
    return loss


def map_overlap(maps, classes, tau):
    """[beyond the paper] How much the maps of a sample's different sources cover the same
    patches: with a_n = softmax over patches of S_n / tau, the mean over the pairs n != m of
    labeled sources of one sample of sum_p a_n(p) a_m(p) (1: the same single patch, 0: apart).

    Args:
        maps: [B, N, h, w] class-aware maps of the labeled sources; classes: [B, N], -1 padding.
    Returns:
        scalar; zero (with a gradient) when no sample has two sources.
    """
    B, N = classes.shape
    a = (maps.flatten(2) / tau).softmax(dim=-1)  # [B, N, P]
    overlap = torch.einsum("bnp,bmp->bnm", a, a)  # [B, N, N]
    valid = classes >= 0
    pairs = valid[:, :, None] & valid[:, None, :] & ~torch.eye(N, dtype=torch.bool,
                                                               device=maps.device)
    return overlap[pairs].mean() if pairs.any() else maps.sum() * 0


class AVGNCriterion(nn.Module):
    """Returns {loc, cls_token, cls_audio, cls_visual, total} (+ loc_agnostic and separation, each
    when weighted).

    The defaults are the schema's (utils/config.py: LossConfig; a test checks that they agree);
    `build_criterion` passes every argument.

    Args:
        tau, symmetric, gather_negatives: see `contrastive_localization`.
        weights: dict of term weights (loc, cls_token, cls_audio, cls_visual, loc_agnostic,
            separation), each missing one at the schema's default (loss.w_<term>).
            `loc_agnostic` adds the class-agnostic EZ-VSL loss cos(f^a, f^v) (symmetric, as
            EZ-VSL) to a class-aware model (0 = the paper's objective).
        patch_grad: False stops the gradient of the class-aware L_loc at the patch features
            f^v of the cosine (it still trains the tokens, transformers, grouping and, through
            them, the encoders); the patches then learn only from `loc_agnostic`.
        modulated: L_loc compares g^a with f^v * g^v (Eq. 10), else with f^v; the model's
            `modulate`, so that L_loc trains the features its maps are drawn from.
        separation_tau: temperature of `map_overlap`, the [beyond the paper] term weighted by
            weights['separation'] (0: off), which pushes apart the maps of a mixture's sources.
    forward(out, classes [B, N] (-1 padding), labels [B, C] multi-hot).
    """

    def __init__(self, tau=0.03, symmetric="none", gather_negatives=False, weights=None,
                 patch_grad=True, modulated=True, separation_tau=0.1):
        super().__init__()
        self.tau, self.symmetric, self.gather = tau, symmetric, gather_negatives
        self.patch_grad, self.modulated = patch_grad, modulated
        self.separation_tau = separation_tau
        self.weights = dict(loc=1.0, cls_token=1.0, cls_audio=1.0, cls_visual=1.0, loc_agnostic=0.0,
                            separation=0.0)
        self.weights.update(weights or {})

    def forward(self, out, classes, labels):
        B = classes.shape[0]
        class_aware = out["visual_groups"] is not None
        if class_aware:
            b, n = (classes >= 0).nonzero(as_tuple=True)
            anchors = (b, classes[b, n])
        else:
            anchors = (torch.arange(B, device=classes.device), classes.new_zeros(B))
        loc = lambda audio, fv, visual, anchors, symmetric: contrastive_localization(  # noqa: E731
            audio, fv, visual, anchors, self.tau, symmetric, self.gather)
        fv = out["fv"] if self.patch_grad or not class_aware else out["fv"].detach()
        visual = out["visual_groups"] if self.modulated else None
        losses = {"loc": loc(out["audio_groups"], fv, visual, anchors, self.symmetric)}
        if out["token_logits"] is not None:
            C = out["token_logits"].shape[0]
            labels = labels.to(out["logits_a"].dtype)
            losses["cls_token"] = F.cross_entropy(
                out["token_logits"], torch.arange(C, device=labels.device))
            losses["cls_audio"] = F.binary_cross_entropy_with_logits(out["logits_a"], labels)
            losses["cls_visual"] = F.binary_cross_entropy_with_logits(out["logits_v"], labels)
        else:  # no heads (EZ-VSL)
            zero = out["fv"].new_zeros(())
            losses.update(cls_token=zero, cls_audio=zero, cls_visual=zero)
        if self.weights["loc_agnostic"] > 0 and class_aware:  # (EZ-VSL: that is `loc`)
            agnostic = (torch.arange(B, device=classes.device), classes.new_zeros(B))
            # EZ-VSL's loss: one class, so own_class and anchor_class are the same matrix
            losses["loc_agnostic"] = loc(out["fa"], out["fv"], None, agnostic, "anchor_class")
        if self.weights["separation"] > 0 and class_aware:  # the maps of the labeled sources
            maps = localization_maps(dict(out, fv=fv), classes, self.modulated)  # [B, N, h, w]
            losses["separation"] = map_overlap(maps, classes, self.separation_tau)
        losses["total"] = sum(self.weights[k] * v for k, v in losses.items())
        return losses


class AuthorsCriterion(nn.Module):
    """The released code's objective (stoneMo/AVGN model.py:109-124 and :159-181, summed as its
    train.py:268-269), for `model.arch: authors` (models/authors.py). Returns {loc, cls_token,
    cls_audio, cls_visual, total}.

    Each sample has one anchor, its first source c_b (the class of a mixture's first frame, the
    only frame the model sees in training), and its audio is seen through that class:
        L[n, m] = max_p <f^v_{n,p}, g^a_{m,c_m}> / tau     (image n, audio m; g^a not normalized)
        loc = CE(L, target n) + CE(L^T, target m)          (both directions, model.py:109-115)
    with the samples of this process as negatives (no gather across processes).
    cls_token = CE(FC_cls(c_i), i); cls_audio = BCE(sigmoid(logits_a), y) with y the multi-hot of
    every source (the mixture's audio); cls_visual = BCE(sigmoid(logits_v), y_v) with y_v the
    one-hot of c_b when the model cut a canvas to its first frame (`out['first_frame']`), else y
    (model.py:128-134). The BCE is torch's on the probabilities, as the released code's.

    Args:
        tau: temperature (loss.tau).
        weights: dict of term weights (loc, cls_token, cls_audio, cls_visual), each missing one 1.0.
    forward(out, classes [B, N] (-1 padding, at least one source per sample), labels [B, C]).
    """

    def __init__(self, tau=0.03, weights=None):
        super().__init__()
        self.tau = tau
        self.weights = dict(loc=1.0, cls_token=1.0, cls_audio=1.0, cls_visual=1.0)
        self.weights.update(weights or {})

    def forward(self, out, classes, labels):
        B, C = out["logits_a"].shape
        first = classes[:, 0]  # [B] the anchor of each sample
        if (first < 0).any():
            raise ValueError("every sample needs a source: classes[:, 0] holds -1")
        # g^a_{b, c_b}; index_select: a backward that sums in a fixed order (see above)
        a = out["audio_groups"].flatten(0, 1).index_select(0, torch.arange(B, device=first.device)
                                                           * C + first)  # [B, D]
        logits = torch.einsum("npd,md->nmp", out["fv"], a).amax(dim=-1) / self.tau  # [B, B]
        target = torch.arange(B, device=first.device)
        labels = labels.to(out["logits_a"].dtype)
        visual_labels = F.one_hot(first, C).to(labels.dtype) if out["first_frame"] else labels
        losses = {
            "loc": F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target),
            "cls_token": F.cross_entropy(out["token_logits"], torch.arange(C, device=first.device)),
            "cls_audio": F.binary_cross_entropy(out["logits_a"].sigmoid(), labels),
            "cls_visual": F.binary_cross_entropy(out["logits_v"].sigmoid(), visual_labels),
        }
        losses["total"] = sum(self.weights[k] * v for k, v in losses.items())
        return losses


# loss keys whose terms or options the released objective does not have, with the value that
# leaves them off; model.arch=authors refuses other values (loss.symmetric is not read: the
# released objective has its own two directions)
AUTHORS_LOSS_FIXED = {"gather_negatives": False, "w_loc_agnostic": 0.0, "w_separation": 0.0,
                      "patch_grad": True}


def build_criterion(cfg, model):
    """cfg: the full Config (uses cfg.loss); model: the model being trained, before any DDP
    wrapper (uses model.modulate: L_loc compares the features that its maps compare; an
    AuthorsAVGN gets the released code's objective, `AuthorsCriterion`)."""
    lc = cfg.loss
    if isinstance(model, AuthorsAVGN):
        require("loss", lc, AUTHORS_LOSS_FIXED, "model.arch=authors trains the released objective")
        return AuthorsCriterion(tau=lc.tau, weights=dict(
            loc=lc.w_loc, cls_token=lc.w_cls_token, cls_audio=lc.w_cls_audio,
            cls_visual=lc.w_cls_visual))
    return AVGNCriterion(tau=lc.tau, symmetric=lc.symmetric, gather_negatives=lc.gather_negatives,
                         weights=dict(loc=lc.w_loc, cls_token=lc.w_cls_token,
                                      cls_audio=lc.w_cls_audio, cls_visual=lc.w_cls_visual,
                                      loc_agnostic=lc.w_loc_agnostic, separation=lc.w_separation),
                         patch_grad=lc.patch_grad,
                         modulated=model.modulate,
                         separation_tau=lc.separation_tau)
