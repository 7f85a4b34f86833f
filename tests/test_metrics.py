"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from flexiast.metrics import accuracy, average_precision, classification_metrics, d_prime, roc_auc


def test_accuracy_with_soft_and_index_targets():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(scores, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy(scores, torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])) == pytest.approx(2 / 3)


def test_average_precision_by_hand():
    # Ranked: 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-): AP = (1/1 + 2/3) / 2.
    s = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    y = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert float(average_precision(s, y)[0]) == pytest.approx((1 + 2 / 3) / 2)
    # Ties: all four tied, two positives -> precision 2/4 at recall 1.
    assert float(average_precision(torch.ones(4, 1), y)[0]) == pytest.approx(0.5)
    assert math.isnan(float(average_precision(s, torch.zeros(4, 1))[0]))


def test_auc_by_hand_with_ties():
    # Positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.5=0.5 -> 1/2, 0.5>0.1) = 3.5 / 4.
    s = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    y = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    assert float(roc_auc(s, y)[0]) == pytest.approx(3.5 / 4)


def test_d_prime():
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    # Phi^-1(0.8413447) = 1, so d' = sqrt(2).
    assert d_prime(0.8413447460685429) == pytest.approx(math.sqrt(2), rel=1e-9)


def test_multilabel_metrics_skip_classes_without_positives():
    s = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.7, 0.6, 0.5]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    m = classification_metrics(s, y, multilabel=True)
    assert m["mAP"] == pytest.approx(1.0)  # class 2 has no positive and is left out
    assert m["AUC"] == pytest.approx(1.0)
