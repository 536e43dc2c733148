"""Where do two methods fail? Error rates of LOSO (or leave-one-layout-out) runs on a synthetic benchmark,
split by what the generator put in each clip.

`micronbert synth` writes actions.csv beside each dataset: per clip the action units, their facial regions
and amplitude, and the distractions (head drift, a blink and when, lighting, noise, JPEG quality, which
real face, an object moving beside the face). This joins them with the predictions of RESULTS folders of `micronbert evaluate` (the folds
every run finished, as benchmarks/common_folds.py scores them) and reports, per method (a group of runs,
e.g. one per seed) and per factor level, how many predictions were made and how many were wrong; and,
per pair of runs with the same seed, how many samples both got wrong and how many only one did.
Numeric factors are split at their terciles over the evaluated samples, so every level holds about a
third of them. Each level also counts its samples per true class, and each method's wrong predictions per
class predicted (a class-prior shift shows as errors piling into one class). `--within FACTOR` repeats
every table inside each level of a categorical factor: `--within dataset` on `--mode lodo` runs gives each
held-out layout its own tables.

    W=work/folder/of/benchmarks/motion.py
    python benchmarks/error_factors.py --actions $W/casme2/actions.csv $W/samm/actions.csv $W/smic/actions.csv \\
        --group micronbert $W/runs/micronbert-seed1 $W/runs/micronbert-seed2 \\
        --group flow-cnn $W/runs/flow-cnn-seed1 $W/runs/flow-cnn-seed2
    python benchmarks/error_factors.py --actions ... --within dataset \\
        --group micronbert $W/runs/micronbert-lodo-seed{0,1,2}-kept --group flow-cnn $W/runs/flow-cnn-lodo-seed{0,1,2}-kept
Prints one JSON object; a table of the error rates goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402
from common_folds import common_predictions  # noqa: E402

from micronbert.train.loso import samples_sha256  # noqa: E402

NUMERIC = ("amplitude_px224", "crop_scale", "head_px224", "abs_light_gain", "noise_sigma", "jpeg_quality")
CATEGORICAL = ("dataset", "true_class", "regions", "aus", "blink_in_pair", "person", "background_motion")
# the actions.csv columns the factors are made from
REQUIRED = ("dataset", "sample_id", "person", "regions", "aus", "blink", "onset", "apex", "light_gain", "to_crop",
            "amplitude_px224", "head_px224", "noise_sigma", "jpeg_quality")


def clip_factors(actions: list[str]) -> pd.DataFrame:
    """One row per clip: (dataset, sample_id) and the factors the generator recorded."""
    tables = []
    for a in actions:
        table = pd.read_csv(a, dtype={"sample_id": str, "subject": str}, keep_default_na=False)
        missing = [c for c in REQUIRED if c not in table.columns]
        if missing:
            raise SystemExit(f"{a}: no column {', '.join(missing)} (an actions.csv of an older `micronbert synth`?)")
        tables.append(table)
    t = pd.concat(tables, ignore_index=True)
    t["abs_light_gain"] = t["light_gain"].astype(float).abs()
    # the frame -> 224-px crop scale (< 1: the face is shrunk into the crop); from the generator's own transform
    t["crop_scale"] = [float(np.sqrt(abs(np.linalg.det(np.asarray(json.loads(m), float)[:, :2]))))
                       for m in t["to_crop"]]

    def blink_in_pair(row) -> str:
        """Whether the blink (frames a-b) covers the onset or the apex frame: only then is it in the pair."""
        m = re.fullmatch(r"(\d+)-(\d+)", str(row["blink"]))
        if not m:
            return "no blink"
        a, b = int(m[1]), int(m[2])
        return "in the pair" if a <= int(row["onset"]) <= b or a <= int(row["apex"]) <= b else "between frames"

    t["blink_in_pair"] = t.apply(blink_in_pair, axis=1)
    t["person"] = t["person"].astype(str).str.replace(r"~\d+$", "", regex=True)  # the real face behind it
    # synth --background-motion (a column since then; older tables had none)
    moved = t["background_px224"].astype(float) > 0 if "background_px224" in t else pd.Series(False, t.index)
    t["background_motion"] = np.where(moved, "object beside the face", "none")
    return t[["dataset", "sample_id", "person", "regions", "aus", "blink_in_pair", "background_motion", *NUMERIC]]


def levels(values: pd.Series, numeric: bool) -> tuple[pd.Series, list[str]]:
    """Each sample's level of one factor, and the levels in order (numeric: low to high terciles)."""
    if not numeric:
        return values.astype(str), sorted(values.astype(str).unique())
    cuts = np.quantile(values.astype(float), [1 / 3, 2 / 3])
    names = [f"≤ {cuts[0]:.3g}", f"{cuts[0]:.3g}-{cuts[1]:.3g}", f"> {cuts[1]:.3g}"]
    level = np.array(names)[np.searchsorted(cuts, values.astype(float), side="left")]
    return pd.Series(level, index=values.index), [n for n in names if n in set(level)]


def seed_of(run: Path) -> str:
    found = re.findall(r"seed(\d+)", run.name)  # the last one: "micronbert-lodo-seed2-kept" is seed 2
    return found[-1] if found else run.name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--actions", nargs="+", required=True, help="actions.csv files written by `micronbert synth`")
    p.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                   help="a method's name and its RESULTS folders (one per seed); repeat per method")
    p.add_argument("--within", choices=CATEGORICAL, help="also every table inside each level of this factor")
    args = p.parse_args()
    groups = {g[0]: [Path(r) for r in g[1:]] for g in args.group}
    if any(not runs for runs in groups.values()):
        raise SystemExit("each --group needs a name and at least one RESULTS folder")
    _, preds, _ = common_predictions([r for runs in groups.values() for r in runs])
    factors = clip_factors(args.actions)
    first = next(iter(preds.values()))
    samples = first[["dataset", "sample_id", "true_class"]].merge(factors, on=["dataset", "sample_id"], how="left")
    if samples["regions"].isna().any():
        missing = samples[samples["regions"].isna()]
        raise SystemExit(f"{len(missing)} evaluated samples are not in --actions, e.g. "
                         f"{missing.iloc[0]['dataset']}/{missing.iloc[0]['sample_id']}")
    key = samples["dataset"] + "/" + samples["sample_id"]
    order = {}
    for col in (*CATEGORICAL, *NUMERIC):
        values, order[col] = levels(samples[col], col in NUMERIC)
        samples[col] = values.to_numpy()
    wrong, predicted = {}, {}  # run -> Series indexed by sample key: wrong (bool), the class predicted
    for run, df in preds.items():
        index = df["dataset"] + "/" + df["sample_id"]
        wrong[run] = pd.Series((df["label"] != df["pred"]).to_numpy(), index=index)
        predicted[run] = pd.Series(df["pred_class"].to_numpy(), index=index)
    out = {"benchmark": "error_factors", "machine": machine(), "n_samples": len(samples),
           "samples_sha256": samples_sha256(samples),
           "groups": {g: [str(r) for r in runs] for g, runs in groups.items()},
           "factors": factor_tables(samples, key, order, groups, wrong, predicted), "pairs": []}
    if args.within:
        out["within"] = {args.within: {
            level: factor_tables(samples[inside], key[inside], order, groups, wrong, predicted)
            for level in order[args.within] for inside in [samples[args.within] == level]}}
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for ra in groups[a]:
                for rb in groups[b]:
                    if seed_of(ra) != seed_of(rb):
                        continue
                    wa, wb = wrong[ra].loc[key], wrong[rb].loc[key]
                    out["pairs"].append({"seed": seed_of(ra), a: str(ra), b: str(rb),
                                         "both_wrong": int((wa & wb).sum()), f"only_{a}": int((wa & ~wb).sum()),
                                         f"only_{b}": int((~wa & wb).sum())})
    print_tables(out["factors"], names)
    for level, tables in (out["within"][args.within] if args.within else {}).items():
        print(f"\n=== {args.within} {level} ===", file=sys.stderr)
        print_tables(tables, names)
    emit(out)


def factor_tables(samples: pd.DataFrame, key: pd.Series, order: dict, groups: dict, wrong: dict,
                  predicted: dict) -> dict:
    """Per factor and level (of those present in `samples`): the samples per true class, and per method the
    wrong predictions over its runs, their rate, and the classes they went to."""
    tables = {}
    for col in (*CATEGORICAL, *NUMERIC):
        table = {}
        for level in order[col]:
            at = samples[col] == level
            if not at.any():
                continue
            keys = key[at]
            table[level] = {"n_samples": len(keys),
                            "n_by_class": samples.loc[at, "true_class"].value_counts().sort_index().to_dict()}
            for g, runs in groups.items():
                n_wrong = int(sum(wrong[r].loc[keys].sum() for r in runs))
                went_to = pd.concat([predicted[r].loc[keys][wrong[r].loc[keys]] for r in runs]).value_counts()
                table[level][g] = {"wrong": n_wrong, "predictions": len(keys) * len(runs),
                                   "error_rate": round(n_wrong / (len(keys) * len(runs)), 3),
                                   "wrong_as": {str(c): int(n) for c, n in sorted(went_to.items())}}
        tables[col] = table
    return tables


def print_tables(tables: dict, names: list[str]) -> None:
    for col, table in tables.items():
        print(f"{col}:", file=sys.stderr)
        for level, row in table.items():
            classes = " ".join(f"{c}:{n}" for c, n in row["n_by_class"].items())
            rates = "  ".join(f"{g} {row[g]['wrong']}/{row[g]['predictions']} ({row[g]['error_rate']:.3f})"
                              for g in names)
            print(f"  {level:28s} n={row['n_samples']:<4d} [{classes}]  {rates}", file=sys.stderr)


if __name__ == "__main__":
    main()
