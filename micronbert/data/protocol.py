"""Evaluation protocols as data: YAML files in micronbert/data/protocols/ (or any path) that map each
dataset's emotion labels to ordered classes and list explicit exclusions.

    name: megc2019
    description: ...
    classes: [negative, positive, surprise]          # class id = position
    datasets:
      casme2: {negative: [disgust, repression], positive: [happiness], surprise: [surprise]}
    exclude:                                          # optional: "subject/clip" per dataset
      casme2: [sub04/EP12_01f]
    expected: {casme2: 145}                           # optional: documented sample counts

    load_protocol(name_or_path) -> Protocol
    list_protocols() -> list[str]
    Protocol.apply(samples, report=None) -> the evaluation table: sample columns + label, class_name, fold

Emotions are matched exactly first, then ignoring case (CAS(ME)^3 writes both 'others' and 'Others').
Samples outside the mapping, of another dataset, or explicitly excluded, get a report entry each.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from micronbert.data.report import ValidationReport
from micronbert.data.samples import COLUMNS, fold_key
from micronbert.errors import MicronbertError

EVAL_COLUMNS = COLUMNS + ["label", "class_name", "fold"]


def _protocol_dir():
    return resources.files("micronbert.data") / "protocols"


def list_protocols() -> list[str]:
    """Names of the packaged protocols."""
    return sorted(p.name[:-5] for p in _protocol_dir().iterdir() if p.name.endswith(".yaml"))


@dataclass
class Protocol:
    name: str
    classes: list[str]
    datasets: dict[str, dict[str, str]]           # dataset -> emotion as written -> class name
    exclude: dict[str, list[str]] = field(default_factory=dict)
    description: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_id(self, class_name: str) -> int:
        return self.classes.index(class_name)

    def classify(self, dataset: str, emotion: str) -> str | None:
        """The class of `emotion` in `dataset`, exact match first, then ignoring case; None if unmapped."""
        mapping = self.datasets.get(dataset)
        if mapping is None:
            return None
        emotion = str(emotion).strip()
        if emotion in mapping:
            return mapping[emotion]
        folded = {k.casefold(): v for k, v in mapping.items()}
        return folded.get(emotion.casefold())

    def excluded_ids(self, samples: pd.DataFrame) -> set[tuple[str, str]]:
        """(dataset, sample_id) of the listed exclusions present in `samples`. An item matches its
        sample id exactly; only when no sample has that id, it matches on subject and clip with a
        trailing "f" ignored (the MEGC2019 lists write sub24/EP02_07 where some sheets write EP02_07f)."""
        out: set[tuple[str, str]] = set()
        for dataset, items in self.exclude.items():
            rows = samples[samples["dataset"] == dataset]
            ids = set(rows["sample_id"])
            for item in items:
                if item in ids:
                    out.add((dataset, item))
                    continue
                subject, _, clip = item.partition("/")
                for sid, subj, c in zip(rows["sample_id"], rows["subject"], rows["clip"]):
                    if subj == subject and _clip_key(c) == _clip_key(clip):
                        out.add((dataset, sid))
        return out

    def apply(self, samples: pd.DataFrame, report: ValidationReport | None = None) -> pd.DataFrame:
        """The evaluation table: rows of `samples` this protocol keeps, with label (class id), class_name
        and fold (fold_key(dataset, subject)). Every dropped row gets a report entry."""
        report = report if report is not None else ValidationReport()
        missing = [c for c in COLUMNS if c not in samples.columns]
        if missing:
            raise MicronbertError(f"protocol {self.name}: the sample table lacks columns {missing}")
        excluded = self.excluded_ids(samples)
        keep, labels, names = [], [], []
        for i, row in enumerate(samples.itertuples(index=False)):
            where, line = _where(row.source or row.frames_dir)
            if row.dataset not in self.datasets:
                report.add(where, line, row.sample_id,
                           f"dataset {row.dataset!r} not in protocol {self.name} "
                           f"(it covers {sorted(self.datasets)})")
                continue
            if (row.dataset, row.sample_id) in excluded:
                report.add(where, line, row.sample_id, f"listed in the exclusions of protocol {self.name}")
                continue
            cls = self.classify(row.dataset, row.emotion)
            if cls is None:
                report.add(where, line, row.sample_id, f"emotion {row.emotion!r} not in protocol {self.name}")
                continue
            keep.append(i)
            names.append(cls)
            labels.append(self.class_id(cls))
        out = samples.iloc[keep].reset_index(drop=True).copy()
        out = out[COLUMNS]
        out["label"] = pd.Series(labels, dtype="int64")
        out["class_name"] = pd.Series(names, dtype=str)
        out["fold"] = [fold_key(d, s) for d, s in zip(out["dataset"], out["subject"])]
        return out[EVAL_COLUMNS]

    def count_mismatches(self, evaluation: pd.DataFrame) -> dict[str, tuple[int, int]]:
        """dataset -> (expected, found) where an applied table differs from the documented counts
        (e.g. another CASME II sheet version); empty when all match or none are documented."""
        found = evaluation.groupby("dataset").size().to_dict() if len(evaluation) else {}
        return {d: (n, int(found.get(d, 0))) for d, n in self.expected.items() if found.get(d, 0) != n}

    def summary(self) -> str:
        return f"{self.name}: {len(self.classes)} classes ({', '.join(self.classes)}) over {', '.join(self.datasets)}"


def _where(source: str) -> tuple[str, int | None]:
    """Split a sample's "file:row" source back into file and row."""
    head, sep, tail = str(source).rpartition(":")
    return (head, int(tail)) if sep and tail.isdigit() else (str(source), None)


def _clip_key(name: str) -> str:
    name = str(name).strip().lower()
    return name[:-1] if name.endswith("f") else name


def load_protocol(name_or_path) -> Protocol:
    """A packaged protocol by name (see list_protocols()) or a YAML file by path."""
    import yaml

    text, source = None, str(name_or_path)
    path = Path(os.fspath(name_or_path))
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise MicronbertError(f"protocol file not found: {path}")
        text = path.read_text(encoding="utf-8")
    else:
        item = _protocol_dir() / f"{name_or_path}.yaml"
        if not item.is_file():
            raise MicronbertError(f"unknown protocol {name_or_path!r}; choose from {list_protocols()} "
                                  f"or give a .yaml path")
        text = item.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MicronbertError(f"protocol {source}: not valid YAML: {exc}") from exc
    return _parse(data, source)


def _parse(data, source: str) -> Protocol:
    def fail(msg):
        raise MicronbertError(f"protocol {source}: {msg}")

    if not isinstance(data, dict):
        fail("expected a mapping with name, classes and datasets")
    for key in ("name", "classes", "datasets"):
        if key not in data:
            fail(f"missing key {key!r}")
    classes = data["classes"]
    if not isinstance(classes, list) or not classes or len(set(map(str, classes))) != len(classes):
        fail("'classes' must be a non-empty list of distinct names")
    classes = [str(c) for c in classes]
    if not isinstance(data["datasets"], dict) or not data["datasets"]:
        fail("'datasets' must map dataset names to {class: [emotions]}")
    datasets: dict[str, dict[str, str]] = {}
    for dataset, mapping in data["datasets"].items():
        if not isinstance(mapping, dict):
            fail(f"dataset {dataset!r}: expected {{class: [emotions]}}")
        table: dict[str, str] = {}
        for cls, emotions in mapping.items():
            if str(cls) not in classes:
                fail(f"dataset {dataset!r}: class {cls!r} is not in classes {classes}")
            for emotion in ([emotions] if isinstance(emotions, str) else emotions or []):
                emotion = str(emotion).strip()
                if emotion in table and table[emotion] != str(cls):
                    fail(f"dataset {dataset!r}: emotion {emotion!r} mapped to both {table[emotion]!r} and {cls!r}")
                table[emotion] = str(cls)
        datasets[str(dataset)] = table
    exclude = {str(k): [str(x) for x in (v or [])] for k, v in (data.get("exclude") or {}).items()}
    expected = {str(k): int(v) for k, v in (data.get("expected") or {}).items()}
    return Protocol(str(data["name"]), classes, datasets, exclude, str(data.get("description") or "").strip(),
                    expected, source)
