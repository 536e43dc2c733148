"""Recognition metrics on pooled predictions: confusion matrix, per-class F1/recall, UF1, UAR, accuracy.

MEGC2019 scoring (see DATASETS.md): pool every fold's predictions first, then per class c
    F1_c = 2TP / (2TP + FP + FN),   recall_c = TP / N_c,   UF1 = mean_c F1_c,   UAR = mean_c recall_c.

A class with no samples in the pool (N_c = 0) has no defined recall, and its F1 is 0/0 when nothing was
predicted as it. Such a class is *reported* (per_class[c]["n"] = 0, recall/f1 = None, listed in
`absent_classes`, and flagged in summary.md) and *left out of the UF1/UAR means*, which are taken over
the classes present in the pool (`scored_classes`). Predictions into an absent class are not free: each
is a false negative of its true class, so it lowers that class's recall and F1. Scoring absent classes
as 0 would instead punish a model for a class it could never get right (e.g. a per-dataset table of a
dataset that lacks a class), and as 1 would reward it.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels, y_pred {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def metrics_from_confusion(cm: np.ndarray, classes: Sequence[str]) -> dict:
    """UF1, UAR, accuracy and per-class figures from a confusion matrix (see the module doc for absent classes)."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(classes)} classes")
    n = int(cm.sum())
    per_class, absent = {}, []
    for c, name in enumerate(classes):
        tp = int(cm[c, c])
        fn = int(cm[c].sum() - tp)
        fp = int(cm[:, c].sum() - tp)
        n_c = tp + fn
        if n_c == 0:
            absent.append(name)
            f1 = recall = None
        else:
            recall = tp / n_c
            f1 = 2 * tp / (2 * tp + fp + fn)
        per_class[name] = {"n": n_c, "predicted": tp + fp, "tp": tp, "fp": fp, "fn": fn,
                           "precision": _ratio(tp, tp + fp), "recall": recall, "f1": f1}
    scored = [c for c in classes if c not in absent]
    return {
        "n_samples": n,
        "uf1": _mean(per_class[c]["f1"] for c in scored),
        "uar": _mean(per_class[c]["recall"] for c in scored),
        "accuracy": _ratio(int(np.trace(cm)), n),
        "per_class": per_class,
        "absent_classes": absent,
        "scored_classes": scored,
        "confusion": cm.tolist(),
    }


def classification_metrics(y_true, y_pred, classes: Sequence[str]) -> dict:
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, len(classes)), classes)


def fmt(value: float | None, digits: int = 4) -> str:
    """Tables print undefined figures as 'n/a', never as a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"
