"""Fixtures for the synthetic benchmark and demo tests: the real people are detected once per session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def people():
    from micronbert.synth import load_people

    return load_people()
