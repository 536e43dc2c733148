"""`micronbert report`: a self-contained HTML page of `evaluate` results, checked in headless Chromium
against the metrics.json files it was made from (tiny LOSO runs of the flow baseline, not typed numbers)."""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from micronbert.cli import main
from micronbert.train.metrics import fmt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))  # the Chromium harness lives there

CLASSES = ["negative", "positive", "surprise"]


def tiny_pairs(n_subjects=3, per_class=2, size=32, seed=0):
    """Two datasets; each class moves a textured face-sized patch its own way between onset and apex."""
    import cv2

    rng = np.random.default_rng(seed)
    rows, onsets, apexes = [], [], []
    shifts = {0: (1, 0), 1: (0, 1), 2: (-1, -1)}
    for dataset in ("casme2", "samm"):
        for s in range(n_subjects):
            for label in range(len(CLASSES)):
                for k in range(per_class):
                    img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3)).astype(np.uint8), (0, 0), 1.5)
                    dx, dy = shifts[label]
                    rows.append({"dataset": dataset, "subject": f"s{s}", "sample_id": f"s{s}/{label}_{k}",
                                 "label": label, "fold": f"{dataset}/s{s}"})
                    onsets.append(img)
                    apexes.append(np.roll(img, (dy, dx), axis=(0, 1)))
    return pd.DataFrame(rows), np.stack(onsets), np.stack(apexes)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished `evaluate` results folders on the same samples (different seeds), made by the LOSO code."""
    from micronbert.train.loso import evaluate
    from micronbert.train.methods import build_method, default_recipe
    from micronbert.train.pairdata import PairData

    root = tmp_path_factory.mktemp("report")
    table, onset, apex = tiny_pairs()
    folders = []
    for name, seed in (("run-a", 0), ("run-b", 1)):
        method = build_method("flow-cnn-farneback", CLASSES, default_recipe("flow-cnn", epochs=2))
        result = evaluate(table, None, method, root / name, classes=CLASSES, protocol="megc2019", seed=seed,
                          data=PairData(onset, apex))
        assert result["complete"]
        folders.append(root / name)
    return root, folders


def test_page_is_self_contained_and_shows_every_section(two_runs, tmp_path):
    root, folders = two_runs
    out = tmp_path / "report.html"
    assert main(["report", *map(str, folders), "--out", str(out)]) == 0
    doc = out.read_text()
    assert "<script" not in doc.lower() and "http://" not in doc and "https://" not in doc
    assert "<link" not in doc.lower() and "@import" not in doc
    srcs = re.findall(r'src="([^"]*)"', doc)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    m = json.loads((folders[0] / "metrics.json").read_text())
    assert m["samples_sha256"] in doc
    for text in ("Runs side by side", "Pooled metrics per dataset", "Per class", "Confusion matrices", "Per fold",
                 "the same 36 samples", "run-a", "run-b", "casme2 UF1", "samm UAR"):
        assert text in doc, text


def test_report_refuses_bad_input_with_one_line(two_runs, tmp_path, capsys):
    root, folders = two_runs
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.html")]) != 0
    assert "no metrics.json" in capsys.readouterr().err
    before = (folders[0] / "metrics.json").read_bytes()
    assert main(["report", str(folders[0]), "--out", str(folders[0] / "metrics.json")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main(["report", str(folders[0] / "metrics.json"), "--out", str(folders[0] / "metrics.json")]) == 2
    assert "would be overwritten" in capsys.readouterr().err
    assert (folders[0] / "metrics.json").read_bytes() == before


def test_runs_on_different_samples_are_flagged(two_runs, tmp_path):
    from micronbert.infer.report_html import evaluation_page, load_runs
    from micronbert.train.loso import evaluate
    from micronbert.train.methods import build_method, default_recipe
    from micronbert.train.pairdata import PairData

    root, folders = two_runs
    table, onset, apex = tiny_pairs(n_subjects=2, seed=3)
    method = build_method("flow-cnn-farneback", CLASSES, default_recipe("flow-cnn", epochs=1))
    evaluate(table, None, method, tmp_path / "other", classes=CLASSES, protocol="megc2019", data=PairData(onset, apex))
    doc = evaluation_page(load_runs([folders[0], tmp_path / "other"]))
    assert "not computed on the same sample list" in doc




CELLS_JS = """JSON.stringify(Array.from(document.querySelectorAll('[data-key]')).map(e => ({
  run: e.dataset.run, scope: e.dataset.scope || null, key: e.dataset.key, i: e.dataset.i || null,
  j: e.dataset.j || null, text: e.textContent.trim()})))"""


def render_cells(binary: str, html_path: Path, timeout: float = 60.0) -> dict:
    """Load the page in Chromium; return its console errors, images and every tagged figure as displayed."""
    from chromium_cdp import Browser, render

    page = render(binary, html_path, timeout)  # errors, images, text
    b = Browser(binary, timeout)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.send("Page.enable", session=session)
        b.send("Page.navigate", {"url": Path(html_path).resolve().as_uri()}, session=session)
        assert b.wait_event("Page.loadEventFired", session, timeout)
        time.sleep(0.2)
        res = b.send("Runtime.evaluate", {"expression": CELLS_JS, "returnByValue": True}, session=session)
        page["cells"] = json.loads(res["result"]["value"])
    finally:
        b.close()
    return page


def expected_text(metrics: dict, cell: dict) -> str:
    """What metrics.json says the cell must show."""
    scope, key = cell["scope"], cell["key"]
    if key == "samples_sha256":
        return metrics["samples_sha256"]
    src = metrics if scope == "all" else (
        metrics["per_class"][scope.split(":", 1)[1]] if scope.startswith("class:") else metrics["per_dataset"][scope])
    if key == "confusion":
        return str(src["confusion"][int(cell["i"])][int(cell["j"])])
    value = src[key]
    return str(value) if isinstance(value, int) else fmt(value)


def test_two_runs_render_in_chromium_with_the_numbers_of_metrics_json(two_runs, chromium, tmp_path):
    root, folders = two_runs
    out = tmp_path / "report.html"
    assert main(["report", *map(str, folders), "--out", str(out)]) == 0
    page = render_cells(chromium, out)
    assert page["loaded"] and page["errors"] == []
    assert page["title"] == "micronbert evaluation report"
    assert len(page["images"]) == 3  # the comparison chart and one per-fold chart per run
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in page["images"])

    metrics = {f.name: json.loads((f / "metrics.json").read_text()) for f in folders}
    folds = {f.name: pd.read_csv(f / "folds.csv") for f in folders}
    checked = {name: set() for name in metrics}
    for cell in page["cells"]:
        run, scope = cell["run"], cell["scope"]
        if scope and scope.startswith("fold:"):  # folds.csv figures
            row = folds[run][folds[run]["fold"] == scope[5:]].iloc[0]
            if cell["key"] in ("n_train", "n_test"):
                assert cell["text"] == str(row[cell["key"]]), cell
            continue
        assert cell["text"] == expected_text(metrics[run], cell), cell
        checked[run].add((scope, cell["key"]))
    for name, m in metrics.items():
        # every pooled figure of metrics.json is on the page: composite, each dataset, each class, each cell
        want = {("all", k) for k in ("uf1", "uar", "accuracy", "n_samples", "confusion")}
        want |= {(ds, k) for ds in m["per_dataset"] for k in ("uf1", "uar", "accuracy", "n_samples", "confusion")}
        want |= {(f"class:{c}", k) for c in CLASSES for k in ("n", "predicted", "precision", "recall", "f1")}
        want |= {(None, "samples_sha256")}
        assert want <= checked[name], want - checked[name]
    # the two runs differ somewhere, so a page showing one run's numbers twice would fail above
    assert any(metrics["run-a"][k] != metrics["run-b"][k] for k in ("uf1", "uar", "confusion")) or \
        folds["run-a"]["final_loss"].tolist() != folds["run-b"]["final_loss"].tolist()


def test_runs_are_named_after_their_folders_and_told_apart(two_runs, tmp_path):
    import shutil

    from micronbert.infer.report_html import load_runs

    root, folders = two_runs
    for parent in ("x", "y"):
        shutil.copytree(folders[0], tmp_path / parent / "results")
    runs = load_runs([tmp_path / "x" / "results", tmp_path / "y" / "results" / "metrics.json", folders[1],
                      folders[1]])
    again = f"{folders[1].parent.name}/run-b"    # the same folder twice: numbered
    assert [r.name for r in runs] == ["x/results", "y/results", again, f"{again} #2"]
