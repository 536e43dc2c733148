"""Cross-dataset evaluation: train on some datasets, test on others that were never seen.

Two fold generators over a protocol's evaluation table (one class mapping for every dataset):

    cross_dataset_folds(table, ["casme2", "samm"], ["smic"])   one fold: train casme2+samm, test smic
    leave_one_dataset_out_folds(table)                        one fold per dataset: test it, train the rest

The model is trained once per fold, on all the training datasets, and the test datasets only ever
appear on the test side. Every fold carries a guard (`Fold.guard`) that `loso.evaluate` runs before any
training, on both the training and the validation side (validation subjects are drawn from the training
rows only):

  * no row of a held-out dataset is on the training side, and no non-held-out row on the test side;
  * no sample (frames folder + onset + apex) is on both sides under different names, which catches a
    test clip indexed a second time under another dataset name (e.g. the `folder` reader);
  * plus `assert_disjoint`'s subject and sample-id checks.
"""
from __future__ import annotations

from functools import partial
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from micronbert.errors import MicronbertError
from micronbert.train.loso import Fold, SplitLeakError, assert_disjoint

MODES = {"loso": "loso", "cross": "cross-dataset", "lodo": "leave-one-dataset-out"}


def parse_datasets(text: str | Sequence[str] | None) -> list[str]:
    """'casme2,samm' (or a list of such) -> ['casme2', 'samm'], order kept, duplicates dropped."""
    if not text:
        return []
    items = [text] if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def _datasets(table: pd.DataFrame, idx) -> np.ndarray:
    return table["dataset"].astype(str).to_numpy()[np.asarray(idx, np.int64)]


def _check_known(table: pd.DataFrame, names: Iterable[str], flag: str) -> None:
    present = sorted(set(table["dataset"].astype(str)))
    unknown = [n for n in names if n not in present]
    if unknown:
        raise MicronbertError(f"{flag}: dataset(s) {unknown} have no samples under this protocol "
                              f"(datasets present: {present})")


def _content_keys(table: pd.DataFrame, idx) -> pd.Series:
    # Where the frames are on disk, not what the sample is called: the same clip under two names is a leak.
    rows = table.iloc[np.asarray(idx, np.int64)]
    if "frames_dir" not in rows.columns:
        return pd.Series([], dtype=str)
    keys = rows["frames_dir"].astype(str)
    for col in ("onset", "apex"):
        if col in rows.columns:
            keys = keys + "@" + rows[col].astype(str)
    return keys[rows["frames_dir"].notna() & (rows["frames_dir"].astype(str) != "")]


def assert_datasets_disjoint(table: pd.DataFrame, train_idx, test_idx, held_out: Sequence[str],
                             what: str = "test", fold: str = "") -> None:
    """Raise SplitLeakError unless the training rows hold no sample of the held-out datasets, the test
    rows hold only held-out datasets, and no clip is on both sides under any name."""
    where = f"fold {fold}: " if fold else ""
    held = set(held_out)
    train_ds = _datasets(table, train_idx)
    bad = np.flatnonzero(np.isin(train_ds, list(held)))
    if bad.size:
        rows = table.iloc[np.asarray(train_idx, np.int64)[bad]]
        ids = (rows["dataset"].astype(str) + "/" + rows["sample_id"].astype(str)).tolist()
        raise SplitLeakError(f"{where}dataset leak: {bad.size} sample(s) of the held-out dataset(s) "
                             f"{sorted(held)} are on the training side of a cross-dataset split, e.g. {ids[:5]}; "
                             f"refusing to train")
    stray = sorted(set(_datasets(table, test_idx)) - held)
    if stray:
        raise SplitLeakError(f"{where}the {what} side holds dataset(s) {stray} that are not held out "
                             f"({sorted(held)})")
    same = sorted(set(_content_keys(table, train_idx)) & set(_content_keys(table, test_idx)))
    if same:
        raise SplitLeakError(f"{where}dataset leak: {len(same)} clip(s) are on both sides under different "
                             f"names (same frames folder and onset/apex), e.g. {same[:3]}; refusing to train")
    assert_disjoint(table, train_idx, test_idx, what, fold)


def _guard(held_out: Sequence[str]):
    def guard(table, train_idx, test_idx, what="test", fold=""):
        assert_datasets_disjoint(table, train_idx, test_idx, held_out, what, fold)
    return guard


def cross_dataset_folds(table: pd.DataFrame, train_datasets: Sequence[str] | str | None,
                        test_datasets: Sequence[str] | str) -> list[Fold]:
    """One fold: train on `train_datasets` (default: every dataset of the table not tested), test on
    `test_datasets`. The fold is named after the test datasets ('smic', 'samm+smic')."""
    test = parse_datasets(test_datasets)
    if not test:
        raise MicronbertError("cross-dataset evaluation needs --test-datasets")
    _check_known(table, test, "--test-datasets")
    present = sorted(set(table["dataset"].astype(str)))
    train = parse_datasets(train_datasets) or [d for d in present if d not in test]
    _check_known(table, train, "--train-datasets")
    both = sorted(set(train) & set(test))
    if both:
        raise MicronbertError(f"dataset(s) {both} are in both --train-datasets and --test-datasets")
    if not train:
        raise MicronbertError(f"no training dataset left: the table holds only {present}")
    ds = table["dataset"].astype(str).to_numpy()
    return [Fold(0, "+".join(test), np.flatnonzero(np.isin(ds, train)), np.flatnonzero(np.isin(ds, test)),
                 guard=_guard(test))]


def leave_one_dataset_out_folds(table: pd.DataFrame, held_out: Sequence[str] | str | None = None) -> list[Fold]:
    """One fold per dataset (or per dataset in `held_out`): test on it, train on all the others."""
    present = sorted(set(table["dataset"].astype(str)))
    if len(present) < 2:
        raise MicronbertError(f"leave-one-dataset-out needs at least 2 datasets, the table holds {present}")
    names = parse_datasets(held_out) or present
    _check_known(table, names, "--test-datasets")
    ds = table["dataset"].astype(str).to_numpy()
    folds = []
    for i, name in enumerate(names):
        folds.append(Fold(i, name, np.flatnonzero(ds != name), np.flatnonzero(ds == name), guard=_guard([name])))
    return folds


def plan(table: pd.DataFrame, mode: str | None = None, train_datasets=None, test_datasets=None):
    """(table, make_folds, mode label, metrics extras) for `evaluate` from the CLI's mode flags.

    mode None: 'cross' when test datasets are given, else 'loso'. In cross mode the table is cut to the
    training and test datasets (other datasets of the protocol play no part and are not loaded)."""
    train, test = parse_datasets(train_datasets), parse_datasets(test_datasets)
    if mode is None:
        mode = "cross" if test else "loso"
        if train and not test:
            raise MicronbertError("--train-datasets needs --test-datasets (or --mode lodo)")
    if mode not in MODES:
        raise MicronbertError(f"--mode {mode!r}: choose one of {sorted(MODES)}")
    if mode == "loso":
        if train or test:
            raise MicronbertError("--train-datasets/--test-datasets are for --mode cross or lodo, not loso")
        from micronbert.train.loso import loso_folds

        return table, loso_folds, MODES[mode], {}
    if mode == "cross":
        folds = cross_dataset_folds(table, train, test)  # validates the names before anything is loaded
        ds = table["dataset"].astype(str)
        used_train = sorted(set(ds.iloc[folds[0].train]))
        table = table[ds.isin(used_train + test)].reset_index(drop=True)
        return (table, partial(cross_dataset_folds, train_datasets=used_train, test_datasets=test), MODES[mode],
                {"train_datasets": used_train, "test_datasets": test})
    if train:
        raise MicronbertError("--mode lodo trains on every other dataset; limit the datasets with --samples")
    folds = leave_one_dataset_out_folds(table, test)
    return (table, partial(leave_one_dataset_out_folds, held_out=test or None), MODES[mode],
            {"train_datasets": sorted(set(table["dataset"].astype(str))), "test_datasets": [f.name for f in folds]})
