"""Each reader on its fake tree: sample ids, frame order, key frames, quirks, and every dirty row reported."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from micronbert.testing import fake
from micronbert.data.readers import READERS, index_dataset
from micronbert.data.samples import COLUMNS, SampleFrames, read_samples, write_samples
from micronbert.errors import MicronbertError

ALL = ["casme2", "samm", "smic", "casme3", "mmew", "folder"]


def by_id(df: pd.DataFrame, sample_id: str):
    rows = df[df["sample_id"] == sample_id]
    assert len(rows) == 1, f"{sample_id} not found once in {list(df['sample_id'])}"
    return rows.iloc[0]


def key_files(row) -> tuple[str, str, str]:
    frames = SampleFrames.from_row(row)
    return tuple(frames.path_of(int(row[k])).name for k in ("onset", "apex", "offset"))


@pytest.mark.parametrize("name", ALL)
def test_reader_returns_exactly_the_valid_samples(name, fakes, indexed):
    df, _ = indexed[name]
    assert list(df.columns) == COLUMNS
    assert sorted(df["sample_id"]) == sorted(fakes[name].valid)
    assert not df["sample_id"].duplicated().any()


@pytest.mark.parametrize("name", ALL)
def test_every_dirty_row_is_reported_with_file_and_row(name, fakes, indexed):
    fd = fakes[name]
    _, report = indexed[name]
    excluded = [e for e in report.entries if e.action == "excluded"]
    assert len(excluded) == len(fd.dirty)
    for key, fragment in fd.dirty.items():
        if isinstance(key, int):  # sheet row
            hits = [e for e in excluded if e.row == key and Path(e.file) == fd.sheet]
        else:  # SMIC: the clip folder
            hits = [e for e in excluded if e.row is None and Path(e.file).name == key]
        assert len(hits) == 1, f"row {key} not reported: {report.lines()}"
        assert fragment in hits[0].reason
    for row, fragment in fd.warnings.items():
        assert any(e.row == row and e.action == "warning" and fragment in e.reason for e in report.entries)


@pytest.mark.parametrize("name", ALL)
def test_sample_table_round_trips(name, indexed, tmp_path):
    df, _ = indexed[name]
    write_samples(df, tmp_path / "s.csv")
    back = read_samples(tmp_path / "s.csv")
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True), check_dtype=False)


def test_casme2_frames_sorted_by_number_and_key_frames_mapped(indexed):
    df, _ = indexed["casme2"]
    row = by_id(df, "sub01/EP02_01f")
    assert row["frame_numbers"] == "2 3 9 10"
    assert row["frame_files"] == "img2.jpg img3.jpg img9.jpg img10.jpg"
    assert key_files(row) == ("img2.jpg", "img9.jpg", "img10.jpg")
    assert row["apex_source"] == "annotated" and row["subject"] == "sub01"
    assert Path(row["frames_dir"]).parts[-3:] == ("CASME2_RAW_selected", "sub01", "EP02_01f")
    assert row["source"].endswith("CASME2-coding-20140508.xlsx:2")


def test_casme2_three_part_filename_and_bare_int_au(indexed):
    df, _ = indexed["casme2"]
    row = by_id(df, "sub01/EP06_02_01")
    assert row["aus"] == "4" and row["emotion"] == "disgust"
    assert (row["onset"], row["apex"], row["offset"]) == (40, 46, 52)


@pytest.mark.parametrize("cropped,folder", [(True, "Cropped"), ("updated", "Cropped-updated/Cropped")])
def test_casme2_official_crops(tmp_path, cropped, folder):
    fake.fake_casme2(tmp_path, dirty=False, cropped=cropped)
    df, report = index_dataset("casme2", tmp_path)
    assert len(report) == 0
    row = by_id(df, "sub01/EP02_01f")
    assert row["frame_files"].split()[0] == "reg_img2.jpg"
    assert row["frames_dir"].endswith(str(Path(folder) / "sub01" / "EP02_01f"))
    assert df.attrs["variant"] == "cropped"
    with pytest.raises(MicronbertError, match="no CASME II frame folders"):
        index_dataset("casme2", tmp_path, variant="raw")


def test_casme2_variant_choice_when_both_trees_exist(tmp_path):
    fake.fake_casme2(tmp_path, dirty=False, cropped=True)
    fake.fake_casme2(tmp_path, dirty=False, cropped=False)
    raw, _ = index_dataset("casme2", tmp_path)
    crop, _ = index_dataset("casme2", tmp_path, variant="cropped")
    assert raw.attrs["variant"] == "raw" and raw["frame_files"].str.startswith("img").all()
    assert crop["frame_files"].str.startswith("reg_img").all()


@pytest.mark.parametrize("version,file", [("20140508", "CASME2-coding-20140508.xlsx"),
                                          ("20190701", "CASME2-coding-20190701.xlsx"),
                                          ("updated", "CASME2-coding-updated.xlsx")])
def test_casme2_sheet_versions_found(tmp_path, version, file):
    fake.fake_casme2(tmp_path, dirty=False, sheet_version=version)
    df, _ = index_dataset("casme2", tmp_path)
    assert Path(df.attrs["annotations"]).name == file and len(df) == 4


def test_casme2_prefers_the_2014_sheet_and_honours_annotations(tmp_path):
    fake.fake_casme2(tmp_path, dirty=False, sheet_version="20190701")
    fake.fake_casme2(tmp_path, dirty=True, sheet_version="20140508")
    auto, _ = index_dataset("casme2", tmp_path)
    assert Path(auto.attrs["annotations"]).name == "CASME2-coding-20140508.xlsx"
    other, report = index_dataset("casme2", tmp_path, tmp_path / "CASME2-coding-20190701.xlsx")
    assert len(other) == 4 and len(report) == 0


def test_casme2_apex_repair_policy(fakes):
    df, report = index_dataset("casme2", fakes["casme2"].root, apex_policy="middle")
    row = by_id(df, "sub04/EP01_01")  # apex missing -> middle listed frame
    assert row["apex_source"] == "repaired" and row["apex"] == 5
    repaired = [e for e in report.entries if e.action == "repaired"]
    assert {e.row for e in repaired} == {6, 7, 8}
    assert all("middle frame" in e.reason for e in repaired)


def test_samm_subject_padding_and_grayscale(indexed):
    df, _ = indexed["samm"]
    row = by_id(df, "006/006_1_2")
    assert row["subject"] == "006"
    assert key_files(row) == ("006_05562.jpg", "006_05570.jpg", "006_05580.jpg")
    row4 = by_id(df, "007/007_3_1")  # four-digit padding in this recording
    assert row4["frame_files"] == "007_0998.jpg 007_1000.jpg 007_1002.jpg"
    assert row4["frame_numbers"] == "998 1000 1002"
    assert row4["aus"] == "ref(7B)+43"


@pytest.mark.parametrize("preamble", [True, False])
def test_samm_both_sheet_layouts(tmp_path, preamble):
    fd = fake.fake_samm(tmp_path, preamble=preamble, int_subjects=not preamble)
    df, report = index_dataset("samm", tmp_path)
    assert sorted(df["sample_id"]) == sorted(fd.valid)
    first_data_row = 15 if preamble else 2
    assert by_id(df, "006/006_1_2")["source"].endswith(f":{first_data_row}")
    assert {e.row for e in report.entries} == set(fd.dirty)


@pytest.mark.parametrize("style", ["s1", "s01", "mixed"])
def test_smic_subject_ids_are_stable_across_disk_spellings(tmp_path, style):
    fake.fake_smic(tmp_path, subject_style=style, dirty=False)
    df, report = index_dataset("smic", tmp_path)
    assert sorted(df["sample_id"]) == ["s01/s01_ne_01", "s01/s01_po_01", "s02/s02_sur_01"]
    assert set(df["subject"]) == {"s01", "s02"} and len(report) == 0


def test_smic_labels_from_folders_middle_apex_and_non_micro_ignored(indexed):
    df, _ = indexed["smic"]
    row = by_id(df, "s01/s01_po_01")
    assert row["emotion"] == "positive" and row["apex_source"] == "middle"
    assert (row["onset"], row["apex"], row["offset"]) == (9, 11, 100)
    assert row["frame_files"].split() == ["image000009.bmp", "image000010.bmp", "image000011.bmp",
                                          "image000012.bmp", "image000100.bmp"]
    assert row["clip"] == "s1_po_01"  # as on disk
    assert "s02_ne_01" not in set(df["clip"])  # HS/s02/non_micro/s02_ne_01 is not a micro-expression
    assert set(df["emotion"]) == {"negative", "positive", "surprise"}


def test_smic_cropped_copies(tmp_path):
    fake.fake_smic(tmp_path, dirty=False, cropped=True)
    df, _ = index_dataset("smic", tmp_path, variant="cropped")
    assert df["frame_files"].str.startswith("reg_image").all() and len(df) == 3


def test_casme3_shared_clips_gaps_and_case(indexed):
    df, report = indexed["casme3"]
    a, b = by_id(df, "spNO.1/b/onset166"), by_id(df, "spNO.1/b/onset200")
    assert a["frame_numbers"] == "166 167 168 170"  # only this sample's span of the shared folder
    assert b["frame_numbers"] == "200 201 203 205"
    assert key_files(b) == ("200.jpg", "201.jpg", "205.jpg")  # nearest frames for the gaps
    warned = [e.reason for e in report.entries if e.action == "warning" and e.row == 3]
    assert any("apex frame 202" in r for r in warned) and any("offset frame 206" in r for r in warned)
    j = by_id(df, "spNO.1/j/onset10")
    assert j["clip"] == "j" and Path(j["frames_dir"]).parts[-2:] == ("j", "color")
    assert j["emotion"] == "Others"


def test_casme3_two_samples_with_one_onset_get_distinct_ids(tmp_path):
    from micronbert.data.layouts import ClipSpec
    from micronbert.data.readers.casme3 import write as write_casme3

    frames = [1, 2, 3, 4, 5]
    write_casme3(tmp_path, [ClipSpec("spNO.3", "c", frames, 1, 2, 5, "happy"),
                            ClipSpec("spNO.3", "c", frames, 1, 4, 5, "sad"),
                            ClipSpec("spNO.3", "c", frames, 1, 4, 5, "sad")])
    df, report = index_dataset("casme3", tmp_path)
    assert list(df["sample_id"]) == ["spNO.3/c/onset1", "spNO.3/c/onset1_apex4"]
    assert [(e.row, e.action) for e in report.entries] == [(4, "excluded")]
    assert "duplicate" in report.entries[0].reason


def test_mmew_emotion_folder_first(indexed):
    df, _ = indexed["mmew"]
    row = by_id(df, "S01/S01-01-001")
    assert Path(row["frames_dir"]).parts[-3:] == ("Micro_Expression", "happiness", "S01-01-001")
    assert key_files(row) == ("1.jpg", "3.jpg", "10.jpg")
    assert by_id(df, "S02/S02-01-001")["subject"] == "S02"  # subject cell 2 -> S02


def test_folder_reader_name_missing_apex_column_and_aliases(tmp_path):
    (tmp_path / "c1").mkdir()
    for n in (1, 2, 3, 4, 5):
        from micronbert.data.frames import write_image
        import numpy as np
        write_image(tmp_path / "c1" / f"frame_{n}.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("Subject,Folder,Onset_Frame,Offset_Frame,Emotion\nA,c1,1,5,joy\n")
    df, report = index_dataset(name="folder", root=tmp_path, dataset_name="mine")
    row = df.iloc[0]
    assert (row["dataset"], row["sample_id"], row["apex"], row["apex_source"]) == ("mine", "A/c1", 3, "middle")
    assert len(report) == 0


def test_folder_reader_frame_order(indexed):
    df, _ = indexed["folder"]
    row = by_id(df, "p1/p1/take1")
    assert row["frame_files"] == "img2.jpg img10.jpg img11.jpg"
    assert key_files(row) == ("img2.jpg", "img10.jpg", "img11.jpg")


def test_renamed_column_names_file_and_missing_column(tmp_path):
    fd = fake.fake_casme2(tmp_path, dirty=False)
    import openpyxl

    wb = openpyxl.load_workbook(fd.sheet)
    wb.active["E1"] = "Peak"  # was ApexFrame
    wb.save(fd.sheet)
    with pytest.raises(MicronbertError) as err:
        index_dataset("casme2", tmp_path)
    assert str(fd.sheet) in str(err.value) and "ApexFrame" in str(err.value)


def test_renamed_anchor_column_in_samm_preamble_sheet(tmp_path):
    fd = fake.fake_samm(tmp_path, dirty=False)
    import openpyxl

    wb = openpyxl.load_workbook(fd.sheet)
    wb.active["A14"] = "Participant"  # was Subject, on the header row after the 13-row preamble
    wb.save(fd.sheet)
    with pytest.raises(MicronbertError) as err:
        index_dataset("samm", tmp_path)
    assert f"{fd.sheet}: header row 14: missing column(s) ['Subject']" in str(err.value)


def test_sheet_without_any_header(tmp_path):
    (tmp_path / "SAMM" / "006").mkdir(parents=True)
    (tmp_path / "sheet.csv").write_text("a,b\n1,2\n")
    with pytest.raises(MicronbertError, match="no header row with columns 'Subject' and 'Filename'"):
        index_dataset("samm", tmp_path, tmp_path / "sheet.csv")


def test_missing_root_and_unknown_options(tmp_path):
    with pytest.raises(MicronbertError, match="dataset root not found"):
        index_dataset("samm", tmp_path / "nope")
    with pytest.raises(MicronbertError, match="do not apply"):
        index_dataset("smic", tmp_path, apex_policy="middle")
    with pytest.raises(MicronbertError, match="unknown dataset"):
        index_dataset("nope", tmp_path)
    assert set(READERS) == set(ALL)
