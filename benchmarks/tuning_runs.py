"""What the tuning-scene measurements of single deep-method choices share: the scenes named on
the command line, the per-run records cached as JSON (a rerun skips the runs it finds), maps
scored in each scene's convention, and the table of mean aRMSE per scene and entry.

Used by ``egunet_second_round.py``, ``idnet_reference.py`` and ``idnet_decoders.py``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hyperunmix import evaluate
from hyperunmix._atomic import write_text
from hyperunmix.bench.scenes import resolve, tuning_catalogue


def scene_specs(argument: str) -> list[Any]:
    """The scenes of ``--scenes``: ``"tuning"`` (every tuning scene) or dataset names, a,b."""
    if argument == "tuning":
        return list(tuning_catalogue().values())
    return resolve(argument.split(","))


def cached_records(
    specs: Sequence[Any],
    seeds: Sequence[int],
    runs: Path,
    run: Callable[[Any, int], dict],
    suffix: str = "",
) -> list[dict]:
    """``run(spec, seed)`` for every scene and seed, each record stored as
    ``runs/<scene>-s<seed><suffix>.json`` and read back from there when it exists."""
    runs.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in seeds:
        for spec in specs:
            path = runs / f"{spec.name}-s{seed}{suffix}.json"
            if not path.exists():
                path.write_text(json.dumps(run(spec, seed), indent=1) + "\n")
                print(f"{spec.name} seed {seed}", file=sys.stderr, flush=True)
            records.append(json.loads(path.read_text()))
    return records


def score_maps(base, scene, maps: np.ndarray, endmembers: np.ndarray) -> dict:
    """aRMSE and mSAD, in the scene's convention, of (N, P) ``maps`` of its valid pixels with
    ``endmembers``, as the result ``base`` with those maps would score."""
    abundances = np.full(base.abundances.shape, np.nan, np.float32)
    abundances[scene.mask] = maps
    result = dataclasses.replace(base, abundances=abundances, endmembers=endmembers)
    metrics = evaluate(result, scene.truth, scene)
    return {"armse": float(metrics["armse"]), "msad": float(metrics["msad"])}


def armse_table(records: list[dict], entries: Sequence[str]) -> list[str]:
    """Markdown rows: the mean aRMSE of each entry per scene (over the seeds), then over all."""
    lines = ["| scene | " + " | ".join(entries) + " |", "|---|" + "---|" * len(entries)]
    names = sorted({r["scene"] for r in records})
    for name in [*names, "mean"]:
        chosen = records if name == "mean" else [r for r in records if r["scene"] == name]
        cells = [np.mean([r[e]["armse"] for r in chosen]) for e in entries]
        lines.append(f"| {name} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return lines


def write_results(path: Path, lines: list[str], records: Any) -> None:
    """Print the Markdown ``lines`` and write them to ``path`` with suffix ``.md``, and the
    ``records`` to ``.json`` beside it."""
    print("\n".join(lines))
    write_text(path.with_suffix(".md"), "\n".join(lines))
    write_text(path.with_suffix(".json"), json.dumps(records, indent=1) + "\n")
