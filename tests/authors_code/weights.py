"""What the fixture of the released code does not store, set by the same rule on both sides.

The two ResNet18s (11 M parameters each) would not fit the fixture's size limit, so the script
that writes it (make_fixture.py, on the released model's `imgnet` and `audnet`) and the test that
reads it (tests/test_authors_code.py, on this project's `visual.trunk` and `audio.trunk`) both
call `fill_resnet`; the two hold the same keys (torchvision's names, without `fc`).
"""
import math

import torch

VISUAL_SEED, AUDIO_SEED = 1, 2  # fill_resnet's seeds for the visual and the audio ResNet18


@torch.no_grad()
def fill_resnet(net, seed):
    """Set every parameter and buffer of a torchvision-layout ResNet18 `net` from one
    torch.Generator seeded `seed`, drawing torch.randn(shape, generator=g) for each floating
    entry of net.state_dict() in sorted key order:
        conv weight [O, I, k, k]   randn / sqrt(I * k * k)
        BatchNorm weight           1 + 0.1 * randn
        BatchNorm bias             0.1 * randn
        running_mean               0.1 * randn
        running_var                exp(0.1 * randn)
    (num_batches_tracked is left as it is)."""
    g = torch.Generator().manual_seed(seed)
    state = net.state_dict(keep_vars=True)
    for key in sorted(state):
        t = state[key]
        if not t.is_floating_point():
            continue
        r = torch.randn(t.shape, generator=g)
        if t.ndim == 4:
            t.copy_(r / math.sqrt(t[0].numel()))
        elif key.endswith("running_var"):
            t.copy_((0.1 * r).exp())
        elif key.endswith("weight"):
            t.copy_(1 + 0.1 * r)
        elif key.endswith(("bias", "running_mean")):
            t.copy_(0.1 * r)
        else:
            raise ValueError(f"fill_resnet: no rule for {key} {tuple(t.shape)}")
