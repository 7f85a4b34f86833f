"""Every option set of flexiast, once: argparse choices, recipe validation and the code read them here.

A leaf module: it imports nothing from flexiast, so any layer may import it
(``tests/test_layering.py`` checks that). Each set is a tuple whose first entry is the
default where the option has one.
"""

from __future__ import annotations

#: flexiast's version (``flexiast.__version__``), recorded in what it writes.
VERSION = "0.1.0.dev0"

#: Patch sizes FlexiAST draws from and is evaluated at (FlexiAST, Sec. 2.3).
PATCH_SIZES = (8, 10, 12, 16, 20, 24, 30, 32, 40, 48)

#: How a patch kernel is resized: PI-resize (FlexiAST eq. 3) or bilinear ("BL", Fig. 1, 5).
RESIZE_METHODS = ("pi", "bl")
#: What an AST does with bins or frames that do not fill a last patch (``ASTConfig.partial_patches``).
PARTIAL_PATCHES = ("drop", "pad")
#: What an AST's classifier reads: the mean of its prefix tokens (AST), of its patch tokens
#: (SSAST's fine-tuning default, ``ft_avgtok``), or one learned query's attention over its patch
#: tokens (ElasticAST's masked attention pooling, Feng et al., Interspeech 2024).
HEAD_POOLINGS = ("prefix", "mean", "attention")

#: Which axes a patch size applies to: ``p x p``, ``stored_f x p`` (time), ``p x stored_t``
#: (frequency); FlexiAST Fig. 4a.
AXES = ("both", "time", "freq")

#: How the positional grid follows an input of another length (``AST.pos_embed_for``).
POS_GRID_POLICIES = ("leading", "centre", "resize")

#: Numeric precision of a run or a call; ``auto`` is the default everywhere (flexiast.hardware).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Devices a recipe may name (``cuda:1`` and such are accepted by the CLI's --device).
DEVICES = ("auto", "cpu", "cuda")

#: The model family of a recipe or a saved configuration that names none: every file written
#: before families had names holds an AST.
DEFAULT_ARCH = "ast"

#: Front ends, by the name a model family and its saved features give them: AST's Kaldi fbank,
#: and the 32 kHz Slaney log-mel of PANNs and HTS-AT (torchlibrosa's ``LogmelFilterBank``).
FEATURE_KINDS = ("kaldi_fbank", "slaney_logmel")

#: How features are normalised before the model: AST's ``(x - mean) / (2 std)`` with dataset
#: statistics, or not at all (HTS-AT and CNN14 normalise with a BatchNorm inside the model).
FEATURE_NORMALIZATIONS = ("mean_std", "none")

#: Temporal compressions of the coarse-to-fine paper (Sec. 2.2-2.3), ``method:C``.
COMPRESSION_METHODS = ("none", "fshift", "avgpool", "maxpool", "patch")

#: What an unreadable clip does: stop with an error naming it, or be left out and counted.
ON_ERROR = ("raise", "skip")

#: How ``data.kfold`` splits the folds (docs/TRAINING.md, "k-fold"). ``held_out``: fold k tests, fold
#: ``k mod K + 1`` picks the best epoch, the other ``K - 2`` train. ``ast``: AST's egs/esc50/run_esc.sh
#: (and FlexiAST's, coarse-to-fine's ESC-50 numbers): the other ``K - 1`` folds train and the test fold
#: itself is the validation set, so the epoch is chosen on test (optimistic).
KFOLD_PROTOCOLS = ("held_out", "ast")

#: How a phase draws its patch sizes (FlexiAST Sec. 2.3: uniform over PATCH_SIZES).
PATCH_SAMPLERS = ("fixed", "uniform", "weighted")
#: When a phase draws a patch size: once per optimizer step (FlexiAST), or once per clip
#: inside a packed batch (``data.batching: packed``), each clip at its own size.
PATCH_DRAWS = ("step", "clip")

#: How training clips form batches (docs/TRAINING.md, "Variable length"): ``fixed``, every
#: clip padded or cut to ``features.target_length``; ``packed``, clips at their native length
#: laid end to end in rows of ``data.row_tokens`` tokens (ElasticAST, Feng et al., Interspeech
#: 2024); ``bucketed``, clips of similar length padded to the longest of their batch.
BATCHINGS = ("fixed", "packed", "bucketed")

#: Training losses; ``auto`` is BCE for multi-label data, CE otherwise.
LOSSES = ("auto", "ce", "bce")

#: Optimizers and learning-rate schedules of a phase.
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "multistep", "cosine", "htsat")

#: The ``htsat`` schedule's defaults: HTS-AT's ``lr_rate`` and ``lr_scheduler_epoch`` (its
#: config.py and esc_config.py), and the rule its ``lr_foo`` applies after the last bound:
#: ``max(lr_rate[0] * 0.98 ** epoch, 0.03)``.
HTSAT_EPOCH_RATES = (0.02, 0.05, 0.1)
HTSAT_EPOCH_BOUNDS = (10, 20, 30)
HTSAT_LATE_DECAY, HTSAT_LATE_FLOOR = 0.98, 0.03

#: Where mixup mixes two clips: their waveforms before the front end (AST) or their log-mel
#: spectrograms after it (HTS-AT, which mixes inside its model after the front end).
MIXUP_DOMAINS = ("waveform", "spectrogram")

#: What picks ``best.safetensors`` besides a patch size: the mean over validation sizes.
SELECT_MEAN = "mean"

#: Which weights of a training run: best on validation, AST's weight average, the last checkpoint.
RUN_WEIGHTS = ("best", "averaged", "last")

#: How a clip embedding pools a layer's tokens: the prefix tokens the head reads, or the patch tokens.
EMBEDDING_POOLINGS = ("head", "mean")

#: Audio files a folder given to ``flexiast embed`` or ``predict --out`` is searched for (recursively).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

#: Files ``flexiast embed --out`` writes, and ``flexiast predict --out``.
EMBEDDING_FORMATS = (".safetensors", ".npz")
PREDICTION_FORMATS = (".csv", ".jsonl")

#: How window scores of long audio combine into clip scores.
AGGREGATES = ("mean", "max")

#: Layouts ``save_pretrained`` and ``flexiast convert`` write.
SAVE_FORMATS = ("flexiast", "hf")

#: Layouts ``flexiast export`` writes.
EXPORT_FORMATS = ("onnx", "hf", "flexiast")

#: What an exported ONNX graph takes: the normalised spectrogram, or the waveform (features inside).
EXPORT_INPUTS = ("spectrogram", "waveform")

#: Loader settings: chosen by flexiast (``auto``) or switched off (``off``).
AUTO, OFF = "auto", "off"
