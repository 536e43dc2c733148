"""LOSO: the split guard, folds, resume/sharding, and the pipeline on a learnable vs a shuffled signal."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from micronbert.errors import MicronbertError
from micronbert.train.methods import default_recipe
from micronbert.train.flow_baseline import FlowCNNMethod
from micronbert.train.loso import (Fold, SplitLeakError, assert_disjoint, evaluate, loso_folds, parse_shard,
                                   run_fold, samples_sha256, select_folds, split_validation)

pytestmark = pytest.mark.usefixtures("one_thread")


def small_table(n_subjects=4, per=3):
    rows = [{"dataset": "d", "subject": f"s{s}", "sample_id": f"s{s}/{k}", "label": k % 3, "fold": f"d/s{s}"}
            for s in range(n_subjects) for k in range(per)]
    return pd.DataFrame(rows)


def flow(classes, epochs=8, **kw):
    return FlowCNNMethod(classes, default_recipe("flow-cnn", epochs=epochs, **kw))


# -- split guard ------------------------------------------------------------------------------------------
def test_loso_folds_cover_each_subject_once_and_are_disjoint():
    t = small_table()
    folds = loso_folds(t)
    assert [f.name for f in folds] == ["d/s0", "d/s1", "d/s2", "d/s3"]
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(t)))
    for f in folds:
        assert set(t.iloc[f.test]["subject"]) == {f.name.split("/")[1]}
        assert f.name.split("/")[1] not in set(t.iloc[f.train]["subject"])
        assert_disjoint(t, f.train, f.test)


def test_leaking_split_fails_loudly_before_training(tmp_path):
    t = small_table()
    leaky = Fold(0, "d/s0", train=np.arange(0, len(t)), test=np.array([0, 1, 2]))
    with pytest.raises(SplitLeakError, match="split leak"):
        assert_disjoint(t, leaky.train, leaky.test)
    # same subject, different samples: still a leak
    subject_leak = Fold(0, "d/s0", train=np.array([1, 2, 3, 4]), test=np.array([0]))
    with pytest.raises(SplitLeakError, match=r"subject\(s\) \['d/s0'\]"):
        assert_disjoint(t, subject_leak.train, subject_leak.test)

    class Spy:
        fitted = False

        def fit(self, *a, **k):
            Spy.fitted = True
            raise AssertionError("must not train")

    with pytest.raises(SplitLeakError):
        run_fold(t, Spy(), subject_leak, tmp_path / "r", seed=0)
    assert not Spy.fitted and not (tmp_path / "r").exists()


def test_a_fold_generator_that_leaks_is_refused_by_evaluate(tmp_path, synthetic, classes3):
    table, pairs, source = synthetic(n_subjects=3, per_class=1)

    def leaky_folds(t):  # a buggy "cross-dataset" generator: trains on everything
        return [Fold(i, name, np.arange(len(t)), np.flatnonzero(t["fold"] == name))
                for i, name in enumerate(sorted(set(t["fold"])))]

    with pytest.raises(SplitLeakError):
        evaluate(table, source, flow(classes3, epochs=1), tmp_path / "r", classes=classes3, protocol="synth",
                 make_folds=leaky_folds)
    assert not list(tmp_path.glob("r/folds/*.csv"))


def test_validation_subjects_come_from_training_subjects_only():
    t = small_table(n_subjects=6)
    f = loso_folds(t)[2]
    train, val = split_validation(t, f.train, 2, seed=5)
    vs = set(t.iloc[val]["subject"])
    assert len(vs) == 2 and not vs & set(t.iloc[train]["subject"])
    assert not vs & set(t.iloc[f.test]["subject"])
    assert sorted(np.concatenate([train, val])) == sorted(f.train)
    with pytest.raises(MicronbertError):
        split_validation(t, f.train, 5, seed=0)


def test_fold_selection_and_shards():
    folds = loso_folds(small_table(n_subjects=7))
    assert [f.index for f in select_folds(folds, "0-2,d/s5")] == [0, 1, 2, 5]
    assert [f.index for f in select_folds(folds, None, (1, 3))] == [1, 4]
    shards = [select_folds(folds, None, (k, 3)) for k in range(3)]
    assert sorted(f.index for s in shards for f in s) == list(range(7))
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    with pytest.raises(MicronbertError):
        select_folds(folds, "12")
    with pytest.raises(MicronbertError):
        parse_shard("2of4")


# -- the pipeline on a learnable signal ------------------------------------------------------------------
def test_learnable_signal_above_chance_and_shuffled_labels_at_chance(tmp_path, synthetic, classes3):
    table, pairs, source = synthetic(size=32, n_subjects=6, per_class=4)
    real = evaluate(table, source, flow(classes3, epochs=25), tmp_path / "real", classes=classes3, protocol="synth")
    shuffled = table.copy()
    shuffled["label"] = np.random.default_rng(1).permutation(table["label"].to_numpy())
    null = evaluate(shuffled, source, flow(classes3, epochs=25), tmp_path / "null", classes=classes3,
                    protocol="synth")
    uf1_real, uf1_null = real["metrics"]["uf1"], null["metrics"]["uf1"]
    assert uf1_real > 0.8, uf1_real          # chance is 1/3
    assert uf1_null < 0.55, uf1_null
    # the reports exist and describe the same pool
    for r in ("real", "null"):
        for name in ("predictions.csv", "metrics.json", "folds.csv", "confusion.png", "summary.md", "config.json"):
            assert (tmp_path / r / name).is_file(), name
    m = json.loads((tmp_path / "real" / "metrics.json").read_text())
    for key in ("protocol", "model", "mode", "n_samples", "uf1", "uar", "accuracy", "per_class", "per_dataset",
                "samples_sha256", "n_folds", "config"):
        assert key in m, key
    assert m["mode"] == "loso" and m["n_folds"] == 6 and m["n_samples"] == len(table)
    assert m["samples_sha256"] == samples_sha256(table)
    pred = pd.read_csv(tmp_path / "real" / "predictions.csv")
    assert len(pred) == len(table) and set(pred["sample_id"]) == set(table["sample_id"])
    assert np.allclose(pred[[f"prob_{c}" for c in classes3]].sum(axis=1), 1.0, atol=1e-4)
    assert (pred["fold"] == "synth/" + pred["subject"].astype(str)).all()
    folds = pd.read_csv(tmp_path / "real" / "folds.csv")
    assert len(folds) == 6 and (folds["n_train"] + folds["n_test"] == len(table)).all()


# -- resume, shards, determinism ------------------------------------------------------------------------
def test_interrupted_resumed_and_sharded_runs_equal_one_straight_run(tmp_path, synthetic, classes3):
    table, pairs, source = synthetic(size=32, n_subjects=5, per_class=2)
    straight = evaluate(table, source, flow(classes3), tmp_path / "a", classes=classes3, protocol="synth", seed=3)

    class Interrupt(Exception):
        pass

    class Crashing(FlowCNNMethod):  # dies in the middle of fold 3's training
        def fit(self, train_idx, labels, seed, val_idx=None, desc=""):
            if desc.startswith("fold 3"):
                raise Interrupt()
            return super().fit(train_idx, labels, seed, val_idx, desc)

    with pytest.raises(Interrupt):
        evaluate(table, source, Crashing(classes3, default_recipe("flow-cnn", epochs=8)), tmp_path / "b",
                 classes=classes3, protocol="synth", seed=3)
    done = sorted(p.name for p in (tmp_path / "b" / "folds").glob("*.json"))
    assert len(done) == 3 and not (tmp_path / "b" / "metrics.json").exists()
    resumed = evaluate(table, source, flow(classes3), tmp_path / "b", classes=classes3, protocol="synth", seed=3)
    assert len(resumed["skipped"]) == 3 and len(resumed["ran"]) == 2

    # two "processes" taking every other fold, then a merge
    part = evaluate(table, source, flow(classes3), tmp_path / "c", classes=classes3, protocol="synth", seed=3,
                    shard=(0, 2))
    assert not part["complete"] and part["metrics"] is None
    with pytest.raises(MicronbertError, match="nothing to merge"):
        evaluate(table, source, flow(classes3), tmp_path / "c", classes=classes3, protocol="synth", seed=3,
                 merge_only=True)
    evaluate(table, source, flow(classes3), tmp_path / "c", classes=classes3, protocol="synth", seed=3, shard=(1, 2))
    merged = evaluate(table, source, flow(classes3), tmp_path / "c", classes=classes3, protocol="synth", seed=3,
                      merge_only=True)

    keys = ("uf1", "uar", "accuracy", "per_class", "samples_sha256")
    for other in (resumed, merged):
        assert {k: other["metrics"][k] for k in keys} == {k: straight["metrics"][k] for k in keys}
    pa = pd.read_csv(tmp_path / "a" / "predictions.csv")
    for d in ("b", "c"):
        pd.testing.assert_frame_equal(pa, pd.read_csv(tmp_path / d / "predictions.csv"))

    # another seed is a different run: it may not resume into this folder
    with pytest.raises(MicronbertError, match="different run"):
        evaluate(table, source, flow(classes3), tmp_path / "a", classes=classes3, protocol="synth", seed=4)


def test_missing_samples_are_excluded_with_a_reason(tmp_path, synthetic, classes3):
    table, pairs, _ = synthetic(size=32, n_subjects=3, per_class=1)
    gone = table["sample_id"].iloc[1]

    def source(row):
        if row["sample_id"] == gone:
            raise KeyError("not in the face cache /x (run `micronbert prepare`)")
        return pairs[row["sample_id"]]

    r = evaluate(table, source, flow(classes3, epochs=1), tmp_path / "r", classes=classes3, protocol="synth")
    assert r["excluded"] == 1 and r["metrics"]["n_samples"] == len(table) - 1
    ex = pd.read_csv(tmp_path / "r" / "excluded.csv")
    assert gone in ex["sample_id"].iloc[0] and "face cache" in ex["reason"].iloc[0]
    assert ex["file"].iloc[0] == "synthetic" and ex["row"].iloc[0] == 3  # where the sample was annotated
    assert r["metrics"]["samples_sha256"] == samples_sha256(table[table["sample_id"] != gone])
    with pytest.raises(MicronbertError, match="none of the samples"):
        evaluate(table, lambda row: (_ for _ in ()).throw(KeyError("x")), flow(classes3, epochs=1),
                 tmp_path / "r2", classes=classes3, protocol="synth")
    with pytest.raises(MicronbertError, match="no samples"):
        evaluate(table.iloc[:0], source, flow(classes3, epochs=1), tmp_path / "r3", classes=classes3,
                 protocol="synth")


def test_validation_subjects_choose_the_epoch_without_the_test_subject(tmp_path, synthetic, classes3):
    table, pairs, source = synthetic(size=32, n_subjects=4, per_class=1)
    r = evaluate(table, source, flow(classes3, epochs=4, val_subjects=1), tmp_path / "r", classes=classes3,
                 protocol="synth", val_subjects=1)
    folds = pd.read_csv(tmp_path / "r" / "folds.csv")
    assert (folds["n_val"] == 3).all() and (folds["n_train"] == 6).all()   # 3 training subjects: 2 + 1 held out
    assert folds["epochs_used"].between(1, 4).all()
    assert r["metrics"]["config"]["val_subjects"] == 1
