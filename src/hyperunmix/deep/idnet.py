"""ID-Net: interpretable, disentangled variational unmixing with endmember variability,
nonlinearity and per-pixel uncertainty (Borsoi, Erdogmus & Imbiriba, IEEE TCI 2023).

The estimator trains :class:`~hyperunmix.deep.idnet_model.IDNetModel` on the image pixels
(ELBO) and on synthetic triplets drawn from endmember bundles (self-supervised term), see
:mod:`hyperunmix.deep.idnet_loss` and :mod:`hyperunmix.deep.idnet_selfsup`.

Deviations from the paper and its released code, to fit a CPU budget, fix defects or
improve accuracy (measured in BENCHMARKS.md; see also the module docstrings):

* batches of 128 pixels (paper: 16; smaller for small scenes) with the learning rate scaled
  by sqrt(batch / 16), data terms averaged per pixel and weight penalties expressed per 16
  pixels; Dirichlet sampling and every density batched (the released code loops over
  pixels in Python);
* the KL terms of the ELBO in closed form; the triplet Dirichlet term at the label
  (``triplet_density="posterior_sample"`` gives the released code's behaviour);
* triplets drawn afresh from the bundles at every step; noise at a true SNR;
* the unrolled ISTA starts at the least squares refined by two active-set passes (exact
  NNLS / FCLS for most pixels), its steps are normalised by tr(M M^T); it can also run on
  the simplex (``constraint="simplex"``); the nonlinear stream h is centred;
* the linear stream and the pixel decoder mix peak-normalised endmembers
  (``endmember_scale="peak"``), so abundances are shares of unit-peak spectra, the
  convention of the Samson and Jasper Ridge reference maps; bundles are extracted around
  N-FINDR endmembers re-estimated from the pixels SNNLS calls purest (the paper uses
  library bundles);
* the endmember decoders are centred on the bundles' reference, with f_k(0) pinned to it
  (``endmember_decoders="pinned"``; the paper learns them from scratch, ``"free"``);
* early stopping on a plateau of the epoch loss averaged over ``patience`` epochs (the
  paper stops at the first epoch whose loss changed by less than 1 %);
* the data are scaled so that their 99.9th percentile is 0.9 (the endmember decoders end in
  a sigmoid); every output is returned in the scene's units;
* the output abundances are solved with the reference endmembers f(0) that every pixel
  shares (``abundance_output="reference"``), not with the pixel's own f(E[Z | y]), which
  scored worse on the tuning scenes (see that parameter); the per-pixel endmembers are the
  posterior mean of the codes decoded (deterministic), not a random draw;
* the ``nonlinearity`` map is the posterior bilinear share of the pixel under a
  generalised bilinear model of ID-Net's own endmembers and abundances
  (:mod:`hyperunmix.deep.idnet_bilinear`), not the paper's share of the nonlinear stream h
  in the Dirichlet parameters, which h and g fill with any misfit of the linear stream
  (rank correlation with the true bilinear share 0.21 +- 0.28 on the GBM scenes of
  ``benchmarks/idnet_quality.py``);
* the ``uncertainty`` leaves out the band-wise endmember noise s_k, and by default
  (``n_uncertainty_samples=0``) the spread over the codes: see that parameter.

Two ablations remove a learned part for comparison with the full model: ``nonlinear=False``
(no nonlinear streams h and g) and ``variability=False`` (one endmember matrix f(0) for
every pixel); see :class:`IDNet`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch

from ..base import check_n_endmembers
from ..errors import InputError
from ..linear.estimators import ENDMEMBERS_RULES, N_ENDMEMBERS_RULES, SEED_RULES, is_extractor
from ..params import LIBRARY, Boolean, Integer, NoneValue, Options, Real
from ..scene import Scene
from .estimator import (
    DEVICE_RULES,
    EARLY_STOPPING_RULES,
    MAX_SECONDS_RULES,
    MIN_DELTA_RULES,
    PATIENCE_RULES,
    PRECISION_RULES,
    DeepUnmixer,
    Precision,
)
from .idnet_loss import REFERENCE_BATCH, LossConfig, training_loss
from .idnet_model import EndmemberDecoderStart, IDNetModel, posterior_summary
from .idnet_selfsup import Bundles, TripletSampler, bundles_from_library, extract_bundles

Preset = Literal["samson", "jasper_ridge", "cuprite"]
#: The paper's per-dataset weights: lambda (self-supervised), tau (l_1/2 sparsity),
#: lambda_h (nonlinear abundance stream), lambda_g (nonlinear pixel stream).
PRESETS: dict[Preset, dict[str, float]] = {
    "samson": dict(
        selfsup_weight=1.0, sparsity_weight=0.005, encoder_penalty=0.01, decoder_penalty=0.1
    ),
    "jasper_ridge": dict(
        selfsup_weight=1.0, sparsity_weight=0.0, encoder_penalty=0.01, decoder_penalty=0.1
    ),
    "cuprite": dict(
        selfsup_weight=10.0, sparsity_weight=0.1, encoder_penalty=0.05, decoder_penalty=5.0
    ),
}
#: Weights for a new scene (no preset): the paper's setting for Samson and its variability
#: scene, with a larger penalty on the nonlinear pixel stream g, chosen on the tuning scenes
#: (see ``decoder_penalty``).
DEFAULT_WEIGHTS = {**PRESETS["samson"], "decoder_penalty": 1.0}
#: The data are scaled so that this percentile of the pixel values maps to DATA_TOP.
DATA_PERCENTILE = 99.9
DATA_TOP = 0.9
Constraint = Literal["orthant", "simplex"]
EndmemberScale = Literal["peak", "decoded"]
TripletDensity = Literal["label", "posterior_sample"]
AbundanceOutput = Literal["posterior", "linear", "reference"]
#: Feasible sets of the unrolled ISTA (see :class:`~.idnet_model.AbundanceEncoder`).
CONSTRAINTS: tuple[Constraint, ...] = get_args(Constraint)
#: Scale of the endmembers in the linear stream (see :class:`~.idnet_model.AbundanceEncoder`).
ENDMEMBER_SCALES: tuple[EndmemberScale, ...] = get_args(EndmemberScale)
#: How the endmember decoders are parametrised (see :class:`IDNet`).
ENDMEMBER_DECODER_STARTS: tuple[EndmemberDecoderStart, ...] = get_args(EndmemberDecoderStart)
#: What the output abundances are (see :class:`IDNet`).
ABUNDANCE_OUTPUTS: tuple[AbundanceOutput, ...] = get_args(AbundanceOutput)
#: Where log q(a | M_s, y_s) is evaluated on the triplets: at the label (this package) or
#: at a draw of q (the released code).
TRIPLET_DENSITIES: tuple[TripletDensity, ...] = get_args(TripletDensity)
#: Small scenes get smaller batches so that an epoch still takes this many Adam steps.
MIN_STEPS_PER_EPOCH = 50
#: Pixels times (1 + uncertainty draws) per forward pass at inference: bounds the memory.
INFERENCE_PIXEL_DRAWS = 2048


def effective_batch_size(batch_size: int, n_pixels: int) -> int:
    """``batch_size``, lowered for small scenes so that an epoch has at least
    MIN_STEPS_PER_EPOCH steps, but never below the paper's 16."""
    return max(min(batch_size, n_pixels // MIN_STEPS_PER_EPOCH), min(REFERENCE_BATCH, batch_size))


class IDNet(DeepUnmixer):
    """ID-Net unmixing: abundances, per-pixel endmembers, nonlinearity and uncertainty.

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P. None: the library's number of materials when ``library`` is given, else
        HySime's estimate (as for the other methods).
    library : None, {"samson", "jasper_ridge"} or library, default=None
        Endmember bundles for the self-supervised triplets: a dataset name for
        :func:`hyperunmix.datasets.load_library` (``"samson"``, ``"jasper_ridge"``), an
        object or mapping with ``spectra`` (K, L) and ``labels`` (K,) in the scene's units,
        or None to extract bundles from the image. The outputs follow the library's
        material order.
    endmembers : array (P, L), path or {"nfindr", "vca", "atgp"}, default="nfindr"
        Automatic bundles (``library=None``): the reference endmembers (an extractor name,
        a (P, L) array or an endmember file), see
        :func:`hyperunmix.deep.idnet_selfsup.extract_bundles`. ``"nfindr"``: VCA
        can miss a dark or rare material, and every triplet of that material is then
        wrong. The start and ``endmember_scale`` were chosen on the tuning scenes of
        ``benchmarks/tune_defaults.py`` (seeds 0 and 1: mean aRMSE 0.0469 with N-FINDR and
        ``"peak"``, 0.0470 to 0.0481 for the others, none better by two standard errors of
        the paired difference; with ``decoder_penalty`` 0.1 VCA with ``"peak"`` came
        closest, -0.0015 +- 0.0008, and at 1 it ties, +0.0000 +- 0.0002).
    min_purity : float, default=0.95
        Automatic bundles: the share a pixel's normalised NNLS abundance needs to join a
        bundle.
    refine_fraction : float or None, default=0.04
        Automatic bundles around an extractor's reference (``endmembers`` a name): the
        reference is first re-estimated as, for each material, the mean of this fraction of
        the pixels with the largest SNNLS share of it on the extractor's spectra
        (:func:`~hyperunmix.deep.egunet_reference.confident_means`, EGU-Net's
        ``refine_fraction`` and value), so that the bundles no longer centre on one noisy
        pixel per material. None: the extractor's spectra as they are. Given endmembers
        (an array, a file) are always used as given. Chosen on the tuning scenes
        (``benchmarks/idnet_reference.py``, the bench's 8 epochs, seeds 0 and 1): with the
        default linear-stream output mean aRMSE 0.0622 against 0.1036 without, with the
        posterior output 0.0719 against 0.0784; mSAD 0.044 against 0.108 rad; worse than
        the matched baseline (SNNLS on N-FINDR's spectra, 0.1045) on 1 of the 10 scenes
        (bilinear at 30 dB; posterior output: 2) against 3 to 4 without. SNNLS on the re-estimated
        reference alone scores 0.0462 there, below ID-Net on 9 of 10 scenes: the training
        moves the endmembers away from it (mSAD 0.024 to 0.044 rad); measured with the
        decoders learned from scratch, ``endmember_decoders="free"``, which the default
        ``"pinned"`` replaced for that reason.
    preset : None or {"samson", "jasper_ridge", "cuprite"}, default=None
        The paper's per-dataset loss weights; None uses the Samson weights (also the
        paper's for its variability scene) with ``decoder_penalty`` 1 (see there). The
        next four arguments override single values.
    selfsup_weight : float or None, default=None
        lambda of the paper, the weight of the self-supervised term. None: the preset's.
    sparsity_weight : float or None, default=None
        tau of the paper, the weight of the l_1/2 sparsity term. None: the preset's.
    encoder_penalty : float or None, default=None
        lambda_h of the paper, the weight of the penalty on the weights of the nonlinear
        abundance stream h. None: the preset's.
    decoder_penalty : float or None, default=None
        lambda_g of the paper, the weight of the penalty on the weights of the nonlinear
        pixel stream g. None: the preset's, or 1 without a preset (the paper's Samson
        weight is 0.1). Chosen on the tuning scenes (``benchmarks/idnet_decoders.py``,
        seeds 0 and 1, pinned decoders): mean aRMSE 0.0469 at 1 against 0.0482 at 0.1, a
        paired difference of -0.0013 +- 0.0006 (standard error over the 10 scenes; the
        rule of ``benchmarks/tune_defaults.py``: more than two standard errors), lower on
        7 of 10; the posterior's maps 0.0573 against 0.0758. A g held smaller leaves the
        mixed spectra to the linear stream. In the benchmark (5 seeds, run after the
        choice) it is a wash: lower on 6 of the 11 synthetic scenes, whose mean goes from
        0.0797 to 0.0791 (0.0822 to 0.0715 on the spatial scene at 20 dB), Samson 0.0244
        to 0.0273, Jasper Ridge unchanged (its preset keeps 0.1).
    beta : float, default=10.0
        Extra weight of log q(a_s | M_s, y_s) and log p(M_s | Z) on the triplets.
    constraint : {"orthant", "simplex"}, default="orthant"
        Feasible set of the unrolled ISTA (see
        :class:`~hyperunmix.deep.idnet_model.AbundanceEncoder`). ``"orthant"`` (the
        paper's): non-negative least squares with a learned soft threshold; the
        Dirichlet mean then normalises it, so abundances are shares of the pixel's signal
        whatever its brightness (the convention of the Samson and Jasper Ridge reference
        maps). ``"simplex"``: ANC and ASC inside the solver, as in the strict linear
        mixing model (better on synthetic LMM scenes, where brightness carries
        information).
    endmember_scale : {"peak", "decoded"}, default="peak"
        Scale of the endmembers inside the linear stream (the unrolled ISTA). The Dirichlet
        mean normalises alpha_lin, so the abundances are shares that depend on the relative
        scale of the endmember spectra, which the ELBO leaves free (a brighter m_k and a
        smaller a_k explain a pixel equally well). ``"peak"``: the P spectra are rescaled to
        a common peak (their mean peak) before the solve, so abundances are shares of
        peak-normalised spectra whatever scale the decoders or the bundles give them (the
        convention of the Samson and Jasper Ridge reference maps, of DEQ-Unmix's scaled data
        term and of EGU-Net's ``label_scale="peak"``); the pixel decoder mixes the same
        rescaled spectra, so the generative and the inference model agree.
        ``"decoded"``: the decoded spectra as they are (the paper), right for scenes whose
        truth is absolute fractions of the spectra at their own scale (as the package's
        synthetic scenes).
    nonlinear : bool, default=True
        Model nonlinearity. False is the ablation without both nonlinear
        streams: the abundance encoder's h (``alpha_nlin = 0``) and the pixel decoder's g
        are not built, so their penalties (``encoder_penalty``, ``decoder_penalty``) have
        nothing to act on and the ``nonlinearity`` output is 0 everywhere.
    variability : bool, default=True
        Model endmember variability. False is the ablation with one endmember
        matrix for every pixel: the codes stay at their prior mean Z = 0 (q(Z | y) is not
        built, the ELBO has no KL term for Z and mixes M = f(0) without the sampling noise
        s_k); the triplets still train the decoders through log p(M_s | Z = 0). The
        ``pixel_endmembers`` output is then ``endmembers_`` at every pixel and the
        ``uncertainty`` that of the Dirichlet alone. The abundance maps of the default
        ``abundance_output="reference"`` are solved with f(0) either way, so the ablation
        changes them only through the training of the solver's steps and threshold.
    endmember_decoders : {"pinned", "reference", "free"}, default="pinned"
        How the decoders f_k are parametrised around the bundles' reference r_k (the
        re-estimated extractor spectra, see ``refine_fraction``, or the bundle means for a
        library; :meth:`~hyperunmix.deep.idnet_selfsup.Bundles.centres`). ``"pinned"``:
        ``f_k(z) = sigmoid(logit(r_k) + g_k(z) - g_k(0))``, so ``f_k(0) = r_k`` throughout
        (``endmembers_`` is the reference) and the networks learn the variability around
        it (the per-pixel endmembers f(E[z | y])) and the abundances; ``"reference"``:
        ``sigmoid(logit(r_k) + g_k(z))``, so f_k starts at r_k and f(0) is free to move
        (both start with g_k's output layer at zero, every f_k(z) at r_k); ``"free"``:
        ``sigmoid(g_k(z))`` learned from scratch (the paper, the default before; the
        ablation). Chosen on the tuning
        scenes (``benchmarks/idnet_decoders.py``, the bench's 8 epochs, seeds 0 and 1, the
        linear-stream output): mean aRMSE 0.0482 pinned, 0.0537 reference, 0.0622 free,
        against 0.0462 for SNNLS on the reference with no learning; pinned below free on 9
        of 10 scenes (all but usgs at 20 dB, 0.0309 against 0.0306), per-scene standard
        deviation over the two seeds at most 0.003 against 0.066 free (bilinear at 30 dB,
        where free ended at 0.044 or 0.174). Training moved f(0) 0.037 rad from the
        reference free, 0.021 rad started at it, and each move cost aRMSE; pinned, the
        per-pixel endmembers spread 1.2 % (relative norm) around f(0). The learned parts
        left still cost 0.002 against SNNLS on the reference, lower on 1 of 10 scenes (usgs
        at 20 dB): the variability does (pinned with ``variability=False``, the ablation:
        0.0464, lower than SNNLS on the reference on 4 of 10 scenes). With
        ``variability=False`` and ``"pinned"`` the decoders have nothing to learn: every
        pixel mixes the reference. In the benchmark (5 seeds, run after the choice, with
        ``decoder_penalty`` 0.1): Samson 0.0265 to 0.0244, Jasper Ridge 0.058 to 0.050,
        lower on 12 of 13 scenes, largest per-scene std 0.019 against 0.06, and below the
        matched baseline on all 13 (8 before); ``variability=False`` is lower still on 12
        of 13 (not on Samson).
    triplet_density : {"label", "posterior_sample"}, default="label"
        Where the triplet term evaluates log q(a | M_s, y_s): at the label or at a draw of
        q, as the released code does.
    latent_dim : int, default=2
        Size H of each endmember's latent code.
    n_ista : int, default=10
        Unrolled ISTA steps of the abundance encoder.
    n_importance : int, default=5
        Samples of Z per triplet in the importance-weighted term.
    snr_db : float, default=40.0
        SNR of the synthetic triplet pixels, in dB.
    epochs : int, default=30
        At most this many passes over the image pixels.
    batch_size : int, default=128
        Image pixels (and as many triplets) per step; lowered (down to 16) for scenes of
        fewer than 50 batches, so that every epoch takes at least 50 steps.
    learning_rate : float or None, default=None
        Adam step. None: 1e-3 sqrt(batch / 16), with batch the batch size after lowering
        (the paper's 1e-3 at batch 16).
    lr_decay : float, default=0.9
        The learning rate is multiplied by ``lr_decay`` after each of the first
        ``decay_epochs`` epochs.
    decay_epochs : int, default=10
        See ``lr_decay``.
    n_uncertainty_samples : int, default=0
        Draws of the codes Z from q(Z | y) for the posterior standard deviation of the
        abundances (law of total variance over M = f(Z)); 0: the Dirichlet's standard
        deviation at the endmembers the abundances are solved with (see
        ``abundance_output``), in closed form. Chosen on the tuning scenes
        (``benchmarks/idnet_quality.py`` at seeds 100 to 102): the rank
        correlation of the standard deviation with the absolute error was the same with
        0, 4 or 16 draws (0.51 / 0.43 / 0.58 on the fan / GBM / variability scenes with
        0, 0.51 / 0.43 / 0.57 with 16), and each draw costs a pass of the endmember
        decoders, the largest part of applying the model (16 draws apply at a seventh of
        the rate, ``benchmarks/idnet_apply_profile.py``). Re-measured with the maps at the
        reference (``abundance_output="reference"``; ``--first-seed 100 --seeds 3``):
        0.516 / 0.455 / 0.582 with 0 draws, 0.526 / 0.457 / 0.572 with 4, 0.533 / 0.461 /
        0.585 with 16, within the spread over the seeds (0.04 to 0.14). The band-wise
        endmember noise s_k of p(M | Z) is never drawn: it stands for the bundles' spread
        that the codes do not capture, which is spectrally smooth, and drawn as white noise
        it ranked endmembers by their conditioning, not pixels by their error (on the GBM
        and variability tuning scenes it alone correlated -0.25 to 0.30 with the error,
        and the former 16 draws of (Z, M) 0.27 to 0.60).
    abundance_output : {"reference", "linear", "posterior"}, default="reference"
        What the output maps are computed from (training is the same). ``"reference"``:
        the Dirichlet of the linear stream alone (``alpha = kappa ReLU(alpha_lin)``), i.e.
        the shares of the l1-thresholded non-negative least squares of the pixel on the
        reference endmembers f(0) that every pixel shares; ``"linear"``: the same on the
        pixel's own endmembers f(E[Z | y]); ``"posterior"``: the Dirichlet posterior
        q(a | M, y) of the model at f(E[Z | y]), linear stream plus the nonlinear
        correction h (the paper's output). The uncertainty and the nonlinearity map follow
        the abundances; ``pixel_endmembers`` are the pixel's own whatever the output.
        ``"reference"`` was chosen on the tuning scenes (``benchmarks/idnet_output.py``,
        bench settings, method seeds 0 to 4): mean aRMSE 0.0464 against 0.0478 at the
        pixel's own endmembers (the default before), a paired difference of -0.0014 +-
        0.0006, lower on 8 of 10 scenes, the variability and illumination scenes among
        them (higher on the bilinear scene at 20 dB, where the codes absorb part of the
        interactions, and by 0.0001 on the USGS scene at 20 dB); 0.0588 with h. The codes
        move the endmembers of the solve away from the reference, and the maps lose more by
        it than they gain, so the learned variability is returned as the per-pixel
        endmembers (and, with draws of the codes, in the uncertainty), not through the
        maps: ``variability=False`` gives the same maps (0.0464). In the benchmark (5
        seeds, run after the choice) the maps improved on 12 of 13 scenes:
        synthetic mean 0.0791 to 0.0750, Jasper Ridge 0.0505 to 0.0455, Samson 0.0273 to
        0.0286 the exception; on the bilinear scenes of ``benchmarks/idnet_quality.py``
        (simplex, decoded) 0.026 to 0.033 (GBM) and 0.034 to 0.040 (Fan). h is added
        in absolute units, so it weighs most at dark pixels, where alpha_lin is small. The
        linear stream was chosen over the posterior on the tuning scenes
        (``benchmarks/idnet_reference.py``, bench settings, seeds 0 and 1,
        bundles around the re-estimated reference, the default ``refine_fraction``): mean
        aRMSE 0.0622 with the linear stream against 0.0719 with h, lower on 8 of 10 scenes,
        worse than the matched baseline (SNNLS on N-FINDR) on 1 of 10 against 2. Around
        N-FINDR's spectra as extracted (``refine_fraction=None``) h helped instead (0.0784
        against 0.1036). With the decoders pinned to the reference (the default
        ``endmember_decoders``; ``benchmarks/idnet_decoders.py``) 0.0482 against 0.0758, lower
        on 8 of 10 scenes. The benchmark's ``idnet_posterior`` entry is the posterior's output.
    return_pixel_endmembers : bool, default=True
        Return the (N, P, L) per-pixel endmembers (turn off for very large scenes). Without
        them, the maps at the reference (the default ``abundance_output``) and no draws of
        the codes, the codes are not inferred at all: about three times the apply rate
        (``benchmarks/idnet_apply_profile.py``: 29 % of FCLS's against 9.5 %).
    seed : int, default=0
        Seeds the bundles, the networks' initialisation, the batches, the triplets and the
        uncertainty draws.
    device : str, torch.device or None, default="auto"
        ``"auto"``: CUDA when a CUDA device is present, else the CPU; None or ``"cpu"``:
        the CPU; ``"cuda"`` or another torch device.
    precision : {"float32", "mixed"}, default="float32"
        ``"mixed"``: the forward passes at inference run under float16 autocast on a CUDA
        device (faster; maps within about 1e-3 of float32's); a no-op on the CPU. The
        training is float32 either way.
    max_seconds : float or None, default=None
        Time budget of the training, checked after every step: once it is spent, training
        stops (in the middle of an epoch if need be, so a run overruns it by one step at
        most) with a ConvergenceWarning and the model is used as it is. None: no budget.
    early_stopping : bool, default=True
        Stop training once the loss has plateaued: when the mean loss of the last
        ``patience`` epochs is less than ``min_delta`` (relative) below the mean of the
        ``patience`` epochs before them, never before ``2 * patience`` epochs
        (:func:`~hyperunmix.deep.estimator.plateau_reached`). ``n_epochs_`` and
        ``stop_reason_`` say when and why training ended. False: ``epochs`` epochs.
    patience : int, default=2
        See ``early_stopping``. With ``min_delta``, chosen on the tuning scenes
        (``benchmarks/early_stopping.py``, method seed 0): 9 to 11 of 30 epochs, mean aRMSE
        0.005 below the full run's, 0.015 above it at worst. At the current defaults
        (pinned decoders, ``decoder_penalty`` 1) over method seeds 0 to 4 (same script, 4
        scenes): 53 % of the epochs, mean aRMSE 0.0010 ± 0.0015 above the full run's,
        0.0098 above it at worst (patience 5 would run 96 % of them for -0.0001: the
        default trades 0.001 for half the time); the paper stops at the
        first epoch whose loss changes by less than 1 % (which ended a Samson run at epoch 3
        on a one-epoch plateau, aRMSE 0.31).
    min_delta : float, default=0.01
        See ``early_stopping``.

    Attributes
    ----------
    convention : {"shares", "absolute"}
        What the abundances are fractions of (:mod:`hyperunmix.conventions`): ``"shares"``
        of unit-peak spectra for ``endmember_scale="peak"``, else ``"absolute"``.
    n_bands_ : int
    n_endmembers_ : int
    endmembers_ : (P, L) float64
        f_k(0): the endmembers at the prior mean of the codes, in the scene's units (the
        bundles' reference, clipped into the sigmoid's range, with
        ``endmember_decoders="pinned"``).
    names_ : list of str or None
        Material names from the library.
    weights_ : dict
        The loss weights used (preset and overrides resolved).
    input_scale_ : float
        Factor applied to the scene's values before the networks.
    history_ : list of dict
        One record per epoch: ``epoch``, mean ``loss``, ``elbo``, ``selfsup`` (the
        self-supervised term), ``regulariser``, ``seconds``.
    n_epochs_ : int
    network_ : IDNetModel

    Outputs (``unmix(scene)``: ``abundances`` and ``extras``)
    ---------------------------------------------------------
    abundances : (N, P)
        Mean of the Dirichlet of the linear stream at M = f(0) (``abundance_output=
        "reference"``) or at M = f(E[Z | y]) (``"linear"``), or of the posterior
        q(a | M, y) at M = f(E[Z | y]) (``"posterior"``): deterministic.
    pixel_endmembers : (N, P, L)
        f_k(E[z_k | y]), in the scene's units (``endmembers_`` everywhere with
        ``variability=False``).
    nonlinearity : (N,)
        Posterior mean of the pixel's bilinear share, in [0, 1]: the energy of the
        interactions gamma sum_{i<j} a_i a_j m_i * m_j over that of the fitted pixel, under
        the generalised bilinear model of the pixel's endmembers (as the linear stream
        mixes them) and abundances with a free brightness and gamma ~ U[0, 1] a priori
        (:func:`~hyperunmix.deep.idnet_bilinear.bilinear_share`); 0 everywhere with
        ``nonlinear=False``. Where the interactions are below the noise it returns the
        prior's expectation, so it is an estimate of the share, not a test for it.
    uncertainty : (N, P)
        Posterior standard deviation of each abundance: the Dirichlet's at the M of the
        abundances, or with ``n_uncertainty_samples`` draws of Z from q(Z | y),
        sqrt(E[Var(a | M)] + Var(E[a | M])) over M = f(Z), with the same draws for every
        pixel (deterministic, independent of chunking); with ``variability=False`` the
        Dirichlet's standard deviation at M = f(0).

    Examples
    --------
    One epoch, for a demonstration (the default is at most 30):

    >>> import numpy as np
    >>> from hyperunmix.deep.idnet import IDNet
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = IDNet(n_endmembers=3, epochs=1, batch_size=64)
    >>> result = model.fit(scene).unmix(scene)
    >>> result.abundances.shape, result.endmembers.shape, result.convention
    ((16, 16, 3), (3, 200), 'shares')
    >>> bool(np.allclose(result.abundances.sum(axis=-1), 1, atol=1e-5))
    True
    >>> {name: extra.shape for name, extra in sorted(result.extras.items())}
    {'nonlinearity': (16, 16), 'pixel_endmembers': (16, 16, 3, 200), 'uncertainty': (16, 16, 3)}
    """

    name = "idnet"
    _parameter_rules: ClassVar = {
        "n_endmembers": N_ENDMEMBERS_RULES,
        "library": [NoneValue(), Options("samson", "jasper_ridge"), LIBRARY],
        "endmembers": ENDMEMBERS_RULES,
        "min_purity": [Real(0, 1, closed="right")],
        "refine_fraction": [Real(0, 1, closed="right"), NoneValue()],
        "preset": [Options(*PRESETS), NoneValue()],
        "selfsup_weight": [Real(0), NoneValue()],
        "sparsity_weight": [Real(0), NoneValue()],
        "encoder_penalty": [Real(0), NoneValue()],
        "decoder_penalty": [Real(0), NoneValue()],
        "beta": [Real(0)],
        "constraint": [Options(*CONSTRAINTS)],
        "endmember_scale": [Options(*ENDMEMBER_SCALES)],
        "nonlinear": [Boolean()],
        "variability": [Boolean()],
        "endmember_decoders": [Options(*ENDMEMBER_DECODER_STARTS)],
        "triplet_density": [Options(*TRIPLET_DENSITIES)],
        "latent_dim": [Integer(1)],
        "n_ista": [Integer(1)],
        "n_importance": [Integer(1)],
        "snr_db": [Real()],
        "epochs": [Integer(1)],
        "batch_size": [Integer(1)],
        "learning_rate": [Real(0, closed="neither"), NoneValue()],
        "lr_decay": [Real(0, 1, closed="right")],
        "decay_epochs": [Integer(0)],
        "n_uncertainty_samples": [Integer(0)],
        "abundance_output": [Options(*ABUNDANCE_OUTPUTS)],
        "return_pixel_endmembers": [Boolean()],
        "seed": SEED_RULES,
        "device": DEVICE_RULES,
        "precision": PRECISION_RULES,
        "max_seconds": MAX_SECONDS_RULES,
        "early_stopping": EARLY_STOPPING_RULES,
        "patience": PATIENCE_RULES,
        "min_delta": MIN_DELTA_RULES,
    }
    _checkpoint_arrays: ClassVar = ("endmembers_",)
    _checkpoint_values: ClassVar = ("n_endmembers_", "weights_", "names_")
    _renamed_params: ClassVar = {
        "max_epochs": "epochs",
        "reference": "endmembers",
        "tol": "min_delta",
    }
    _renamed_attributes: ClassVar = {"model_": "network_", "data_scale_": "input_scale_"}
    _added_params: ClassVar = {"endmember_decoders": "free"}
    network_: IDNetModel

    def __init__(
        self,
        n_endmembers: int | None = None,
        *,
        library: Any = None,
        endmembers: Any = "nfindr",
        min_purity: float = 0.95,
        refine_fraction: float | None = 0.04,
        preset: Preset | None = None,
        selfsup_weight: float | None = None,
        sparsity_weight: float | None = None,
        encoder_penalty: float | None = None,
        decoder_penalty: float | None = None,
        beta: float = 10.0,
        constraint: Constraint = "orthant",
        endmember_scale: EndmemberScale = "peak",
        nonlinear: bool = True,
        variability: bool = True,
        endmember_decoders: EndmemberDecoderStart = "pinned",
        triplet_density: TripletDensity = "label",
        latent_dim: int = 2,
        n_ista: int = 10,
        n_importance: int = 5,
        snr_db: float = 40.0,
        epochs: int = 30,
        batch_size: int = 128,
        learning_rate: float | None = None,
        lr_decay: float = 0.9,
        decay_epochs: int = 10,
        n_uncertainty_samples: int = 0,
        abundance_output: AbundanceOutput = "reference",
        return_pixel_endmembers: bool = True,
        seed: int = 0,
        device: str | torch.device | None = "auto",
        precision: Precision = "float32",
        max_seconds: float | None = None,
        early_stopping: bool = True,
        patience: int = 2,
        min_delta: float = 0.01,
        **renamed: Any,
    ):
        self.n_endmembers = n_endmembers
        self.library = library
        self.endmembers = endmembers
        self.min_purity = min_purity
        self.refine_fraction = refine_fraction
        self.preset = preset
        self.selfsup_weight = selfsup_weight
        self.sparsity_weight = sparsity_weight
        self.encoder_penalty = encoder_penalty
        self.decoder_penalty = decoder_penalty
        self.beta = beta
        self.constraint = constraint
        self.endmember_scale = endmember_scale
        self.nonlinear = nonlinear
        self.variability = variability
        self.endmember_decoders = endmember_decoders
        self.triplet_density = triplet_density
        self.latent_dim = latent_dim
        self.n_ista = n_ista
        self.n_importance = n_importance
        self.snr_db = snr_db
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.decay_epochs = decay_epochs
        self.n_uncertainty_samples = n_uncertainty_samples
        self.abundance_output = abundance_output
        self.return_pixel_endmembers = return_pixel_endmembers
        self.seed = seed
        self.device = device
        self.precision = precision
        self.max_seconds = max_seconds
        self.early_stopping = early_stopping
        self.patience = patience
        self.min_delta = min_delta
        self._take_renamed(renamed)

    @property
    def convention(self) -> str:
        """``"shares"`` when the linear stream solves with peak-normalised endmembers
        (``endmember_scale="peak"``), else ``"absolute"``."""
        return "shares" if self.endmember_scale == "peak" else "absolute"

    # -- configuration -------------------------------------------------------------------
    def _loss_weights(self) -> dict[str, float]:
        weights = dict(DEFAULT_WEIGHTS if self.preset is None else PRESETS[self.preset])
        for key in weights:
            value = getattr(self, key)
            if value is not None:
                weights[key] = float(value)
        return weights

    def _bundles(self, scene: Scene) -> Bundles:
        library = self.library
        if library is None:
            bundles = extract_bundles(
                scene,
                self.n_endmembers,
                reference=self.endmembers,
                min_purity=self.min_purity,
                refine_fraction=self.refine_fraction if is_extractor(self.endmembers) else None,
                seed=self.seed,
            )
            check_n_endmembers(bundles.n_materials, scene.n_bands, scene.n_pixels)
            return bundles
        if isinstance(library, str):
            from .. import datasets  # the dataset readers are needed only for this option

            library = datasets.load_library(library)
        bundles = bundles_from_library(library, scene.n_bands)
        if self.n_endmembers is not None and self.n_endmembers != bundles.n_materials:
            raise InputError(
                f"n_endmembers = {self.n_endmembers} but the library has "
                f"{bundles.n_materials} materials"
            )
        check_n_endmembers(bundles.n_materials, scene.n_bands, scene.n_pixels)
        return bundles

    def _network(self) -> IDNetModel:
        """The untrained networks for the fitted P and L, as the parameters ask."""
        return IDNetModel(
            self.n_endmembers_,
            self.n_bands_,
            self.latent_dim,
            self.n_ista,
            self.constraint,
            self.endmember_scale,
            self.nonlinear,
            self.variability,
            decoders_around_reference=self.endmember_decoders,
        )

    # -- training ------------------------------------------------------------------------
    def _input_scale(self, pixels: np.ndarray) -> float:
        top = float(np.percentile(pixels, DATA_PERCENTILE))
        if not top > 0:
            raise InputError(
                "the scene's pixel values are not positive: IDNet needs reflectance-like data"
            )
        return DATA_TOP / top

    def _build(self, scene: Scene, pixels: np.ndarray, generator: torch.Generator) -> Bundles:
        """The loss weights and the endmember bundles of the triplets (returned)."""
        self.weights_ = self._loss_weights()
        bundles = self._bundles(scene)
        self.names_ = bundles.names
        self.n_endmembers_ = bundles.n_materials
        return bundles

    def _train(
        self, scene: Scene, pixels: np.ndarray, generator: torch.Generator, built: Bundles
    ) -> None:
        """Train on the image ``pixels`` (ELBO) and triplets drawn from the bundles
        ``built``."""
        model = self.network_
        device = next(model.parameters()).device
        scaled = dataclasses.replace(built, spectra=built.spectra * self.input_scale_)
        if self.endmember_decoders != "free":
            model.endmember_decoders.set_reference(
                torch.as_tensor(built.centres() * self.input_scale_, dtype=torch.float32)
            )
        sampler = TripletSampler(scaled, self.snr_db, generator, device)
        y_all = torch.as_tensor(pixels * self.input_scale_, dtype=torch.float32, device=device)
        weights = self.weights_
        config = LossConfig(
            selfsup=weights["selfsup_weight"],
            beta=float(self.beta),
            sparsity=weights["sparsity_weight"],
            encoder_penalty=weights["encoder_penalty"],
            decoder_penalty=weights["decoder_penalty"],
            n_importance=self.n_importance,
            density_at_sample=self.triplet_density == "posterior_sample",
        )
        n_pixels = y_all.shape[0]
        batch_size = effective_batch_size(self.batch_size, n_pixels)
        lr = (
            self.learning_rate
            if self.learning_rate is not None
            else 1e-3 * math.sqrt(batch_size / REFERENCE_BATCH)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)
        for epoch in range(1, self.epochs + 1):
            start = time.perf_counter()
            totals = np.zeros(4)
            seen = 0
            order = torch.randperm(n_pixels, generator=generator).to(y_all.device)
            for batch in order.split(batch_size):
                terms = training_loss(model, y_all[batch], sampler.sample(batch.numel()), config)
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                optimizer.step()
                totals += batch.numel() * np.array(
                    [terms.loss.item(), terms.elbo, terms.selfsup, terms.regulariser]
                )
                seen += batch.numel()
                # The budget is checked at every step: one epoch of a large sample can
                # outlast it (394 s for 20,000 pixels on a busy machine).
                if seen < n_pixels and self._time_spent():
                    break
            loss, elbo, selfsup, regulariser = totals / seen
            go_on = self._record_epoch(
                epoch,
                self.epochs,
                loss,
                complete=seen == n_pixels,
                elbo=elbo,
                selfsup=selfsup,
                regulariser=regulariser,
                seconds=time.perf_counter() - start,
            )
            if not go_on:
                break
            if epoch <= self.decay_epochs:
                scheduler.step()

    def _finish(self, scene: Scene, pixels: np.ndarray) -> None:
        self.endmembers_ = self._reference_endmembers()

    # -- inference -----------------------------------------------------------------------
    def _reference_endmembers(self) -> np.ndarray:
        with torch.no_grad():
            reference = self.network_.reference_endmembers()
        return reference.cpu().double().numpy() / self.input_scale_

    def _uncertainty_draws(self, device: torch.device) -> torch.Tensor | None:
        """Standard normal draws (S, P, H) of the codes, shared by all pixels; None when the
        uncertainty is the Dirichlet's at the posterior mean (no draws or no variability)."""
        if self.n_uncertainty_samples == 0 or not self.variability:
            return None
        generator = torch.Generator().manual_seed(self.seed)
        shape = (self.n_uncertainty_samples, self.n_endmembers_, self.latent_dim)
        return torch.randn(shape, generator=generator).to(device)

    def _transform_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Unmix (N, L) pixels; see the class docstring for the outputs."""
        device = next(self.network_.parameters()).device
        z_noise = self._uncertainty_draws(device)
        chunk = max(INFERENCE_PIXEL_DRAWS // (1 + self.n_uncertainty_samples), 1)
        outputs: dict[str, np.ndarray] = {}
        self.network_.eval()
        with torch.inference_mode():
            for start in range(0, max(len(pixels), 1), chunk):  # once when empty
                rows = slice(start, start + chunk)
                # Scaled and cast a chunk at a time: a whole-block copy in float64 and one
                # in float32 would add 1.5 times the block to the peak memory.
                y = torch.as_tensor(pixels[rows] * self.input_scale_, dtype=torch.float32)
                summary = posterior_summary(
                    self.network_,
                    y.to(device),
                    z_noise,
                    self.input_scale_,
                    with_nonlinear=self.abundance_output == "posterior",
                    at_reference=self.abundance_output == "reference",
                    with_pixel_endmembers=self.return_pixel_endmembers,
                )
                for key, value in summary.items():
                    if key not in outputs:
                        outputs[key] = np.empty((len(pixels),) + value.shape[1:], np.float32)
                    if key == "pixel_endmembers":  # to the scene's units on the way out
                        np.divide(value.cpu().numpy(), self.input_scale_, out=outputs[key][rows])
                    else:
                        outputs[key][rows] = value.cpu().numpy()
        return outputs
