"""SSAST: the AST encoder pretrained by masked-patch prediction (Gong et al., AAAI 2022).

A fraction of the patch embeddings is replaced by a learned ``mask_embed`` before the
positions are added; the encoder's output at those positions feeds two heads, each
``Linear(D, D) - ReLU - Linear(D, pf * pt)`` (SSAST's ``cpredlayer`` and ``gpredlayer``):

* discriminative: for clip ``b`` with masked positions ``1..M``, predictions ``c_i`` and the
  true patches ``x_j`` (the normalised fbank values, flattened frequency-major as
  ``torch.nn.Unfold`` gives them), ``S_ji = <x_j, c_i>``; the InfoNCE loss is
  ``-mean_{b, j} log softmax_i(S_j.)_j`` (each true patch must pick its own prediction
  among the clip's other masked positions);
* generative: ``g_i`` regresses ``x_i``, MSE over every value.

SSAST computes the two from separate forward passes with independent masks and trains on
``NCE + 10 MSE`` (``traintest_mask.py``); :meth:`SSAST.forward` runs any number of such
passes as one batch (:mod:`flexiast.tasks.masked_patch` draws the masks and forms the losses).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...resize import to_pair
from ..ast.config import ASTConfig
from ..ast.model import AST
from .config import SSASTConfig

__all__ = ["SSAST", "HEADS", "patches"]

#: The prediction heads, in the order :meth:`SSAST.forward` stacks them by default.
HEADS = ("discriminative", "generative")


def patches(spec: torch.Tensor, patch: tuple[int, int], stride: tuple[int, int],
            grid: tuple[int, int]) -> torch.Tensor:
    """``[B, N, pf * pt]``: the input values of each patch of ``spec [B, frames, mel_bins]``,
    on the ``grid`` the model embeds (zero-padded to whole patches where the grid needs it),
    each flattened frequency-major: SSAST's ``Unfold`` of the ``[B, 1, mel_bins, frames]`` input."""
    x = spec.transpose(1, 2).unsqueeze(1)
    need = [(g - 1) * s + p for g, s, p in zip(grid, stride, patch)]
    x = F.pad(x, (0, max(0, need[1] - x.shape[3]), 0, max(0, need[0] - x.shape[2])))
    return F.unfold(x[:, :, : need[0], : need[1]], kernel_size=patch, stride=stride).transpose(1, 2)


class SSAST(AST):
    """The AST encoder with SSAST's mask embedding and prediction heads (no classifier).

    ``SSAST(config=SSASTConfig(...))``; ``model(spec)`` gives both heads' predictions for
    every patch, ``[2, B, N, pf * pt]``; ``model(spec, masked=idx)`` with ``idx [P, B, M]``
    (masked positions, row-major in the token grid) runs ``P`` masked passes in one batch and
    gives ``[P, B, M, pf * pt]``, pass ``p`` read by ``heads[p]``. Fine-tuning keeps the
    encoder and drops the rest (:meth:`as_classifier`).
    """

    config_class = SSASTConfig

    def _build_output(self, cfg: SSASTConfig) -> None:
        d, k = cfg.embed_dim, cfg.patch_area
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.cpredlayer = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, k))
        self.gpredlayer = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, k))

    def reset_parameters(self) -> None:
        """AST's initialisation, and Xavier-normal for the mask embedding (SSAST's)."""
        super().reset_parameters()
        nn.init.xavier_normal_(self.mask_embed)

    def _head(self, name: str) -> nn.Module:
        if name not in HEADS:
            raise ValueError(f"head {name!r} is not one of {', '.join(HEADS)}")
        return self.cpredlayer if name == "discriminative" else self.gpredlayer

    def _own_patch(self, patch_size, stride) -> tuple[tuple[int, int], tuple[int, int]]:
        patch, stride = self.config.resolve_patch(patch_size, stride)
        if patch != self.config.patch_size:
            raise ValueError(f"patch_size={patch}: this SSAST's heads predict {self.config.patch_size} patches; "
                             "its calls take that patch size only")
        return patch, stride

    def grid_of(self, spec: torch.Tensor, stride=None) -> tuple[int, int]:
        """The token grid of ``spec`` at the stored patch."""
        patch, stride = self._own_patch(None, stride)
        return self.config.grid_at((spec.shape[2], spec.shape[1]), patch, stride)

    def patches(self, spec: torch.Tensor, stride=None) -> torch.Tensor:
        """The true values of every patch, ``[B, N, pf * pt]`` (:func:`patches`)."""
        patch, stride = self._own_patch(None, stride)
        return patches(spec, patch, stride, self.grid_of(spec, stride))

    def forward(self, spec: torch.Tensor, masked: torch.Tensor | None = None, heads: tuple[str, ...] = HEADS,
                patch_size=None, resize: str = "pi", stride=None, pos_grid: str = "leading") -> torch.Tensor:
        """Predictions of the hidden patches (see the class); ``patch_size`` may only be the stored one."""
        self._own_patch(patch_size, stride)
        p = self.config.prefix_tokens
        if masked is None:
            tokens = self.forward_features(spec, None, resize, stride, pos_grid)[:, p:]
            return torch.stack([self._head(h)(tokens) for h in heads])
        passes, b, m = masked.shape
        if passes != len(heads):
            raise ValueError(f"masked has {passes} passes for {len(heads)} heads ({', '.join(heads)})")
        n = self.grid_of(spec, stride)
        n = n[0] * n[1]
        dense = torch.zeros(passes * b, n, dtype=torch.bool, device=spec.device)
        dense.scatter_(1, masked.reshape(passes * b, m), True)
        x = self.forward_features(spec.repeat(passes, 1, 1), None, resize, stride, pos_grid, mask=dense)
        hidden = x[:, p:].gather(1, masked.reshape(passes * b, m, 1).expand(-1, -1, x.shape[-1]))
        hidden = hidden.reshape(passes, b, m, -1)
        return torch.stack([self._head(h)(hidden[i]) for i, h in enumerate(heads)])

    def at_patch_size(self, patch_size=None, **kwargs) -> "SSAST":
        """:meth:`AST.at_patch_size` at the stored patch (the heads fix it)."""
        self._own_patch(patch_size, kwargs.get("stride"))
        return super().at_patch_size(patch_size, **kwargs)

    fixed = at_patch_size

    def adapt(self, *, kernel_resize: str = "pi", **changes) -> "SSAST":
        """:meth:`AST.adapt` for another input length or stride; the patch size stays (the
        heads predict whole patches of it)."""
        if "patch_size" in changes and to_pair(changes["patch_size"], "patch_size") != self.config.patch_size:
            raise ValueError(f"patch_size={changes['patch_size']}: an SSAST keeps its {self.config.patch_size} "
                             "patch (its heads predict whole patches)")
        return super().adapt(kernel_resize=kernel_resize, **changes)

    def as_classifier(self, target, kernel_resize: str = "pi") -> AST:
        """The AST fine-tuning starts from: this encoder with a new classifier, shaped to the
        ``target`` :class:`ASTConfig` (its classes, pooling, input length and stride; the
        positional grid is resized bilinearly to the new grid). The mask embedding and the
        prediction heads are dropped. The patch shape must be the pretraining one (SSAST's
        fine-tuning refuses another); the widths are the encoder's."""
        if not isinstance(target, ASTConfig) or not target.classifier:
            raise ValueError("an SSAST becomes a classifier of an AST configuration")
        cfg = self.config
        if target.patch_size != cfg.patch_size:
            raise ValueError(f"patch_size={target.patch_size}: the SSAST was pretrained with {cfg.patch_size} "
                             "patches, and fine-tuning keeps the pretraining patch shape (SSAST refuses another); "
                             f"set model.patch_size: {list(cfg.patch_size)}")
        keep = {k: v.detach().cpu() for k, v in self.state_dict().items()
                if not k.startswith(("mask_embed", "cpredlayer.", "gpredlayer."))}
        start = AST(config=cfg.encoder(num_classes=target.num_classes, pooling=target.pooling))
        missing, unexpected = start.load_state_dict(keep, strict=False)
        assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
        changes = {k: getattr(target, k) for k in ("input_fdim", "input_tdim", "stride", "labels", "drop_rate",
                                                  "drop_path_rate", "partial_patches")
                   if getattr(target, k) != getattr(start.config, k)}
        return start.adapt(kernel_resize=kernel_resize, **changes)
