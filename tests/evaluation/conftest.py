"""Session fixtures of the evaluation tests (also imported by tests/test_evaluate.py, test_localize.py)."""
from __future__ import annotations

import pytest

from tests.evaluation import helpers


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory):
    return helpers.phantom_data(tmp_path_factory)


@pytest.fixture(scope="session")
def phantom_model(tmp_path_factory):
    return helpers.phantom_model(tmp_path_factory)
