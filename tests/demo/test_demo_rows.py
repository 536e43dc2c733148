"""benchmarks/demo_rows.py: an extra row is the demo's own μ-BERT evaluation with only the model changed."""
import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import demo_rows  # noqa: E402


def test_an_extra_row_changes_only_the_model_and_where_it_writes(tmp_path):
    from micronbert.demo.pipeline import Demo, DemoConfig

    demo = tmp_path / "demo"
    own = Demo(demo, DemoConfig()).eval_job("micronbert")
    row = demo_rows.row_job(demo, "learned-poi", tmp_path / "rows")
    assert (row.model, row.run, row.out) == ("learned-poi", "learned-poi", tmp_path / "rows" / "learned-poi")
    assert not str(row.log).startswith(str(demo))  # the demo's own results and logs stay as they were
    same = {f.name for f in dataclasses.fields(own)} - {"run", "model", "out", "log"}
    assert {k: getattr(row, k) for k in same} == {k: getattr(own, k) for k in same}
    assert row.init == demo / "pretrain" and row.freeze_encoder and row.cache == demo / "cache"
