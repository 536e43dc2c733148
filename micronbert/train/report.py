"""Result files of an evaluation: predictions.csv, metrics.json, folds.csv, confusion.png, summary.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from micronbert.train.metrics import classification_metrics, fmt
from micronbert.utils.io import atomic_save, atomic_write_json, atomic_write_text


def pooled_metrics(pred: pd.DataFrame, classes: Sequence[str]) -> dict:
    """Composite metrics of the pool plus the same per dataset (on that dataset's rows of the pool)."""
    overall = classification_metrics(pred["label"], pred["pred"], classes)
    per_dataset = {}
    for ds in sorted(pred["dataset"].astype(str).unique()):
        rows = pred[pred["dataset"].astype(str) == ds]
        m = classification_metrics(rows["label"], rows["pred"], classes)
        per_dataset[ds] = {k: m[k] for k in ("n_samples", "uf1", "uar", "accuracy", "per_class", "absent_classes",
                                             "confusion")}
        per_dataset[ds]["n_subjects"] = int(rows["subject"].astype(str).nunique())
    overall["per_dataset"] = per_dataset
    return overall


def write_reports(out_dir, pred: pd.DataFrame, classes: Sequence[str], meta: dict,
                  folds: pd.DataFrame | None = None) -> dict:
    out_dir = Path(out_dir)
    metrics = pooled_metrics(pred, classes)
    metrics = {"protocol": meta.get("protocol"), "model": meta.get("model"), "mode": meta.get("mode", "loso"),
               **metrics, "n_folds": meta.get("n_folds"), "samples_sha256": meta.get("samples_sha256"),
               "sample_files": meta.get("sample_files", []), "n_excluded": len(meta.get("excluded", [])),
               "excluded": meta.get("excluded", []), "classes": list(classes), "config": meta.get("config", {})}
    atomic_save(out_dir / "predictions.csv", lambda tmp: pred.to_csv(tmp, index=False))
    if folds is not None:
        atomic_save(out_dir / "folds.csv", lambda tmp: folds.to_csv(tmp, index=False))
    atomic_write_json(out_dir / "metrics.json", metrics)
    confusion_png(out_dir / "confusion.png", metrics, classes)
    atomic_write_text(out_dir / "summary.md", summary_markdown(metrics, classes))
    return metrics


def confusion_png(path, metrics: dict, classes: Sequence[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("all", metrics)]
    if len(metrics["per_dataset"]) > 1:  # one dataset: its panel would repeat the first
        panels += list(metrics["per_dataset"].items())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.5, 3.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], panels):
        cm = np.asarray(m["confusion"])
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_title(f"{name}: UF1 {fmt(m['uf1'], 3)}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    fig.suptitle(f"{metrics.get('model')} on {metrics.get('protocol')} ({metrics.get('mode')})", fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def summary_markdown(metrics: dict, classes: Sequence[str]) -> str:
    lines = [f"# {metrics.get('model')} — {metrics.get('protocol')} ({metrics.get('mode')})", "",
             f"{metrics['n_samples']} samples, {metrics.get('n_folds')} folds, "
             f"samples_sha256 `{str(metrics.get('samples_sha256'))[:16]}…`, {metrics.get('n_excluded', 0)} excluded.",
             "", "| dataset | n | UF1 | UAR | accuracy |", "|---|---:|---:|---:|---:|"]
    lines.append(f"| **composite** | {metrics['n_samples']} | {fmt(metrics['uf1'])} | {fmt(metrics['uar'])} | "
                 f"{fmt(metrics['accuracy'])} |")
    for ds, m in metrics["per_dataset"].items():
        lines.append(f"| {ds} | {m['n_samples']} | {fmt(m['uf1'])} | {fmt(m['uar'])} | {fmt(m['accuracy'])} |")
    lines += ["", "| class | n | predicted | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|"]
    for c in classes:
        pc = metrics["per_class"][c]
        lines.append(f"| {c} | {pc['n']} | {pc['predicted']} | {fmt(pc['precision'])} | {fmt(pc['recall'])} | "
                     f"{fmt(pc['f1'])} |")
    notes = []
    if metrics.get("absent_classes"):
        notes.append(f"- Classes with no samples in the pool: {', '.join(metrics['absent_classes'])}; "
                     f"they are left out of the UF1/UAR means (n/a above), and predictions into them count "
                     f"as errors of the true class.")
    for ds, m in metrics["per_dataset"].items():
        if m["absent_classes"]:
            notes.append(f"- {ds} has no samples of {', '.join(m['absent_classes'])} (left out of its means).")
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines) + "\n"


def load_metrics(results_dir) -> dict:
    from micronbert.errors import MicronbertError

    path = Path(results_dir)
    path = path / "metrics.json" if path.is_dir() else path
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MicronbertError(f"cannot read results {path}: {exc} (did every fold finish?)") from exc
