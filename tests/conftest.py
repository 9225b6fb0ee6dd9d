"""Shared fixtures. Real datasets are read from $HYPERUNMIX_DATA (CI: ../shared/data)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory holding the real datasets; tests needing it skip when it is absent,
    except on CI, where a missing data directory is a failure."""
    path = Path(os.environ.get("HYPERUNMIX_DATA", REPO.parent / "shared" / "data"))
    if not (path / "samson").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the datasets at {path} (set HYPERUNMIX_DATA)")
        pytest.skip(f"datasets not found at {path}; set HYPERUNMIX_DATA")
    return path
