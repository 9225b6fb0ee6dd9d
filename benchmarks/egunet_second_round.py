"""EGU-Net, a second round from the network's own maps (issue 14, item 2): measured, not adopted.

    python benchmarks/egunet_second_round.py [--seeds 0 1] [--scenes tuning | samson,jasper_ridge]

The issue suggests pseudo-pure pixels refined by the network over rounds. The default EGU-Net
(``"ss"``, at most 150 epochs as in ``benchmarks/egunet_beyond_labels.py``) is trained once
per scene and seed; then its reference is re-estimated from the pixels its maps call purest,
as ``refine_fraction`` does from the label rule's
(:func:`~hyperunmix.deep.egunet_reference.confident_means`, the top 4 % per material), from

- ``net``: the network's maps alone (``network_weight=1``);
- ``out``: the default output (the maps blended with the label rule);

and scored as ``rule_*`` (the label rule on the new reference) and ``blend_*`` (the
network's maps blended with that rule by the weight :func:`~hyperunmix.deep.egunet_blend.
network_weight` gives against it), and ``round2``: EGU-Net trained again with the ``net``
reference as its given endmembers (its pseudo-pure set, labels and blend all from it).
Against them ``labels`` (the label rule on the model's reference, the bench's
``egunet_labels``) and ``default`` (the model's output, the bench's ``egunet``). aRMSE in
each scene's convention, mean over seeds. Runs are stored in
``benchmarks/results/egunet_beyond/second_round/`` (not committed; a rerun skips them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hyperunmix.conventions import unit_peak
from hyperunmix.deep.egunet import EGUNet
from hyperunmix.deep.egunet_blend import band_noise, label_noise, network_weight
from hyperunmix.deep.egunet_reference import confident_means

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_runs import armse_table, cached_records, scene_specs, score_maps

RUNS = Path(__file__).resolve().parent / "results" / "egunet_beyond" / "second_round"
EPOCHS = 150
FRACTION = 0.04
ENTRIES = ("labels", "default", "alone", "rule_net", "blend_net", "rule_out", "blend_out", "round2")


def run(spec, seed: int) -> dict:
    scene = spec.build(os.environ.get("HYPERUNMIX_DATA"))
    pixels = scene.pixels(np.float64)
    p = scene.truth.n_endmembers
    start = time.perf_counter()
    model = EGUNet(p, variant="ss", epochs=EPOCHS, seed=seed).fit(scene)
    record: dict = {"scene": spec.name, "seed": seed, "fit_s": time.perf_counter() - start}
    base = model.unmix(scene)
    output = base.abundances[scene.mask].astype(np.float64)
    record["default"] = score_maps(base, scene, output, model.reference_)
    rule = label_noise(pixels, unit_peak(model.reference_))[0]
    record["labels"] = score_maps(base, scene, rule, model.reference_)
    model.network_weight_ = 1.0
    maps = model.unmix(scene).abundances[scene.mask].astype(np.float64)
    record["alone"] = score_maps(base, scene, maps, model.reference_)
    references = {
        "net": confident_means(pixels, maps, FRACTION),
        "out": confident_means(pixels, output, FRACTION),
    }
    band_variance = band_noise(pixels)  # the blend's noise, as EGU-Net measures it
    for name, reference in references.items():
        rule, variance = label_noise(pixels, unit_peak(reference), band_variance)
        weight = network_weight(rule, maps, variance)
        record[f"rule_{name}"] = score_maps(base, scene, rule, reference)
        record[f"blend_{name}"] = score_maps(base, scene, rule + weight * (maps - rule), reference)
    again = EGUNet(p, variant="ss", epochs=EPOCHS, seed=seed, endmembers=references["net"])
    again.fit(scene)
    second = again.unmix(scene)
    record["round2"] = score_maps(second, scene, second.abundances[scene.mask], again.reference_)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scenes", default="tuning", help="'tuning' or dataset names, a,b")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    records = cached_records(scene_specs(args.scenes), args.seeds, RUNS, run, suffix=f"-e{EPOCHS}")
    print("\n".join(armse_table(records, ENTRIES)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
