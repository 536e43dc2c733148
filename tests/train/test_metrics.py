"""Metrics against confusion matrices worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from micronbert.train.metrics import classification_metrics, confusion_matrix, fmt, metrics_from_confusion
from micronbert.train.report import pooled_metrics

ABC = ["a", "b", "c"]


def test_hand_computed_three_classes():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 2, 1, 1, 2, 2, 2, 2, 0]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 1], [0, 1, 1], [1, 0, 3]]
    m = classification_metrics(y_true, y_pred, ABC)
    # F1_c = 2TP / (2TP + FP + FN): a: 2/(2+1+2), b: 2/(2+1+1), c: 6/(6+2+1)
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.4)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.75)
    assert m["uf1"] == pytest.approx((0.4 + 0.5 + 2 / 3) / 3)
    assert m["uar"] == pytest.approx((1 / 3 + 0.5 + 0.75) / 3)
    assert m["accuracy"] == pytest.approx(5 / 9)
    assert m["absent_classes"] == [] and m["n_samples"] == 9
    assert m["per_class"]["c"]["tp"] == 3 and m["per_class"]["c"]["fp"] == 2 and m["per_class"]["c"]["fn"] == 1


def test_class_absent_from_pool_is_reported_and_left_out_of_means():
    # no true 'c' in the pool, but one sample of 'a' was predicted as 'c'
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], ABC)
    assert m["absent_classes"] == ["c"]
    assert m["scored_classes"] == ["a", "b"]
    c = m["per_class"]["c"]
    assert c["n"] == 0 and c["fp"] == 1 and c["recall"] is None and c["f1"] is None
    # the wrong prediction still costs class a: F1_a = 2/(2+0+1), recall_a = 1/2
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["uf1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert fmt(c["recall"]) == "n/a"


def test_perfect_and_all_wrong():
    assert classification_metrics([0, 1, 2], [0, 1, 2], ABC)["uf1"] == 1.0
    m = classification_metrics([0, 1, 2], [1, 2, 0], ABC)
    assert m["uf1"] == 0.0 and m["uar"] == 0.0 and m["accuracy"] == 0.0


def test_bad_labels_raise():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError):
        metrics_from_confusion(np.zeros((2, 2)), ABC)


def test_per_dataset_is_the_pool_restricted_to_that_dataset():
    pred = pd.DataFrame({"dataset": ["x"] * 4 + ["y"] * 3, "subject": ["1", "1", "2", "2", "9", "9", "8"],
                         "label": [0, 1, 2, 2, 0, 0, 1], "pred": [0, 1, 2, 0, 0, 1, 1]})
    m = pooled_metrics(pred, ABC)
    assert m["n_samples"] == 7
    x, y = m["per_dataset"]["x"], m["per_dataset"]["y"]
    assert x["n_samples"] == 4 and x["n_subjects"] == 2 and y["n_subjects"] == 2
    # y has no 'c': reported absent there, its means over a and b
    assert y["absent_classes"] == ["c"]
    assert y["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert y["uf1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert x["uf1"] == pytest.approx((2 / 3 + 1.0 + 2 / 3) / 3)
    # composite: computed on the pooled confusion, not averaged over datasets
    assert m["confusion"] == confusion_matrix(pred["label"], pred["pred"], 3).tolist()
