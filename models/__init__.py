"""Models: `build_model(cfg)` translates the config into constructor arguments."""
from .avgn import AVGN, compete_maps, localization_maps, modulated_cosine, presence, upsample_maps
from .ezvsl import EZVSL


def _build_avgn(m):
    return AVGN(num_classes=m.num_classes, dim=m.dim, depth=m.depth, heads=m.heads,
                mlp_ratio=m.mlp_ratio, use_class_tokens=m.use_class_tokens,
                use_grouping=m.use_grouping, assignment=m.assignment, gumbel_tau=m.gumbel_tau,
                assign_eps=m.assign_eps,
                audio_tokens=m.audio_tokens, token_init_std=m.token_init_std,
                loc_features=m.loc_features, width=m.width, visual_stride=m.visual_stride,
                pretrained=m.pretrained, pretrained_path=m.pretrained_path,
                zero_init_residual=m.zero_init_residual)


def _build_ezvsl(m):
    return EZVSL(num_classes=m.num_classes, dim=m.dim, width=m.width, visual_stride=m.visual_stride,
                 audio_tokens=m.audio_tokens, pretrained=m.pretrained,
                 pretrained_path=m.pretrained_path, zero_init_residual=m.zero_init_residual)


MODELS = {"avgn": _build_avgn, "ezvsl": _build_ezvsl}


def build_model(cfg):
    """cfg: the full Config (uses cfg.model)."""
    if cfg.model.name not in MODELS:
        raise ValueError(f"unknown model.name {cfg.model.name!r}; known: {sorted(MODELS)}")
    return MODELS[cfg.model.name](cfg.model)


__all__ = ["AVGN", "EZVSL", "build_model", "compete_maps", "localization_maps", "modulated_cosine",
           "presence", "upsample_maps"]
