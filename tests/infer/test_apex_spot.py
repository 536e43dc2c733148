"""Missing apex annotations: the spotter finds the apex between onset and offset, on synthetic CASME II
clips from real faces whose sheet had its ApexFrame cells replaced by "/" (as in the real sheets)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from micronbert.errors import MicronbertError
from micronbert.infer.apex import spot_apex, spot_repaired_apexes

KEEP_ANNOTATED = 2   # rows whose apex stays in the sheet


def moving_clip(n_frames: int, apex: int, amplitude: float = 2.0, size: int = 112, seed: int = 0) -> np.ndarray:
    """A textured face-sized image whose patch moves with a raised-cosine intensity peaking at `apex`."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3)).astype(np.uint8), (0, 0), 1.5).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bump = np.exp(-((xx - 40) ** 2 + (yy - 70) ** 2) / (2 * 9.0 ** 2)).astype(np.float32)
    t = np.arange(n_frames, dtype=np.float64)
    up = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / apex, 0, 1))
    down = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / (n_frames - 1 - apex), 0, 1))
    level = np.where(t <= apex, up, down)
    frames = [cv2.remap(img, xx, yy - float(amplitude * a) * bump, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
              for a in level]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("n_frames,apex", [(12, 3), (12, 8), (20, 6), (20, 14), (31, 15)])
def test_spot_apex_finds_a_known_peak(n_frames, apex):
    pos, score = spot_apex(moving_clip(n_frames, apex))
    assert abs(pos - apex) <= 1 and score > 0


def test_spot_apex_needs_three_frames():
    with pytest.raises(MicronbertError, match="at least 3 frames"):
        spot_apex(moving_clip(12, 5)[:2])


# ------------------------------------------------------------------ synthetic CASME II, apex deleted
@pytest.fixture(scope="module")
def no_apex_dataset(tmp_path_factory):
    """A synthetic CASME II dataset (4 people x 5 clips of 14 frames, all distractions) and a copy of its
    coding sheet where every apex but the first KEEP_ANNOTATED rows' is "/"."""
    from micronbert.synth import read_actions, synthesize

    root = tmp_path_factory.mktemp("noapex")
    synthesize("casme2", root / "ds", subjects=4, clips_per_subject=5, seed=7)
    sheet = next((root / "ds").glob("CASME2-coding-*.xlsx"))
    df = pd.read_excel(sheet, dtype=object)
    df.loc[KEEP_ANNOTATED:, "ApexFrame"] = "/"
    df.to_excel(root / "no_apex.xlsx", index=False)
    truth = read_actions(root / "ds").set_index("sample_id")["apex"]
    return root, truth


def test_spotted_apexes_are_within_two_frames_of_the_truth(no_apex_dataset):
    from micronbert.data.readers import index_dataset

    root, truth = no_apex_dataset
    excluded, report = index_dataset("casme2", root / "ds", root / "no_apex.xlsx")  # today's default
    assert len(excluded) == KEEP_ANNOTATED and report.count("excluded") == len(truth) - KEEP_ANNOTATED

    middle, report = index_dataset("casme2", root / "ds", root / "no_apex.xlsx", apex_policy="middle")
    spotted = spot_repaired_apexes(middle, report)
    assert len(spotted) == len(truth)
    assert (spotted["apex_source"] == "spotted").sum() == len(truth) - KEEP_ANNOTATED
    assert (spotted["apex_source"] == "annotated").sum() == KEEP_ANNOTATED
    rows = spotted[spotted["apex_source"] == "spotted"]
    off = np.abs(rows["apex"].to_numpy() - truth.loc[rows["sample_id"]].to_numpy())
    assert ((rows["onset"] <= rows["apex"]) & (rows["apex"] <= rows["offset"])).all()
    print(f"spotted apex: frames off median {np.median(off)}, worst {off.max()}, "
          f"within ±2 {np.mean(off <= 2):.2f} of {len(off)}")
    assert np.mean(off <= 2) >= 0.8
    # every spotted row's report entry says how its apex was found; none still claims the middle frame
    spotted_ids = set(rows["sample_id"])
    notes = {e.sample_id: e.reason for e in report.entries if e.sample_id in spotted_ids}
    assert set(notes) == spotted_ids
    assert all("apex spotted at frame" in r and "middle frame" not in r for r in notes.values())
    assert middle["apex_source"].eq("repaired").sum() == len(truth) - KEEP_ANNOTATED  # input unchanged


def test_a_span_too_short_to_spot_is_excluded_with_its_reason(no_apex_dataset):
    from micronbert.data.readers import index_dataset

    root, _ = no_apex_dataset
    middle, report = index_dataset("casme2", root / "ds", root / "no_apex.xlsx", apex_policy="middle")
    short = middle.copy()
    i = short.index[short["apex_source"] == "repaired"][0]
    short.loc[i, "offset"] = short.loc[i, "onset"] + 1      # two frames between onset and offset
    out = spot_repaired_apexes(short, report)
    assert len(out) == len(short) - 1 and short.loc[i, "sample_id"] not in set(out["sample_id"])
    entry = next(e for e in report.entries if e.sample_id == short.loc[i, "sample_id"])
    assert entry.action == "excluded" and "could not be spotted" in entry.reason


def test_index_missing_apex_spot_keeps_the_rows_as_spotted(no_apex_dataset, tmp_path, capsys):
    from micronbert.cli import main
    from micronbert.data.samples import read_samples

    root, truth = no_apex_dataset
    base = ["index", "--dataset", "casme2", "--root", str(root / "ds"), "--annotations", str(root / "no_apex.xlsx")]
    assert main([*base, "--out", str(tmp_path / "excluded.csv")]) == 0          # default: exclude, as before
    assert len(read_samples(tmp_path / "excluded.csv")) == KEEP_ANNOTATED
    assert main([*base, "--missing-apex", "spot", "--out", str(tmp_path / "spotted.csv")]) == 0
    table = read_samples(tmp_path / "spotted.csv")
    assert len(table) == len(truth)
    assert table["apex_source"].value_counts().to_dict() == {"spotted": len(truth) - KEEP_ANNOTATED,
                                                             "annotated": KEEP_ANNOTATED}
    spotted = table[table["apex_source"] == "spotted"]
    off = np.abs(spotted["apex"].to_numpy() - truth.loc[spotted["sample_id"]].to_numpy())
    assert np.mean(off <= 2) >= 0.8
    report = pd.read_csv(tmp_path / "spotted.report.csv")
    notes = report[report["sample_id"].isin(set(spotted["sample_id"]))]
    assert len(notes) == len(spotted) and notes["reason"].str.contains("apex spotted at frame").all()
    assert "apex spotted at frame" in capsys.readouterr().out
    # the old flag name still works and still means the middle frame
    assert main([*base, "--apex-policy", "middle", "--out", str(tmp_path / "middle.csv")]) == 0
    assert set(read_samples(tmp_path / "middle.csv")["apex_source"]) == {"repaired", "annotated"}
