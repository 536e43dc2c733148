"""Pretraining-data scaling: nested subsets, the step budget, and `micronbert scaling` end to end on tiny
real face frames (the `test` preset, a few steps) with a small synthetic labelled CASME II-layout set."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from micronbert.cli import main
from micronbert.config import PretrainConfig
from micronbert.errors import MicronbertError
from micronbert.train.scaling import (PoolUnit, nested_subsets, parse_fractions, plan_steps, scaling_table)

pytestmark = pytest.mark.usefixtures("one_thread")

FOLDER_SIZES = [4, 6, 8, 10, 12]   # frames per pool folder: 40 in all


def test_fractions_are_nested_prefixes_of_one_seeded_order():
    units = [PoolUnit(f"v{i}", n, "video") for i, n in enumerate([100, 5, 40, 60, 20, 75, 10, 90])]
    total = sum(u.n_frames for u in units)
    subsets = nested_subsets(units, [0.1, 0.3, 0.6, 1.0], seed=3)
    prev: list[int] = []
    for f, idx in subsets.items():
        assert idx[:len(prev)] == prev                                   # nested: 10 % ⊂ 30 % ⊂ ...
        frames = sum(units[i].n_frames for i in idx)
        assert frames >= f * total and frames - units[idx[-1]].n_frames < f * total   # shortest such prefix
        prev = idx
    assert sorted(subsets[1.0]) == list(range(len(units)))
    assert nested_subsets(units, [0.3], seed=3)[0.3] == subsets[0.3]      # independent of the other fractions
    assert parse_fractions("1.0,0.1,0.3") == [0.1, 0.3, 1.0]
    for bad in ("0,0.5", "0.5,1.5", "half"):
        with pytest.raises(MicronbertError):
            parse_fractions(bad)


def test_same_steps_keeps_the_config_and_same_epochs_scales_steps():
    pcfg = PretrainConfig(steps=100, batch_size=8, warmup_steps=50)
    assert plan_steps(pcfg, 1000, "steps", None) is pcfg
    small, large = plan_steps(pcfg, 80, "epochs", 2.0), plan_steps(pcfg, 800, "epochs", 2.0)
    assert (small.steps, large.steps) == (20, 200)
    assert small.warmup_steps == 2 and large.warmup_steps == 20
    with pytest.raises(MicronbertError, match="different sample lists"):
        scaling_table([{"fraction": "none", "samples_sha256": "a"}, {"fraction": "1", "samples_sha256": "b"}],
                      "steps")


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory, face_video):
    """A pool of 5 real-face frame folders (40 frames at 48 px) and a 2-subject synthetic labelled set."""
    from micronbert.data.frames import iter_video, write_image
    from micronbert.data.pairs import fit_square

    root = tmp_path_factory.mktemp("scaling")
    frames = list(iter_video(face_video, max_frames=sum(FOLDER_SIZES)))
    start = 0
    for k, n in enumerate(FOLDER_SIZES):
        for j, frame in enumerate(frames[start:start + n]):
            write_image(root / "pool" / f"clip{k}" / f"img{j + 1}.jpg", fit_square(frame, 48))
        start += n
    assert main(["synth", "--format", "casme2", "--out", str(root / "casme2"), "--subjects", "2",
                 "--clips-per-subject", "3", "--frames", "6", "--classes", "happiness,disgust,surprise",
                 "--no-distractions"]) == 0
    assert main(["index", "--dataset", "casme2", "--root", str(root / "casme2"), "--out", str(root / "s.csv")]) == 0
    return root


def scaling_cli(root, out, *extra):
    return main(["scaling", "--frames", str(root / "pool"), "--fractions", "0.2,0.5,1.0", "--preset", "test",
                 "--batch-size", "4", "--warmup-steps", "1", "--samples", str(root / "s.csv"),
                 "--protocol", "megc2019", "--freeze-encoder", "--eval-epochs", "2", "--threads", "1",
                 "--out", str(out), *extra])


def test_scaling_study_end_to_end(study_inputs, tmp_path, capsys):
    out = tmp_path / "study"
    assert scaling_cli(study_inputs, out, "--steps", "2") == 0
    table = pd.read_csv(out / "scaling.csv", dtype={"fraction": str})
    assert table["fraction"].tolist() == ["none", "0.2", "0.5", "1"]              # one row per fraction + none
    assert list(table.columns[:9]) == ["fraction", "n_frames", "n_sources", "steps", "epochs_seen", "uf1", "uar",
                                       "accuracy", "samples_sha256"]
    pre = table.iloc[1:]
    assert pre["n_frames"].is_monotonic_increasing and pre["n_frames"].iloc[-1] == sum(FOLDER_SIZES)
    assert (pre["n_frames"].to_numpy() >= np.array([0.2, 0.5, 1.0]) * sum(FOLDER_SIZES)).all()
    assert (pre["steps"] == 2).all() and (table["budget"] == "steps").all()
    assert pre["epochs_seen"].is_monotonic_decreasing                            # same steps: small pools recur
    assert table["samples_sha256"].nunique() == 1 and table[["uf1", "uar"]].notna().all().all()
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Same steps" in (out / "scaling.md").read_text()

    # the pretraining sets are nested, and each run pretrained on exactly its set
    sources = [json.loads((out / f"pretrain-{f}" / "subset.json").read_text())["sources"] for f in ("0.2", "0.5", "1")]
    assert sources[0] == sources[1][:len(sources[0])] and sources[1] == sources[2][:len(sources[1])]
    assert len(sources[0]) < len(sources[2]) == len(FOLDER_SIZES)
    for f, src in zip(("0.2", "0.5", "1"), sources):
        run = json.loads((out / f"pretrain-{f}" / "run.json").read_text())
        assert sorted(run["data"]["sources"]) == sorted(src)
        assert (out / f"pretrain-{f}" / "model.safetensors").is_file()
        m = json.loads((out / f"eval-{f}" / "metrics.json").read_text())
        assert m["config"]["init"] == str(out / f"pretrain-{f}") and m["mode"] == "loso"
        # recognition confines PoI to the face (methods.RECOGNITION_DEFAULTS); the pretraining keeps the map
        assert m["config"]["method"]["model"]["poi_prior"] == "face"
        assert json.loads((out / f"pretrain-{f}" / "config.json").read_text())["model"]["poi_prior"] == "none"
    none = json.loads((out / "eval-none" / "metrics.json").read_text())
    assert none["config"]["init"] is None and not none["config"]["method"]["pretrained_init"]
    assert none["config"]["method"]["model"]["poi_prior"] == "face"

    # a re-run finds everything done; another budget in the same folder is refused
    capsys.readouterr()
    assert scaling_cli(study_inputs, out, "--steps", "2") == 0
    assert capsys.readouterr().out.count("already pretrained") == 3
    assert scaling_cli(study_inputs, out, "--steps", "3") == 1
    assert "another plan" in capsys.readouterr().err


def test_same_epochs_budget_grows_steps_with_the_pool(study_inputs, tmp_path):
    out = tmp_path / "epochs"
    assert scaling_cli(study_inputs, out, "--epochs", "1", "--stage", "pretrain") == 0
    assert not (out / "scaling.csv").exists()
    plans = [json.loads((out / f"pretrain-{f}" / "subset.json").read_text()) for f in ("0.2", "0.5", "1")]
    steps = [p["steps"] for p in plans]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert all(1.0 <= p["epochs_seen"] < 1.0 + 4 / p["anchors"] + 1e-9 for p in plans)
