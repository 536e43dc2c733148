"""Fixtures of the training tests: the labelled motion pairs (micronbert.testing.pairs), the class list,
and one torch thread."""
from __future__ import annotations

import pytest

from micronbert.testing.pairs import motion_pairs


@pytest.fixture(scope="session")
def synthetic():
    """Factory: synthetic(**kw) -> (table, pairs, source); cached per argument set."""
    cache = {}

    def build(**kw):
        key = tuple(sorted(kw.items()))
        if key not in cache:
            table, pairs = motion_pairs(**kw)
            cache[key] = (table, pairs, lambda row: pairs[row["sample_id"]])
        return cache[key]
    return build


CLASSES3 = ["class0", "class1", "class2"]


@pytest.fixture
def classes3():
    return list(CLASSES3)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread, and 2-core CI machines are shared by parallel test runs."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
