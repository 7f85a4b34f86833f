"""CNN14: PANNs' 14-layer CNN (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for
Audio Pattern Recognition", IEEE/ACM TASLP 2020, Sec. III-A and Table 1) on any input length.

The network of ``Cnn14`` in qiuqiangkong/audioset_tagging_cnn (pytorch/models.py; also shipped by
``panns_inference.models``), after its front end: flexiast computes the log-mel itself (features
kind ``slaney_logmel``, :mod:`flexiast.logmel`). For ``spec[B, T, F]`` (log-mel in dB, not
normalised):

1. ``bn0``: BatchNorm over the ``F`` mel bins (``Cnn14.forward``: ``x.transpose(1, 3)``, ``bn0``,
   back), the learned normaliser in place of dataset statistics.
2. The image ``[B, 1, T, F]`` (time is the height, as in PANNs) through ``conv_block1`` ..
   ``conv_block6`` (``ConvBlock``): ``relu(bn1(conv1(x)))``, ``relu(bn2(conv2(x)))``, 3x3
   convolutions with padding 1 and no bias, then 2x2 average pooling (floor: an odd row is
   dropped) after blocks 1-5 and a (1, 1) pooling, the identity, after block 6; dropout
   ``conv_dropout`` (0.2) after every block. A map of ``T_k x F_k`` positions after block ``k``,
   ``T_k = floor(T_{k-1} / 2)``.
3. The clip pooling: the mean over frequency, then ``max_t + mean_t`` over time
   (``torch.max(x, dim=2)`` plus ``torch.mean(x, dim=2)``): ``[B, C]``.
4. Dropout ``fc_dropout`` (0.5), ``fc1`` and ReLU: PANNs' 2048-d ``embedding``; ``fc_audioset``:
   the class logits. PANNs applies the sigmoid inside the model (``clipwise_output``); here, as
   for every flexiast family, the model returns logits and the loss (BCE with logits, or CE)
   applies it. ``Cnn14.forward`` also applies a second dropout of 0.5 after ``fc1``, but only to
   the embedding it returns: ``fc_audioset`` reads ``fc1``'s output before it, so the classifier
   trains without that dropout, and so it does here (the embedding returned here is the one
   before that dropout: in evaluation PANNs' is the same tensor).

The module names are PANNs' (``bn0``, ``conv_block{k}.conv{1,2}``, ``.bn{1,2}``, ``fc1``,
``fc_audioset``, whatever the dataset), so PANNs' checkpoints load without renaming
(:mod:`flexiast.models.cnn14.weights`). Nothing depends on the input length: the number of
positions every block computes follows it, so an input average-pooled 2x over time (coarse-to-
fine's ``avgpool:2``, Liu et al.'s "Pool2") costs about half the FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..base import FlexModel, TokenEmbedding
from ..layers import check_spectrogram
from .config import CNN14Config

__all__ = ["CNN14", "CNN14Output", "ConvBlock", "FIXED_BY_WEIGHTS", "PATCH_SETTINGS"]

#: Configuration fields that weights fix: :meth:`CNN14.adapt` cannot change them.
FIXED_BY_WEIGHTS = ("input_fdim", "channels")
#: An AST's per-call patch settings, which a CNN does not have.
PATCH_SETTINGS = ("patch_size", "stride", "resize", "pos_grid")


@dataclass(frozen=True)
class CNN14Output:
    """CNN14's outputs for ``spec[B, T, F]``: ``clip [B, C]`` logits (before the sigmoid; PANNs'
    ``clipwise_output`` is their sigmoid) and PANNs' ``embedding [B, D]`` (``fc1`` after ReLU)."""

    clip: torch.Tensor
    embedding: torch.Tensor


class ConvBlock(nn.Module):
    """PANNs' ``ConvBlock``: two (3x3 convolution without bias, BatchNorm, ReLU), then average
    pooling of ``pool`` (2x2 after blocks 1-5; none after the last)."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=2) if self.pool else x


def _no_call(call: dict, what: str) -> None:
    if call:
        bad = sorted(call)
        patch = [k for k in bad if k in PATCH_SETTINGS]
        why = " CNN14 is a CNN: it has no patches and computes every position of the input it is given" if patch else ""
        raise ValueError(f"{what}: unexpected {', '.join(bad)}; CNN14 takes no per-call settings.{why}")


def clip_pool(x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """PANNs' global pooling of a map ``[B, C, T', F']``: the mean over frequency, then the
    maximum plus the mean over time: ``[B, C]``. ``positions [B]``: clip ``b``'s maximum and
    mean run over its first ``positions[b]`` time positions only (a padded batch's clips, each
    pooled over the positions that hold its own frames)."""
    x = x.mean(dim=3)
    if positions is None:
        return x.max(dim=2).values + x.mean(dim=2)
    keep = (torch.arange(x.shape[2], device=x.device)[None, :] < positions[:, None].to(x.device))[:, None, :]
    top = x.masked_fill(~keep, float("-inf")).max(dim=2).values
    return top + (x * keep).sum(dim=2) / keep.sum(dim=2)


class CNN14(FlexModel):
    """CNN14 (PANNs, Kong et al. 2020) on any input length: see the module docstring.

    ``CNN14(num_classes=527, input_fdim=64, channels=(64, ..., 2048))`` is PANNs' model
    (:class:`CNN14Config`). ``model(spec)`` gives clip logits, :meth:`outputs` the logits and
    PANNs' embedding, :meth:`embed` any block's feature map.
    """

    config_class = CNN14Config
    head_prefix = "fc_audioset."
    #: PANNs' log-mel: 64 Slaney mel bins in dB, 32 kHz, hop 320, 50-14,000 Hz.
    feature_kind = "slaney_logmel"

    def __init__(self, num_classes: int | None = None, **kwargs):
        super().__init__(num_classes, **kwargs)
        cfg = self.config
        self.bn0 = nn.BatchNorm2d(cfg.input_fdim)
        widths = (1, *cfg.channels)
        for k in range(cfg.num_blocks):
            self.add_module(f"conv_block{k + 1}", ConvBlock(widths[k], widths[k + 1], pool=k < cfg.num_blocks - 1))
        self.conv_dropout = nn.Dropout(cfg.conv_dropout)
        self.fc_dropout = nn.Dropout(cfg.fc_dropout)
        self.fc1 = nn.Linear(cfg.num_features, cfg.num_features)
        self.fc_audioset = nn.Linear(cfg.num_features, cfg.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PANNs' initialisation (pytorch/models.py ``init_layer``, ``init_bn``): Xavier-uniform
        convolution and linear weights, zero biases, BatchNorms at weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{k + 1}") for k in range(self.config.num_blocks)]

    @property
    def num_layers(self) -> int:
        """The convolutional blocks: :meth:`embed`'s layers are ``0`` (the normalised input),
        ``1 .. blocks`` (after each block) and the last of them carries PANNs' embedding."""
        return self.config.num_blocks

    def token_frames(self, layer: int | None = None) -> int:
        """Input frames per time row of :meth:`embed`'s ``layer`` map: 1 at the input, doubling
        at each pooling (32 after CNN14's fifth block and its sixth)."""
        chosen = self.layer_index(layer)
        return 2 ** min(chosen, self.config.num_blocks - 1)

    # -- the pipeline ------------------------------------------------------------------
    def _check_input(self, spec: torch.Tensor) -> None:
        cfg = self.config
        check_spectrogram(spec, cfg.input_fdim, "CNN14", cfg.min_frames,
                          f"spectrogram has {{frames}} frames; this CNN14's {cfg.num_blocks - 1} 2x2 poolings need an "
                          f"input length of at least {cfg.min_frames} frames")

    def image(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec[B, T, F]`` normalised over the mel bins (``bn0``): the image ``[B, 1, T, F]``."""
        self._check_input(spec)
        x = self.bn0(spec.transpose(1, 2).unsqueeze(-1))  # [B, F, T, 1]: the mel bins are bn0's channels
        return x.squeeze(-1).transpose(1, 2).unsqueeze(1)

    def _maps(self, spec: torch.Tensor, upto: int) -> torch.Tensor:
        """The map ``[B, C, T', F']`` after :meth:`embed`'s layer ``upto`` (before its dropout)."""
        x = self.image(spec)
        for k, block in enumerate(self.blocks[:upto]):
            if k:
                x = self.conv_dropout(x)
            x = block(x)
        return x

    def _head_input(self, spec: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """PANNs' embedding ``[B, D]``: the last map (after its dropout) pooled, dropout, ``fc1``, ReLU;
        with ``lengths``, each clip pooled over the time positions that hold its frames
        (``ceil(length / token_frames)``, a padded batch's padding left out of the pooling)."""
        x = self.conv_dropout(self._maps(spec, self.num_layers))
        positions = None
        if lengths is not None:
            step = self.token_frames()
            positions = (torch.as_tensor(lengths) + step - 1).div(step, rounding_mode="floor").clamp(1, x.shape[2])
        return F.relu(self.fc1(self.fc_dropout(clip_pool(x, positions))))

    def outputs(self, spec: torch.Tensor, lengths: torch.Tensor | None = None, **call) -> CNN14Output:
        """Clip logits and PANNs' embedding for ``spec[B, T, F]`` (:class:`CNN14Output`); ``lengths
        [B]``: each clip's own frames of a padded batch, the rest left out of the clip pooling."""
        _no_call(call, "outputs")
        embedding = self._head_input(spec, lengths)
        return CNN14Output(clip=self.fc_audioset(embedding), embedding=embedding)

    def forward(self, spec: torch.Tensor, lengths: torch.Tensor | None = None, **call) -> torch.Tensor:
        """Clip logits ``[B, classes]`` (before the sigmoid) for ``spec[B, T, F]`` of at least
        :attr:`CNN14Config.min_frames` frames (``lengths``: as :meth:`outputs`)."""
        _no_call(call, "forward")
        return self.outputs(spec, lengths).clip

    def embed(self, spec: torch.Tensor, *, layer: int | None = None, **call) -> TokenEmbedding:
        """The feature map of ``layer`` (:attr:`num_layers`; None: the last block's) as tokens on a
        ``(freq, time)`` grid: ``tokens [B, F' T', C]``, frequency-major like every family's grid.
        ``prefix [B, 1, C]`` is what a head reads there: at the last layer PANNs' embedding (``fc1``
        after ReLU, what the classifier reads), at an earlier one the same clip pooling of its
        map (mean over frequency, max plus mean over time). Layer 0 is the normalised input,
        one channel wide."""
        _no_call(call, "embed")
        chosen = self.layer_index(layer)
        x = self._maps(spec, chosen)  # [B, C, T', F']
        b, c, t, f = x.shape
        tokens = x.permute(0, 3, 2, 1).reshape(b, f * t, c)
        if chosen == self.num_layers:
            prefix = F.relu(self.fc1(self.fc_dropout(clip_pool(self.conv_dropout(x)))))
        else:
            prefix = clip_pool(x)
        return TokenEmbedding(prefix=prefix.unsqueeze(1), tokens=tokens, grid=(f, t))

    # -- other geometries ---------------------------------------------------------------
    def adapt(self, *, kernel_resize: str = "pi", **changes) -> "CNN14":
        """This network for another ``input_tdim`` (no weight changes: a CNN computes every
        position it is given), ``num_classes`` (a new ``fc_audioset``), ``labels`` or dropout.
        Patch settings are refused; ``kernel_resize`` is accepted for the engine's sake and unused."""
        if not changes:
            return self
        patch = sorted(k for k in changes if k in PATCH_SETTINGS)
        if patch:
            raise ValueError(f"cannot adapt {', '.join(patch)}: CNN14 is a CNN without patches (its 3x3 "
                             "kernels are fixed and every input position is computed)")
        return self._rebuilt(changes, FIXED_BY_WEIGHTS)

    def fixed(self, *, input_tdim: int | None = None, **call) -> "CNN14":
        """A copy for ``input_tdim`` frames: nothing is resized per call, so it computes what this
        model does (``call`` must be empty: CNN14 has no per-call settings)."""
        _no_call(call, "fixed")
        return self._rebuilt({} if input_tdim is None else {"input_tdim": input_tdim})
