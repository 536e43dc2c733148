"""benchmarks/common_folds.py (and motion.py's `--shard` scoring): runs are scored on exactly the folds all of
them finished, a fold without its meta JSON is not finished, and two runs with the same UF1 but different
predictions are told apart."""
import json
import os
import sys

import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import common_folds  # noqa: E402

CLASSES = ["negative", "positive", "surprise"]


def write_fold(run, index, subject, labels, preds, meta=True):
    folds = run / "folds"
    folds.mkdir(parents=True, exist_ok=True)
    stem = f"{index:03d}_casme2-{subject}"
    rows = [{"dataset": "casme2", "subject": subject, "sample_id": f"{subject}/c{i}", "fold": f"casme2/{subject}",
             "fold_index": index, "label": y, "true_class": CLASSES[y], "pred": p, "pred_class": CLASSES[p],
             **{f"prob_{c}": float(j == p) for j, c in enumerate(CLASSES)}}
            for i, (y, p) in enumerate(zip(labels, preds))]
    pd.DataFrame(rows).to_csv(folds / f"{stem}.csv", index=False)
    if meta:
        (folds / f"{stem}.json").write_text(json.dumps({"seconds": 10.0 * (index + 1), "epochs_used": 8}))


def test_scores_only_the_folds_every_run_finished(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_fold(a, 0, "sub01", [0, 1, 2], [0, 1, 2])
    write_fold(a, 1, "sub02", [0, 1, 2], [0, 0, 0])   # finished in a only
    write_fold(b, 0, "sub01", [0, 1, 2], [0, 1, 1])
    write_fold(b, 1, "sub02", [0, 1, 2], [0, 1, 2], meta=False)  # CSV without meta JSON: not finished
    out = common_folds.score_on_common_folds([a, b])
    assert out["folds"] == ["000_casme2-sub01"]
    ra, rb = out["runs"][str(a)], out["runs"][str(b)]
    assert ra["n_samples"] == rb["n_samples"] == 3
    assert ra["samples_sha256"] == rb["samples_sha256"]
    assert ra["accuracy"] == 1.0 and ra["wrong"] == []
    assert rb["accuracy"] == pytest.approx(2 / 3)
    assert rb["wrong"] == ["casme2/sub01/c2: surprise -> positive"]
    assert (ra["folds_finished"], rb["folds_finished"]) == (2, 1)
    assert ra["seconds_per_fold"] == 10.0


def test_the_same_score_with_other_predictions_is_counted(tmp_path):
    # both runs get one of three wrong (the same UF1), on different samples
    a, b = tmp_path / "a", tmp_path / "b"
    write_fold(a, 0, "sub01", [0, 1, 2], [1, 1, 2])
    write_fold(b, 0, "sub01", [0, 1, 2], [0, 1, 1])
    out = common_folds.score_on_common_folds([a, b])
    ra, rb = out["runs"][str(a)], out["runs"][str(b)]
    assert ra["uf1"] == pytest.approx(rb["uf1"])
    assert ra["predictions_differing_from_first_run"] == 0
    assert rb["predictions_differing_from_first_run"] == 2


def test_no_common_fold_is_an_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_fold(a, 0, "sub01", [0, 1, 2], [0, 1, 2])
    write_fold(b, 1, "sub02", [0, 1, 2], [0, 1, 2])
    with pytest.raises(SystemExit, match="no fold is finished in every run"):
        common_folds.score_on_common_folds([a, b])
