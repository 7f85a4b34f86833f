"""The HTS-AT family: the hierarchical token-semantic audio transformer (Chen et al., ICASSP
2022), a Swin Transformer over a folded log-mel spectrogram whose number of time tokens
follows the input length, on HTS-AT's Slaney log-mel.

``config`` (:class:`HTSATConfig`, presets), ``model`` (:class:`HTSAT`, :class:`SEDOutput`),
``weights`` (official HTS-AT Lightning checkpoints, ImageNet Swin, Hugging Face CLAP audio
towers in), ``flops`` (the analytic counter), ``recipe`` (the ``model:`` section of a recipe).
"""

from ..base import ModelFamily, register
from ..points import LengthPoints
from . import weights
from .config import PRESETS, HTSATConfig
from .flops import FlopCount, flops
from .model import HTSAT, SEDOutput
from .recipe import HTSATSection, config_from_recipe

__all__ = ["HTSAT", "HTSATConfig", "SEDOutput", "PRESETS", "FlopCount", "flops", "HTSATSection", "FAMILY"]

FAMILY = register(ModelFamily(
    arch=HTSATConfig.arch, config_class=HTSATConfig, model_class=HTSAT, feature_kind=HTSAT.feature_kind,
    presets=PRESETS, detect=weights.detect, layouts=weights.LAYOUTS, load=weights.load,
    init_from=weights.init_from, flops=flops, recipe_section=HTSATSection, config_from_recipe=config_from_recipe,
    # 16 mel bins folded twice (a 32 x 64 image at 64 frames): stage 1's 8 x 8 grid has shifted
    # 4 x 4 windows, stage 2's 4 x 4 grid one window; a quarter (16 frames, one unit) still runs.
    tiny=dict(num_classes=5, input_fdim=16, input_tdim=64, embed_dim=16, depths=(2, 2), num_heads=(2, 4),
              window_size=4, freq_ratio=2, drop_path_rate=0.0),
    example_calls=({},), points=LengthPoints(), pools_lengths=True,
))
