"""flexiast: Audio Spectrogram Transformers whose patch size is chosen at run time.

Implements FlexiAST (Feng et al., Interspeech 2023) and coarse-to-fine training
(Feng et al., ICASSP 2024) on a Kaldi-compatible front end and an AST that loads the
weights of the official AST, FlexiAST and Hugging Face releases.
"""

from .checkpoints import CheckpointError
from .fbank import fbank, mel_filterbank, num_frames
from .flops import FlopCount, flops
from .model import AST, ASTConfig, PRESETS
from .resize import bilinear_resize, grid_shape, pi_resize, pi_resize_matrix, resize_pos_grid

__version__ = "0.1.0.dev0"

#: Patch sizes FlexiAST draws from and is evaluated at (Sec. 2.3).
PATCH_SIZES = (8, 10, 12, 16, 20, 24, 30, 32, 40, 48)

__all__ = [
    "AST", "ASTConfig", "PRESETS", "PATCH_SIZES", "CheckpointError", "FlopCount",
    "bilinear_resize", "fbank", "flops", "grid_shape", "mel_filterbank", "num_frames",
    "pi_resize", "pi_resize_matrix", "resize_pos_grid",
]
