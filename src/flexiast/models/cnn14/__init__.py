"""The CNN14 family: PANNs' 14-layer CNN (Kong et al., TASLP 2020), six convolutional blocks over
the log-mel spectrogram whose computed positions follow the input length, on PANNs' Slaney log-mel.

``config`` (:class:`CNN14Config`, presets), ``model`` (:class:`CNN14`, :class:`CNN14Output`),
``weights`` (PANNs checkpoints in), ``flops`` (the analytic counter), ``recipe`` (the ``model:``
section of a recipe).
"""

from ..base import ModelFamily, register
from ..points import LengthPoints
from . import weights
from .config import PRESETS, CNN14Config
from .flops import FlopCount, flops
from .model import CNN14, CNN14Output
from .recipe import CNN14Section, config_from_recipe

__all__ = ["CNN14", "CNN14Config", "CNN14Output", "PRESETS", "FlopCount", "flops", "CNN14Section", "FAMILY"]

FAMILY = register(ModelFamily(
    arch=CNN14Config.arch, config_class=CNN14Config, model_class=CNN14, feature_kind=CNN14.feature_kind,
    presets=PRESETS, detect=weights.detect, layouts=weights.LAYOUTS, load=weights.load,
    init_from=weights.init_from, flops=flops, recipe_section=CNN14Section, config_from_recipe=config_from_recipe,
    # Three blocks (4, 8, 8 wide): two poolings, so 4 frames at least; a quarter of 32 frames still runs.
    tiny=dict(num_classes=5, input_fdim=16, input_tdim=32, channels=(4, 8, 8)),
    example_calls=({},), points=LengthPoints(), pools_lengths=True,
))
