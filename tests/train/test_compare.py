"""The commands end to end: index-style sample tables + protocol + face cache -> evaluate, finetune, compare."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from micronbert.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

EMOTIONS = {"casme2": ["disgust", "happiness", "surprise"], "smic": ["negative", "positive", "surprise"]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, synthetic):
    """Two sample tables (casme2, smic; 3 subjects each) and a face cache holding all samples but one."""
    from micronbert.data.samples import make_table, write_samples
    from micronbert.faces.cache import FaceCache

    root = tmp_path_factory.mktemp("cli")
    cache = FaceCache(root / "cache")
    tables = []
    for d, (dataset, emotions) in enumerate(EMOTIONS.items()):
        synth, pairs, _ = synthetic(size=32, n_subjects=3, per_class=2, seed=d)
        rows = []
        for i, r in synth.iterrows():
            sid = f"{dataset}_{r['sample_id']}"
            rows.append(dict(dataset=dataset, subject=r["subject"], sample_id=sid, clip=sid.split("/")[-1],
                             onset=10, apex=12, offset=14, apex_source="annotated", emotion=emotions[r["label"]],
                             aus="", n_frames=2, frames_dir=str(root / "frames"), frame_numbers="10 12",
                             frame_files="a.jpg b.jpg", source=f"{dataset}.csv:{i + 2}"))
            if not (dataset == "smic" and i == 0):  # one sample was never prepared
                cache.save(dataset, sid, np.stack(pairs[r["sample_id"]]), [10, 12])
        path = root / f"{dataset}.csv"
        write_samples(make_table(rows), path)
        tables.append(str(path))
    return root, tables


def evaluate(root, tables, out, *extra):
    return main(["evaluate", "--samples", *tables, "--protocol", "megc2019", "--cache", str(root / "cache"),
                 "--out", str(root / out), *extra])


def test_evaluate_compare_finetune_through_the_cli(workspace, capsys):
    from micronbert.model.classifier import load_classifier

    root, tables = workspace
    flow = ["--model", "flow-cnn", "--epochs", "3"]
    assert evaluate(root, tables, "flow", *flow, "--folds", "0-2") == 0
    assert "not all folds are finished" in capsys.readouterr().out
    assert evaluate(root, tables, "flow", *flow) == 0           # resumes: runs the remaining 3 folds
    out = capsys.readouterr().out
    assert "ran 3, skipped 3" in out and "UF1" in out
    m = json.loads((root / "flow" / "metrics.json").read_text())
    assert m["protocol"] == "megc2019" and m["model"] == "flow-cnn" and m["n_folds"] == 6
    assert m["n_samples"] == 35 and m["n_excluded"] == 1 and "face cache" in m["excluded"][0]
    assert set(m["per_dataset"]) == {"casme2", "smic"}
    assert m["classes"] == ["negative", "positive", "surprise"]
    assert m["sample_files"] == tables
    pred = pd.read_csv(root / "flow" / "predictions.csv")
    assert set(pred["fold"]) == {f"{d}/s{i:02d}" for d in EMOTIONS for i in range(3)}

    assert evaluate(root, tables, "mubert", "--model", "micronbert", "--preset", "test", "--epochs", "1",
                    "--freeze-encoder") == 0
    assert main(["compare", str(root / "flow"), str(root / "mubert"), "--out", str(root / "table.md")]) == 0
    table = (root / "table.md").read_text()
    assert "casme2 UF1" in table and "smic UAR" in table and "| flow |" in table and "| mubert |" in table
    assert "the same 35 samples" in table

    # a result on another sample list is refused, unless asked, and then flagged
    assert evaluate(root, tables[:1], "casme2only", *flow) == 0
    assert main(["compare", str(root / "flow"), str(root / "casme2only")]) == 1
    assert "different sample lists" in capsys.readouterr().err
    assert main(["compare", str(root / "flow"), str(root / "casme2only"), "--allow-different-samples"]) == 0
    assert "NOT computed on the same sample list" in capsys.readouterr().out

    # resuming into a folder with another recipe is an error, not a silent mix
    assert evaluate(root, tables, "flow", "--model", "flow-cnn", "--epochs", "4") == 1
    assert "different run" in capsys.readouterr().err

    # the deployable model
    assert main(["finetune", "--samples", *tables, "--protocol", "megc2019", "--cache", str(root / "cache"),
                 "--model", "micronbert", "--preset", "test", "--epochs", "1", "--out", str(root / "model")]) == 0
    model, classes, config = load_classifier(root / "model")
    assert classes == ["negative", "positive", "surprise"] and config["protocol"] == "megc2019"
    assert config["training"]["n_samples"] == 35 and config["input"] == {"size": 32, "aligned": True}


def test_a_protocol_that_keeps_nothing_is_an_error(workspace, tmp_path, capsys):
    root, tables = workspace
    rc = main(["evaluate", "--samples", tables[0], "--protocol", "smic-3", "--cache", str(root / "cache"),
               "--out", str(tmp_path / "r")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "keeps 0" in err and "casme2" in err


def test_raw_frames_without_a_cache(tmp_path, capsys):
    from micronbert.testing import fake
    from micronbert.data.readers import index_dataset
    from micronbert.data.samples import write_samples

    ds = fake.fake_casme2(tmp_path / "casme2", dirty=False)
    df, _ = index_dataset("casme2", ds.root)
    write_samples(df, tmp_path / "s.csv")
    rc = main(["evaluate", "--samples", str(tmp_path / "s.csv"), "--protocol", "casme2-5", "--model", "flow-cnn",
               "--epochs", "1", "--size", "32", "--out", str(tmp_path / "r")])
    assert rc == 0
    assert "not aligned" in capsys.readouterr().err
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["n_samples"] == len(df) and m["config"]["aligned"] is False
    # casme2-5 has 5 classes; this tiny set lacks some, and says so
    assert m["absent_classes"] and "no samples in the pool" in (tmp_path / "r" / "summary.md").read_text()


def test_a_face_prior_is_placed_by_the_cache_margin_and_the_margin_travels_with_the_model(workspace, tmp_path):
    """A cache aligned with another margin puts the face elsewhere in the crop: the PoI face prior follows
    the cache's recorded margin, and the saved classifier records it so prediction aligns new faces alike."""
    import shutil

    import torch

    from micronbert.config import preset
    from micronbert.faces.cache import FaceCache
    from micronbert.model.classifier import load_classifier
    from micronbert.model.poi import face_log_prior

    root, tables = workspace
    shutil.copytree(root / "cache", tmp_path / "cache")
    FaceCache(tmp_path / "cache").check_settings({"size": 32, "margin": 0.3, "detector": "template"})
    assert main(["finetune", "--samples", *tables, "--protocol", "megc2019", "--cache", str(tmp_path / "cache"),
                 "--model", "micronbert", "--preset", "test", "--epochs", "1", "--out", str(tmp_path / "model")]) == 0
    model, _, config = load_classifier(tmp_path / "model")
    assert config["input"] == {"size": 32, "aligned": True, "margin": 0.3}
    assert config["model"]["poi_prior"] == "face" and config["model"]["poi_prior_margin"] == 0.3
    placed = face_log_prior(preset("test", poi_prior="face", poi_prior_margin=0.3))
    default = face_log_prior(preset("test", poi_prior="face"))
    assert not torch.equal(placed, default)  # the margin moves the prior at this size
    assert torch.equal(model.backbone.poi_log_prior, placed)
