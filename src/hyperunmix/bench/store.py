"""The benchmark's durable state: one JSON file per finished run, written atomically.

A run's record lands in ``<out>/runs/<key>.json`` only once it is complete (written to a
temporary sibling, flushed to disk with ``fsync``, then renamed), so an interruption at any
moment loses at most the run in progress, and a rerun skips every run whose record says
``ok``. The run's estimated abundances and endmembers go to ``<key>.npz`` beside it (for the
figures), written before the record, so a record never points to missing arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path

RUNS_DIR = "runs"


def run_key(identity: dict[str, Any]) -> str:
    """A file-name-safe key of a run: readable prefix plus a hash of its whole identity
    (method, parameters, scene recipe, seed)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    prefix = f"{identity['method']}-{identity['scene']['name']}-s{identity['seed']}"
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', prefix)}-{digest.hexdigest()[:12]}"


#: Written into the runs directory: the per-run state is for resuming, not for committing
#: (results.json.gz, the tables, figures and report beside it are what a repository keeps).
_GITIGNORE = "# hyperunmix bench: per-run state for resuming; commit results.json.gz instead\n*\n"


class RunStore:
    """Finished runs of a benchmark output directory."""

    def __init__(self, out: str | os.PathLike):
        self.dir = Path(out) / RUNS_DIR

    def record_path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def arrays_path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str) -> dict[str, Any] | None:
        """The record of run ``key``, or None if it never finished."""
        path = self.record_path(key)
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def is_done(self, key: str) -> bool:
        """True when run ``key`` finished successfully (failed runs are tried again)."""
        record = self.load(key)
        return record is not None and record.get("status") == "ok"

    def save(self, record: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> Path:
        """Persist a finished run: its arrays first, then its record (the commit point)."""
        key = record["key"]
        self.dir.mkdir(parents=True, exist_ok=True)
        ignore = self.dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_GITIGNORE)
        if arrays:
            with atomic_path(self.arrays_path(key)) as tmp, open(tmp, "wb") as fh:
                # No object arrays: the readers load with allow_pickle=False.
                np.savez_compressed(fh, allow_pickle=False, **arrays)
                _sync(fh)
        with atomic_path(self.record_path(key)) as tmp, open(tmp, "w") as fh:
            json.dump(record, fh, indent=1)
            _sync(fh)
        return self.record_path(key)

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.arrays_path(key)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def _sync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())
