"""The two-stream networks of EGU-Net (Hong et al., IEEE TNNLS 2022), in PyTorch.

Both variants have a *pure* stream, a pixel-wise classifier trained on pseudo-pure spectra
with soft labels, and a *mixed* stream, an autoencoder of the image whose bottleneck is a
softmax (the abundances) and whose decoder is a nonlinear MLP / CNN. The streams share
parameters, so the endmember information of the pure stream steers the unmixing.

- :class:`PixelwiseEGU` (EGU-pw): the mixed stream's encoder *is* the pure stream (every
  layer and batch-norm layer is the same module, hence the same parameter objects).
- :class:`SpatialSpectralEGU` (EGU-ss): the pixel-wise network plus a convolutional
  spatial stream that predicts each pixel's abundances from its neighbours (blind to the
  pixel itself); the output blends the two by their measured errors, at full resolution
  (see the class for why not the paper's pooled layout).

Batch norm follows the released TensorFlow code: momentum 0.9 there, i.e. 0.1 here, and
eps 1e-3. A shared batch-norm layer normalises each stream with that stream's own batch
statistics during training and accumulates both into its running statistics.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

BN_EPS = 1e-3
BN_MOMENTUM = 0.1
#: Widths of the hidden layers (the paper's): encoder L -> 256 -> 128 -> 32 -> P.
WIDTHS = (256, 128, 32)


class PointwiseBlock(nn.Module):
    """A fully connected layer and its batch norm, applied to pixels (N, C) or to images
    (B, C, H, W) as a 1x1 convolution with the same weights."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.BatchNorm1d(n_out, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.norm(self.linear(x))
        out = F.conv2d(x, self.linear.weight[:, :, None, None], self.linear.bias)
        batch, channels, height, width = out.shape
        # BatchNorm1d on (B, C, H*W) pools statistics over batch and space, like BatchNorm2d.
        return self.norm(out.reshape(batch, channels, height * width)).reshape(out.shape)


class PixelEncoder(nn.Module):
    """The pixel-wise stream: (N, L) spectra -> (N, P) abundance logits.

    FC L->256, BN, dropout, tanh; FC 256->128, BN, tanh; FC 128->32, BN, ReLU; FC 32->P.
    Applied to images (B, L, H, W), every layer acts as a 1x1 convolution.
    """

    def __init__(self, n_bands: int, n_endmembers: int, dropout: float):
        super().__init__()
        w1, w2, w3 = WIDTHS
        self.block1 = PointwiseBlock(n_bands, w1)
        self.dropout = nn.Dropout(dropout)
        self.block2 = PointwiseBlock(w1, w2)
        self.block3 = PointwiseBlock(w2, w3)
        self.head = nn.Linear(w3, n_endmembers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (N, L) or images (B, L, H, W) -> the 32 features before the head."""
        x = torch.tanh(self.dropout(self.block1(x)))
        x = torch.tanh(self.block2(x))
        return torch.relu(self.block3(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Features (N, 32) or (B, 32, H, W) -> logits (N, P) or (B, P, H, W)."""
        if features.dim() == 2:
            return self.head(features)
        return F.conv2d(features, self.head.weight[:, :, None, None], self.head.bias)


class PixelDecoder(nn.Module):
    """(N, P) abundances -> (N, L) spectra: FC P->32->128->256->L, each FC + BN + sigmoid."""

    def __init__(self, n_endmembers: int, n_bands: int):
        super().__init__()
        sizes = (n_endmembers,) + WIDTHS[::-1] + (n_bands,)
        self.blocks = nn.ModuleList(PointwiseBlock(a, b) for a, b in itertools.pairwise(sizes))

    def forward(self, abundances: torch.Tensor) -> torch.Tensor:
        x = abundances
        for block in self.blocks:
            x = torch.sigmoid(block(x))
        return x


class TwoStreamEGU(nn.Module):
    """What both variants share: a pixel-wise ``pure_stream`` trained on pure spectra,
    whose softmax is the unmixing output (in ``"ss"`` blended with the spatial stream's)."""

    pure_stream: PixelEncoder
    #: (N, L) pixels or (B, L, H, W) images -> (abundances, reconstruction).
    mixed_forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    def pure_logits(self, spectra: torch.Tensor) -> torch.Tensor:
        """(M, L) pure spectra -> (M, P) logits."""
        return self.pure_stream(spectra)

    def abundances(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, P): the pure stream's softmax on every pixel, the unmixing output
        of ``"pw"`` (``"ss"`` adds a spatial correction:
        :meth:`SpatialSpectralEGU.image_abundances`)."""
        return torch.softmax(self.pure_stream(pixels), dim=-1)


class PixelwiseEGU(TwoStreamEGU):
    """EGU-pw. ``pure_stream`` and ``mixed_stream`` are one module: full weight sharing."""

    def __init__(self, n_bands: int, n_endmembers: int, dropout: float = 0.1):
        super().__init__()
        self.pure_stream = PixelEncoder(n_bands, n_endmembers, dropout)
        self.mixed_stream = self.pure_stream
        self.decoder = PixelDecoder(n_endmembers, n_bands)
        init_xavier(self)

    def mixed_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) pixels -> abundances (N, P), reconstruction (N, L)."""
        abundances = torch.softmax(self.mixed_stream(pixels), dim=-1)
        return abundances, self.decoder(abundances)


class SpatialDecoder(nn.Module):
    """(B, P, H, W) abundances -> (B, L, H, W): 1x1, 1x1, 3x3, 5x5 convolutions (stride-1
    transposed convolutions in the paper, which are convolutions), each + BN + sigmoid."""

    def __init__(self, n_endmembers: int, n_bands: int):
        super().__init__()
        sizes = (n_endmembers,) + WIDTHS[::-1] + (n_bands,)
        kernels = (1, 1, 3, 5)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, k, padding=k // 2) for a, b, k in zip(sizes, sizes[1:], kernels)
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(b, eps=BN_EPS, momentum=BN_MOMENTUM) for b in sizes[1:]
        )

    def forward(self, abundances: torch.Tensor) -> torch.Tensor:
        x = abundances
        for conv, norm in zip(self.convs, self.norms):
            x = torch.sigmoid(norm(conv(x)))
        return x


class BlindSpotPredictor(nn.Module):
    """The spatial stream of EGU-ss: (B, P, H, W) abundances -> (B, P, H, W), each pixel's
    abundances predicted from those of its neighbours alone.

    A learned convex combination of the abundances of the pixels up to :attr:`context`
    rows and columns away, the pixel itself excluded: a 5x5 kernel with its centre tap
    held out, its weights the softmax of 24 learned logits (so the prediction stays on the
    simplex), starting as the mean of the 4 nearest neighbours. Trained to predict the
    pure stream's abundances of the pixel (Noise2Self: with noise independent from pixel
    to pixel, the best such predictor is the expected clean abundance given the
    neighbours; a predictor that saw the pixel would learn to copy its noise).
    """

    #: Pixels of context each side.
    context = 2
    taps: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        side = 2 * self.context + 1
        rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        distance = (rows - self.context).abs() + (cols - self.context).abs()
        # Start at the 4 nearest neighbours (distance 1), the others 50x lighter.
        start = torch.where(distance == 1, 0.0, -math.log(50.0))
        self.register_buffer("taps", (distance > 0).flatten())
        self.logits = nn.Parameter(start.flatten()[self.taps])

    def kernel(self) -> torch.Tensor:
        """(side, side) weights summing to one, zero at the centre."""
        side = 2 * self.context + 1
        weights = torch.zeros(side * side, dtype=self.logits.dtype, device=self.logits.device)
        weights = weights.masked_scatter(self.taps, torch.softmax(self.logits, dim=0))
        return weights.reshape(side, side)

    def forward(self, abundances: torch.Tensor) -> torch.Tensor:
        channels = abundances.shape[1]
        weight = self.kernel().expand(channels, 1, -1, -1)
        # Replicated edges: a border pixel's missing neighbours count as the nearest ones.
        padded = F.pad(abundances, (self.context,) * 4, mode="replicate")
        return F.conv2d(padded, weight, groups=channels)


class SpatialSpectralEGU(TwoStreamEGU):
    """EGU-ss: the pixel-wise network of ``"pw"`` plus a spatial stream whose prediction of
    each pixel from its neighbours is blended into the pixel's own abundances.

    Abundances at pixel n: ``(1 - w) a_n + w s_n``, ``a_n`` the pure stream's softmax on
    the pixel, ``s_n`` the prediction of :class:`BlindSpotPredictor` from the ``a`` of its
    neighbours, ``w`` the buffer ``spatial_weight`` (0 while training,
    then set from the measured noise of ``a`` and error of ``s``, see
    :meth:`hyperunmix.deep.egunet.EGUNet` for the rule). The mixed stream autoencodes the
    image from ``a`` through the paper's convolutional decoder, as ``"pw"`` does pixel by
    pixel.

    Why not the paper's layout (a convolutional encoder of the raw image with three 2x2
    poolings, sharing one 1x1 layer with the pure stream, upsampled back): its maps are
    computed at 1/8 of the resolution, so they blur every boundary, and its own 32 -> P
    head ties none of its channels to the reference endmembers, so the released code
    output the pure stream's maps and the spatial stream never reached them. A spatial
    stream trained by the reconstruction error cannot denoise either (a pixel's own noisy
    abundances reconstruct it best); one that may not see the pixel can only learn what
    the neighbours say about it, and the blend weighs that against the pixel's own
    noise, at full resolution.
    """

    spatial_weight: torch.Tensor

    def __init__(self, n_bands: int, n_endmembers: int, dropout: float = 0.1):
        super().__init__()
        self.pure_stream = PixelEncoder(n_bands, n_endmembers, dropout)
        self.spatial = BlindSpotPredictor()
        self.decoder = SpatialDecoder(n_endmembers, n_bands)
        self.register_buffer("spatial_weight", torch.zeros(()))
        init_xavier(self)

    @property
    def context(self) -> int:
        """Pixels of context each side an output pixel depends on."""
        return self.spatial.context

    def streams(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 32, H, W) pure-stream features -> the pixels' own abundances ``a`` and
        their neighbours' prediction ``s``, both (B, P, H, W). ``s`` is computed from ``a``
        held fixed: the spatial stream learns from the pure stream, not the reverse."""
        own = torch.softmax(self.pure_stream.classify(features), dim=1)
        return own, self.spatial(own.detach())

    def image_abundances(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 32, H, W) pure-stream features (computed pixel by pixel, in chunks if need
        be, by :meth:`PixelEncoder.features`) -> (B, P, H, W) abundances, the unmixing
        output of ``"ss"``."""
        own, neighbours = self.streams(features)
        return own + self.spatial_weight * (neighbours - own)

    def mixed_forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, H, W) -> abundances (B, P, H, W), reconstruction (B, L, H, W)."""
        abundances = self.image_abundances(self.pure_stream.features(image))
        return abundances, self.decoder(abundances)

    def spatial_error(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the neighbours' prediction of each valid pixel of
        ``image`` (B, L, H, W) against the pixel's own abundances, these held fixed (the
        spatial stream learns from them, they do not learn from it)."""
        own, neighbours = self.streams(self.pure_stream.features(image))
        squared = ((neighbours - own.detach()) ** 2 * mask).sum()
        return squared / mask.sum().clamp(min=1)


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear and convolutional layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)  # type: ignore[arg-type]  # built with bias=True


def weight_penalty(module: nn.Module) -> torch.Tensor:
    """Sum of squared weights / 2 of the linear and convolutional layers (no biases, no
    batch-norm parameters), each shared layer counted once, as TF's ``l2_loss`` sums."""
    weights = {
        id(layer.weight): layer.weight
        for layer in module.modules()
        if isinstance(layer, (nn.Linear, nn.Conv2d))
    }
    return functools.reduce(operator.add, (w.pow(2).sum() for w in weights.values())) / 2
