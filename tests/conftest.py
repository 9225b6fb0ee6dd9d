"""Shared fixtures. Real datasets are read from the package's data directory
(:func:`hyperunmix.datasets.data_home`: ``$HYPERUNMIX_DATA``, else the user data directory),
which ``hyperunmix datasets download`` fills."""

import os
from pathlib import Path

import pytest

from hyperunmix import datasets


@pytest.fixture(scope="session")
def require_data():
    """``require_data(*names)``: the data directory, once it holds the files of ``names``
    (keys of :data:`hyperunmix.datasets.DOWNLOADS`; none: every file the package knows).

    When files are missing the test skips, naming what is missing and the command that
    downloads it; on CI (``$CI`` set), which provides the data, it fails instead."""

    def require(*names: str) -> Path:
        root = datasets.data_home()
        missing = [
            name
            for name in names or datasets.DOWNLOADS
            if not all((root / rel).is_file() for rel in datasets.DOWNLOADS[name])
        ]
        if missing:
            if os.environ.get("CI"):
                pytest.fail(f"CI needs {', '.join(missing)} in {root} (set HYPERUNMIX_DATA)")
            command = " ".join(["hyperunmix datasets download", *(missing if names else [])])
            pytest.skip(
                f"{', '.join(missing)} not in the data directory {root}; download with `{command}`"
            )
        return root

    return require


@pytest.fixture(scope="session")
def data_dir(require_data) -> Path:
    """The data directory, holding every file the package knows (see ``require_data``)."""
    return require_data()
