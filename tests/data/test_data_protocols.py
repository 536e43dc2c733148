"""Protocols as data: packaged YAMLs, mapping, exclusions with report entries, MEGC2019 counts."""
from __future__ import annotations

import pytest

from micronbert.data.protocol import EVAL_COLUMNS, list_protocols, load_protocol
from micronbert.data.report import ValidationReport
from micronbert.data.samples import make_table
from micronbert.errors import MicronbertError

PACKAGED = {"megc2019", "casme2-5", "samm-5", "smic-3", "casme3-3", "casme3-4", "casme3-7",
            "mmew-3", "mmew-4", "mmew-7"}


def test_packaged_protocols_load():
    assert PACKAGED <= set(list_protocols())
    for name in list_protocols():
        p = load_protocol(name)
        assert p.name == name and p.classes and p.datasets


def test_megc2019_counts_on_realistic_fixture(megc_samples):
    samples, reports = megc_samples
    assert all(len(r) == 0 for r in reports.values())
    assert samples.groupby("dataset").size().to_dict() == {"casme2": 255, "samm": 159, "smic": 164}
    assert samples.groupby("dataset")["subject"].nunique().to_dict() == {"casme2": 26, "samm": 29, "smic": 16}
    report = ValidationReport()
    ev = load_protocol("megc2019").apply(samples, report)
    assert list(ev.columns) == EVAL_COLUMNS
    assert ev.groupby("dataset").size().to_dict() == {"casme2": 145, "samm": 133, "smic": 164}
    assert ev["class_name"].value_counts().to_dict() == {"negative": 250, "positive": 109, "surprise": 83}
    assert ev["fold"].nunique() == 68
    assert load_protocol("megc2019").count_mismatches(ev) == {}
    assert load_protocol("megc2019").count_mismatches(ev[ev["dataset"] != "samm"]) == {"samm": (133, 0)}
    assert ev.groupby("dataset")["subject"].nunique().to_dict() == {"casme2": 24, "samm": 28, "smic": 16}
    assert (ev["label"] == ev["class_name"].map({"negative": 0, "positive": 1, "surprise": 2})).all()
    assert set(ev["fold"]) == {f"{d}/{s}" for d, s in zip(ev["dataset"], ev["subject"])}
    # every dropped sample is in the report with its sheet row
    assert len(report) == len(samples) - len(ev)
    listed = [e for e in report.entries if "exclusions of protocol megc2019" in e.reason]
    assert sorted(e.sample_id for e in listed) == ["sub04/EP12_01f", "sub24/EP02_07"]
    assert all(e.row is not None and e.file.endswith(".xlsx") for e in listed)
    assert any(e.reason == "emotion 'others' not in protocol megc2019" for e in report.entries)
    assert any(e.reason == "emotion 'Other' not in protocol megc2019" for e in report.entries)


@pytest.mark.parametrize("name,dataset,count", [("casme2-5", "casme2", 246), ("samm-5", "samm", 136),
                                                ("smic-3", "smic", 164)])
def test_single_dataset_protocol_counts(megc_samples, name, dataset, count):
    samples, _ = megc_samples
    report = ValidationReport()
    ev = load_protocol(name).apply(samples[samples["dataset"] == dataset], report)
    assert len(ev) == count
    assert len(report) == (samples["dataset"] == dataset).sum() - count


def _table(rows):
    base = dict(subject="s", clip="c", onset=1, apex=2, offset=3, apex_source="annotated", aus="",
                n_frames=3, frames_dir="/x", frame_numbers="1 2 3", frame_files="a b c", source="sheet.xlsx:7")
    return make_table([{**base, "sample_id": f"s/c{i}", **r} for i, r in enumerate(rows)])


def test_case_insensitive_matching_and_other_datasets_reported():
    samples = _table([dict(dataset="casme3", emotion="Others"), dict(dataset="casme3", emotion="happy"),
                      dict(dataset="casme3", emotion="contempt"), dict(dataset="samm", emotion="Anger")])
    report = ValidationReport()
    ev = load_protocol("casme3-4").apply(samples, report)
    assert list(ev["class_name"]) == ["others", "positive"]
    assert list(ev["label"]) == [3, 0]
    reasons = [(e.file, e.row, e.reason) for e in report.entries]
    assert ("sheet.xlsx", 7, "emotion 'contempt' not in protocol casme3-4") in reasons
    assert any("dataset 'samm' not in protocol casme3-4" in r for _, _, r in reasons)


def test_exact_match_preferred_over_case_insensitive(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: custom\nclasses: [a, b]\ndatasets:\n  d:\n    a: [Others]\n    b: [others]\n")
    p = load_protocol(path)
    assert p.classify("d", "Others") == "a" and p.classify("d", "others") == "b"
    assert p.classify("d", "OTHERS") in {"a", "b"} and p.classify("d", "x") is None


@pytest.mark.parametrize("text,match", [
    ("name: x\nclasses: [a]\n", "missing key 'datasets'"),
    ("name: x\nclasses: [a, a]\ndatasets: {d: {a: [e]}}\n", "distinct"),
    ("name: x\nclasses: [a]\ndatasets: {d: {b: [e]}}\n", "class 'b' is not in classes"),
    ("name: x\nclasses: [a, b]\ndatasets: {d: {a: [e], b: [e]}}\n", "mapped to both"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_protocol_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MicronbertError, match=match) as err:
        load_protocol(path)
    assert str(path) in str(err.value)


def test_unknown_protocol_name():
    with pytest.raises(MicronbertError, match="unknown protocol 'nope'"):
        load_protocol("nope")


def test_exclusions_prefer_exact_ids_then_ignore_trailing_f():
    p = load_protocol("megc2019")
    rows = [dict(dataset="casme2", subject="sub24", clip="EP02_07f", sample_id="sub24/EP02_07f",
                 emotion="disgust"),
            dict(dataset="casme2", subject="sub04", clip="EP12_01f", sample_id="sub04/EP12_01f",
                 emotion="disgust"),
            dict(dataset="casme2", subject="sub04", clip="EP12_01", sample_id="sub04/EP12_01",
                 emotion="disgust")]
    samples = _table(rows)
    ev = p.apply(samples, ValidationReport())
    # sub24/EP02_07 matches EP02_07f (no exact id); sub04/EP12_01f matches exactly, so EP12_01 is kept
    assert list(ev["sample_id"]) == ["sub04/EP12_01"]
    assert p.excluded_ids(samples) == {("casme2", "sub24/EP02_07f"), ("casme2", "sub04/EP12_01f")}
