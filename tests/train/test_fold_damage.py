"""A fold CSV damaged outside (rows cut) is never pooled: a re-run computes that fold again, and
--merge refuses with the file named, instead of metrics on a subset with n_excluded 0."""
from __future__ import annotations

import pandas as pd
import pytest

from micronbert.errors import MicronbertError
from micronbert.train.flow_baseline import FlowCNNMethod
from micronbert.train.loso import evaluate
from micronbert.train.methods import default_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def test_damaged_fold_csv_is_rerun_or_refused(tmp_path, synthetic, classes3):
    table, _, source = synthetic(size=32, n_subjects=3, per_class=2)
    flow = lambda: FlowCNNMethod(classes3, default_recipe("flow-cnn", epochs=2))  # noqa: E731
    out = tmp_path / "r"
    straight = evaluate(table, source, flow(), out, classes=classes3, protocol="synth", seed=1)
    fold_csv = sorted((out / "folds").glob("*.csv"))[0]
    rows = pd.read_csv(fold_csv)
    assert len(rows) >= 2
    rows.iloc[:-1].to_csv(fold_csv, index=False)  # one test sample lost outside micronbert

    with pytest.raises(MicronbertError, match=f"{fold_csv.name}.*rows for {len(rows)} test samples"):
        evaluate(table, source, flow(), out, classes=classes3, protocol="synth", seed=1, merge_only=True)
    again = evaluate(table, source, flow(), out, classes=classes3, protocol="synth", seed=1)
    assert len(again["ran"]) == 1 and again["complete"]
    assert len(pd.read_csv(out / "predictions.csv")) == len(table)
    keys = ("uf1", "uar", "accuracy")
    assert {k: again["metrics"][k] for k in keys} == {k: straight["metrics"][k] for k in keys}
