"""Write tests/authors_code/fixture.pt with the released AVGN code itself (stoneMo/AVGN).

tests/test_authors_code.py checks `model.arch=authors` (models/authors.py, losses.py:
AuthorsCriterion) against this file, with no network and none of the released code at test
time. Regenerate it only when the fixture's contents change, in a scratch environment (the
released code needs `timm` and `einops`, which this project does not), from the repository root:

    git clone https://github.com/stoneMo/AVGN /tmp/AVGN            # commit 5ab8cab
    pip install --target /tmp/authors_pkgs --no-deps timm einops   # with this venv's pip
    PYTHONPATH=/tmp/authors_pkgs:/tmp/AVGN python -m tests.authors_code.make_fixture

(only the released model.py and grouping.py are imported; timm 1.0.31 and einops 0.8.2 wrote
the stored file). It builds the released `AVGN` at a small size its arguments allow (dim 64,
10 classes, depth 2 in both modalities, tau 0.03; the visual ResNet18 built without downloading
ImageNet weights), then stores, in a dict that loads with torch.load(weights_only=True):

    meta        the sizes, seeds, classes of the batch, the versions
    init        per entry of the freshly built model's state dict: [numel, mean, std, min, max]
    state       the state dict under test (released key names, `han_encoder` included): the
                fresh weights plus 0.05 * randn (seeded) on every parameter outside the two
                ResNet18s, so that no LayerNorm is at 1 / 0 and no token at zero. The ResNet18s
                (`imgnet.*`, `audnet.*`) are left out: both sides set them with
                tests/authors_code/weights.py: fill_resnet (seeds VISUAL_SEED, AUDIO_SEED)
    inputs      frames [B, 3, 224, 224] (the first frame of each mixture; the second is zeros),
                spec [B, 1, 128, 96], cls_target [B, 2, C] (one-hot per frame)
    eval_soft   model.eval(), soft assignment: every loss term, Savl (the maps / tau), the audio
                and visual groups, the gradient norm of every parameter after backward of
                loc + cls_token + cls_pred (train.py:268-269)
    eval_hard   the same weights, --attn_assign hard, eval(): the loss terms and Savl
    train_soft  model.train() with every DropPath at rate 0 (BatchNorm on the batch's
                statistics): loss terms, Savl, gradient norms, two BatchNorms' running stats
    train_drop  model.train() with DropPath at the released rate 0.1, torch.manual_seed(DROP_SEED)
                just before the forward (the masks are the first random numbers it draws, one
                per sample and residual branch, the visual blocks' then the audio blocks'):
                loss terms, Savl, gradient norms
"""
import argparse
import os
import sys
from argparse import Namespace

import numpy as np
import torch
import torchvision

from tests.authors_code.weights import AUDIO_SEED, VISUAL_SEED, fill_resnet

COMMIT = "5ab8cab"  # stoneMo/AVGN, "Merge pull request #1 from YapengTian/patch-1"
SEED, PERTURB_SEED, INPUT_SEED, DROP_SEED = 0, 3, 4, 5
DROP_PATH = 0.1  # model.py:64 and :83
B, C, D, DEPTH, TAU = 4, 10, 64, 2, 0.03
FIRST, SECOND = [0, 3, 5, 7], [2, 1, 9, 4]  # the class of each mixture's first / second frame
SPEC = (1, 128, 96)
RESNETS = ("imgnet.", "audnet.")
RUNNING = ("imgnet.bn1.running_mean", "audnet.layer4.1.bn2.running_var")


def released_avgn(assignment):
    """The released AVGN (model.py:11) at the fixture's size; resnet18(pretrained=True) is
    built without weights (no download: fill_resnet sets them)."""
    import model as released  # the released model.py (PYTHONPATH)
    released.resnet18 = lambda pretrained=False: torchvision.models.resnet18(weights=None)
    args = Namespace(attn_assign=assignment, num_class=C, dim=D, depth_aud=DEPTH,
                     depth_vis=DEPTH)
    return released.AVGN(TAU, D, 0.0, 0.0, args)


def stats(t):
    t = t.double()
    return torch.tensor([t.numel(), t.mean(), t.std() if t.numel() > 1 else 0.0, t.min(),
                         t.max()], dtype=torch.float64)


def run(net, frames, spec, cls_target, grads):
    """One forward (and backward when `grads`) of the released model; returns its outputs."""
    captured = {}
    hooks = [getattr(net, name).register_forward_hook(
        lambda m, i, o, name=name: captured.__setitem__(name, o))
        for name in ("audio_encoder", "visual_encoder", "fc_prob_a", "fc_prob_v")]
    image = torch.stack([frames, torch.zeros_like(frames)], dim=1)  # [B, 2, 3, H, W]
    net.zero_grad(set_to_none=True)
    loc, savl, cls_token, cls_pred = net(image, spec, mode="train", cls_target=cls_target)
    for h in hooks:
        h.remove()
    # the two terms of cls_pred, through the released method (model.py:122-124, 180)
    a = torch.sigmoid(captured["fc_prob_a"]).sum(dim=-1)  # [B, C]
    v = torch.sigmoid(captured["fc_prob_v"]).sum(dim=-1)
    cls_audio = net.cls_pred_loss(a, cls_target.sum(dim=1))
    cls_visual = net.cls_pred_loss(v, cls_target[:, 0])
    assert torch.allclose(cls_audio + cls_visual, cls_pred, atol=1e-6)
    out = {"loc": loc.item(), "cls_token": cls_token.item(), "cls_pred": cls_pred.item(),
           "cls_audio": cls_audio.item(), "cls_visual": cls_visual.item(),
           "total": (loc + cls_token + cls_pred).item(), "Savl": savl.detach().clone(),
           "audio_groups": captured["audio_encoder"][0].detach().clone(),
           "visual_groups": captured["visual_encoder"][0].detach().clone()}
    if grads:
        (loc + cls_token + cls_pred).backward()
        out["grad_norms"] = {k: p.grad.norm().item() for k, p in net.named_parameters()
                             if p.grad is not None}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "fixture.pt"))
    args = p.parse_args(argv)

    torch.manual_seed(SEED)
    net = released_avgn("soft")
    init = {k: stats(v) for k, v in net.state_dict().items() if v.is_floating_point()}
    g = torch.Generator().manual_seed(PERTURB_SEED)
    with torch.no_grad():
        for k, prm in sorted(net.named_parameters()):
            if not k.startswith(RESNETS):
                prm.add_(0.05 * torch.randn(prm.shape, generator=g))
    fill_resnet(net.imgnet, VISUAL_SEED)
    fill_resnet(net.audnet, AUDIO_SEED)
    state = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith(RESNETS)}

    g = torch.Generator().manual_seed(INPUT_SEED)
    frames = torch.randn(B, 3, 224, 224, generator=g)
    spec = torch.randn(B, *SPEC, generator=g)
    cls_target = torch.zeros(B, 2, C)
    cls_target[torch.arange(B), 0, FIRST] = 1
    cls_target[torch.arange(B), 1, SECOND] = 1

    net.eval()
    eval_soft = run(net, frames, spec, cls_target, grads=True)
    hard = released_avgn("hard")
    hard.load_state_dict(net.state_dict())
    hard.eval()
    eval_hard = run(hard, frames, spec, cls_target, grads=False)
    net.train()
    for m in net.modules():
        if type(m).__name__ == "DropPath":
            m.drop_prob = 0.0
    train_soft = run(net, frames, spec, cls_target, grads=True)
    sd = net.state_dict()
    train_soft["running"] = {k: sd[k].clone() for k in RUNNING}
    for m in net.modules():
        if type(m).__name__ == "DropPath":
            m.drop_prob = DROP_PATH
    torch.manual_seed(DROP_SEED)
    train_drop = run(net, frames, spec, cls_target, grads=True)

    import einops
    import timm
    fixture = {
        "meta": {"commit": COMMIT, "B": B, "num_class": C, "dim": D, "depth": DEPTH, "tau": TAU,
                 "first": FIRST, "second": SECOND, "seed": SEED, "perturb_seed": PERTURB_SEED,
                 "input_seed": INPUT_SEED, "visual_seed": VISUAL_SEED, "audio_seed": AUDIO_SEED,
                 "drop_seed": DROP_SEED, "drop_path": DROP_PATH,
                 "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                             f"timm {timm.__version__}, einops {einops.__version__}, "
                             f"numpy {np.__version__}, python {sys.version.split()[0]}"},
        "init": init, "state": state,
        "inputs": {"frames": frames, "spec": spec, "cls_target": cls_target},
        "eval_soft": eval_soft, "eval_hard": eval_hard, "train_soft": train_soft,
        "train_drop": train_drop,
    }
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    for name in ("eval_soft", "eval_hard", "train_soft", "train_drop"):
        print(name, {k: round(v, 5) for k, v in fixture[name].items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
