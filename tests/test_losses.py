"""losses.py: the localization contrastive loss and its image->audio forms, written as loops by
hand; the separation term; the criterion's terms and weights; gathered negatives across processes."""
import pytest
import torch
import torch.nn.functional as F

from losses import AVGNCriterion, build_criterion, contrastive_localization, map_overlap
from models import build_model, localization_maps
from tests.fixtures import batch, tiny


def _hand_made_outputs(B=4, C=3, P=6, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = F.normalize(torch.randn(B, C, D, generator=g), dim=-1)
    fv = F.normalize(torch.randn(B, P, D, generator=g), dim=-1)
    classes = torch.randint(0, C, (B, 1), generator=g)
    for b in range(B):  # image b holds, at patch b, exactly what audio b's class sounds like
        fv[b, b] = audio[b, classes[b, 0]]
    out = {"fv": fv, "grid": (2, 3), "audio_groups": audio,
           "visual_groups": torch.ones(B, C, D), "fa": audio[:, :1],
           "logits_a": torch.zeros(B, C), "logits_v": torch.zeros(B, C),
           "token_logits": torch.zeros(C, C)}
    return out, classes, F.one_hot(classes[:, 0], C).float()


@pytest.mark.parametrize("modulated", [False, True])
def test_own_class_is_the_authors_max_xmil_loss(modulated):
    """One anchor per sample: CE over the rows and the columns of
    logits[n, m] = max_p cos(f^v_{n,p} (* g^v_{n,c_m}), g^a_{m,c_m}) / tau, written as a loop."""
    g = torch.Generator().manual_seed(0)
    B, K, P, D, tau = 5, 4, 6, 8, 0.1
    audio, fv = torch.randn(B, K, D, generator=g), torch.randn(B, P, D, generator=g)
    visual = torch.randn(B, K, D, generator=g) if modulated else None
    c = torch.randint(0, K, (B,), generator=g)
    logits = torch.zeros(B, B)  # [image n, audio m]
    for n in range(B):
        for m in range(B):
            a = audio[m, c[m]]
            f = fv[n] * visual[n, c[m]] if modulated else fv[n]  # [P, D]
            logits[n, m] = F.cosine_similarity(f, a[None], dim=-1).max() / tau
    labels = torch.arange(B)
    authors = F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
    ours = contrastive_localization(audio, fv, visual, (torch.arange(B), c), tau, "own_class")
    torch.testing.assert_close(ours, authors, rtol=1e-5, atol=1e-5)
    anchor = contrastive_localization(audio, fv, visual, (torch.arange(B), c), tau, "anchor_class")
    assert abs(float(anchor - authors)) > 1e-3  # this project's variant is another loss
    only_rows = contrastive_localization(audio, fv, visual, (torch.arange(B), c), tau, "none")
    torch.testing.assert_close(only_rows, F.cross_entropy(logits.t(), labels))


def test_own_class_leaves_out_the_other_sources_of_the_same_image():
    """Two anchors on image 0: each competes with the anchors of the other images only."""
    g = torch.Generator().manual_seed(1)
    audio, fv = torch.randn(3, 4, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    b, c = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 3, 0, 2])
    tau = 0.5
    cos = torch.stack([torch.stack([F.cosine_similarity(fv[n], audio[bs, cs][None], dim=-1).max()
                                    for bs, cs in zip(b, c)]) for n in range(3)]) / tau  # [3, 4]
    rows = F.cross_entropy(cos.t(), b)  # each anchor against every image
    cols = []
    for s in range(4):
        keep = [t for t in range(4) if b[t] != b[s] or t == s]
        cols.append(F.cross_entropy(cos[b[s], keep][None], torch.tensor([keep.index(s)])))
    want = rows + torch.stack(cols).mean()
    got = contrastive_localization(audio, fv, None, (b, c), tau, "own_class")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_localization_loss_prefers_true_pairs():
    out, classes, labels = _hand_made_outputs()
    crit = AVGNCriterion(tau=0.03)
    matched = crit(out, classes, labels)["loc"]
    perm = torch.tensor([1, 2, 3, 0])
    shuffled = dict(out, fv=out["fv"][perm], visual_groups=out["visual_groups"][perm])
    assert matched < 0.5 * crit(shuffled, classes, labels)["loc"]
    assert matched < 0.1


@pytest.mark.parametrize("symmetric", ["anchor_class", "own_class"])
@pytest.mark.parametrize("K,sources", [(1, 1), (10, 2)])  # EZ-VSL; AVGN, two sources a sample
def test_localization_loss_gradients_repeat_exactly_with_threads(K, sources, symmetric):
    """Runs with one seed must repeat: with repeated class or sample indices, the backward of
    x[:, c] accumulates in a thread-dependent order on the CPU (seen: every repeat differed)."""
    g = torch.Generator().manual_seed(0)
    B, P, D = 64, 64, 128
    audio = torch.randn(B, K, D, generator=g).requires_grad_()
    fv = torch.randn(B, P, D, generator=g).requires_grad_()
    visual = torch.randn(B, K, D, generator=g).requires_grad_() if K > 1 else None
    b = torch.arange(B).repeat_interleave(sources)
    c = torch.randint(0, K, (B * sources,), generator=g)
    leaves = [t for t in (audio, fv, visual) if t is not None]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(5):
            contrastive_localization(audio, fv, visual, (b, c), 0.03, symmetric).backward()
            grads.append([t.grad.clone() for t in leaves])
            for t in leaves:
                t.grad = None
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(x, y) for other in grads[1:] for x, y in zip(grads[0], other))


def test_patch_grad_off_keeps_class_aware_loss_away_from_patches():
    out, classes, labels = _hand_made_outputs()
    out["fv"] = out["fv"].clone().requires_grad_(True)
    out["audio_groups"] = out["audio_groups"].clone().requires_grad_(True)
    only_loc = dict(loc=1.0, cls_token=0.0, cls_audio=0.0, cls_visual=0.0)
    AVGNCriterion(weights=only_loc, patch_grad=False)(out, classes, labels)["total"].backward()
    assert out["fv"].grad is None or out["fv"].grad.abs().max() == 0
    out["fv"].grad = None
    AVGNCriterion(weights=only_loc)(out, classes, labels)["total"].backward()
    assert out["fv"].grad.abs().max() > 0
    out["fv"].grad = None  # the class-agnostic term still trains the patches
    AVGNCriterion(weights=dict(only_loc, loc_agnostic=1.0), patch_grad=False)(
        out, classes, labels)["total"].backward()
    assert out["fv"].grad.abs().max() > 0


def test_map_overlap_by_hand_and_its_gradient_pushes_the_maps_apart():
    peak = torch.full((2, 2), -10.0)
    peak[0, 0] = 10.0  # one patch
    other = torch.full((2, 2), -10.0)
    other[1, 1] = 10.0
    classes = torch.tensor([[0, 1], [2, -1]])  # sample 1 has one source: no pair
    same = torch.stack([torch.stack([peak, peak]), torch.stack([peak, other])])  # [B, N, h, w]
    apart = torch.stack([torch.stack([peak, other]), torch.stack([peak, peak])])
    assert map_overlap(same, classes, 1.0) == pytest.approx(1.0, abs=1e-6)
    assert map_overlap(apart, classes, 1.0) == pytest.approx(0.0, abs=1e-6)
    assert float(map_overlap(same, torch.tensor([[0, -1], [2, -1]]), 1.0)) == 0.0
    maps = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
    cls = torch.tensor([[0, 1]] * 3)
    before = map_overlap(maps, cls, 0.5)
    before.backward()
    with torch.no_grad():
        after = map_overlap(maps - 0.5 * maps.grad, cls, 0.5)
    assert after < before


def test_separation_term_joins_the_criterion_when_weighted():
    out, classes, labels = _hand_made_outputs()
    classes = torch.cat([classes, (classes + 1) % 3], dim=1)  # two sources a sample
    plain = AVGNCriterion()(out, classes, labels)
    assert "separation" not in plain
    weighted = AVGNCriterion(weights={"separation": 2.0})(out, classes, labels)
    assert 0 < weighted["separation"] <= 1
    torch.testing.assert_close(weighted["total"], plain["total"] + 2 * weighted["separation"])
    cfg = tiny("loss.w_separation=0.5", "loss.separation_tau=0.2")
    crit = build_criterion(cfg, build_model(cfg))
    assert crit.weights["separation"] == 0.5 and crit.separation_tau == 0.2


@pytest.mark.parametrize("loc_features", ["modulated", "raw"])
def test_criterion_compares_the_features_the_models_maps_compare(loc_features):
    """L_loc follows the model it trains (model.modulate), not a key of the config's model
    section: each sample's logit against image m is the maximum of the map the model draws for
    the sample's audio and class on image m (symmetric none: the cross-entropy over the images)."""
    model = build_model(tiny(f"model.loc_features={loc_features}")).eval()
    other = "raw" if loc_features == "modulated" else "modulated"
    crit = build_criterion(tiny(f"model.loc_features={other}", "loss.tau=0.5"), model)
    assert crit.modulated == model.modulate == (loc_features == "modulated")
    image, spec, classes, labels = batch(B=3, N=1)
    with torch.no_grad():
        out = model(image, spec)
        loc = crit(out, classes, labels)["loc"]
        logits = torch.stack([torch.stack([localization_maps(  # [1, 1, h, w]: audio b on image m
            dict(out, audio_groups=out["audio_groups"][b:b + 1], fv=out["fv"][m:m + 1],
                 visual_groups=out["visual_groups"][m:m + 1]), classes[b:b + 1], model.modulate
        ).max() for m in range(3)]) for b in range(3)]) / 0.5  # [B, B]
    torch.testing.assert_close(loc, F.cross_entropy(logits, torch.arange(3)), rtol=1e-5,
                               atol=1e-6)


def _own_class_on_rank(rank, world, init_file, shards, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    audio, fv, b, c = (x.clone().requires_grad_(x.is_floating_point()) for x in shards[rank])
    loss = contrastive_localization(audio, fv, None, (b, c), 0.5, "own_class", gather=True)
    (loss * len(b)).backward()  # the sum over this process's anchors
    dist.all_reduce(audio.grad)  # not needed for the check; keeps every rank in step
    torch.save({"loss": loss.detach(), "n": len(b), "fv_grad": fv.grad}, f"{out}_{rank}.pt")
    dist.destroy_process_group()


def test_own_class_gathers_processes_with_different_numbers_of_sources(tmp_path):
    """Frames with one or two sources (music.yaml): a process with more anchors than another.
    The anchor-weighted mean of the processes' losses is the one-process loss of the whole batch,
    and so are the patch gradients."""
    import torch.multiprocessing as mp
    g = torch.Generator().manual_seed(3)
    B, K, P, D = 3, 4, 5, 8
    audio, fv = torch.randn(2 * B, K, D, generator=g), torch.randn(2 * B, P, D, generator=g)
    b = torch.tensor([0, 0, 1, 2, 3, 4, 5])  # process 0: 4 anchors, process 1: 3
    c = torch.tensor([1, 3, 0, 2, 2, 1, 0])
    shards = [(audio[:B], fv[:B], b[:4], c[:4]), (audio[B:], fv[B:], b[4:] - B, c[4:])]
    mp.spawn(_own_class_on_rank, args=(2, str(tmp_path / "init"), shards, str(tmp_path / "r")),
             nprocs=2, join=True)
    got = [torch.load(tmp_path / f"r_{r}.pt") for r in range(2)]
    fv1 = fv.clone().requires_grad_()
    want = contrastive_localization(audio, fv1, None, (b, c), 0.5, "own_class")
    (want * len(b)).backward()
    total = sum(r["loss"] * r["n"] for r in got) / len(b)
    torch.testing.assert_close(total, want.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([got[0]["fv_grad"], got[1]["fv_grad"]]), fv1.grad,
                               rtol=1e-5, atol=1e-6)
