"""Dataset layouts: one module per dataset owns its folders, frame names and sheet columns, with a
`read` that turns the dataset exactly as it ships into the sample table (micronbert.data.samples.COLUMNS)
plus a ValidationReport of every excluded/repaired/suspicious row, and a `write` that lays clips out the
same way (for test fixtures and the synthetic benchmark; see micronbert.data.layouts).

    READERS[name](root, annotations=None, report=None, **options) -> DataFrame
    WRITERS[name](root, clips, **options) -> the sheet (SMIC: the HS folder)
    index_dataset(name, root, annotations=None, **options) -> (DataFrame, ValidationReport)

Options (each reader takes the ones that apply to it):
    variant      "auto" | "raw" | "cropped"  (casme2, smic, folder: raw frames or official "reg_" crops)
    apex_policy  "exclude" (default: report and drop rows with a missing/out-of-range apex) |
                 "middle"  (report as repaired and use the middle listed frame, apex_source "repaired")
    check_images True: decode the onset and apex images of each sample (cheap; catches corrupt files)
    dataset_name the `dataset` column for the generic "folder" reader (CLI --name)

Validation rules shared by all readers (micronbert.data.readers._common.SampleBuilder):
    excluded   empty emotion; onset/offset missing or not a number; offset 0; onset > offset;
               apex missing / not a number / outside onset..offset (unless apex_policy="middle");
               clip folder missing or without frame images; onset or apex frame outside the listed
               frames; onset or apex image that does not decode; a duplicate sample
    warning    onset/apex/offset frame absent inside the listed range (a gap: the nearest listed
               frame is used, as SampleFrames.position does); unknown emotion (kept, the protocol
               decides); MMEW clip found under another emotion folder than the sheet says
    Fully blank sheet rows are skipped; every other row is either a sample or a report entry.
Subject ids: CASME II "sub01", SAMM "006", SMIC "s01" (disk s1 or s01), CAS(ME)^3 "spNO.1", MMEW "S01".
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

import pandas as pd

from micronbert.data.readers import casme2, casme3, folder, mmew, samm, smic
from micronbert.data.report import ValidationReport
from micronbert.errors import MicronbertError

READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "casme2": casme2.read,
    "samm": samm.read,
    "smic": smic.read,
    "casme3": casme3.read,
    "mmew": mmew.read,
    "folder": folder.read,
}
WRITERS: dict[str, Callable[..., Path]] = {
    "casme2": casme2.write,
    "samm": samm.write,
    "smic": smic.write,
    "casme3": casme3.write,
    "mmew": mmew.write,
    "folder": folder.write,
}


def reader_options(name: str) -> list[str]:
    """Keyword options the reader `name` accepts."""
    params = inspect.signature(READERS[name]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def index_dataset(name: str, root, annotations=None, **opts) -> tuple[pd.DataFrame, ValidationReport]:
    """Read dataset `name` under `root`; options that are None are left at the reader's default."""
    if name not in READERS:
        raise MicronbertError(f"unknown dataset {name!r}; choose from {sorted(READERS)}")
    accepted = reader_options(name)
    opts = {k: v for k, v in opts.items() if v is not None}
    unknown = [k for k in opts if k not in accepted]
    if unknown:
        raise MicronbertError(f"option(s) {unknown} do not apply to {name} (it takes {accepted})")
    report = ValidationReport()
    df = READERS[name](root, annotations, report, **opts)
    return df, report
