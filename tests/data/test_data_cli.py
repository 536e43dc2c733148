"""`micronbert index` and `micronbert protocols` through the CLI: outputs, one-line errors, --strict."""
from __future__ import annotations


import pandas as pd

from micronbert.testing import fake
from micronbert.data.samples import read_samples


def test_index_writes_table_report_and_summary(fakes, tmp_path, cli):
    out = tmp_path / "samples.csv"
    rc, stdout, _ = cli(["index", "--dataset", "casme2", "--root", fakes["casme2"].root, "--out", out])
    assert rc == 0
    df = read_samples(out)
    assert len(df) == len(fakes["casme2"].valid)
    report = pd.read_csv(tmp_path / "samples.report.csv")
    assert len(report) == 10 and set(report["action"]) == {"excluded", "warning"}
    assert "CASME2-coding-20140508.xlsx:6 [sub04/EP01_01]: apex is missing" in stdout
    assert "5 samples, 4 subjects" in stdout and "  happiness: 1" in stdout


def test_index_strict_exit_code(fakes, tmp_path, cli):
    rc, _, err = cli(["index", "--dataset", "samm", "--root", fakes["samm"].root,
                          "--out", tmp_path / "s.csv", "--strict"])
    assert rc != 0 and "--strict" in err
    clean = fake.fake_samm(tmp_path / "clean", dirty=False)
    rc, _, _ = cli(["index", "--dataset", "samm", "--root", clean.root, "--out", tmp_path / "c.csv",
                        "--strict"])
    assert rc == 0


def test_index_missing_root_is_one_line_error(tmp_path, cli):
    missing = tmp_path / "no_such_dataset"
    rc, _, err = cli(["index", "--dataset", "smic", "--root", missing, "--out", tmp_path / "s.csv"])
    assert rc == 1
    assert err.count("\n") == 1 and str(missing) in err and "Traceback" not in err


def test_index_renamed_column_is_one_line_error(tmp_path, cli):
    fd = fake.fake_mmew(tmp_path, dirty=False)
    import openpyxl

    wb = openpyxl.load_workbook(fd.sheet)
    wb.active["G1"] = "Label"  # was Estimated Emotion
    wb.save(fd.sheet)
    rc, _, err = cli(["index", "--dataset", "mmew", "--root", tmp_path, "--out", tmp_path / "s.csv"])
    assert rc == 1 and err.count("\n") == 1
    assert str(fd.sheet) in err and "Estimated Emotion" in err and "header row 1" in err


def test_index_empty_clip_and_corrupt_jpg_named_in_report(tmp_path, cli):
    from micronbert.data.layouts import ClipSpec
    from micronbert.data.readers.folder import write as write_folder

    write_folder(tmp_path, [ClipSpec("a", "c1", [1, 2, 3], 1, 2, 3, "x"),
                            ClipSpec("a", "c2", [], 1, 2, 3, "x"),
                            ClipSpec("b", "c3", [1, 2, 3], 1, 2, 3, "y")])
    fake.corrupt(tmp_path / "c3" / "img1.jpg")
    rc, stdout, _ = cli(["index", "--dataset", "folder", "--root", tmp_path, "--out", tmp_path / "s.csv"])
    assert rc == 0
    sheet = tmp_path / "annotations.csv"
    assert f"{sheet}:3 [a/c2]: clip folder has no frame images: {tmp_path / 'c2'}" in stdout
    assert f"{sheet}:4 [b/c3]: onset frame: unreadable image: {tmp_path / 'c3' / 'img1.jpg'}" in stdout


def test_index_all_rows_dirty_is_an_error(tmp_path, cli):
    from micronbert.data.layouts import ClipSpec
    from micronbert.data.readers.folder import write as write_folder

    write_folder(tmp_path, [ClipSpec("a", "c1", [1, 2, 3], 1, None, 3, "x")])
    rc, _, err = cli(["index", "--dataset", "folder", "--root", tmp_path, "--out", tmp_path / "s.csv"])
    assert rc == 1 and "no samples indexed" in err
    assert (tmp_path / "s.report.csv").is_file()


def test_protocols_command_lists_classes_and_datasets(cli):
    rc, stdout, _ = cli(["protocols"])
    assert rc == 0
    line = next(l for l in stdout.splitlines() if l.startswith("megc2019"))
    assert "negative, positive, surprise" in line and "casme2, samm, smic" in line
    rc, stdout, _ = cli(["protocols", "megc2019"])
    assert "casme2: excluded sub04/EP12_01f, sub24/EP02_07" in stdout
    rc, _, err = cli(["protocols", "nope"])
    assert rc == 1 and "unknown protocol" in err


def test_index_options_reach_the_reader(fakes, tmp_path, cli):
    out = tmp_path / "s.csv"
    rc, stdout, _ = cli(["index", "--dataset", "casme2", "--root", fakes["casme2"].root, "--out", out,
                         "--apex-policy", "middle", "--no-image-check"])
    assert rc == 0 and "3 repaired" in stdout
    assert (read_samples(out)["apex_source"] == "repaired").sum() == 3
    assert "sub07/EP05_01" in set(read_samples(out)["sample_id"])  # corrupt apex not decoded
    rc, _, err = cli(["index", "--dataset", "samm", "--root", fakes["samm"].root, "--out", out, "--name", "x"])
    assert rc == 2 and "--name only applies" in err  # usage error (README: exit status)
    rc, _, _ = cli(["index", "--dataset", "folder", "--root", fakes["folder"].root, "--out", out, "--name", "mine"])
    assert rc == 0 and set(read_samples(out)["dataset"]) == {"mine"}
