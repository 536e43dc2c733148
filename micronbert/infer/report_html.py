"""Self-contained HTML pages of results: images inlined as data: URIs, inline CSS, no script and no
external resource, so a page opens from disk, travels as one file and shows the same everywhere.

Two parts:
- building blocks (`page`, `table`, `Cell`, `img_tag`, `fig_png`): also what the demo's report is made of;
- `evaluation_page`: one page for one or several `evaluate` results folders (their metrics.json, and
  folds.csv when present): what was evaluated (model, protocol, samples_sha256), the pooled metrics per
  dataset and per class, confusion matrices, the per-fold table, and several runs side by side.

Every figure printed from metrics.json sits in a cell tagged with where it came from (data-run,
data-scope = "all" | dataset | "class:<name>", data-key), so a test can check the page against the file.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from micronbert.errors import MicronbertError
from micronbert.train.metrics import fmt
from micronbert.train.report import load_metrics
from micronbert.utils.io import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:3px 9px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%}
code{font-size:90%;word-break:break-all}.fig{display:inline-block;margin:4px;vertical-align:top}
.note{color:#555;font-size:90%}.bad{color:#a00}.runs{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.run{flex:1 1 420px;min-width:0;border-top:3px solid #468;padding-top:.3em}.run h2{margin-top:.2em}
table.cm td{min-width:2.2em;text-align:center}.tw{overflow-x:auto;max-width:100%}table.cm td:first-child{text-align:left}"""


# -- building blocks ------------------------------------------------------------------------------------
def esc(value) -> str:
    return html.escape(str(value))


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="{png_data_uri(data)}">'


def fig_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


class Cell(NamedTuple):
    """A table cell whose HTML is ready and whose <td> carries attributes (e.g. data-key="uf1")."""
    html: str
    attrs: str = ""


def table(head: Sequence[str], rows: Sequence[Sequence[str | Cell]], cls: str = "") -> str:
    """An HTML table; header texts are escaped, cells are HTML (a str, or a Cell with <td> attributes)."""
    h = "".join(f"<th>{esc(c)}</th>" for c in head)

    def td(c):
        return f"<td {c.attrs}>{c.html}</td>" if isinstance(c, Cell) else f"<td>{c}</td>"
    body = "".join("<tr>" + "".join(td(c) for c in r) + "</tr>" for r in rows)
    # wide tables scroll inside their own box instead of running into the next column
    return f"<div class=tw><table{f' class={cls}' if cls else ''}><tr>{h}</tr>{body}</table></div>"


def page(title: str, parts: Sequence[str]) -> str:
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- evaluate results -----------------------------------------------------------------------------------
@dataclass
class RunResults:
    """One `evaluate` results folder as the page shows it."""
    name: str                      # unique on the page (data-run)
    title: str                     # heading
    folder: Path
    metrics: dict
    folds: pd.DataFrame | None     # folds.csv, when the folder has it


def load_run(folder, name: str | None = None, title: str | None = None) -> RunResults:
    folder = Path(folder)
    if folder.name == "metrics.json":
        folder = folder.parent
    if not (folder / "metrics.json").is_file():
        raise MicronbertError(f"{folder}: not a finished `evaluate` results folder (no metrics.json; re-run "
                              f"evaluate, or `evaluate --merge` once every fold is done)")
    metrics = load_metrics(folder)
    for key in ("uf1", "uar", "accuracy", "n_samples", "per_class", "confusion", "classes"):
        if key not in metrics:
            raise MicronbertError(f"{folder / 'metrics.json'}: no {key!r}; not written by `micronbert evaluate`")
    folds = None
    if (folder / "folds.csv").is_file():
        try:
            folds = pd.read_csv(folder / "folds.csv")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise MicronbertError(f"{folder / 'folds.csv'}: cannot be read ({exc})") from exc
    name = name or folder.resolve().name
    return RunResults(name, title or name, folder, metrics, folds)


def load_runs(folders: Sequence) -> list[RunResults]:
    """Runs named after their folders; folders with the same name are told apart by their parents."""
    paths = [Path(f).parent if Path(f).name == "metrics.json" else Path(f) for f in folders]
    short = [p.resolve().name for p in paths]
    names = ["/".join(p.resolve().parts[-2:]) if short.count(n) > 1 else n for p, n in zip(paths, short)]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):  # the same folder twice
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} #{seen[n]}"
    return [load_run(p, n) for p, n in zip(paths, names)]


def _num(value, run: str, scope: str, key: str, digits: int = 4) -> Cell:
    return Cell(esc(fmt(value, digits)), f'data-run="{esc(run)}" data-scope="{esc(scope)}" data-key="{key}"')


def _count(value, run: str, scope: str, key: str) -> Cell:
    return Cell(esc("–" if value is None else value), f'data-run="{esc(run)}" data-scope="{esc(scope)}" '
                                                      f'data-key="{key}"')


def same_samples(runs: Sequence[RunResults]) -> bool:
    hashes = {r.metrics.get("samples_sha256") for r in runs}
    protocols = {r.metrics.get("protocol") for r in runs}
    return len(hashes) == 1 and None not in hashes and len(protocols) == 1


def comparison_section(runs: Sequence[RunResults], heading: str = "Runs side by side") -> str:
    """One row per run: composite and per-dataset UF1/UAR, whether the runs share a sample list, a bar chart."""
    datasets = sorted({ds for r in runs for ds in r.metrics.get("per_dataset", {})})
    head = ["run", "model", "protocol", "mode", "samples", "folds", "UF1", "UAR", "accuracy"]
    for ds in datasets:
        head += [f"{ds} UF1", f"{ds} UAR"]
    rows = []
    for r in runs:
        m = r.metrics
        row = [esc(r.title), esc(m.get("model")), esc(m.get("protocol")), esc(m.get("mode", "loso")),
               _count(m.get("n_samples"), r.name, "all", "n_samples"), _count(m.get("n_folds"), r.name, "all",
                                                                               "n_folds"),
               _num(m["uf1"], r.name, "all", "uf1"), _num(m["uar"], r.name, "all", "uar"),
               _num(m["accuracy"], r.name, "all", "accuracy")]
        for ds in datasets:
            d = m.get("per_dataset", {}).get(ds)
            row += [_num(d["uf1"], r.name, ds, "uf1"), _num(d["uar"], r.name, ds, "uar")] if d else ["–", "–"]
        rows.append(row)
    parts = [f"<h2>{esc(heading)}</h2>", table(head, rows)]
    if same_samples(runs):
        m = runs[0].metrics
        parts.append(f"<p class=note>All runs: protocol {esc(m.get('protocol'))}, the same {m.get('n_samples')} "
                     f"samples (samples_sha256 <code>{esc(m.get('samples_sha256'))}</code>); the rows compare.</p>")
    else:
        parts.append("<p class=bad><b>These runs were not computed on the same sample list and protocol: the rows "
                     "do not compare.</b></p><ul>" + "".join(
                         f"<li>{esc(r.title)}: protocol {esc(r.metrics.get('protocol'))}, "
                         f"{r.metrics.get('n_samples')} samples, <code>{esc(r.metrics.get('samples_sha256'))}</code>"
                         f"</li>" for r in runs) + "</ul>")
    parts.append(img_tag(comparison_png(runs), "UF1 and UAR of each run"))
    return "\n".join(parts)


def comparison_png(runs: Sequence[RunResults]) -> bytes:
    plt = _mpl()
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(runs) + 2), 3.0))
    for k, (key, label) in enumerate((("uf1", "UF1"), ("uar", "UAR"))):
        vals = [np.nan if r.metrics.get(key) is None else r.metrics[key] for r in runs]
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [r.title for r in runs], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.legend(fontsize=8)
    ax.set_title("pooled metrics per run", fontsize=9)
    fig.tight_layout()
    return fig_png(fig)


def run_section(run: RunResults, heading_tag: str = "h2") -> str:
    """One run: what it is, metrics per dataset and per class, confusion matrices, the per-fold table."""
    m, name = run.metrics, run.name
    classes = list(m["classes"])
    config = m.get("config") or {}
    method = config.get("method") or {}
    parts = [f"<{heading_tag}>{esc(run.title)}</{heading_tag}>",
             f"<p>Model <b>{esc(m.get('model'))}</b>, protocol <b>{esc(m.get('protocol'))}</b> "
             f"({esc(m.get('mode', 'loso'))}), {m.get('n_samples')} samples in {m.get('n_folds')} folds, "
             f"{m.get('n_excluded', 0)} excluded. Classes: {esc(', '.join(classes))}.</p>",
             f"<p class=note>samples_sha256 <code data-run=\"{esc(name)}\" data-key=\"samples_sha256\">"
             f"{esc(m.get('samples_sha256'))}</code><br>folder <code>{esc(run.folder)}</code>"
             + "".join(f"<br>sample list <code>{esc(f)}</code>" for f in m.get("sample_files", [])) + "</p>"]
    facts = [("seed", config.get("seed")), ("epochs", (method.get("finetune") or {}).get("epochs")),
             ("flow", method.get("flow")), ("init", config.get("init")), ("input size", config.get("input_size")),
             ("train datasets", m.get("train_datasets")), ("test datasets", m.get("test_datasets"))]
    facts = [(k, v) for k, v in facts if v not in (None, "", [])]
    if facts:
        parts.append("<p class=note>" + "; ".join(f"{esc(k)} {esc(v)}" for k, v in facts) + "</p>")

    per_ds = m.get("per_dataset", {})
    rows = [["<b>composite</b>", _count(m["n_samples"], name, "all", "n_samples"), "",
             _num(m["uf1"], name, "all", "uf1"), _num(m["uar"], name, "all", "uar"),
             _num(m["accuracy"], name, "all", "accuracy")]]
    for ds, d in per_ds.items():
        rows.append([esc(ds), _count(d["n_samples"], name, ds, "n_samples"),
                     _count(d.get("n_subjects"), name, ds, "n_subjects"), _num(d["uf1"], name, ds, "uf1"),
                     _num(d["uar"], name, ds, "uar"), _num(d["accuracy"], name, ds, "accuracy")])
    parts += ["<h3>Pooled metrics per dataset</h3>", table(["dataset", "n", "subjects", "UF1", "UAR", "accuracy"],
                                                            rows)]

    rows = []
    for c in classes:
        pc = m["per_class"][c]
        scope = f"class:{c}"
        rows.append([esc(c), _count(pc["n"], name, scope, "n"), _count(pc["predicted"], name, scope, "predicted"),
                     _num(pc["precision"], name, scope, "precision"), _num(pc["recall"], name, scope, "recall"),
                     _num(pc["f1"], name, scope, "f1")])
    parts += ["<h3>Per class (pooled)</h3>", table(["class", "n", "predicted", "precision", "recall", "F1"], rows)]
    if m.get("absent_classes"):
        parts.append(f"<p class=note>No samples of {esc(', '.join(m['absent_classes']))} in the pool: left out "
                     f"of the UF1/UAR means (n/a).</p>")

    parts.append("<h3>Confusion matrices</h3><p class=note>Rows: true class, columns: predicted; counts, "
                 "shaded by the share of the row.</p>")
    panels = [("all", "all datasets", m)] + ([(ds, ds, d) for ds, d in per_ds.items()] if len(per_ds) > 1 else [])
    for scope, label, d in panels:
        parts.append(f"<div class=fig><p>{esc(label)}: UF1 {esc(fmt(d['uf1'], 3))}</p>"
                     f"{confusion_table(d['confusion'], classes, name, scope)}</div>")

    parts.append("<h3>Per fold</h3>")
    if run.folds is None or run.folds.empty:
        parts.append("<p class=note>No folds.csv in this folder.</p>")
    else:
        parts.append(fold_table(run.folds, name))
        png = folds_png(run.folds, run.title)
        if png:
            parts.append(img_tag(png, f"{run.title}: accuracy per fold"))
    excluded = m.get("excluded") or []
    if excluded:
        items = "".join(f"<li>{esc(e)}</li>" for e in excluded[:100])
        more = f"<li>… {len(excluded) - 100} more (excluded.csv)</li>" if len(excluded) > 100 else ""
        parts.append(f"<details><summary>{len(excluded)} samples excluded</summary><ul>{items}{more}</ul></details>")
    return "\n".join(parts)


def confusion_table(confusion, classes: Sequence[str], run: str, scope: str) -> str:
    cm = np.asarray(confusion, dtype=np.int64)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    rows = []
    for i, c in enumerate(classes):
        cells = [esc(c)]
        for j in range(len(classes)):
            s = float(share[i, j])
            colour = "#fff" if s > 0.55 else "#000"
            cells.append(Cell(str(int(cm[i, j])),
                              f'style="background:rgba(40,90,160,{s:.2f});color:{colour}" data-run="{esc(run)}" '
                              f'data-scope="{esc(scope)}" data-key="confusion" data-i="{i}" data-j="{j}"'))
        rows.append(cells)
    return table(["true \\ predicted", *classes], rows, cls="cm")


# folds.csv column -> header
FOLD_COLUMNS = {"fold": "fold", "n_train": "train", "n_val": "val", "n_test": "test", "epochs_used": "epochs",
                "final_loss": "final loss", "fold_accuracy": "accuracy", "seconds": "s"}
FOLD_DIGITS = {"final_loss": 3, "fold_accuracy": 3, "seconds": 1}


def fold_table(folds: pd.DataFrame, run: str) -> str:
    cols = [c for c in FOLD_COLUMNS if c in folds.columns]
    rows = []
    for _, f in folds.iterrows():
        cells = []
        for c in cols:
            v = f[c]
            text = "n/a" if pd.isna(v) else fmt(float(v), FOLD_DIGITS[c]) if c in FOLD_DIGITS else str(v)
            cells.append(Cell(esc(text), f'data-run="{esc(run)}" data-scope="fold:{esc(f.get("fold"))}" '
                                         f'data-key="{c}"'))
        rows.append(cells)
    return table([FOLD_COLUMNS[c] for c in cols], rows)


def folds_png(folds: pd.DataFrame, title: str) -> bytes | None:
    if "fold_accuracy" not in folds or "fold" not in folds:
        return None
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(folds) + 1.5), 2.6))
    ax.bar(range(len(folds)), folds["fold_accuracy"].astype(float), color="#468")
    ax.set_xticks(range(len(folds)), folds["fold"].astype(str), rotation=60, ha="right", fontsize=6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_title(f"{title}: accuracy of each held-out fold", fontsize=9)
    fig.tight_layout()
    return fig_png(fig)


def evaluation_page(runs: Sequence[RunResults], title: str = "micronbert evaluation report") -> str:
    parts = [f"<h1>{esc(title)}</h1>",
             "<p class=note>Pooled = the predictions of all folds scored together (MEGC2019 scoring: UF1 and UAR "
             "are means over the classes present in the pool). Made by <code>micronbert report</code> from "
             "<code>micronbert evaluate</code> results folders.</p>"]
    if len(runs) > 1:
        parts.append(comparison_section(runs))
    parts.append("<div class=runs>" + "".join(f"<section class=run>{run_section(r)}</section>" for r in runs)
                 + "</div>")
    return page(title, parts)


def write_evaluation_report(folders: Sequence, out, title: str = "micronbert evaluation report") -> Path:
    """Render `evaluate` results folders into one self-contained HTML file at `out`."""
    if not folders:
        raise MicronbertError("no results folders given")
    out = Path(out)
    runs = load_runs(folders)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, evaluation_page(runs, title))
    return out

