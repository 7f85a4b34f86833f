"""flexiast: Audio Spectrogram Transformers whose patch size is chosen at run time.

Implements FlexiAST (Feng et al., Interspeech 2023) and coarse-to-fine training
(Feng et al., ICASSP 2024) on a Kaldi-compatible front end and an AST that loads the
weights of the official AST, FlexiAST and Hugging Face releases. Model families live in
:mod:`flexiast.models` (``create_model``, ``load_model``, ``list_models``).
"""

from .checkpoints import CheckpointError
from .constants import PATCH_SIZES, VERSION
from .fbank import fbank, mel_filterbank, num_frames
from .models import create_model, flops, list_models, load_model
from .models.ast import AST, PRESETS, ASTConfig, FlopCount
from .resize import bilinear_resize, grid_shape, pi_resize, pi_resize_matrix, resize_pos_grid

__version__ = VERSION

__all__ = [
    "AST", "ASTConfig", "PRESETS", "PATCH_SIZES", "CheckpointError", "FlopCount",
    "bilinear_resize", "create_model", "fbank", "flops", "grid_shape", "list_models", "load_model",
    "mel_filterbank", "num_frames", "pi_resize", "pi_resize_matrix", "resize_pos_grid",
]
