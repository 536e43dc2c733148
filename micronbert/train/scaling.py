"""Pretraining-data scaling: pretrain on nested fractions of a frame pool, evaluate each the same way.

The unit of a fraction is a *frame source*: one video or one frame folder (or, for shard input, one shard
folder written by `micronbert shard`). Sources are put in one seeded random order and the fraction f takes
the shortest prefix of that order holding at least f × (all frames); so the sets are nested
(10 % ⊂ 30 % ⊂ 100 %) and a larger fraction adds new videos (new people, new sessions) rather than more
frames of the same clips, which is what "more pretraining data" means in the paper. The real frame
count of each prefix is what the table and the plot report.

Budget: "steps" (default) gives every fraction the same number of optimizer steps (same compute, so a
small pool is seen for more epochs); "epochs" gives every fraction the same number of passes over its
anchor frames (steps grow with the pool). The table states which, with steps and epochs_seen per row.

On disk (OUT/):
    pretrain-<f>/        a `micronbert pretrain` folder + subset.json (the sources, frames, steps)
    eval-<f>/, eval-none/  `micronbert evaluate` folders (resumable; eval-none: random initialisation)
    scaling.csv, scaling.md, scaling.png
Re-running skips finished pretraining and finished folds, and refuses folders of a different plan.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from micronbert.errors import MicronbertError
from micronbert.utils.io import atomic_save, atomic_write_json, atomic_write_text

COLUMNS = ["fraction", "n_frames", "n_sources", "steps", "epochs_seen", "uf1", "uar", "accuracy", "samples_sha256"]
BUDGETS = ("steps", "epochs")


@dataclass
class PoolUnit:
    path: str
    n_frames: int
    kind: str  # "video", "folder" or "shards"


def parse_fractions(text: str | Sequence[float]) -> list[float]:
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        fr = sorted({float(x) for x in items if str(x).strip()})
    except ValueError as exc:
        raise MicronbertError(f"--fractions {text!r}: expected numbers like 0.1,0.3,1.0") from exc
    if not fr or fr[0] <= 0 or fr[-1] > 1:
        raise MicronbertError(f"--fractions {text!r}: each fraction must be in (0, 1]")
    return fr


def fraction_name(f: float) -> str:
    return f"{f:g}"


def frame_pool(paths: Sequence[str], fps: float = 30.0) -> list[PoolUnit]:
    """The units fractions are drawn from: discovered frame sources, or whole shard folders."""
    from micronbert.data.shards import is_shard_dir, load_manifest

    shards = [p for p in paths if is_shard_dir(p)]
    if shards and len(shards) != len(paths):
        raise MicronbertError("--frames: give either shard folders or videos/frame folders, not both")
    if shards:
        units = []
        for p in shards:
            m = load_manifest(p)
            n = sum(int(s.get("n_frames", 0)) for s in m.get("sources", [])) or \
                sum(int(s.get("samples", 0)) for s in m.get("shards", []))
            units.append(PoolUnit(str(p), n, "shards"))
        return units
    from micronbert.data.pairs import discover_sources

    return [PoolUnit(str(s.path), int(s.n_frames), s.kind) for s in discover_sources(paths, fps)]


def nested_subsets(units: Sequence[PoolUnit], fractions: Sequence[float], seed: int = 0) -> dict[float, list[int]]:
    """fraction -> indices into `units` (a prefix of one seeded order): nested by construction."""
    if not units:
        raise MicronbertError("the frame pool is empty")
    order = np.random.default_rng([seed, 7919]).permutation(len(units))
    cum = np.cumsum([units[i].n_frames for i in order])
    total = cum[-1]
    out = {}
    for f in fractions:
        # the shortest prefix with at least f of the frames (float slack so 1.0 means all)
        k = int(np.searchsorted(cum, f * total - 1e-9 * total)) + 1
        out[f] = [int(i) for i in order[:min(k, len(units))]]
    return out


def plan_steps(pcfg, anchors: int, budget: str, epochs: float | None):
    """The pretraining config for one fraction: same steps (as given) or same epochs over its anchors."""
    if budget == "steps":
        return pcfg
    if not epochs or epochs <= 0:
        raise MicronbertError("--epochs must be > 0 for the same-epochs budget")
    steps = max(1, math.ceil(epochs * anchors / pcfg.batch_size))
    # warm-up capped at a tenth of the run, so small fractions also reach the peak learning rate
    return replace(pcfg, steps=steps, warmup_steps=min(pcfg.warmup_steps, max(1, steps // 10)))


def count_anchors(paths: Sequence[str], units: Sequence[PoolUnit], pcfg, fps: float) -> int:
    """Anchor frames the pretraining schedule will draw from (the 'epoch' of this subset)."""
    if units and units[0].kind == "shards":
        return sum(u.n_frames for u in units)
    from micronbert.data.pairs import PairSchedule, discover_sources

    sources = discover_sources(paths, fps)
    found = sorted(str(s.path) for s in sources)
    if found != sorted(paths):
        # a chosen folder also holds other sources below it: pretrain(paths) would read more than chosen
        extra = sorted(set(found) - set(paths))
        raise MicronbertError(f"frame sources nest inside each other (e.g. {extra[:2]} lie inside a chosen "
                              f"frame folder); give leaf folders/videos so fractions can be drawn exactly")
    return len(PairSchedule(sources, pcfg.batch_size, (pcfg.delta_min_s, pcfg.delta_max_s), pcfg.seed, pcfg.hflip))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def pretrain_fraction(out: Path, fraction: float, units: Sequence[PoolUnit], chosen: Sequence[int], model_cfg,
                      pcfg, budget: str, epochs: float | None, fps: float, device: str | None = None,
                      show_progress: bool = False) -> dict:
    """Pretrain (or resume, or skip when finished) on one fraction into out/pretrain-<f>/; returns subset.json."""
    from micronbert.config import to_dict
    from micronbert.model.checkpoint import WEIGHTS_NAME
    from micronbert.train.pretrain import pretrain

    folder = out / f"pretrain-{fraction_name(fraction)}"
    paths = [units[i].path for i in chosen]
    anchors = count_anchors(paths, [units[i] for i in chosen], pcfg, fps)
    cfg = plan_steps(pcfg, anchors, budget, epochs)
    plan = {"fraction": fraction, "budget": budget, "epochs": epochs, "sources": paths,
            "n_sources": len(paths), "n_frames": int(sum(units[i].n_frames for i in chosen)), "anchors": anchors,
            "steps": cfg.steps, "batch_size": cfg.batch_size,
            "epochs_seen": round(cfg.steps * cfg.batch_size / anchors, 4),
            "model": to_dict(model_cfg), "pretrain": to_dict(cfg)}
    marker = folder / "subset.json"
    if marker.is_file():
        old = json.loads(marker.read_text())
        if json.loads(json.dumps(plan)) != old:
            diff = sorted(k for k in plan if json.loads(json.dumps(plan[k])) != old.get(k))
            raise MicronbertError(f"{folder} was pretrained under another plan (differs in {diff}); "
                                  f"use another --out or remove that folder")
    if (folder / WEIGHTS_NAME).is_file() and marker.is_file():
        return {**plan, "skipped": True}
    if _is_main():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, plan)
    resume = (folder / "checkpoints" / "latest.json").is_file()
    summary = pretrain(paths, folder, model_cfg, cfg, resume=resume, device=device, fps=fps,
                       show_progress=show_progress)
    if not summary["finished"]:
        raise MicronbertError(f"pretraining of fraction {fraction_name(fraction)} stopped before the end")
    return {**plan, "skipped": False}


def scaling_table(rows: list[dict], budget: str) -> pd.DataFrame:
    """The scaling table; every evaluated row must describe the same sample list."""
    table = pd.DataFrame(rows, columns=COLUMNS + ["budget"])
    shas = set(table["samples_sha256"].dropna())
    if len(shas) > 1:
        raise MicronbertError(f"the evaluations used different sample lists (samples_sha256 {sorted(shas)}); "
                              f"the points would not be comparable")
    table["budget"] = budget
    return table


def scaling_plot(path: Path, table: pd.DataFrame, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = table[table["fraction"] != "none"].sort_values("n_frames")
    none = table[table["fraction"] == "none"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, colour in (("uf1", "tab:blue"), ("uar", "tab:orange")):
        ax.plot(pre["n_frames"], pre[metric], "o-", color=colour, label=f"{metric.upper()} (pretrained)")
        if len(none) and pd.notna(none[metric].iloc[0]):
            ax.axhline(float(none[metric].iloc[0]), color=colour, ls="--", lw=1,
                       label=f"{metric.upper()} without pretraining")
    ax.set_xscale("log")
    ax.set_xlabel("pretraining frames")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def scaling_markdown(table: pd.DataFrame, budget: str, info: dict) -> str:
    from micronbert.train.metrics import fmt

    if budget == "steps":
        how = (f"**Same steps**: every fraction is pretrained for {info.get('steps')} optimizer steps of "
               f"{info.get('batch_size')} pairs, so smaller pools are seen for more epochs (epochs_seen).")
    else:
        how = (f"**Same epochs**: every fraction is pretrained for {info.get('epochs')} epoch(s) over its own "
               f"anchor frames, so steps grow with the pool.")
    lines = ["# Pretraining-data scaling", "",
             f"Protocol {info.get('protocol')} ({info.get('mode')}), model {info.get('model')}, seed "
             f"{info.get('seed')}; fractions of {info.get('pool_frames')} frames in {info.get('pool_sources')} "
             f"{info.get('unit', 'source')}s, drawn as nested prefixes of one seeded order of whole "
             f"{info.get('unit', 'source')}s (a source is a video or a frame folder).",
             "", how, "", "| fraction | frames | sources | steps | epochs seen | UF1 | UAR | accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        num = lambda v, d="": d if pd.isna(v) else str(int(v))
        lines.append(f"| {r['fraction']} | {num(r['n_frames'], '0')} | {num(r['n_sources'], '0')} | "
                     f"{num(r['steps'], '0')} | {'' if pd.isna(r['epochs_seen']) else r['epochs_seen']} | "
                     f"{fmt(r['uf1'])} | {fmt(r['uar'])} | {fmt(r['accuracy'])} |")
    sha = table["samples_sha256"].dropna()
    lines += ["", f"All rows evaluate the same samples (samples_sha256 `{sha.iloc[0][:16]}…`)." if len(sha) else ""]
    dup = info.get("same_subsets") or []
    if dup:
        lines.append(f"Note: fractions {', '.join(dup)} select the same sources (the pool has too few sources "
                     f"for them to differ); their rows repeat one subset.")
    return "\n".join(lines).rstrip() + "\n"


def run_scaling(frames: Sequence[str], fractions: Sequence[float], out, model_cfg, pcfg,
                evaluate_fn: Callable[[str | None, Path], dict | None], *, budget: str = "steps",
                epochs: float | None = None, seed: int = 0, fps: float = 30.0, device: str | None = None,
                stage: str = "all", info: dict | None = None, show_progress: bool = False) -> dict:
    """Pretrain every fraction, evaluate each plus the no-pretraining point, write the table and plot.

    evaluate_fn(init_folder or None, results_folder) -> metrics dict (None while folds are unfinished).
    stage: "all", "pretrain" (no evaluation) or "evaluate" (needs every pretraining finished)."""
    from micronbert.model.checkpoint import WEIGHTS_NAME

    if budget not in BUDGETS:
        raise MicronbertError(f"budget {budget!r}: choose one of {BUDGETS}")
    out = Path(out)
    units = frame_pool(list(map(str, frames)), fps)
    subsets = nested_subsets(units, fractions, seed)
    if _is_main():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "subsets.json", {
            "unit": "source" if units[0].kind != "shards" else "shard folder", "seed": seed,
            "pool": [asdict(u) for u in units],
            "fractions": {fraction_name(f): [units[i].path for i in idx] for f, idx in subsets.items()}})
    plans = {}
    if stage in ("all", "pretrain"):
        for f in fractions:
            plans[f] = pretrain_fraction(out, f, units, subsets[f], model_cfg, pcfg, budget, epochs, fps, device,
                                         show_progress)
        if stage == "pretrain":
            return {"complete": False, "plans": plans}
    for f in fractions:
        folder = out / f"pretrain-{fraction_name(f)}"
        if not (folder / WEIGHTS_NAME).is_file() or not (folder / "subset.json").is_file():
            raise MicronbertError(f"{folder} holds no finished pretraining; run the pretrain stage first")
        plans.setdefault(f, json.loads((folder / "subset.json").read_text()))

    rows, complete = [], True
    points: list[tuple[str, str | None, dict | None]] = [("none", None, None)]
    points += [(fraction_name(f), str(out / f"pretrain-{fraction_name(f)}"), plans[f]) for f in fractions]
    for name, init, plan in points:
        metrics = evaluate_fn(init, out / f"eval-{name}")
        complete &= metrics is not None
        m = metrics or {}
        rows.append({"fraction": name, "n_frames": plan["n_frames"] if plan else 0,
                     "n_sources": plan["n_sources"] if plan else 0, "steps": plan["steps"] if plan else 0,
                     "epochs_seen": plan["epochs_seen"] if plan else 0.0, "uf1": m.get("uf1"),
                     "uar": m.get("uar"), "accuracy": m.get("accuracy"), "samples_sha256": m.get("samples_sha256")})
    if not complete:
        return {"complete": False, "plans": plans, "rows": rows}
    table = scaling_table(rows, budget)
    same = [f"{fraction_name(a)}={fraction_name(b)}" for a, b in zip(fractions, fractions[1:])
            if subsets[a] == subsets[b]]
    info = {**(info or {}), "steps": pcfg.steps, "batch_size": pcfg.batch_size, "epochs": epochs, "seed": seed,
            "pool_frames": sum(u.n_frames for u in units), "pool_sources": len(units), "same_subsets": same,
            "unit": "shard folder" if units[0].kind == "shards" else "source"}
    if _is_main():
        atomic_save(out / "scaling.csv", lambda tmp: table.to_csv(tmp, index=False))
        atomic_write_text(out / "scaling.md", scaling_markdown(table, budget, info))
        title = (f"{info.get('model', '')} on {info.get('protocol', '')} ({info.get('mode', '')}); "
                 f"same {budget}")
        scaling_plot(out / "scaling.png", table, title)
    return {"complete": True, "table": table, "plans": plans}
