"""The SSAST family: the AST encoder pretrained by masked-patch prediction (Gong et al.,
AAAI 2022), to be fine-tuned as an AST.

``config`` (:class:`SSASTConfig`), ``model`` (:class:`SSAST`: mask embedding, prediction
heads), ``weights`` (the official SSAST release in), ``flops``, ``recipe``. The task that
trains it is :class:`flexiast.tasks.MaskedPatchPrediction`; fine-tuning starts an AST from
its encoder (``init.path`` of an AST recipe; :meth:`SSAST.as_classifier`).
"""

from ..base import ModelFamily, register
from ..points import PatchPoints
from . import weights
from .config import PRESETS, SSASTConfig
from .flops import flops
from .model import HEADS, SSAST
from .recipe import RECIPE_KEYS, SSASTSection, config_from_recipe

__all__ = ["SSAST", "SSASTConfig", "HEADS", "flops", "FAMILY"]

FAMILY = register(ModelFamily(
    arch=SSASTConfig.arch, config_class=SSASTConfig, model_class=SSAST, feature_kind=SSAST.feature_kind,
    presets=PRESETS, detect=weights.detect, layouts=weights.LAYOUTS, load=weights.load,
    init_from=weights.init_from, flops=flops, recipe_section=SSASTSection, config_from_recipe=config_from_recipe,
    recipe_keys=RECIPE_KEYS,
    tiny=dict(input_fdim=32, input_tdim=64, embed_dim=32, depth=2, num_heads=2, patch_size=16),
    example_calls=({}, {"patch_size": 16, "stride": 8}), classifier=False, points=PatchPoints(flexible=False),
))
