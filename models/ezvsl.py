"""EZ-VSL baseline (Eq. 1): map = cos(f^a, f^v_p), the same for every class."""
import torch.nn as nn
import torch.nn.functional as F

from .encoders import AudioEncoder, VisualEncoder


class EZVSL(nn.Module):
    """Class-agnostic localization with the AVGN encoders.

    forward(image, spec) returns the same keys as AVGN: audio_groups [B, 1, D] (f^a, pooled over
    audio tokens), visual_groups None, logits_a / logits_v [B, C] zeros (uniform presence, so
    the multi-source metrics apply unchanged), token_logits None (no group loss).
    Arguments: keys of the schema's `model` section (utils/config.py), with its defaults (a test
    checks that they agree); `models.build_model` passes every one.
    """

    class_aware, modulate = False, False

    def __init__(self, num_classes, dim=512, width=64, visual_stride=32, audio_tokens="global",
                 pretrained="none", pretrained_path="", zero_init_residual=False):
        super().__init__()
        self.visual = VisualEncoder(dim, width, visual_stride, pretrained, pretrained_path,
                                    zero_init_residual)
        self.audio = AudioEncoder(dim, width, audio_tokens, zero_init_residual)
        self.num_classes = num_classes

    def forward(self, image, spec):
        fv, grid = self.visual(image)  # [B, P, D]
        fa = self.audio(spec)  # [B, Na, D]
        zeros = fv.new_zeros(fv.shape[0], self.num_classes)
        fa = F.normalize(fa.mean(dim=1, keepdim=True), dim=-1)  # [B, 1, D]
        return {
            "fv": fv, "grid": grid, "fa": fa, "audio_groups": fa, "visual_groups": None,
            "logits_a": zeros, "logits_v": zeros, "token_logits": None,
        }
