"""Fake dataset trees shared by the data tests (built once per session; tests must not modify them)."""
from __future__ import annotations

import pandas as pd
import pytest

from micronbert.testing import fake
from micronbert.data.readers import index_dataset


@pytest.fixture(scope="session")
def megc_fixture(tmp_path_factory):
    return fake.megc2019_fixture(tmp_path_factory.mktemp("megc"))


@pytest.fixture(scope="session")
def megc_samples(megc_fixture):
    """The three realistic datasets indexed and concatenated, plus their (empty) reports."""
    frames, reports = [], {}
    for name, fd in megc_fixture.items():
        df, report = index_dataset(name, fd.root)
        frames.append(df)
        reports[name] = report
    return pd.concat(frames, ignore_index=True), reports


@pytest.fixture(scope="session")
def fakes(tmp_path_factory):
    """One quirky+dirty fake tree per reader, keyed by reader name."""
    base = tmp_path_factory.mktemp("fakes")
    return {
        "casme2": fake.fake_casme2(base / "casme2"),
        "samm": fake.fake_samm(base / "samm"),
        "smic": fake.fake_smic(base / "smic"),
        "casme3": fake.fake_casme3(base / "casme3"),
        "mmew": fake.fake_mmew(base / "mmew"),
        "folder": fake.fake_folder(base / "folder"),
    }


@pytest.fixture(scope="session")
def indexed(fakes):
    """reader name -> (samples, report) for the `fakes` trees."""
    return {name: index_dataset(name, fd.root) for name, fd in fakes.items()}


@pytest.fixture
def cli(capsys):
    """cli(argv) -> (exit code, stdout, stderr) of `micronbert ARGV`."""
    from micronbert.cli import main

    def run(argv):
        rc = main([str(a) for a in argv])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run
