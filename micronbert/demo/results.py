"""The demo's results: its runs, their titles, and the pooled metrics read back for the terminal table
and the report (shared by `demo.pipeline` and `demo.report`)."""
from __future__ import annotations

import json
from pathlib import Path

RUNS = ("micronbert", "no-dma", "flow-cnn", "shuffled")
RUN_TITLES = {"micronbert": "μ-BERT (pretrained, DMA + direction + PoI on the face)",
              "no-dma": "no-DMA ablation (plain cross-attention, no direction)",
              "flow-cnn": "optical-flow CNN baseline", "shuffled": "μ-BERT, labels shuffled (control)"}


def run_title(run: str) -> str:
    if run.startswith("shuffled-"):  # further permutations of the control
        return f"{RUN_TITLES['shuffled']} #{run.split('-', 1)[1]}"
    return RUN_TITLES[run]


def shuffled_runs(n: int) -> list[str]:
    return ["shuffled"] + [f"shuffled-{k}" for k in range(2, n + 1)]


def load_results(results_dir) -> dict[str, dict]:
    out = {}
    extra = sorted((p.name for p in Path(results_dir).glob("shuffled-*") if p.is_dir()),
                   key=lambda n: int(n.split("-")[1]) if n.split("-")[1].isdigit() else 0)
    for run in list(RUNS) + extra:
        p = Path(results_dir) / run / "metrics.json"
        if p.is_file():
            out[run] = json.loads(p.read_text())
    return out


def metrics_table(results_dir) -> str:
    """The pooled LOSO table as plain text (terminal)."""
    res = load_results(results_dir)
    if not res:
        return "no evaluation results"
    lines = [f"{'model':44s} {'UF1':>6s} {'UAR':>6s} {'acc':>6s} {'n':>4s}"]
    for run, m in res.items():
        lines.append(f"{run_title(run):44s} {m['uf1']:6.3f} {m['uar']:6.3f} {m['accuracy']:6.3f} {m['n_samples']:4d}")
    sh = shuffled_summary(res)
    if sh and sh["n"] > 1:
        lines.append(f"{'shuffled control, mean of ' + str(sh['n']) + ' permutations':44s} {sh['uf1']:6.3f} "
                     f"{sh['uar']:6.3f}")
    return "\n".join(lines)


def shuffled_summary(res: dict[str, dict]) -> dict | None:
    runs = [m for r, m in res.items() if r.startswith("shuffled")]
    if not runs:
        return None
    return {"n": len(runs), "uf1": sum(m["uf1"] for m in runs) / len(runs),
            "uar": sum(m["uar"] for m in runs) / len(runs), "uf1_values": [m["uf1"] for m in runs]}
