"""benchmarks/error_factors.py: a blink counts only when it covers the onset or the apex frame, the crop scale
is read from the generator's transform, errors are counted per factor level and method (with the classes the
wrong predictions went to), `--within` splits every table by one factor, and same-seed runs are paired into
both/only-one wrong."""
import json
import os
import sys

import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import common_folds  # noqa: E402
import error_factors  # noqa: E402
from test_common_folds import CLASSES, write_fold  # noqa: E402

# three clips of one subject: onset 10, apex 14
ACTIONS = [
    {"sample_id": "sub01/c0", "aus": "12", "regions": "lip_corners", "blink": "13-15", "person": "astronaut"},
    {"sample_id": "sub01/c1", "aus": "14", "regions": "lip_corners", "blink": "11-12", "person": "astronaut~1"},
    {"sample_id": "sub01/c2", "aus": "1+2", "regions": "brows", "blink": "", "person": "grace_hopper"},
]


def write_actions(path):
    rows = [{"dataset": "casme2", "subject": "sub01", "clip": a["sample_id"][6:], "distinct_person": True,
             "emotion": "x", "onset": 10, "apex": 14, "offset": 18, "amplitude_px224": 1.0 + i,
             "head_px224": 0.1 * i, "light_gain": -0.01 * i, "noise_sigma": 1.0 + i, "jpeg_quality": 80 + i,
             "bumps": "[]", "to_crop": json.dumps([[0.0, -0.5 * (i + 1), 3.0], [0.5 * (i + 1), 0.0, 4.0]]), **a}
            for i, a in enumerate(ACTIONS)]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_clip_factors(tmp_path):
    write_actions(tmp_path / "actions.csv")
    t = error_factors.clip_factors([str(tmp_path / "actions.csv")]).set_index("sample_id")
    # frames 13-15 cover the apex (14); 11-12 lie between onset and apex; no blink
    assert list(t["blink_in_pair"]) == ["in the pair", "between frames", "no blink"]
    assert list(t["person"]) == ["astronaut", "astronaut", "grace_hopper"]  # "~1": another subject, same face
    assert list(t["abs_light_gain"]) == [0.0, 0.01, 0.02]
    assert list(t["crop_scale"]) == [0.5, 1.0, 1.5]   # sqrt|det| of the 2x2 part: a rotation by 90° scaled
    assert set(t["background_motion"]) == {"none"}     # a table from before synth --background-motion


def test_background_motion_is_a_factor_when_the_table_records_it(tmp_path):
    write_actions(tmp_path / "actions.csv")
    table = pd.read_csv(tmp_path / "actions.csv")
    table["background_px224"] = [0.0, 3.2, 0.0]
    table.to_csv(tmp_path / "actions.csv", index=False)
    t = error_factors.clip_factors([str(tmp_path / "actions.csv")]).set_index("sample_id")
    assert list(t["background_motion"]) == ["none", "object beside the face", "none"]


def test_error_counts_per_level_and_same_seed_pairs(tmp_path, monkeypatch, capsys):
    write_actions(tmp_path / "actions.csv")
    a, b = tmp_path / "a-seed1", tmp_path / "b-lodo-seed1-kept"  # pairs by seed, whatever follows it
    write_fold(a, 0, "sub01", [1, 0, 2], [0, 0, 2])   # c0 wrong
    write_fold(b, 0, "sub01", [1, 0, 2], [0, 1, 2])   # c0 and c1 wrong
    monkeypatch.setattr(sys, "argv", ["error_factors.py", "--actions", str(tmp_path / "actions.csv"),
                                      "--group", "a", str(a), "--group", "b", str(b), "--within", "regions"])
    error_factors.main()
    out = json.loads(capsys.readouterr().out)
    assert out["n_samples"] == 3
    assert out["samples_sha256"] == common_folds.score_on_common_folds([a])["runs"][str(a)]["samples_sha256"]
    lip = out["factors"]["regions"]["lip_corners"]
    assert lip["n_samples"] == 2 and lip["a"]["wrong"] == 1 and lip["b"]["wrong"] == 2
    assert out["factors"]["regions"]["brows"]["b"]["error_rate"] == 0.0
    assert out["factors"]["aus"]["14"]["b"] == {"wrong": 1, "predictions": 1, "error_rate": 1.0,
                                                "wrong_as": {CLASSES[1]: 1}}
    assert lip["n_by_class"] == {CLASSES[0]: 1, CLASSES[1]: 1}
    assert lip["b"]["wrong_as"] == {CLASSES[0]: 1, CLASSES[1]: 1}
    # within the brows level only c2 is left, so its person table holds grace_hopper alone
    within = out["within"]["regions"]
    assert set(within) == {"brows", "lip_corners"}
    assert list(within["brows"]["person"]) == ["grace_hopper"]
    assert within["lip_corners"]["person"]["astronaut"]["b"]["wrong"] == 2
    amplitude = out["factors"]["amplitude_px224"]  # 1, 2, 3: one per tercile, low to high
    assert list(amplitude) == ["≤ 1.67", "1.67-2.33", "> 2.33"]
    assert [level["n_samples"] for level in amplitude.values()] == [1, 1, 1]
    assert [level["a"]["wrong"] for level in amplitude.values()] == [1, 0, 0]
    assert out["pairs"] == [{"seed": "1", "a": str(a), "b": str(b), "both_wrong": 1, "only_a": 0, "only_b": 1}]


def test_an_actions_csv_without_a_factor_column_names_the_file(tmp_path):
    write_actions(tmp_path / "actions.csv")
    pd.read_csv(tmp_path / "actions.csv").drop(columns=["to_crop"]).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(SystemExit, match=r"old\.csv: no column to_crop"):
        error_factors.clip_factors([str(tmp_path / "old.csv")])
