"""`micronbert demo --quick`: the whole orchestration end to end on tiny settings, its outputs, and the
report in a real browser."""
from __future__ import annotations

import base64
import json
import re

import pytest

from micronbert.demo.pipeline import RUNS, Demo, DemoConfig


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from micronbert.cli import main

    out = tmp_path_factory.mktemp("demo") / "runs" / "demo"
    rc = main(["demo", "--quick", "--out", str(out)])
    return out, rc


def test_quick_demo_runs_every_stage(quick_demo, capsys):
    out, rc = quick_demo
    assert rc == 0
    stages = json.loads((out / "demo.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["synth", "index", "prepare", "pretrain", "evaluate", "predict", "report"]
    assert all(s["ok"] for s in stages), stages
    for run in RUNS:
        m = json.loads((out / "results" / run / "metrics.json").read_text())
        assert m["n_samples"] == 9 and m["protocol"] == "megc2019"
    # metrics.json is μ-BERT's result in the evaluate format
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "micronbert"
    for key in ("uf1", "uar", "accuracy", "per_class", "per_dataset", "samples_sha256"):
        assert key in m
    # the shuffled control used the same samples with permuted labels
    import pandas as pd

    a, b = pd.read_csv(out / "samples.csv"), pd.read_csv(out / "samples_shuffled.csv")
    assert list(a["emotion"]) != list(b["emotion"])
    assert list(a["sample_id"]) == list(b["sample_id"])
    assert sorted(a["emotion"]) == sorted(b["emotion"])
    assert (out / "predict" / "predictions.csv").is_file()
    overlap = pd.read_csv(out / "dma_overlap.csv")
    assert len(overlap) == 9 and {"overlap", "chance"} <= set(overlap.columns)


def test_report_is_self_contained(quick_demo):
    out, _ = quick_demo
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    assert len(srcs) >= 4 + 1 + 1  # 4 confusion matrices, sample panels, training curves (+ prediction)
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)
    assert "<script" not in html
    for words in ("Pooled LOSO metrics", "Confusion matrices", "DMA change", "Pretraining curves",
                  "Prediction on a real face video"):
        assert words in html


def test_failed_stage_is_reported_and_the_rest_runs(tmp_path):
    lines = []
    demo = Demo(tmp_path, DemoConfig.quick(), log=lines.append)

    def broken():
        raise RuntimeError("`micronbert evaluate` is not available in this installation")

    assert demo.stage("a", lambda: {"detail": "fine"}).ok
    res = demo.stage("evaluate", broken, ("a",))
    assert not res.ok and "not available" in res.detail
    skipped = demo.stage("needs-evaluate", lambda: {}, ("evaluate",))
    assert not skipped.ok and "skipped" in skipped.detail
    assert demo.stage("independent", lambda: {}, ("a",)).ok
    assert any("FAILED" in line for line in lines)




def test_report_renders_in_chromium(quick_demo, chromium):
    from chromium_cdp import render

    out, _ = quick_demo
    page = render(chromium, out / "report.html")
    assert page["loaded"]
    assert page["title"] == "micronbert demo"
    assert len(page["images"]) >= 6
    broken = [i for i in page["images"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not broken, broken
    assert page["errors"] == []
    assert "UF1" in page["text"]


def test_chromium_harness_sees_broken_pages(tmp_path, chromium):
    # the check above can fail: a missing image and a script error are caught
    from chromium_cdp import render

    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><title>bad</title><img src="missing.png"><script>nosuchfunction()</script>')
    page = render(chromium, bad)
    assert any(i["w"] == 0 for i in page["images"])
    assert any("nosuchfunction" in e for e in page["errors"])
