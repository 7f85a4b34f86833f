"""The PaSST family: the Patchout faSt Spectrogram Transformer (Koutini et al., Interspeech 2022),
an AST with factorised frequency and time positions, on AST's Kaldi fbank.

``config`` (:class:`PaSSTConfig`), ``model`` (:class:`PaSST`), ``weights`` (PaSST's releases
and ``hear21passt``'s module in, :func:`~.weights.to_passt` out; ImageNet DeiT to start from),
``flops``, ``recipe``. Patchout itself is every grid family's training option
(:mod:`flexiast.models.patchout`).
"""

from ..ast.config import PRESETS
from ..base import ModelFamily, register
from . import weights
from .config import PaSSTConfig
from .flops import flops
from .model import PaSST
from .recipe import RECIPE_KEYS, PaSSTSection, config_from_recipe

__all__ = ["PaSST", "PaSSTConfig", "flops", "FAMILY"]

FAMILY = register(ModelFamily(
    arch=PaSSTConfig.arch, config_class=PaSSTConfig, model_class=PaSST, feature_kind=PaSST.feature_kind,
    presets=PRESETS, detect=weights.detect, layouts=weights.LAYOUTS, load=weights.load,
    init_from=weights.init_from, flops=flops, recipe_section=PaSSTSection, config_from_recipe=config_from_recipe,
    recipe_keys=RECIPE_KEYS,
    tiny=dict(num_classes=5, input_fdim=36, input_tdim=96, embed_dim=32, depth=2, num_heads=2, patch_size=16,
              stride=10),
    example_calls=({}, {"patch_size": 8}, {"patch_size": (16, 24)}, {"patch_size": 12, "resize": "bl"},
                   {"pos_grid": "resize"}),
))
