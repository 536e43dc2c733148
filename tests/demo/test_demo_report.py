"""The demo's report shows its evaluation runs with the code of `micronbert report`: the same tagged
figures, equal to each run's metrics.json (runs made by the LOSO code, not typed numbers)."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from micronbert.train.metrics import fmt

CLASSES = ["negative", "positive", "surprise"]


class TaggedCells(HTMLParser):
    """(data-run, data-scope, data-key, data-i, data-j) -> the texts of the elements so tagged (a figure
    may be shown more than once: in the side-by-side table and in its run's section)."""

    def __init__(self):
        super().__init__()
        self.cells, self._open = {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self._open = (a.get("data-run"), a.get("data-scope"), a["data-key"], a.get("data-i"), a.get("data-j"))
            self.cells.setdefault(self._open, []).append("")

    def handle_data(self, data):
        if self._open:
            self.cells[self._open][-1] += data

    def handle_endtag(self, tag):
        self._open = None


@pytest.fixture(scope="module")
def demo_with_two_runs(tmp_path_factory):
    """A demo folder whose stages all failed but evaluate: two finished runs under results/."""
    import cv2

    from micronbert.demo.pipeline import StageResult
    from micronbert.train.loso import evaluate
    from micronbert.train.methods import build_method, default_recipe
    from micronbert.train.pairdata import PairData

    out = tmp_path_factory.mktemp("demo")
    rng = np.random.default_rng(0)
    rows, onset, apex = [], [], []
    for s in range(3):
        for label, (dx, dy) in enumerate(((1, 0), (0, 1), (-1, -1))):
            for k in range(2):
                img = cv2.GaussianBlur(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8), (0, 0), 1.5)
                rows.append({"dataset": "casme2", "subject": f"s{s}", "sample_id": f"s{s}/{label}_{k}",
                             "label": label, "fold": f"casme2/s{s}"})
                onset.append(img)
                apex.append(np.roll(img, (dy, dx), axis=(0, 1)))
    table, data = pd.DataFrame(rows), PairData(np.stack(onset), np.stack(apex))
    for run, seed in (("micronbert", 0), ("flow-cnn", 1)):  # both flow CNNs: fast; the names are the demo's
        method = build_method("flow-cnn", CLASSES, default_recipe("flow-cnn", epochs=2))
        evaluate(table, None, method, out / "results" / run, classes=CLASSES, protocol="megc2019", seed=seed,
                 data=data)
    stages = [StageResult("evaluate", True, 1.0, "2 runs")]
    return SimpleNamespace(out=out, stages=stages, results=out / "results", pretrained=out / "pretrained",
                           classifier=out / "classifier", prediction=out / "prediction", cache=out / "cache",
                           data_root=out / "data")


def test_demo_report_shows_runs_with_the_evaluation_report_code(demo_with_two_runs):
    from micronbert.demo.report import write_report

    demo = demo_with_two_runs
    doc = write_report(demo).read_text()
    assert "<script" not in doc.lower() and "<title>micronbert demo</title>" in doc
    parser = TaggedCells()
    parser.feed(doc)
    cells = parser.cells
    for run in ("micronbert", "flow-cnn"):
        m = json.loads((demo.results / run / "metrics.json").read_text())
        for key in ("uf1", "uar", "accuracy"):
            assert {t.strip() for t in cells[(run, "all", key, None, None)]} == {fmt(m[key])}
        for i, row in enumerate(m["confusion"]):
            for j, n in enumerate(row):
                assert {t.strip() for t in cells[(run, "all", "confusion", str(i), str(j))]} == {str(n)}
        for c in CLASSES:
            assert {t.strip() for t in cells[(run, f"class:{c}", "f1", None, None)]} == {fmt(m["per_class"][c]["f1"])}
        assert {t.strip() for t in cells[(run, None, "samples_sha256", None, None)]} == {m["samples_sha256"]}
    assert "optical-flow CNN baseline" in doc  # the demo's run titles
