"""EGU-Net: the endmember-guided two-stream unmixing network (Hong et al., IEEE TNNLS 2022).

Self-supervised. A pseudo-pure training set is built from the image itself
(:mod:`hyperunmix.deep.pure_pixels`); a *pure* stream learns to classify it against soft
labels while a *mixed* stream autoencodes the image through a softmax bottleneck; the
streams share weights, so the physically meaningful endmember information corrects the
unmixing. Two variants (:mod:`hyperunmix.deep.egunet_nets`): ``"pw"`` (pixel-wise, fully
shared encoder) and ``"ss"`` (spatial-spectral: the pixel-wise network plus a spatial stream
that predicts each pixel from its neighbours, blended into the output maps).

Beyond the paper, so that the network learns more than its labels (issue 14; measured in
``benchmarks/egunet_beyond_labels.py``): the reference endmembers are re-estimated from the
pixels the label rule calls purest before anything is labelled
(:func:`~hyperunmix.deep.egunet_reference.confident_means`, ``refine_fraction``), so the
labels no longer inherit the noise of the one pixel per material an extractor picks, and
the endmembers are EGU-Net's own; the pure stream also learns the label rule on every image
pixel (``image_labels``); in ``"ss"`` the spatial stream reaches the maps; and the output is
the network's maps blended with the label rule's by the weight the image's noise gives
(:mod:`hyperunmix.deep.egunet_blend`, ``network_weight``): the network's where the rule is
noisy, the rule's where the network's own bias is the larger error.

Loss = soft-label cross entropy (pure stream) + ``reconstruction_weight`` x mean squared
reconstruction error (mixed stream) + ``weight_decay`` x (sum of squared weights) / 2, plus
in ``"ss"`` the mean squared error of the spatial stream's prediction of each pixel.
Adam, learning rate ``learning_rate`` x ``lr_decay`` ** epoch, Xavier-uniform init.

``abundance_output="labels"`` is the ablation without the network: the label rule of the
pseudo-pure set applied to every pixel, what the network would output if it learned nothing
beyond its labels.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch

from ..base import check_n_endmembers
from ..linear import nnls
from ..linear.estimators import ENDMEMBERS_RULES, N_ENDMEMBERS_RULES, SEED_RULES, is_extractor
from ..params import LIBRARY, Boolean, Integer, NoneValue, Options, Real
from ..scene import Scene
from ._common import resolve_device
from .egunet_batches import MixedBatches, PatchBatches, PixelBatches, soft_cross_entropy
from .egunet_blend import band_noise, label_noise, network_weight
from .egunet_nets import (
    BN_MOMENTUM,
    BlindSpotPredictor,
    PixelwiseEGU,
    SpatialSpectralEGU,
    TwoStreamEGU,
    weight_penalty,
)
from .egunet_reference import refined_reference
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
from .pure_pixels import (
    LABEL_SCALES,
    LabelScale,
    PurePixelSet,
    ReferenceSource,
    build_pure_set,
    label_reference,
    resolve_reference,
    soft_labels,
)

Variant = Literal["pw", "ss"]
BNStats = Literal["image", "running"]
EndmemberOutput = Literal["reference", "ls"]
AbundanceOutput = Literal["network", "labels"]
#: The values of ``variant``, ``bn_stats``, ``endmember_output`` and ``abundance_output``
#: (their rules' options).
VARIANTS: tuple[Variant, ...] = get_args(Variant)
BN_STATS: tuple[BNStats, ...] = get_args(BNStats)
ENDMEMBER_OUTPUTS: tuple[EndmemberOutput, ...] = get_args(EndmemberOutput)
ABUNDANCE_OUTPUTS: tuple[AbundanceOutput, ...] = get_args(AbundanceOutput)
#: Pixels of the batch-norm recalibration.
CHUNK = 65536
#: Pixels per forward pass at inference: the activations of a batch (4096 x 256 float32,
#: 4 MiB a layer) stay in cache, where 65536 rows ran the memory-bound layers (batch norm,
#: tanh, copies: half the time) from RAM; 1.2-1.6x the throughput, maps bit for bit the same
#: (each row's products do not depend on the batch).
INFERENCE_BATCH = 4096


class EGUNet(DeepUnmixer):
    """Endmember-guided unmixing network, pixel-wise (``"pw"``) or spatial-spectral (``"ss"``).

    Parameters
    ----------
    n_endmembers : int or None, default=None
        P. None: the number of given ``endmembers``, else HySime's estimate.
    variant : {"ss", "pw"}, default="ss"
        ``"pw"``: fully connected, pixel-wise. ``"ss"``: the pixel-wise network plus a
        spatial stream, a learned 5x5 average of the neighbours' abundances that never
        sees the pixel itself, trained to predict it (Noise2Self) and blended into the
        maps with weight ``spatial_weight``
        (:class:`~hyperunmix.deep.egunet_nets.SpatialSpectralEGU`, whose docstring says
        why not the paper's pooled CNN, whose maps were 1/8 of the resolution and never
        reached the output). An output pixel depends on the pixels up to
        ``spatial_context`` (2) rows and columns away. ``"ss"`` by default: on the tuning
        scenes of ``benchmarks/egunet_beyond_labels.py`` its output was closer to the
        truth than ``"pw"``'s on every scene (mean aRMSE 0.0351 against 0.0381, 3 seeds,
        150 epochs at most), for about 4x the training time there (32 x 32 px) and no more
        than ``"pw"``'s on Samson and Jasper Ridge.
    endmembers : array, path, library, None or {"nfindr", "vca", "atgp"}, default="nfindr"
        Reference endmembers that label the pseudo-pure set (and fix the order of the
        output abundances): an extractor run on the whole image (``"nfindr"``, the
        default; ``"vca"``, the paper's, which None also means; ``"atgp"``), an array, an
        endmember file (CSV, .npy, .mat), or a bundle library
        (:func:`hyperunmix.datasets.load_library`), whose material means are used.
        N-FINDR rather than VCA by default: the labels can be no better than the
        reference, and VCA's random directions can miss a dark or rare material. The start
        and ``label_scale`` were chosen on the tuning scenes of
        ``benchmarks/tune_defaults.py`` (seeds 0 and 1: mean aRMSE 0.0377 with N-FINDR and
        ``"peak"``, 0.0376 with VCA, a tie, 0.041 to 0.043 with ``"reference"``).
    block_size : int, default=5
        Side of the blocks of the pseudo-pure set (5 in the paper).
    label_scale : {"peak", "reference"}, default="peak"
        Scale of the reference spectra the pseudo-pure labels are computed against:
        ``"peak"`` unit peak, so abundances are fractions of peak-normalised
        spectra whatever a pixel's brightness; ``"reference"`` the spectra as given, as in
        the released code, where the labels depend on the brightness of the image pixels
        the extractor happened to pick. See
        :func:`~hyperunmix.deep.pure_pixels.build_pure_set` and the README's "Abundance
        conventions".
    epochs : int, default=200
        Passes over the image (200 in the paper).
    learning_rate : float, default=0.01
        Adam step size at the first epoch (0.1 in the paper, where one epoch was one step;
        on the tuning scenes, ``"pw"`` 150 epochs: mean aRMSE 0.047 at 0.1, 0.043 at 0.01,
        0.048 at 0.003).
    lr_decay : float, default=0.99
        Decay factor of the step size per epoch (0.99 in the paper).
    batch_size : int, default=8000
        Mixed pixels per step (8000 in the paper). An epoch is ``ceil(N / batch_size)``
        steps: in ``"pw"`` the image split into that many near-equal batches, in ``"ss"``
        one random ``patch_size`` crop per step. Each step also sees at most ``batch_size``
        pure spectra.
    patch_size : int or None, default=32
        ``"ss"`` only: side of the square crop the convolutional stream sees per step.
        None: the whole image at every step, as in the paper (about 9x the cost of a 32 x 32
        crop on Samson, for the same accuracy, in the runs of the exploration script
        ``benchmarks/egunet_tuning.py`` of commit 877d72b).
    weight_decay : float, default=5e-4
        Coefficient of (sum of squared weights) / 2, biases and batch-norm parameters
        excluded (0.005 in the paper, which left the network short of its labels on the
        tuning scenes: mean aRMSE 0.067 against 0.047 at 5e-4, ``"pw"`` with
        ``image_labels``, step size 0.1).
    reconstruction_weight : float, default=1.0
        Weight of the mean squared reconstruction error (1.0 in the paper).
    dropout : float, default=0.1
        Drop probability after the first layer (0.1: keep 0.9 in the paper).
    abundance_output : {"network", "labels"}, default="network"
        ``"network"``: the trained network's output. ``"labels"``: the ablation
        without a network, EGU-Net's label rule applied to every pixel: NNLS abundances on
        the reference at ``label_scale`` (unit-peak spectra for ``"peak"``) normalised to
        sum to one (:func:`~hyperunmix.deep.pure_pixels.soft_labels`), i.e.
        :func:`hyperunmix.linear.snnls` with the reference for ``label_scale="peak"``. The
        reference is resolved as for the network (same source, P and seed); no pseudo-pure
        set or network is built, so the training parameters are unused.
    bn_stats : {"image", "running"}, default="image"
        Batch-norm statistics used at inference. ``"image"`` recomputes them on
        the image after training, so the mixed pixels are normalised as the mixed stream was
        during training; ``"running"`` keeps the running averages, which mix the statistics
        of the pure and the mixed batches. (The released code ran batch norm in training
        mode at inference, i.e. with the statistics of the batch being unmixed, so its maps
        depended on the batch.)
    refine_fraction : float or None, default=0.04
        A reference found by an extractor (``endmembers`` a name or None) is
        re-estimated before labelling: for each material, the mean of this fraction of
        the image's pixels with the largest label-rule abundance of it against the
        extractor's reference (:func:`~hyperunmix.deep.egunet_reference.refined_reference`).
        None: the extractor's reference as is (the paper). Given endmembers (an array, a
        file, a library) are always used as given. Chosen on the tuning scenes, where it
        took the label rule's mean aRMSE from 0.105 to 0.046 and mSAD from 0.140 to 0.025 rad (0.02:
        0.051; 0.08: 0.044 but mSAD 0.031; 0.16: 0.069; a second or third round: no
        better). Applies to ``abundance_output="labels"`` too, so that the ablation
        still differs in the network only. Nor did a second round from the trained
        network's maps help (``benchmarks/egunet_second_round.py``, tuning scenes, seeds
        0-1): the reference re-estimated from the pixels its maps call purest, then its
        label rule blended with the maps as by ``network_weight``, mean aRMSE 0.0389, or
        the network retrained on that reference, 0.0391, against the default's 0.0377
        (worse on the illumination scenes, on a par elsewhere).
    image_labels : bool, default=True
        The pure stream also learns the label rule on every image pixel, besides the
        block extremes of the pseudo-pure set (on a 32 x 32 tuning scene these are 164
        spectra, too few for the network to learn the rule between them: mean aRMSE
        0.057 without, 0.047 with, at ``weight_decay=5e-4`` and step size 0.1).
    spatial_weight : float, default=0.35
        ``"ss"`` only: the weight of the spatial stream's prediction in the maps,
        ``(1 - w) a + w s`` (``a`` the pixel's own abundances, ``s`` the prediction from
        its neighbours). 0: the pixel-wise maps. Chosen on the tuning scenes (mean aRMSE
        0.048, 0.045, 0.043, 0.043, 0.044 for 0, 0.2, 0.35, 0.5, 0.65, 150 epochs at step
        size 0.1; of the tie, the weight that blurs less). The weight that minimises the
        error, noise variance / (noise variance + prediction error), could not be measured
        reliably on the image: the noise of ``a`` estimated by propagating HySime's noise
        estimate through the network was 5 to 50x too small.
    network_weight : float or None, default=None
        Weight ``w`` of the network's maps in the output, ``(1 - w) labels + w network``
        (``labels`` the label rule of ``abundance_output="labels"`` on the same pixel). 1:
        the network's maps alone (the paper). None: from the training image,
        ``min(1, 0.5 x v / D)``, ``v`` the label rule's noise variance propagated from the
        image's noise per band (HySime's estimate; each pixel's NNLS residual when the image
        has no more pixels than bands) and ``D`` the mean squared disagreement of the two
        maps (:mod:`~hyperunmix.deep.egunet_blend`, which says why 0.5 and why the band
        noise). On the tuning scenes (3 seeds) it took ``"ss"`` from a mean aRMSE of 0.0393
        (the network alone) to 0.0351 (the rule: 0.0462): w = 1.00 at 20 dB, 0.23 at 30
        dB, where the network's maps alone were 21 % further from the truth than the
        rule's; on Samson and Jasper Ridge, where they were 44 % and 25 % further, 0.003
        and 0.06.
    endmember_output : {"reference", "ls"}, default="reference"
        What ``endmembers_`` holds: ``"reference"`` the reference endmembers the
        abundances are labelled against (re-estimated, see ``refine_fraction``); ``"ls"``
        the non-negative least-squares fit of the image on the estimated abundances,
        ``min ||Y - A E||`` with ``E >= 0``. The
        decoder is nonlinear, so the linear fit absorbs its residual and any abundance bias
        into the spectra: it was further from the true spectra than the reference on
        Samson, the synthetic scene and with a bundle-library reference, closer only on
        Jasper Ridge with a VCA reference (runs of ``benchmarks/egunet_tuning.py``, commit
        877d72b).
    seed : int, default=0
        Seeds the reference extractor, the pseudo-pure set, the network's initialisation
        and the batches.
    device : str, torch.device or None, default="auto"
        ``"auto"``: CUDA when a CUDA device is present, else the CPU; None or ``"cpu"``:
        the CPU; ``"cuda"`` or another torch device.
    precision : {"float32", "mixed"}, default="float32"
        ``"mixed"``: the forward passes at inference run under float16 autocast on a CUDA
        device (faster; maps within about 1e-3 of float32's); a no-op on the CPU. The
        training is float32 either way.
    max_seconds : float or None, default=None
        Time budget of the training: after the epoch that spends it, training stops with
        a ConvergenceWarning and the model is used as it is. None: no budget.
    early_stopping : bool, default=True
        Stop training once the loss has plateaued: when the mean loss of the last
        ``patience`` epochs is less than ``min_delta`` (relative) below the mean of the
        ``patience`` epochs before them, never before ``2 * patience`` epochs
        (:func:`~hyperunmix.deep.estimator.plateau_reached`). ``n_epochs_`` and
        ``stop_reason_`` say when and why training ended. False: ``epochs`` epochs.
    patience : int, default=10
        See ``early_stopping``. With ``min_delta``, chosen on the tuning scenes
        (``benchmarks/early_stopping.py``, 4 scenes, method seeds 0 to 4, 200 epochs in
        full, mean aRMSE 0.0367): 10 / 0.01 runs 55 % of the epochs, mean aRMSE 0.0012
        below the full run's and 0.0018 above at worst; 10 / 0.03 (the default before) ran
        29 %, 0.0015 above it and 0.0097 at worst, higher than 10 / 0.01 in 20 of 20 runs
        (paired -0.0027 +- 0.0006) for half the training time.
    min_delta : float, default=0.01
        See ``early_stopping``.

    Attributes
    ----------
    convention : {"shares", "absolute"}
        What the abundances are fractions of (:mod:`hyperunmix.conventions`): ``"shares"``
        of unit-peak spectra for ``label_scale="peak"``, else ``"absolute"``.
    n_bands_ : int
    endmembers_ : (P, L) float64
    reference_ : (P, L) float64
        The reference endmembers of the labels.
    initial_reference_ : (P, L) float64
        The extractor's (or given) reference, before ``refine_fraction``.
    fill_spectrum_ : (L,) float64
        ``"ss"``: the mean training spectrum, which stands in for invalid pixels in their
        neighbours' context.
    pure_set_size_ : int
        Number of pseudo-pure spectra trained on (0 for ``abundance_output="labels"``).
    network_weight_ : float
        The weight of the network's maps in the output (see ``network_weight``; 0 for
        ``abundance_output="labels"``).
    history_ : list of dict
        One record per epoch: ``epoch``, ``loss``, ``cross_entropy``, ``reconstruction``
        and for ``"ss"`` ``spatial`` (means over the epoch's steps; no record for
        ``"labels"``).
    network_ : torch.nn.Module or None
        None for ``abundance_output="labels"``.
    input_scale_ : float
        The inputs are multiplied by it (1 / max of the training image) so that the sigmoid
        decoder can reach them.

    Examples
    --------
    Two epochs, for a demonstration (the default is 200):

    >>> import numpy as np
    >>> from hyperunmix.deep.egunet import EGUNet
    >>> from hyperunmix.synthetic import make_scene
    >>> scene = make_scene(16, 16, 3, seed=0)
    >>> model = EGUNet(n_endmembers=3, epochs=2, batch_size=64).fit(scene)
    >>> result = model.unmix(scene)
    >>> result.abundances.shape, result.endmembers.shape, result.convention
    ((16, 16, 3), (3, 200), 'shares')
    >>> bool(np.allclose(result.abundances.sum(axis=-1), 1, atol=1e-5))
    True

    The ablation without a network, EGU-Net's pseudo-pure labels for every pixel:

    >>> labels = EGUNet(n_endmembers=3, abundance_output="labels").fit(scene)
    >>> labels.network_ is None, labels.unmix(scene).abundances.shape
    (True, (16, 16, 3))
    """

    name = "egunet"
    _parameter_rules: ClassVar = {
        "n_endmembers": N_ENDMEMBERS_RULES,
        "variant": [Options(*VARIANTS)],
        "endmembers": [*ENDMEMBERS_RULES, LIBRARY, NoneValue()],
        "block_size": [Integer(1)],
        "label_scale": [Options(*LABEL_SCALES)],
        "epochs": [Integer(1)],
        "learning_rate": [Real(0, closed="neither")],
        "lr_decay": [Real(0, 1, closed="right")],
        "batch_size": [Integer(1)],
        "patch_size": [Integer(1), NoneValue()],
        "weight_decay": [Real(0)],
        "reconstruction_weight": [Real(0)],
        "dropout": [Real(0, 1, closed="left")],
        "abundance_output": [Options(*ABUNDANCE_OUTPUTS)],
        "bn_stats": [Options(*BN_STATS)],
        "refine_fraction": [Real(0, 1, closed="right"), NoneValue()],
        "image_labels": [Boolean()],
        "spatial_weight": [Real(0, 1)],
        "network_weight": [Real(0, 1), NoneValue()],
        "endmember_output": [Options(*ENDMEMBER_OUTPUTS)],
        "seed": SEED_RULES,
        "device": DEVICE_RULES,
        "precision": PRECISION_RULES,
        "max_seconds": MAX_SECONDS_RULES,
        "early_stopping": EARLY_STOPPING_RULES,
        "patience": PATIENCE_RULES,
        "min_delta": MIN_DELTA_RULES,
    }
    _checkpoint_arrays: ClassVar = (
        "endmembers_",
        "reference_",
        "initial_reference_",
        "fill_spectrum_",
    )
    _checkpoint_values: ClassVar = ("pure_set_size_", "network_weight_")
    network_: TwoStreamEGU | None
    #: What a checkpoint written before ``network_weight`` existed loads with: its model
    #: unmixes as it did then, with the network's maps alone.
    network_weight_: float = 1.0

    def __init__(
        self,
        n_endmembers: int | None = None,
        *,
        variant: Variant = "ss",
        endmembers: ReferenceSource = "nfindr",
        block_size: int = 5,
        label_scale: LabelScale = "peak",
        epochs: int = 200,
        learning_rate: float = 0.01,
        lr_decay: float = 0.99,
        batch_size: int = 8000,
        patch_size: int | None = 32,
        weight_decay: float = 5e-4,
        reconstruction_weight: float = 1.0,
        dropout: float = 0.1,
        abundance_output: AbundanceOutput = "network",
        bn_stats: BNStats = "image",
        refine_fraction: float | None = 0.04,
        image_labels: bool = True,
        spatial_weight: float = 0.35,
        network_weight: float | None = None,
        endmember_output: EndmemberOutput = "reference",
        seed: int = 0,
        device: str | torch.device | None = "auto",
        precision: Precision = "float32",
        max_seconds: float | None = None,
        early_stopping: bool = True,
        patience: int = 10,
        min_delta: float = 0.01,
    ):
        self.n_endmembers = n_endmembers
        self.variant = variant
        self.endmembers = endmembers
        self.block_size = block_size
        self.label_scale = label_scale
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.weight_decay = weight_decay
        self.reconstruction_weight = reconstruction_weight
        self.dropout = dropout
        self.abundance_output = abundance_output
        self.bn_stats = bn_stats
        self.refine_fraction = refine_fraction
        self.image_labels = image_labels
        self.spatial_weight = spatial_weight
        self.network_weight = network_weight
        self.endmember_output = endmember_output
        self.seed = seed
        self.device = device
        self.precision = precision
        self.max_seconds = max_seconds
        self.early_stopping = early_stopping
        self.patience = patience
        self.min_delta = min_delta

    @property
    def convention(self) -> str:
        """``"shares"`` for unit-peak labels (``label_scale="peak"``), else ``"absolute"``."""
        return "shares" if self.label_scale == "peak" else "absolute"

    @property
    def spatial_context(self) -> int:  # type: ignore[override]  # a class constant in Unmixer
        """Pixels of context each side an output pixel depends on: that of the spatial
        stream for the ``"ss"`` network, else 0 (pixel-wise)."""
        if self.variant == "ss" and self.abundance_output == "network":
            return BlindSpotPredictor.context
        return 0

    @property
    def fit_block(self) -> int:  # type: ignore[override]  # a class constant in Unmixer
        """The pseudo-pure set's blocks (``block_size``), each of which should hold
        neighbouring pixels, also in a chunked run's sample."""
        return int(self.block_size)

    # -- fit -------------------------------------------------------------------------------
    def _input_scale(self, pixels: np.ndarray) -> float:
        return 1.0 / float(np.max(np.abs(pixels)))

    def _build(self, scene: Scene, pixels: np.ndarray, generator: torch.Generator) -> Any:
        """The reference endmembers and, for the network, the pseudo-pure set of ``scene``
        labelled against them (returned for the training)."""
        self.initial_reference_ = resolve_reference(
            self.endmembers, scene, self.n_endmembers, seed=self.seed
        )
        check_n_endmembers(len(self.initial_reference_), scene.n_bands, scene.n_pixels)
        self.fill_spectrum_ = pixels.mean(axis=0)
        # The ablation is labelled against the same reference: it differs in the network only.
        self.reference_ = self._refined_reference(pixels, self.initial_reference_)

        if self.abundance_output == "labels":
            self.pure_set_size_ = 0
            return None
        pure = build_pure_set(
            scene,
            len(self.reference_),
            reference=self.reference_,
            block_size=self.block_size,
            label_scale=self.label_scale,
            seed=self.seed,
        )
        if self.image_labels:
            labels, keep = soft_labels(pixels, label_reference(self.reference_, self.label_scale))
            pure = PurePixelSet(
                spectra=np.concatenate([pure.spectra, pixels[keep]]),
                labels=np.concatenate([pure.labels, labels[keep]]),
                reference=pure.reference,
            )
        self.pure_set_size_ = len(pure)
        return pure

    def _refined_reference(self, pixels: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``reference`` re-estimated from the pixels the label rule calls purest (see
        ``refine_fraction``) when an extractor found it, else as is."""
        extracted = self.endmembers is None or is_extractor(self.endmembers)  # None: VCA
        if self.refine_fraction is None or not extracted:
            return reference.copy()
        return refined_reference(
            pixels, label_reference(reference, self.label_scale), self.refine_fraction
        )

    def _network(self) -> TwoStreamEGU | None:
        if self.abundance_output == "labels":
            return None
        network = PixelwiseEGU if self.variant == "pw" else SpatialSpectralEGU
        return network(self.n_bands_, len(self.reference_), dropout=self.dropout)

    def _train(
        self, scene: Scene, pixels: np.ndarray, generator: torch.Generator, built: Any
    ) -> None:
        """Train on the pseudo-pure set ``built`` (pure stream) and the image (mixed
        stream; in ``"ss"`` the spatial stream on the same crops)."""
        spectra = self._tensor(built.spectra * self.input_scale_)
        labels = self._tensor(built.labels)
        mixed = self._mixed_batches(scene, pixels)
        network = self.network_
        assert network is not None  # trained only when built
        optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)
        pure = PixelBatches(spectra, self.batch_size, labels)
        spatial = isinstance(network, SpatialSpectralEGU)
        for epoch in range(1, self.epochs + 1):
            totals = np.zeros(4)
            steps = mixed.epoch(generator)
            for batch, (pure_x, pure_y) in zip(steps, pure.cycle(generator)):
                cross_entropy = soft_cross_entropy(network.pure_logits(pure_x), pure_y)
                reconstruction = mixed.reconstruction_error(network, batch)
                # The spatial stream learns from the pure stream's maps held fixed, so its
                # term moves only its own kernel.
                spatial_error = (
                    network.spatial_error(*batch)
                    if isinstance(network, SpatialSpectralEGU)
                    else torch.zeros(())
                )
                loss = (
                    cross_entropy
                    + self.reconstruction_weight * reconstruction
                    + spatial_error
                    + self.weight_decay * weight_penalty(network)
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals += (
                    loss.item(),
                    cross_entropy.item(),
                    reconstruction.item(),
                    spatial_error.item(),
                )
            schedule.step()
            means = totals / mixed.steps_per_epoch
            terms = {"cross_entropy": means[1], "reconstruction": means[2]}
            if spatial:
                terms["spatial"] = means[3]
            if not self._record_epoch(epoch, self.epochs, means[0], **terms):
                break

    def _mixed_batches(self, scene: Scene, pixels: np.ndarray) -> MixedBatches[Any]:
        """The mixed stream's data: batches of ``pixels`` ("pw") or crops of the image."""
        if self.variant == "pw":
            return PixelBatches(self._tensor(pixels * self.input_scale_), self.batch_size)
        return PatchBatches(
            self._image_tensor(scene.cube, scene.mask),
            self.patch_size,
            steps_per_epoch=math.ceil(len(pixels) / self.batch_size),
        )

    def _finish(self, scene: Scene, pixels: np.ndarray) -> None:
        if self.network_ is not None and self.bn_stats == "image":
            self._calibrate_batch_norm(self.network_, pixels)
        if isinstance(self.network_, SpatialSpectralEGU):
            # 0 while training (the decoder learns from the pixels' own maps), then the blend.
            self.network_.spatial_weight.fill_(self.spatial_weight)
        self.network_weight_ = self._fitted_network_weight(scene, pixels)
        self.endmembers_ = self._estimate_endmembers(scene, pixels)

    def _fitted_network_weight(self, scene: Scene, pixels: np.ndarray) -> float:
        """``network_weight``, or when None its value measured on the training ``pixels``
        (N, L) of ``scene`` (0 without a network)."""
        if self.network_ is None:
            return 0.0
        if self.network_weight is not None:
            return float(self.network_weight)
        maps = self._network_maps(scene.cube, scene.mask)[scene.mask]
        reference = label_reference(self.reference_, self.label_scale)
        labels, variance = label_noise(pixels, reference, band_noise(pixels))
        return network_weight(labels, maps, variance)

    def _calibrate_batch_norm(self, network: TwoStreamEGU, pixels: np.ndarray) -> None:
        """Set the statistics of the batch-norm layers on the way to the abundances (the
        encoder applied pixel-wise) to those of the image ``pixels`` (N, L), or of a random
        sample of ``CHUNK`` of them: one forward pass, no gradient."""
        if len(pixels) > CHUNK:
            rng = np.random.default_rng(self.seed)
            pixels = pixels[np.sort(rng.choice(len(pixels), CHUNK, replace=False))]
        encoder = network.pure_stream
        norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm1d)]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # after a reset: the statistics of the one batch below
            norm.train()
        with torch.no_grad():
            encoder(self._tensor(pixels * self.input_scale_))
        for norm in norms:
            norm.momentum = BN_MOMENTUM
        network.eval()

    def _estimate_endmembers(self, scene: Scene, pixels: np.ndarray) -> np.ndarray:
        if self.endmember_output == "reference":
            return self.reference_.copy()
        abundances = self.transform(scene.cube, scene.mask)["abundances"][scene.mask]
        # min ||Y - A E|| s.t. E >= 0 is one NNLS per band: bands as "pixels", maps as "spectra".
        return np.asarray(nnls(pixels.T, abundances.T.astype(np.float64)), dtype=np.float64).T

    # -- inference -------------------------------------------------------------------------
    def transform(self, cube: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Unmix an (h, w, L) block: ``{"abundances": (h, w, P) float32}``, NaN where invalid.

        The network's maps (:meth:`_network_maps`) blended with the label rule's on each
        pixel by ``network_weight_``; for ``abundance_output="labels"`` the rule alone.
        """
        if self.abundance_output == "labels":
            return super().transform(cube, mask)
        cube, mask = self._checked_block(cube, mask)
        out = self._network_maps(cube, mask)
        weight = self.network_weight_
        if weight < 1:
            labels = self._transform_pixels(np.asarray(cube[mask], dtype=np.float64))
            out[mask] = labels + weight * (out[mask] - labels)
        return {"abundances": out}

    def _network_maps(self, cube: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The network's (h, w, P) float32 maps of a checked block ``cube`` (h, w, L), NaN
        where ``mask`` (h, w) is False.

        ``"ss"``: the block as an image, each pixel blended with the prediction from its
        neighbours (``spatial_context`` pixels each side, so a chunked run gives the block
        that halo); invalid pixels stand in as ``fill_spectrum_`` for their neighbours.
        ``"pw"``: pixel by pixel.
        """
        network = self.network_
        assert network is not None  # abundance_output="network"
        n_rows, n_cols, n_bands = cube.shape
        out = np.full((n_rows, n_cols, len(self.reference_)), np.nan, np.float32)
        if not mask.any():
            return out
        network.eval()
        if not isinstance(network, SpatialSpectralEGU):
            pixels = np.asarray(cube[mask], dtype=np.float64) * self.input_scale_
            with self._inference():
                chunks = [
                    network.abundances(self._tensor(pixels[start : start + INFERENCE_BATCH]))
                    for start in range(0, len(pixels), INFERENCE_BATCH)
                ]
            out[mask] = torch.cat(chunks).cpu().numpy()
            return out
        filled = np.array(cube, dtype=np.float64)
        filled[~mask] = self.fill_spectrum_
        flat = filled.reshape(-1, n_bands) * self.input_scale_
        with self._inference():
            # The pixel-wise part in chunks of pixels, the spatial part on the 32 features.
            features = [
                network.pure_stream.features(self._tensor(flat[start : start + INFERENCE_BATCH]))
                for start in range(0, len(flat), INFERENCE_BATCH)
            ]
            image = torch.cat(features).T.reshape(1, -1, n_rows, n_cols)
            abundances = network.image_abundances(image)[0]
        out[mask] = abundances.movedim(0, -1).cpu().numpy()[mask]
        return out

    def _transform_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The label rule on ``pixels`` (N, L): (N, P) shares summing to one."""
        return soft_labels(pixels, label_reference(self.reference_, self.label_scale))[0]

    # -- helpers ---------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(
            np.asarray(array, dtype=np.float32), device=resolve_device(self.device)
        )

    def _image_tensor(
        self, cube: np.ndarray, mask: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, H, W) scaled image with invalid pixels at the band means, and the (1, 1, H,
        W) float validity mask."""
        cube = np.array(cube, dtype=np.float32) * np.float32(self.input_scale_)
        cube[~mask] = cube[mask].mean(axis=0)
        image = self._tensor(np.moveaxis(cube, -1, 0)[None])
        return image, self._tensor(mask[None, None])
