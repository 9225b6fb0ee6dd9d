"""GPU check (issue 16): each deep method trained and applied on the GPU and on the CPU.

    python benchmarks/gpu_check.py [--methods deq,egunet,idnet] [--scenes samson,jasper_ridge]
        [--precision float32|mixed] [--out benchmarks/results]

On a machine with CUDA: for every method and scene (Samson, Jasper Ridge, from the data
directory), the same seeded fit and unmix runs with ``device="cuda"`` and ``device="cpu"``;
reported are the times of each, the largest difference between the two abundance maps, and
each map's aRMSE against the scene's truth (training on another device takes other
floating-point paths, so the maps differ by more than rounding where the training's
trajectory drifts; the aRMSE says whether that matters). ``--precision mixed`` applies the
GPU model under float16 autocast. Writes ``gpu_check.{json,md}`` in ``--out``.

On a machine without CUDA it says so and exits 0, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def run(method: str, scene, device: str, precision: str) -> tuple[np.ndarray, float, float]:
    """Fit and unmix ``scene`` on ``device``: (abundances, fit seconds, unmix seconds)."""
    from hyperunmix.registry import make_method

    assert scene.truth is not None
    model = make_method(
        method, n_endmembers=scene.truth.n_endmembers, seed=0, device=device, precision=precision
    )
    start = time.perf_counter()
    model.fit(scene)
    if device == "cuda":
        torch.cuda.synchronize()
    fitted = time.perf_counter()
    result = model.unmix(scene)
    if device == "cuda":
        torch.cuda.synchronize()
    return result, fitted - start, time.perf_counter() - fitted


def markdown(records: list[dict], device_name: str) -> str:
    lines = [
        "### Deep methods on the GPU and on the CPU",
        "",
        f"GPU: {device_name}. Same seeds, same data; times of fit and unmix; maps compared "
        "value by value and each scored against the truth (aRMSE).",
        "",
        "| method | scene | fit GPU / CPU | unmix GPU / CPU | max map difference | "
        "aRMSE GPU / CPU |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['method']} | {r['scene']} "
            f"| {r['fit_s']['cuda']:.1f} / {r['fit_s']['cpu']:.1f} s "
            f"| {r['unmix_s']['cuda']:.2f} / {r['unmix_s']['cpu']:.2f} s "
            f"| {r['max_difference']:.1e} | {r['armse']['cuda']:.4f} / {r['armse']['cpu']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="deq,egunet,idnet")
    parser.add_argument("--scenes", default="samson,jasper_ridge")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to compare (exit 0)")
        return 0
    from hyperunmix import datasets
    from hyperunmix.metrics import evaluate

    records = []
    for scene_name in args.scenes.split(","):
        scene = datasets.load(scene_name)
        for method in args.methods.split(","):
            record: dict = {"method": method, "scene": scene_name, "fit_s": {}, "unmix_s": {}}
            record["armse"], maps = {}, {}
            for device in ("cuda", "cpu"):
                precision = args.precision if device == "cuda" else "float32"
                result, fit_s, unmix_s = run(method, scene, device, precision)
                record["fit_s"][device], record["unmix_s"][device] = fit_s, unmix_s
                record["armse"][device] = evaluate(result, scene.truth)["armse"]
                maps[device] = result.abundances
            record["max_difference"] = float(np.nanmax(np.abs(maps["cuda"] - maps["cpu"])))
            records.append(record)
            print(json.dumps(record), flush=True)
    device_name = torch.cuda.get_device_name(0)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"device": device_name, "precision": args.precision, "records": records}
    (args.out / "gpu_check.json").write_text(json.dumps(payload, indent=1) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(records, device_name))
    print(markdown(records, device_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
