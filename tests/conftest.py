import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.chdir(ROOT)

# the benchmarks' real list and annotation files (README, "Data"); AVGN_METADATA overrides
METADATA = os.environ.get("AVGN_METADATA", os.path.join(os.path.dirname(ROOT), "shared", "metadata"))


@pytest.fixture
def metadata_dir():
    if not os.path.isdir(METADATA):
        pytest.skip(f"real metadata not found at {METADATA}")
    return METADATA
