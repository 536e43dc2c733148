"""Each dataset module's writer writes the shipped file names and sheet layouts (checked on the files, not via
the readers), and its written header is the one its reader looks for."""
from __future__ import annotations

import openpyxl
import pytest

from micronbert.data.layouts import ClipSpec
from micronbert.data.readers import WRITERS, casme2, casme3, folder, mmew, samm, smic


def _sheet_rows(path):
    wb = openpyxl.load_workbook(path, read_only=True)
    rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    return rows


def test_casme2_layout(tmp_path):
    sheet = casme2.write(tmp_path, [ClipSpec(1, "EP02_01f", [46, 47], 46, 47, 47, "happiness", "12")])
    assert sorted(p.name for p in (tmp_path / "CASME2_RAW_selected/sub01/EP02_01f").iterdir()) == \
        ["img46.jpg", "img47.jpg"]
    rows = _sheet_rows(sheet)
    assert sheet.name == "CASME2-coding-20140508.xlsx"
    assert rows[0] == ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                       "Action Units", "Estimated Emotion"]
    assert rows[1][:2] == [1, "EP02_01f"]


def test_samm_layout_preamble_and_padding(tmp_path):
    sheet = samm.write(tmp_path, [ClipSpec("006", "006_1_2", [5562], 5562, 5562, 5562, "Anger"),
                                          ClipSpec("007", "007_1_1", [7], 7, 7, 7, "Other",
                                                   extras={"padding": 4})])
    assert (tmp_path / "SAMM/006/006_1_2/006_05562.jpg").is_file()
    assert (tmp_path / "SAMM/007/007_1_1/007_0007.jpg").is_file()
    rows = _sheet_rows(sheet)
    assert rows[13][:2] == ["Subject", "Filename"]  # row 14: after 13 rows of free text
    assert all("Subject" not in [c for c in r if c] for r in rows[:13])
    plain = samm.write(tmp_path / "b", [ClipSpec("006", "006_1_2", [1], 1, 1, 1, "Anger")], preamble=False)
    assert _sheet_rows(plain)[0][:2] == ["Subject", "Filename"]


def test_smic_casme3_mmew_folder_layouts(tmp_path):
    smic.write(tmp_path, [ClipSpec("s1", "s1_ne_01", [60436], emotion="negative")])
    assert (tmp_path / "HS/s1/micro/negative/s1_ne_01/image060436.bmp").is_file()
    casme3.write(tmp_path, [ClipSpec("spNO.1", "J", [166], 166, 166, 166, "happy")])
    assert (tmp_path / "part_A/spNO.1/j/color/166.jpg").is_file()
    assert _sheet_rows(tmp_path / casme3.SHEETS[0])[0] == casme3.HEADER
    mmew.write(tmp_path, [ClipSpec("S01", "S01-01-001", [1], 1, 1, 1, "happiness")])
    assert (tmp_path / "MMEW/Micro_Expression/happiness/S01-01-001/1.jpg").is_file()
    csv = folder.write(tmp_path / "f", [ClipSpec("a", "x/c1", [3], 3, 3, 3, "joy")])
    assert csv.read_text().splitlines()[0] == "subject,clip,onset,apex,offset,label,aus"
    assert (tmp_path / "f/x/c1/img3.jpg").is_file()


def test_frames_from_list_or_callable(tmp_path):
    import numpy as np

    from micronbert.data.frames import read_image

    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    folder.write(tmp_path, [ClipSpec("a", "c", [1, 2], 1, 1, 2, "x", frames=[red, red]),
                                    ClipSpec("a", "d", [5], 5, 5, 5, "x", frames=lambda n: red)])
    assert read_image(tmp_path / "c/img2.jpg")[..., 0].mean() > 200
    assert read_image(tmp_path / "d/img5.jpg")[..., 2].mean() < 50
    with pytest.raises(ValueError, match="2 frames for 1 numbers"):
        folder.write(tmp_path, [ClipSpec("a", "e", [1], 1, 1, 1, "x", frames=[red, red])])


@pytest.mark.parametrize("module", [casme2, samm, casme3, mmew, folder], ids=lambda m: m.NAME)
def test_written_header_is_what_the_reader_reads(tmp_path, module):
    """One module owns a dataset's columns: the written sheet's header is found by its reader, every
    canonical column it writes is matched, and the layout names every required column."""
    from micronbert.data.readers._sheets import load_sheet

    path = WRITERS[module.NAME](tmp_path, [ClipSpec("s1", "c1", [1], 1, 1, 1, "x", on_disk=False)])
    sheet = load_sheet(path, module.COLUMNS, anchors=[c.name for c in module.COLUMNS[:2]])
    written = {k for k in module.SHEET_LAYOUT if k in {c.name for c in module.COLUMNS}}
    assert set(sheet.headers) == written
    assert {c.name for c in module.COLUMNS if c.required} <= written
