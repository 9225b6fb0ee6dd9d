"""ID-Net's apply throughput against FCLS's, and where ID-Net's apply time goes (issue 16).

A model fitted on a small synthetic scene (24 x 24 px, 200 bands, P = 4, one epoch: the
weights do not change the cost of applying it) unmixes a ``size`` x ``size`` synthetic scene
(default 192 x 192 = 36,864 pixels, as in issue 16) by ``transform``, beside FCLS on the
model's endmembers in the same run: each timed ``repeats`` times, alternating, the best
kept, with one torch thread. Measured for the defaults, with 16 draws of the codes for the
uncertainty, and without the per-pixel endmembers output. Then the stages of the default
apply, timed one by one on the same pixels in the same chunks.

``--before-src DIR`` also measures the default apply of another source tree (e.g.
``git archive <commit> src | tar -x -C DIR``; DIR/src on PYTHONPATH) in a subprocess.
Writes ``benchmarks/results/idnet_apply_profile.json`` and ``.md``.

    python benchmarks/idnet_apply_profile.py [--size 192] [--repeats 3] [--before-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
N_ENDMEMBERS = 4
#: Applies compared with FCLS: label -> IDNet parameters beyond the defaults.
CONFIGS: dict[str, dict] = {
    "defaults": {},
    "16 draws of the codes": {"n_uncertainty_samples": 16},
    "without pixel_endmembers": {"return_pixel_endmembers": False},
}


def fitted_model(**params):
    from hyperunmix.deep.idnet import IDNet
    from hyperunmix.synthetic import make_scene

    small = make_scene(24, 24, N_ENDMEMBERS, seed=0)
    return small, IDNet(N_ENDMEMBERS, epochs=1, seed=0, **params).fit(small)


def best_times(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """The best of ``repeats`` wall times of each function, run in alternation."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def throughput(size: int, repeats: int, configs: dict[str, dict]) -> dict:
    """Pixels per second of FCLS and of each ID-Net configuration, in one run."""
    from hyperunmix.linear.estimators import FCLS
    from hyperunmix.synthetic import make_scene

    cube = make_scene(size, size, N_ENDMEMBERS, seed=1).cube
    functions: dict[str, Callable[[], object]] = {}
    for label, params in configs.items():
        small, model = fitted_model(**params)
        functions[label] = lambda model=model: model.transform(cube)
    fcls = FCLS(N_ENDMEMBERS, endmembers=model.endmembers_).fit(small)
    functions = {"fcls": lambda: fcls.transform(cube), **functions}
    seconds = best_times(functions, repeats)
    n_pixels = size * size
    return {
        "n_pixels": n_pixels,
        "seconds": seconds,
        "pixels_per_second": {name: n_pixels / s for name, s in seconds.items()},
        "share_of_fcls": {name: seconds["fcls"] / s for name, s in seconds.items()},
    }


def stages(size: int, repeats: int) -> dict[str, float]:
    """Seconds of each stage of the default apply on all pixels, chunk by chunk."""
    from hyperunmix.deep.idnet import INFERENCE_PIXEL_DRAWS
    from hyperunmix.deep.idnet_bilinear import bilinear_share
    from hyperunmix.deep.idnet_model import peak_factors
    from hyperunmix.synthetic import make_scene

    _, model = fitted_model()
    net = model.network_.eval()
    pixels = make_scene(size, size, N_ENDMEMBERS, seed=1).pixels(np.float64)
    scale = model.input_scale_
    with torch.inference_mode():
        chunks = torch.as_tensor(pixels * scale, dtype=torch.float32).split(INFERENCE_PIXEL_DRAWS)
        codes = [net.latent_encoders(y)[0] for y in chunks]
        endmembers = [net.endmember_decoders(z) for z in codes]
        alphas = [net.abundance_encoder(y, m)[0] for y, m in zip(chunks, endmembers)]
        weights = [
            a / a.sum(-1, keepdim=True) * peak_factors(m) for a, m in zip(alphas, endmembers)
        ]
        steps: dict[str, Callable[[], object]] = {
            "input to float32 tensor": lambda: torch.as_tensor(pixels * scale, dtype=torch.float32),
            "latent encoders (code posterior)": lambda: [net.latent_encoders(y) for y in chunks],
            "endmember decoders (mean codes)": lambda: [net.endmember_decoders(z) for z in codes],
            "abundance encoder (unrolled ISTA and h)": lambda: [
                net.abundance_encoder(y, m) for y, m in zip(chunks, endmembers)
            ],
            "nonlinearity map (bilinear share)": lambda: [
                bilinear_share(y, m, w, unit=scale) for y, m, w in zip(chunks, endmembers, weights)
            ],
            "pixel endmembers to scene units": lambda: [(m / scale).numpy() for m in endmembers],
            "whole apply (transform)": lambda: model.transform(
                pixels.reshape(size, size, -1).astype(np.float32)
            ),
        }
        return best_times(steps, repeats)


def before(source: Path, size: int, repeats: int) -> dict:
    """:func:`throughput` of the defaults of the tree ``source`` (its ``src`` imported)."""
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    command = [sys.executable, __file__, "--size", str(size), "--repeats", str(repeats)]
    output = subprocess.run(
        [*command, "--throughput-only"], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


def markdown(result: dict) -> str:
    rate = result["throughput"]
    lines = [
        "### ID-Net: apply throughput against FCLS, and where the time goes",
        "",
        f"Command: `{result['command']}`. A model fitted on a 24 x 24 px synthetic scene "
        f"(200 bands, P = {N_ENDMEMBERS}) applied by `transform` to {rate['n_pixels']:,} "
        "pixels of 200 bands, beside FCLS on the model's endmembers in the same run (best of "
        f"{result['repeats']}, alternating); one torch thread on a shared 2-core machine, so "
        "absolute rates are inflated by other jobs and the shares of FCLS's are the figures "
        "to compare.",
        "",
        "| apply | pixels / s | share of FCLS's |",
        "|---|---:|---:|",
    ]
    for name, value in rate["pixels_per_second"].items():
        label = "ID-Net, " + name if name != "fcls" else "FCLS"
        lines.append(f"| {label} | {value:,.0f} | {100 * rate['share_of_fcls'][name]:.1f} % |")
    if "before" in result:
        old = result["before"]
        lines += [
            "",
            f"Before (`{result['before_label']}`, defaults: 16 draws of (Z, M), chunks of "
            f"1024), same machine, just before: FCLS {old['pixels_per_second']['fcls']:,.0f} "
            f"px/s, ID-Net {old['pixels_per_second']['defaults']:,.0f} px/s "
            f"({100 * old['share_of_fcls']['defaults']:.1f} % of FCLS's).",
        ]
    lines += [
        "",
        "Stages of the default apply on the same pixels (seconds, best of "
        f"{result['repeats']}; the stages are timed apart, so they need not add up to the "
        "whole):",
        "",
        "| stage | seconds | share of the whole |",
        "|---|---:|---:|",
    ]
    whole = result["stages"]["whole apply (transform)"]
    for name, seconds in result["stages"].items():
        lines.append(f"| {name} | {seconds:.3f} | {100 * seconds / whole:.0f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before-src", type=Path)
    parser.add_argument("--before-label", default="the tree given by --before-src")
    parser.add_argument("--throughput-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.throughput_only:  # the defaults of whatever tree is imported, as JSON
        print(json.dumps(throughput(args.size, args.repeats, {"defaults": {}})))
        return
    from hyperunmix._atomic import write_text

    result: dict = {
        "command": "python benchmarks/idnet_apply_profile.py " + " ".join(argv or sys.argv[1:]),
        "repeats": args.repeats,
    }
    if args.before_src is not None:
        result["before"] = before(args.before_src, args.size, args.repeats)
        result["before_label"] = args.before_label
    result["throughput"] = throughput(args.size, args.repeats, CONFIGS)
    result["stages"] = stages(args.size, args.repeats)
    write_text(args.out / "idnet_apply_profile.json", json.dumps(result, indent=1))
    write_text(args.out / "idnet_apply_profile.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
