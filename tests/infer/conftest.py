"""Fixtures for tests/infer."""
from __future__ import annotations

import pytest

from infer_helpers import make_classifier_dir


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory):
    return make_classifier_dir(tmp_path_factory.mktemp("clf") / "model")
