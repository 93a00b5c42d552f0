"""Models: `build_model(cfg)` translates the config into constructor arguments."""
from utils.errors import require

from .authors import AuthorsAVGN, convert_authors_state_dict
from .avgn import AVGN, compete_maps, localization_maps, modulated_cosine, presence, upsample_maps
from .ezvsl import EZVSL

# keys of the schema's `model` section with the one value model.arch=authors can honour (another
# value is an error); token_init_std and loc_features are not read by it: the released model's
# class tokens start at zero and its maps are its own logit (models/authors.py)
AUTHORS_FIXED = {"use_class_tokens": True, "use_grouping": True, "audio_tokens": "global",
                 "zero_init_residual": False}


def _build_authors(m):
    require("model", m, AUTHORS_FIXED, "model.arch=authors builds the released model")
    return AuthorsAVGN(num_classes=m.num_classes, dim=m.dim, depth=m.depth, heads=m.heads,
                       mlp_ratio=m.mlp_ratio, assignment=m.assignment, gumbel_tau=m.gumbel_tau,
                       assign_eps=m.assign_eps, width=m.width, visual_stride=m.visual_stride,
                       pretrained=m.pretrained, pretrained_path=m.pretrained_path)


def _build_avgn(m):
    if m.arch == "authors":
        return _build_authors(m)
    return AVGN(num_classes=m.num_classes, dim=m.dim, depth=m.depth, heads=m.heads,
                mlp_ratio=m.mlp_ratio, use_class_tokens=m.use_class_tokens,
                use_grouping=m.use_grouping, assignment=m.assignment, gumbel_tau=m.gumbel_tau,
                assign_eps=m.assign_eps,
                audio_tokens=m.audio_tokens, token_init_std=m.token_init_std,
                loc_features=m.loc_features, width=m.width, visual_stride=m.visual_stride,
                pretrained=m.pretrained, pretrained_path=m.pretrained_path,
                zero_init_residual=m.zero_init_residual)


def _build_ezvsl(m):
    if m.arch != "paper":
        raise ValueError(f"model.arch={m.arch} is a form of AVGN; model.name=ezvsl has one form "
                         f"(leave model.arch at 'paper')")
    return EZVSL(num_classes=m.num_classes, dim=m.dim, width=m.width, visual_stride=m.visual_stride,
                 audio_tokens=m.audio_tokens, pretrained=m.pretrained,
                 pretrained_path=m.pretrained_path, zero_init_residual=m.zero_init_residual)


MODELS = {"avgn": _build_avgn, "ezvsl": _build_ezvsl}


def build_model(cfg):
    """cfg: the full Config (uses cfg.model)."""
    if cfg.model.name not in MODELS:
        raise ValueError(f"unknown model.name {cfg.model.name!r}; known: {sorted(MODELS)}")
    return MODELS[cfg.model.name](cfg.model)


__all__ = ["AVGN", "AuthorsAVGN", "EZVSL", "build_model", "compete_maps",
           "convert_authors_state_dict", "localization_maps", "modulated_cosine", "presence",
           "upsample_maps"]
