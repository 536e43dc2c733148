"""Cross-dataset evaluation: fold generators, the dataset-level guard, and the CLI end to end on two
synthetic datasets in different layouts (CASME II and SMIC-HS) under megc2019's class mapping."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from micronbert.cli import main
from micronbert.errors import MicronbertError
from micronbert.train.crossdata import (assert_datasets_disjoint, cross_dataset_folds, leave_one_dataset_out_folds,
                                        plan)
from micronbert.train.methods import default_recipe
from micronbert.train.flow_baseline import FlowCNNMethod
from micronbert.train.loso import Fold, SplitLeakError, evaluate, run_fold

pytestmark = pytest.mark.usefixtures("one_thread")


def three_datasets():
    rows = [{"dataset": ds, "subject": f"s{s}", "sample_id": f"s{s}/{k}", "label": k % 3, "fold": f"{ds}/s{s}",
             "frames_dir": f"/data/{ds}/s{s}/{k}", "onset": 1, "apex": 3}
            for ds in ("casme2", "samm", "smic") for s in range(2) for k in range(3)]
    return pd.DataFrame(rows)


def datasets_of(t, idx):
    return set(t.iloc[idx]["dataset"])


# -- folds and guard ---------------------------------------------------------------------------------------
def test_cross_dataset_fold_trains_only_on_training_datasets():
    t = three_datasets()
    (f,) = cross_dataset_folds(t, "casme2,samm", "smic")
    assert f.name == "smic" and datasets_of(t, f.train) == {"casme2", "samm"} and datasets_of(t, f.test) == {"smic"}
    assert len(f.train) == 12 and len(f.test) == 6
    (g,) = cross_dataset_folds(t, None, ["samm"])             # default: every other dataset trains
    assert datasets_of(t, g.train) == {"casme2", "smic"}
    with pytest.raises(MicronbertError, match="both --train-datasets and --test-datasets"):
        cross_dataset_folds(t, "casme2,smic", "smic")
    with pytest.raises(MicronbertError, match="no samples under this protocol"):
        cross_dataset_folds(t, "casme2", "casme3")


def test_leave_one_dataset_out_rotates_the_held_out_dataset():
    t = three_datasets()
    folds = leave_one_dataset_out_folds(t)
    assert [f.name for f in folds] == ["casme2", "samm", "smic"]
    for f in folds:
        assert datasets_of(t, f.test) == {f.name} and f.name not in datasets_of(t, f.train)
        assert len(f.train) + len(f.test) == len(t)
    assert [f.name for f in leave_one_dataset_out_folds(t, "smic")] == ["smic"]
    with pytest.raises(MicronbertError, match="at least 2 datasets"):
        leave_one_dataset_out_folds(t[t["dataset"] == "smic"])


def test_dataset_guard_catches_a_test_dataset_sample_and_a_renamed_test_clip():
    t = three_datasets()
    (f,) = cross_dataset_folds(t, "casme2", "smic")
    assert_datasets_disjoint(t, f.train, f.test, ["smic"])
    smic_row = int(f.test[0])
    with pytest.raises(SplitLeakError, match=r"dataset leak: 1 sample\(s\) of the held-out dataset"):
        assert_datasets_disjoint(t, np.append(f.train, smic_row), np.delete(f.test, 0), ["smic"])
    # the same SMIC clip indexed a second time under another dataset name: different ids, same frames
    renamed = pd.concat([t, t.iloc[[smic_row]].assign(dataset="casme2", subject="x", sample_id="x/0",
                                                       fold="casme2/x")], ignore_index=True)
    with pytest.raises(SplitLeakError, match="under different names"):
        assert_datasets_disjoint(renamed, np.append(f.train, len(t)), f.test, ["smic"])
    with pytest.raises(SplitLeakError, match="not held out"):
        assert_datasets_disjoint(t, f.train, np.append(f.test, int(f.train[0])), ["smic"])


def test_a_leaking_cross_dataset_fold_is_refused_before_anything_trains(tmp_path):
    t = three_datasets()

    class Spy:
        fitted = False

        def describe(self):
            return {}

        def prepare(self, *a):
            pass

        def fit(self, *a, **k):
            Spy.fitted = True
            raise AssertionError("must not train")

    def leaky(table):
        (f,) = cross_dataset_folds(table, "casme2", "smic")
        return [Fold(0, f.name, np.append(f.train, f.test[:1]), f.test[1:], guard=f.guard)]

    with pytest.raises(SplitLeakError, match="dataset leak"):
        run_fold(t, Spy(), leaky(t)[0], tmp_path / "a", seed=0)
    with pytest.raises(SplitLeakError, match="dataset leak"):
        evaluate(t, None, Spy(), tmp_path / "b", classes=["a", "b", "c"], protocol="p", make_folds=leaky,
                 mode="cross-dataset", data=object())
    assert not Spy.fitted and not list(tmp_path.glob("*/folds/*"))


def test_mode_is_inferred_from_the_flags():
    t = three_datasets()
    table, make, mode, meta = plan(t)
    assert mode == "loso" and meta == {} and len(make(table)) == 6
    table, make, mode, meta = plan(t, None, "casme2", "smic")
    assert mode == "cross-dataset" and set(table["dataset"]) == {"casme2", "smic"}   # samm is not loaded
    assert meta == {"train_datasets": ["casme2"], "test_datasets": ["smic"]}
    table, make, mode, meta = plan(t, "lodo")
    assert mode == "leave-one-dataset-out" and [f.name for f in make(table)] == ["casme2", "samm", "smic"]
    with pytest.raises(MicronbertError, match="needs --test-datasets"):
        plan(t, None, "casme2", None)
    with pytest.raises(MicronbertError, match="not loso"):
        plan(t, "loso", None, "smic")


# -- end to end on two synthetic datasets in two layouts ----------------------------------------------------
@pytest.fixture(scope="module")
def two_layouts(tmp_path_factory):
    """CASME II and SMIC-HS layouts (2 subjects × 3 clips each) from `micronbert synth`, indexed."""
    root = tmp_path_factory.mktemp("crossdata")
    tables = []
    for fmt, classes in (("casme2", "happiness,disgust,surprise"), ("smic", "positive,negative,surprise")):
        assert main(["synth", "--format", fmt, "--out", str(root / fmt), "--subjects", "2",
                     "--clips-per-subject", "3", "--frames", "6", "--classes", classes, "--no-distractions"]) == 0
        csv = root / f"{fmt}.csv"
        assert main(["index", "--dataset", fmt, "--root", str(root / fmt), "--out", str(csv)]) == 0
        tables.append(str(csv))
    return root, tables


def evaluate_cli(tables, out, *extra):
    return main(["evaluate", "--samples", *tables, "--protocol", "megc2019", "--model", "flow-cnn", "--size", "32",
                 "--epochs", "2", "--threads", "1", "--out", str(out), *extra])


def test_train_on_one_layout_test_on_the_other_end_to_end(two_layouts, tmp_path):
    root, tables = two_layouts
    assert evaluate_cli(tables, tmp_path / "cross", "--train-datasets", "casme2", "--test-datasets", "smic") == 0
    pred = pd.read_csv(tmp_path / "cross" / "predictions.csv")
    assert len(pred) == 6 and set(pred["dataset"]) == {"smic"}
    m = json.loads((tmp_path / "cross" / "metrics.json").read_text())
    assert m["mode"] == "cross-dataset" and m["train_datasets"] == ["casme2"] and m["test_datasets"] == ["smic"]
    assert m["n_folds"] == 1 and list(m["per_dataset"]) == ["smic"] and m["protocol"] == "megc2019"
    assert set(pred["true_class"]) == {"negative", "positive", "surprise"}   # megc2019's mapping of SMIC
    folds = pd.read_csv(tmp_path / "cross" / "folds.csv")
    assert folds["n_train"].tolist() == [6] and folds["n_test"].tolist() == [6]
    for name in ("summary.md", "confusion.png", "config.json"):
        assert (tmp_path / "cross" / name).is_file()

    # leave-one-dataset-out: each layout is the test set once
    assert evaluate_cli(tables, tmp_path / "lodo", "--mode", "lodo") == 0
    m = json.loads((tmp_path / "lodo" / "metrics.json").read_text())
    assert m["mode"] == "leave-one-dataset-out" and m["n_folds"] == 2 and set(m["per_dataset"]) == {"casme2", "smic"}
    pred = pd.read_csv(tmp_path / "lodo" / "predictions.csv")
    assert (pred["fold"] == pred["dataset"]).all() and len(pred) == 12


def test_a_smic_clip_in_training_fails_loudly(two_layouts, tmp_path, capsys):
    root, tables = two_layouts
    # the SMIC table indexed again, renamed as if it were more CASME II data: training would see the test clips
    smic = pd.read_csv(tables[1], dtype=str)
    smic.assign(dataset="casme2", emotion=smic["emotion"].map({"positive": "happiness", "negative": "disgust",
                                                                 "surprise": "surprise"}),
                subject="sub99").to_csv(tmp_path / "copy.csv", index=False)
    rc = evaluate_cli([tables[0], str(tmp_path / "copy.csv"), tables[1]], tmp_path / "leak",
                      "--train-datasets", "casme2", "--test-datasets", "smic")
    err = capsys.readouterr().err
    assert rc == 1 and "dataset leak" in err and "under different names" in err, err
    assert not list((tmp_path / "leak").glob("folds/*"))

    # and the core: a fold generator that slips one SMIC sample into training is refused by evaluate
    from micronbert.commands._flags import load_eval_table
    from micronbert.train.pairdata import pair_source
    from micronbert.data.report import ValidationReport

    class Args:
        samples, protocol = tables, "megc2019"

    table, protocol = load_eval_table(Args, ValidationReport())

    def leaky(t):
        (f,) = cross_dataset_folds(t, "casme2", "smic")
        return [Fold(0, f.name, np.append(f.train, f.test[0]), f.test, guard=f.guard)]

    method = FlowCNNMethod(protocol.classes, default_recipe("flow-cnn", epochs=1))
    with pytest.raises(SplitLeakError, match="held-out dataset"):
        evaluate(table, pair_source(None, 32), method, tmp_path / "core", classes=protocol.classes,
                 protocol="megc2019", make_folds=leaky, mode="cross-dataset")
