import pytest

from micronbert.data.samples import make_table, read_sample_tables, write_samples
from micronbert.errors import MicronbertError
from micronbert.faces.prepare import load_tables


def _row(sample_id):
    return {"dataset": "casme2", "subject": "sub01", "sample_id": sample_id, "clip": "EP01", "onset": 1, "apex": 2,
            "offset": 3, "apex_source": "annotated", "emotion": "happiness", "aus": "12", "n_frames": 3,
            "frames_dir": "/x", "frame_numbers": "1 2 3", "frame_files": "img1.jpg img2.jpg img3.jpg",
            "source": "sheet.xlsx:2"}


def test_a_sample_in_two_tables_is_refused_naming_it(tmp_path):
    write_samples(make_table([_row("sub01/EP01"), _row("sub01/EP02")]), tmp_path / "a.csv")
    write_samples(make_table([_row("sub01/EP02")]), tmp_path / "b.csv")
    assert len(read_sample_tables([tmp_path / "a.csv"])) == 2
    with pytest.raises(MicronbertError, match=r"\(casme2, sub01/EP02\) appears more than once"):
        read_sample_tables([tmp_path / "a.csv", tmp_path / "b.csv"])
    # prepare's loader also names the file and CSV row of the first copy
    with pytest.raises(MicronbertError, match=r"a\.csv:3: sample \(casme2, sub01/EP02\)"):
        load_tables([tmp_path / "a.csv", tmp_path / "b.csv"])
