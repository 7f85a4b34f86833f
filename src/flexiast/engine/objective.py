"""What a run optimises: the task its recipe asks for, checked against the data and teacher.

A model without a classifier (SSAST) pretrains with masked-patch prediction on unlabeled
clips; a classifier trains on labelled clips with CE or BCE (``loss.name: auto`` from the
data: BCE for multi-label), distilled from ``loss.teacher`` when one is given. Each check
runs before any step, naming the setting that contradicts the data.
"""

from __future__ import annotations

import torch

from ..config import ConfigError, RunConfig
from ..constants import AUTO
from ..models import family_of, load_model
from ..tasks import Classification, Distillation, MaskedPatchPrediction, Task

__all__ = ["load_teacher", "check_labels", "build_task"]


def load_teacher(cfg: RunConfig):
    """``loss.teacher``'s model (None without one), refused unless it is a classifier."""
    if not cfg.loss.teacher:
        return None
    teacher = load_model(cfg.loss.teacher)
    if not family_of(teacher).classifier:
        raise ConfigError(f"loss.teacher: {cfg.loss.teacher} holds a {teacher.arch} pretraining model, not a "
                          "classifier to distil from")
    return teacher


def check_labels(cfg: RunConfig, train) -> None:
    """A classifier trains on labelled clips, a pretraining model on unlabeled ones."""
    fmt, arch = cfg.data.format, cfg.model.arch
    if cfg.pretraining and train.labelled:
        raise ConfigError(f"data.format: {fmt} gives labelled clips ({len(train.classes)} classes), and a {arch} "
                          "model pretrains on unlabeled audio: read it with format audio, librispeech, ast_json "
                          "without label_csv, or a mixture of those; or set data.options.ignore_labels: true "
                          "to pretrain on its clips")
    if not cfg.pretraining and not train.labelled:
        raise ConfigError(f"data.format: {fmt} gives unlabeled clips, and a {arch} classifier trains on labels: "
                          "give a labelled reader, or pretrain (model.arch: ssast)")


def build_task(cfg: RunConfig, teacher, *, multilabel: bool, num_classes: int, mel_bins: int,
               device: torch.device) -> Task:
    """What the steps optimise: SSAST's masked-patch prediction for a pretraining model;
    else classification on the data's labels, distilled from ``teacher`` (on ``device``, at
    ``loss.teacher_patch_size`` or its own stored patch size) when there is one."""
    if cfg.pretraining:
        p = cfg.pretrain
        return MaskedPatchPrediction(p.masked, p.masking, p.objective, p.generative_weight, seed=cfg.seed)
    loss = cfg.loss
    kind = loss.name if loss.name != AUTO else ("bce" if multilabel else "ce")
    if teacher is None:
        return Classification(kind, loss.label_smoothing)
    if cfg.data.batching == "packed" and not family_of(teacher).packs:
        raise ConfigError(f"loss.teacher: {loss.teacher} holds a {teacher.arch} model, which cannot take the packed "
                          "clips of data.batching: packed; distil from a family that packs, or use bucketed")
    tc = teacher.config
    if tc.num_classes != num_classes or tc.input_fdim != mel_bins:
        raise ConfigError(f"loss.teacher: {loss.teacher} predicts {tc.num_classes} classes from {tc.input_fdim} "
                          f"mel bins; the run has {num_classes} classes and {mel_bins} bins")
    point = family_of(teacher).points.given(tc, arch=teacher.arch, patch_size=loss.teacher_patch_size)
    return Distillation(kind, teacher.to(device), teacher_call=point.call(), weight=loss.kd_weight,
                        temperature=loss.temperature, label_smoothing=loss.label_smoothing)
