"""models/: output shapes, gradients, the equations of the grouping and the maps, the encoders'
weights, the model registry."""
import itertools
import math
import time

import pytest
import torch
import torch.nn.functional as F

from losses import AVGNCriterion, build_criterion
from models import build_model, localization_maps, modulated_cosine, upsample_maps
from models.avgn import Grouping
from models.encoders import ResNet18Trunk, load_imagenet_weights
from tests.fixtures import batch, tiny


@pytest.mark.parametrize("W,P", [(224, 49), (448, 98)])
@pytest.mark.parametrize("N", [1, 2, 3])
def test_output_shapes(W, P, N):
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    image, spec = torch.randn(2, 3, 224, W), torch.randn(2, 1, 257, 300)
    with torch.no_grad():
        out = model(image, spec)
    assert out["fv"].shape == (2, P, 32) and out["grid"] == (7, W // 32)
    assert out["audio_groups"].shape == (2, 5, 32) and out["logits_a"].shape == (2, 5)
    assert out["visual_groups"].shape == (2, 5, 32)  # g^v, under its one key
    classes = torch.arange(N).repeat(2, 1)
    maps = localization_maps(out, classes, model.modulate)
    assert maps.shape == (2, N, 7, W // 32)
    assert upsample_maps(maps, (224, W)).shape == (2, N, 224, W)
    assert maps.abs().max() <= 1 + 1e-5


ABLATIONS = [dict(model="avgn", cls=a, grp=g, assign=s, tokens=t, loc=l)
             for a, g in itertools.product([True, False], repeat=2)
             for s in ["soft", "hard"] for t in ["global", "grid"] for l in ["modulated", "raw"]
             if (s == "soft" or g) and (t == "global" or (s == "soft" and l == "modulated"))]


ABLATIONS.append(dict(model="ezvsl", cls=False, grp=False, assign="soft", tokens="global",
                      loc="modulated"))


@pytest.mark.parametrize("ab", ABLATIONS, ids=lambda a: "-".join(str(v) for v in a.values()))
def test_every_parameter_gets_a_gradient(ab):
    cfg = tiny(f"model.name={ab['model']}", f"model.use_class_tokens={ab['cls']}",
               f"model.use_grouping={ab['grp']}", f"model.assignment={ab['assign']}",
               f"model.audio_tokens={ab['tokens']}", f"model.loc_features={ab['loc']}")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    image, spec, classes, labels = batch()
    losses = build_criterion(cfg, model)(model(image, spec), classes, labels)
    assert set(losses) == {"loc", "cls_token", "cls_audio", "cls_visual", "total"}
    losses["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_grouping_matches_direct_equations():
    torch.manual_seed(0)
    B, P, C, D = 2, 5, 3, 8
    grp = Grouping(D, "soft").eval()
    f, c = torch.randn(B, P, D), torch.randn(B, C, D)
    with torch.no_grad():
        g, A = grp(f, c)
    Wq, Wk, Wv, Wo = (m.weight.detach() for m in (grp.q, grp.k, grp.v, grp.o))
    for b in range(B):
        logits = torch.tensor([[float((Wq @ f[b, p]) @ (Wk @ c[b, i])) / math.sqrt(D)
                                for i in range(C)] for p in range(P)])
        A_ref = logits.softmax(dim=1)  # softmax over the classes (Eq. 6)
        for i in range(C):
            num = sum(A_ref[p, i] * (Wv @ f[b, p]) for p in range(P))
            g_ref = c[b, i] + Wo @ (num / (A_ref[:, i].sum() + grp.eps))  # Eq. 7-8
            torch.testing.assert_close(g[b, i], g_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(A[b], A_ref, rtol=1e-5, atol=1e-6)


def test_hard_assignment_is_one_hot_and_straight_through():
    torch.manual_seed(0)
    grp = Grouping(8, "hard").train()
    f = torch.randn(2, 6, 8, requires_grad=True)
    c = torch.randn(2, 4, 8, requires_grad=True)
    g, A = grp(f, c)
    assert torch.equal(A.detach().sum(-1), torch.ones(2, 6))
    assert set(A.detach().unique().tolist()) <= {0.0, 1.0}
    g.square().sum().backward()
    assert grp.q.weight.grad.abs().sum() > 0 and grp.k.weight.grad.abs().sum() > 0
    assert f.grad.abs().sum() > 0


def test_modulated_cosine_matches_explicit_product():
    torch.manual_seed(0)
    S, M, P, D = 3, 4, 5, 6
    a, f, g = torch.randn(S, D), torch.randn(M, P, D), torch.randn(S, M, D)
    out = modulated_cosine(a, f, g, pairwise=True)
    ref = F.cosine_similarity(a[:, None, None, :], f[None] * g[:, :, None, :], dim=-1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    ref = F.cosine_similarity(a[:, None, None, :], f[None], dim=-1)
    torch.testing.assert_close(modulated_cosine(a, f, None, pairwise=True), ref)
    a2, f2, g2 = torch.randn(S, 2, D), torch.randn(S, P, D), torch.randn(S, 2, D)
    ref = F.cosine_similarity(a2[:, :, None], f2[:, None] * g2[:, :, None], dim=-1)
    torch.testing.assert_close(modulated_cosine(a2, f2, g2), ref, rtol=1e-5, atol=1e-6)


def test_map_for_class_i_follows_token_i():
    torch.manual_seed(0)
    model = build_model(tiny("model.depth=2")).eval()
    image, spec, _, _ = batch(B=2)
    classes = torch.tensor([[0, 1, 2], [0, 1, 2]])
    with torch.no_grad():
        before = localization_maps(model(image, spec), classes, model.modulate)
        model.tokens[1] += 0.5 * torch.randn_like(model.tokens[1])
        after = localization_maps(model(image, spec), classes, model.modulate)
    assert (after[:, 1] - before[:, 1]).abs().max() > 1e-3


def test_ezvsl_equals_avgn_with_both_switches_off():
    torch.manual_seed(0)
    avgn = build_model(tiny("model.use_class_tokens=false", "model.use_grouping=false")).eval()
    ez = build_model(tiny("model.name=ezvsl")).eval()
    ez.load_state_dict(avgn.state_dict(), strict=False)
    image, spec, classes, labels = batch()
    with torch.no_grad():
        oa, oe = avgn(image, spec), ez(image, spec)
        ma, me = localization_maps(oa, classes, avgn.modulate), localization_maps(oe, classes)
    torch.testing.assert_close(ma, me)
    # class-agnostic: every requested class gets the same map, Eq. 1
    ref = F.cosine_similarity(oe["fa"], oe["fv"], dim=-1).view(-1, *oe["grid"])
    torch.testing.assert_close(me[:, 0], ref, rtol=1e-5, atol=1e-6)
    crit = AVGNCriterion()
    torch.testing.assert_close(crit(oa, classes, labels)["loc"], crit(oe, classes, labels)["loc"])


def test_batched_equals_one_by_one():
    torch.manual_seed(0)
    model = build_model(tiny("model.depth=2")).eval()
    image, spec, classes, _ = batch(B=3)
    with torch.no_grad():
        full = localization_maps(model(image, spec), classes, model.modulate)
        for b in range(3):
            one = localization_maps(model(image[b:b + 1], spec[b:b + 1]), classes[b:b + 1],
                                        model.modulate)
            torch.testing.assert_close(full[b:b + 1], one, rtol=1e-4, atol=1e-5)


def test_imagenet_weights_from_local_file_and_clear_offline_error(tmp_path, monkeypatch):
    import torchvision
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    trunk = ResNet18Trunk(3, 64)
    load_imagenet_weights(trunk, str(tmp_path / "r18.pth"))
    torch.testing.assert_close(trunk.layer3[0].downsample[0].weight, ref.layer3[0].downsample[0].weight)

    def offline(*a, **k):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    t0 = time.time()
    from utils.errors import InputError  # one line at the command line, exit code 2
    with pytest.raises(InputError, match=r"could not be downloaded \(OSError: Network is "
                                         r"unreachable\): set model.pretrained=none .*"
                                         r"resnet18-f37072fd\.pth.*model\.pretrained_path"):
        build_model(tiny("model.width=64", "model.pretrained=imagenet"))
    assert time.time() - t0 < 30
    with pytest.raises(FileNotFoundError, match="model.pretrained_path"):
        build_model(tiny("model.width=64", "model.pretrained=imagenet",
                         f"model.pretrained_path={tmp_path / 'missing.pth'}"))


def test_checkpoint_of_an_imagenet_config_loads_offline(tmp_path):
    from engine import model_from_checkpoint
    trained = build_model(tiny("model.width=64"))
    ckpt = {"model": trained.state_dict()}  # trained from ImageNet weights, now on a machine
    cfg = tiny("model.width=64", "model.pretrained=imagenet",  # without them
               f"model.pretrained_path={tmp_path / 'missing.pth'}")
    model = model_from_checkpoint(ckpt, cfg, torch.device("cpu"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"'model.name' must be one of avgn, ezvsl; got 'avgm' "
                                         r"\(did you mean 'avgn'\?\)"):
        build_model(tiny("model.name=avgm"))
    cfg = tiny()
    cfg.model.name = "avgm"  # a config changed in code, past the schema's checks
    with pytest.raises(ValueError, match=r"unknown model.name 'avgm'.*'avgn'"):
        build_model(cfg)


def test_per_frame_protocol_runs_the_model_on_each_frame_alone():
    """eval.protocol=per_frame (the authors'): source n's map comes from the model run on its
    frame alone with the mixture's audio, and is scored on that frame."""
    from engine import evaluate
    from metrics import MultiSourceEvaluator
    torch.manual_seed(0)
    model = build_model(tiny("model.visual_stride=8")).eval()
    image, spec, _, _ = batch(B=4, H=32, W=64)
    g = torch.Generator().manual_seed(1)
    classes = torch.stack([torch.randperm(5, generator=g)[:2] for _ in range(4)])  # [B, 2]
    slots = torch.tensor([[0, 1]] * 4)
    gt = torch.zeros(4, 2, 32, 64)
    gt[:, 0, 8:24, 4:20], gt[:, 1, 4:28, 40:60] = 1, 1  # source n's box in frame n
    loader = [{"image": image, "spec": spec, "classes": classes, "gt": gt, "frame_slot": slots,
               "index": torch.arange(4), "id": [str(i) for i in range(4)]}]
    got = evaluate(model, loader, MultiSourceEvaluator(protocol="per_frame"), torch.device("cpu"))
    with torch.no_grad():  # by hand: each frame alone, maps side by side, scored per frame
        outs = [model(image[..., 32 * j:32 * (j + 1)], spec) for j in range(2)]

        def canvas(cls):
            return torch.cat([upsample_maps(localization_maps(o, cls, model.modulate), (32, 32))
                              for o in outs], dim=-1)
        pred = outs[0]["logits_a"].sigmoid().topk(2, dim=1).indices
        want = MultiSourceEvaluator(protocol="source")
        want.update(canvas(classes), canvas(pred), gt, classes, outs[0]["logits_a"].sigmoid(),
                    slots, torch.arange(4), ids=[str(i) for i in range(4)])
    want = want.compute()
    assert got.pop("protocol") == "per_frame" and want.pop("protocol") == "source"
    assert got.pop("num_silent") == 0  # evaluate's count; this batch does not say it
    assert got == want
    whole = evaluate(model, loader, MultiSourceEvaluator(protocol="source"), torch.device("cpu"))
    assert whole["CAP"] != got["CAP"]  # the whole canvas through the transformer: other maps


def test_zero_init_residual_is_a_choice():
    """By default the encoders start as the authors' (torchvision's init); with the key, every
    residual block starts as an identity (the recipe's configs/synthetic.yaml)."""
    ours = build_model(tiny("model.width=8", "model.zero_init_residual=true"))
    authors = build_model(tiny("model.width=8"))
    for trunk, zero in ((ours.visual.trunk, True), (ours.audio.trunk, True),
                        (authors.visual.trunk, False), (authors.audio.trunk, False)):
        weights = torch.cat([b.bn2.weight.detach() for layer in (trunk.layer1, trunk.layer4)
                             for b in layer])
        assert bool((weights == 0).all()) == zero


def test_compete_maps_gives_each_pixel_to_its_strongest_source():
    from models import compete_maps
    s = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.1, 0.9]])  # two sources, three pixels
    maps = torch.stack([s, torch.zeros_like(s)])[:, :, None, :]  # [B=2, N=2, 1, 3]
    classes = torch.tensor([[4, 7], [3, -1]])  # sample 1 has one source
    out = compete_maps(maps, classes, tau=0.01)
    # source 0 keeps pixel 0, loses pixel 2 to source 1; the tie at pixel 1 halves both
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[0.95, 0.275, 0.0], [0.0, 0.275, 0.95]]),
                               atol=1e-3, rtol=0)
    assert out[1, 1].abs().max() == 0  # padding stays zero
    torch.testing.assert_close(out[1, 0, 0], (maps[1, 0, 0] + 1) / 2)  # one source: rescaled only
    same = compete_maps(s[None, :1].expand(1, 2, 3)[:, :, None], torch.tensor([[1, 2]]), 0.1)
    torch.testing.assert_close(same[0, 0], same[0, 1])  # equal maps (EZ-VSL): order unchanged


def test_bicubic_upsampling_is_the_released_evaluation_s():
    """eval.upsample=bicubic: F.interpolate bicubic as the released evaluation (train.py:310,
    validate; its test.py does not run); the default is bilinear."""
    maps = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(upsample_maps(maps, (224, 224), "bicubic"), F.interpolate(
        maps, size=(224, 224), mode="bicubic", align_corners=False))
    torch.testing.assert_close(upsample_maps(maps, (224, 224)), F.interpolate(
        maps, size=(224, 224), mode="bilinear", align_corners=False))
    with pytest.raises(ValueError, match="upsampling must be one of"):
        upsample_maps(maps, (224, 224), "nearest")


def test_the_readme_model_snippet_runs():
    """README, "The model in five lines", as written: a paper config's model, its maps and scores."""
    import re
    text = open("README.md", encoding="utf-8").read()
    section = text.split("## The model in five lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["maps"].shape == (2, 2, 224, 224) and scope["scores"].shape == (2, 37)
    millions = sum(p.numel() for p in scope["model"].parameters()) / 1e6
    assert f"{millions:.2f} M parameters" in text.replace("\n", " ")  # the figure it quotes
