"""The demo's report: one self-contained HTML file (PNG images inlined as data: URIs, inline CSS, no
script, no external resource), so it opens from disk without a server. It is made of the same parts as
`micronbert report` (`micronbert.infer.report_html`): the evaluation runs are shown by that code.

Sections: settings and stage timings, the pooled LOSO metrics table, confusion matrices, sample panels
(onset, apex, |difference|, DMA change and PoI over the apex, with each sample's overlap of the DMA
change with the known action region), pretraining curves, and the prediction on a real face video.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from micronbert.infer.report_html import (comparison_section, confusion_table, esc, fig_png, img_tag, load_run,
                                          page, run_section, table)
from micronbert.utils.io import atomic_write_text


def curves_png(log_csv: Path) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    if not log_csv.is_file():
        return None
    log = pd.read_csv(log_csv)
    if log.empty:
        return None
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    for col in ("loss", "loss_rec", "loss_agg"):
        if col in log:
            ax[0].plot(log["step"], log[col], label=col, marker=".")
    ax[0].set_xlabel("step")
    ax[0].set_title("pretraining losses")
    ax[0].legend()
    ax[1].plot(log["step"], log["pairs_per_s"], marker=".")
    ax[1].set_xlabel("step")
    ax[1].set_title("pairs / s")
    fig.tight_layout()
    return fig_png(fig)


def overlap_stats(change: np.ndarray, action: np.ndarray, frac: float = 0.25) -> dict:
    """Overlap of the k brightest change cells with the action region (cells where the known
    displacement is at least `frac` of its peak), k = region size; chance = k / cells."""
    region = action >= frac * action.max() if action.max() > 0 else np.zeros_like(action, bool)
    k = int(region.sum())
    if k == 0:
        return {"k": 0, "overlap": float("nan"), "chance": float("nan")}
    top = np.argsort(change.ravel())[::-1][:k]
    hit = float(region.ravel()[top].mean())
    return {"k": k, "overlap": hit, "chance": k / region.size}


def sample_panels(demo, n: int = 3) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """Pair figures of a few samples (one per class where possible) and overlap stats of all samples."""
    import pandas as pd

    from micronbert.synth import action_map, read_actions
    from micronbert.faces.cache import FaceCache
    from micronbert.infer.maps import load_backbone_any, pair_maps, pair_motion
    from micronbert.infer.visualise import change_map, pair_figure

    weights = demo.classifier if (demo.classifier / "model.safetensors").is_file() else demo.pretrained
    model, cfg = load_backbone_any(weights)
    cache = FaceCache(demo.cache)
    actions = read_actions(demo.data_root)
    stats, figs, seen, seen_subjects = [], [], set(), set()
    for row in actions.itertuples():
        if not cache.has(row.dataset, row.sample_id):
            continue
        s = cache.load(row.dataset, row.sample_id)
        maps = pair_maps(model, s.frame(int(row.onset)), s.frame(int(row.apex)))
        g = maps["dma_map"].shape[0]
        # the cache's own frame->crop transform (crop of `size` px), so the region is where prepare put it
        act = action_map(row.bumps, g, crop_size=s.frames.shape[1], to_crop=np.asarray(s.transform))
        st = overlap_stats(change_map(maps["dma_map"]), act)
        stats.append({"sample_id": row.sample_id, "emotion": row.emotion, "aus": row.aus, **st})
        # a few samples: one per class, each from a different subject (person)
        if len(figs) < n and row.emotion not in seen and str(row.subject) not in seen_subjects:
            seen.add(row.emotion)
            seen_subjects.add(str(row.subject))
            tmp = demo.out / "figures" / f"pair_{row.sample_id.replace('/', '_')}.png"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            # which way the most-changed patches moved (directional DMA; None for a config without it)
            motion = pair_motion(model, s.frame(int(row.onset)), s.frame(int(row.apex)))
            pair_figure(maps["first"], maps["second"], maps["dma_map"], maps["poi_map"], tmp,
                        title=f"{row.sample_id}: {row.emotion} (AU {row.aus}), "
                              f"top-change overlap {st['overlap']:.2f} vs chance {st['chance']:.2f}",
                        motion=motion)
            figs.append((f"{row.sample_id} {row.emotion}", tmp.read_bytes()))
    pd.DataFrame(stats).to_csv(demo.out / "dma_overlap.csv", index=False)
    return figs, stats


def write_report(demo) -> Path:
    from micronbert.demo.results import load_results, run_title, shuffled_summary

    parts = ["<h1>micronbert demo</h1><p class=note>μ-BERT on a synthetic micro-expression benchmark made "
             f"from real built-in faces, CASME II layout, protocol megc2019 (3 classes), leave-one-subject-out. "
             f"Everything here was computed by <code>micronbert demo</code> on this machine.</p>"]
    syn = next((s.data.get("summary") for s in demo.stages if s.name == "synth" and s.ok), None)
    if syn:
        parts.append(f"<p>{syn['samples']} clips of {syn['frames_per_clip']} frames; {syn['subjects']} subjects "
                     f"from {len(syn['distinct_people'])} distinct real people "
                     f"({html.escape(', '.join(syn['distinct_people']))}); "
                     f"action amplitude {syn['amplitude_px224']} px at the 224-px face scale (×0.7-1.3 per sample); "
                     f"classes {html.escape(json.dumps(syn['classes']))}.</p>")
    parts.append("<h2>Stages</h2>" + table(["stage", "status", "seconds", "detail"], [
        [s.name, "ok" if s.ok else '<span class=bad>failed</span>', f"{s.seconds:.1f}", html.escape(s.detail)]
        for s in demo.stages]))

    res = load_results(demo.results)
    if res:
        runs = [load_run(demo.results / r, name=r, title=run_title(r)) for r in res]
        parts.append(comparison_section(runs, heading="Pooled LOSO metrics"))
        sh = shuffled_summary(res)
        if sh and sh["n"] > 1:
            parts.append(f"<p>Shuffled control, mean of {sh['n']} permutations: UF1 {sh['uf1']:.3f}, UAR "
                         f"{sh['uar']:.3f} (UF1 per permutation: "
                         f"{', '.join(f'{v:.3f}' for v in sh['uf1_values'])}).</p>")
        parts.append("<p class=note>The shuffled control is μ-BERT trained and scored on copies of the sample "
                     "table whose labels were permuted across samples: what a model scores when labels carry no "
                     "signal (chance UF1 is about 0.33 for 3 balanced classes; with 48 samples one permutation "
                     "varies by about ±0.07). Pooled = the predictions of all folds scored together.</p>")
        parts.append("<h2>Confusion matrices</h2><p class=note>Rows: true class, columns: predicted; counts, "
                     "shaded by the share of the row.</p>")
        for r in runs:
            parts.append(f"<div class=fig><p>{esc(r.title)}</p>"
                         f"{confusion_table(r.metrics['confusion'], r.metrics['classes'], r.name, 'all')}</div>")
        parts.append("<h2>Each run: per class, per fold</h2>" + "".join(
            f"<details><summary>{esc(r.title)}</summary>{run_section(r, 'h3')}</details>" for r in runs))
    else:
        parts.append("<h2>Pooled LOSO metrics</h2><p class=bad>No evaluation results (see the stage table).</p>")

    parts.append("<h2>Samples: onset, apex, |difference|, DMA change, PoI</h2>")
    try:
        figs, stats = sample_panels(demo)
        for name, png in figs:
            parts.append(f"<div>{img_tag(png, name)}</div>")
        ov = [s["overlap"] for s in stats if s["k"]]
        ch = [s["chance"] for s in stats if s["k"]]
        if ov:
            parts.append(f"<p>Over all {len(ov)} samples, the brightest DMA-change cells overlap the region where "
                         f"the synthetic action was applied by {np.mean(ov):.3f} on average, against {np.mean(ch):.3f} "
                         f"for randomly placed cells (per-sample table: dma_overlap.csv).</p>")
    except Exception as exc:  # the report must still be written
        parts.append(f"<p class=bad>Sample panels unavailable: {html.escape(str(exc))}</p>")

    parts.append("<h2>Pretraining curves</h2>")
    curves = curves_png(demo.pretrained / "log.csv")
    parts.append(img_tag(curves, "pretraining curves") if curves else "<p class=bad>No pretraining log.</p>")

    parts.append("<h2>Prediction on a real face video</h2>")
    pred_csv = demo.prediction / "predictions.csv"
    if pred_csv.is_file():
        import pandas as pd

        t = pd.read_csv(pred_csv)
        cols = [c for c in ("interval", "onset", "apex", "offset", "score", "source", "label", "confidence") if c in t]
        parts.append(table(cols, [[html.escape(str(v if not isinstance(v, float) else round(v, 3))) for v in r]
                                   for r in t[cols].itertuples(index=False)]))
        for png in sorted(demo.prediction.glob("*.png"))[:3]:
            parts.append(f"<div>{img_tag(png.read_bytes(), png.name)}</div>")
        parts.append("<p class=note>This video has no annotated micro-expression: the intervals are the spotter's "
                     "proposals and the labels show what the synthetic-data model says, not ground truth.</p>")
    else:
        parts.append("<p class=bad>No prediction (see the stage table).</p>")

    doc = page("micronbert demo", parts)
    path = demo.out / "report.html"
    atomic_write_text(path, doc)
    return path
