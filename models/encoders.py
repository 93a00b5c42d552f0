"""Audio and visual encoders: ResNet18 trunks with a width option.

The ResNet18 here uses torchvision's parameter names, so at width 64 the ImageNet weights of
`torchvision.models.resnet18` load as they are; narrower widths exist for CPU-sized configs.
"""
import os
import socket

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import InputError

IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
# The allowed values of model.visual_stride, model.pretrained and model.audio_tokens, for callers
# that do not go through the config; the schema (utils/config.py) states them, and a test checks
# they agree.
OUTPUT_STRIDES = (32, 16, 8)
PRETRAINED = ("none", "imagenet")
AUDIO_TOKENS = ("global", "grid")


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """ResNet18 up to layer4 (no pooling, no fc).

    Args:
        in_channels: 3 for images, 1 for spectrograms.
        width: channels of layer1 (64 = standard; layer4 has 8 * width).
        output_stride: 32 (standard), 16 (layer4 stride 1) or 8 (layer3 and layer4 stride 1).
    Input [B, in_channels, H, W] -> [B, 8 * width, H / s, W / s].
    """

    def __init__(self, in_channels=3, width=64, output_stride=32, zero_init_residual=False):
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        w = width
        self.out_channels = 8 * w
        self.conv1 = nn.Conv2d(in_channels, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        s3 = 2 if output_stride > 8 else 1
        s4 = 2 if output_stride > 16 else 1
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, s3), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, s4), BasicBlock(8 * w, 8 * w))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: residual starts as identity
            if isinstance(m, BasicBlock) and zero_init_residual:
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class WeightsUnavailable(InputError, RuntimeError):
    """The ImageNet weights are neither cached nor downloadable (offline): one line, exit 2."""


def load_imagenet_weights(trunk, path=""):
    """Load a torchvision-layout ResNet18 state dict into the visual `trunk`: ImageNet's (width
    64) or, from `path`, any file of that layout at the trunk's width (e.g. the ImageNet stand-in
    written by study.pretrain_visual). Its `fc.*` entries are dropped.

    Without `path` it looks in the torch hub cache, then tries a download with a short timeout;
    fails with a message naming the file and the config key instead of hanging when offline.
    """
    if trunk.conv1.in_channels != 3:
        raise ValueError("pretrained weights are for the visual (3-channel) trunk")
    if not path and trunk.out_channels != 512:
        raise ValueError("the ImageNet ResNet18 is the standard width (model.width=64); a narrower "
                         "trunk loads a torchvision-layout file of its width with "
                         "model.pretrained_path")
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model.pretrained_path={path!r} does not exist")
    else:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(IMAGENET_URL))
        if not os.path.isfile(path):
            old = socket.getdefaulttimeout()
            socket.setdefaulttimeout(10)
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)  # else the error names a .partial
                torch.hub.download_url_to_file(IMAGENET_URL, path, progress=False)
            except Exception as e:
                raise WeightsUnavailable(
                    f"model.pretrained=imagenet needs the ResNet18 ImageNet weights, which could "
                    f"not be downloaded ({type(e).__name__}: {e}): set model.pretrained=none to "
                    f"train from scratch, or download {IMAGENET_URL} on a machine with internet "
                    f"and set model.pretrained_path=/path/to/{os.path.basename(IMAGENET_URL)} "
                    f"(or put it in {os.path.dirname(path)})") from None
            finally:
                socket.setdefaulttimeout(old)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        trunk.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the visual ResNet18 of width "
                         f"{trunk.out_channels // 8} (model.width): "
                         f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}"
                         ) from None


class VisualEncoder(nn.Module):
    """Image [B, 3, H, W] -> L2-normalized patch features f^v [B, P, D], P = (H/s)(W/s),
    and the grid size (H/s, W/s)."""

    def __init__(self, dim=512, width=64, output_stride=32, pretrained="none", pretrained_path="",
                 zero_init_residual=False):
        super().__init__()
        self.trunk = ResNet18Trunk(3, width, output_stride, zero_init_residual)
        if pretrained == "imagenet":
            load_imagenet_weights(self.trunk, pretrained_path)
        elif pretrained not in PRETRAINED:
            raise ValueError(f"model.pretrained must be one of {PRETRAINED}, got {pretrained!r}")
        self.proj = nn.Conv2d(self.trunk.out_channels, dim, 1)
        self.stride = output_stride

    def forward(self, image):
        x = self.proj(self.trunk(image))  # [B, D, h, w]
        grid = tuple(x.shape[-2:])
        x = F.normalize(x.flatten(2).transpose(1, 2), dim=-1)  # [B, P, D]
        return x, grid


class AudioEncoder(nn.Module):
    """Log spectrogram [B, 1, F, T] -> L2-normalized audio tokens f^a [B, 1, D] (`global`:
    max-pooled layer4, the paper) or [B, f * t, D] (`grid`: one token per layer4 cell)."""

    def __init__(self, dim=512, width=64, tokens="global", zero_init_residual=False):
        super().__init__()
        if tokens not in AUDIO_TOKENS:
            raise ValueError(f"audio_tokens must be {' or '.join(AUDIO_TOKENS)}, got {tokens!r}")
        self.trunk = ResNet18Trunk(1, width, 32, zero_init_residual)
        self.proj = nn.Linear(self.trunk.out_channels, dim)
        self.tokens = tokens

    def forward(self, spec):
        x = self.trunk(spec)  # [B, Ca, f, t]
        if self.tokens == "global":
            x = x.amax(dim=(2, 3)).unsqueeze(1)  # [B, 1, Ca]
        else:
            x = x.flatten(2).transpose(1, 2)  # [B, f * t, Ca]
        return F.normalize(self.proj(x), dim=-1)  # [B, Na, D]
