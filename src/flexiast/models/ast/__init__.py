"""The AST family: the Audio Spectrogram Transformer (Gong et al. 2021) with a patch size
chosen per call (FlexiAST, Feng et al. 2023), on AST's Kaldi fbank.

``config`` (:class:`ASTConfig`, presets), ``model`` (:class:`AST`), ``weights`` (official
AST and FlexiAST, Hugging Face, timm ViT/DeiT, JAX ViT .npz in; Hugging Face out), ``flops`` (the
analytic counter), ``recipe`` (the ``model:`` section of a recipe).
"""

from ..base import ModelFamily, register
from . import hf_out, weights
from .config import PRESETS, ASTConfig
from .flops import FlopCount, flops
from .model import AST
from .recipe import RECIPE_KEYS, ASTSection, config_from_recipe

__all__ = ["AST", "ASTConfig", "PRESETS", "FlopCount", "flops", "FAMILY"]

FAMILY = register(ModelFamily(
    arch=ASTConfig.arch, config_class=ASTConfig, model_class=AST, feature_kind=AST.feature_kind,
    presets=PRESETS, detect=weights.detect, layouts=weights.LAYOUTS, load=weights.load,
    init_from=weights.init_from, flops=flops, writers={"hf": hf_out.write_hf},
    recipe_section=ASTSection, config_from_recipe=config_from_recipe, recipe_keys=RECIPE_KEYS,
    tiny=dict(num_classes=5, input_fdim=32, input_tdim=64, embed_dim=32, depth=2, num_heads=2, patch_size=16),
    example_calls=({}, {"patch_size": 8}, {"patch_size": (16, 24)}, {"patch_size": 12, "resize": "bl"}),
    packs=True,
))
