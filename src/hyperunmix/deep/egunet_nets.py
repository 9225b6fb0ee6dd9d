"""The two-stream networks of EGU-Net (Hong et al., IEEE TNNLS 2022), in PyTorch.

Both variants have a *pure* stream, a pixel-wise classifier trained on pseudo-pure spectra
with soft labels, and a *mixed* stream, an autoencoder of the image whose bottleneck is a
softmax (the abundances) and whose decoder is a nonlinear MLP / CNN. The streams share
parameters, so the endmember information of the pure stream steers the unmixing.

- :class:`PixelwiseEGU` (EGU-pw): the mixed stream's encoder *is* the pure stream (every
  layer and batch-norm layer is the same module, hence the same parameter objects).
- :class:`SpatialSpectralEGU` (EGU-ss): the mixed stream is convolutional (5x5, 3x3 and
  2x2 average pooling) and shares only the third, 1x1 layer and its batch norm with the
  pure stream. The spatial stream shapes that shared layer during training; the
  abundances are the pure stream's output on each pixel (see
  :meth:`SpatialSpectralEGU.abundances`).

Batch norm follows the released TensorFlow code: momentum 0.9 there, i.e. 0.1 here, and
eps 1e-3. A shared batch-norm layer normalises each stream with that stream's own batch
statistics during training and accumulates both into its running statistics.
"""

from __future__ import annotations

import functools
import itertools
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
    ``block3`` may be given, to share the third layer with another stream.
    """

    def __init__(
        self, n_bands: int, n_endmembers: int, dropout: float, block3: PointwiseBlock | None = None
    ):
        super().__init__()
        w1, w2, w3 = WIDTHS
        self.block1 = PointwiseBlock(n_bands, w1)
        self.dropout = nn.Dropout(dropout)
        self.block2 = PointwiseBlock(w1, w2)
        self.block3 = block3 if block3 is not None else PointwiseBlock(w2, w3)
        self.head = nn.Linear(w3, n_endmembers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dropout(self.block1(x)))
        x = torch.tanh(self.block2(x))
        x = torch.relu(self.block3(x))
        return self.head(x)


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
    """What both variants share: a pixel-wise ``pure_stream`` whose softmax is the
    unmixing output, trained on pure spectra."""

    pure_stream: PixelEncoder
    #: (N, L) pixels or (B, L, H, W) images -> (abundances, reconstruction).
    mixed_forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    def pure_logits(self, spectra: torch.Tensor) -> torch.Tensor:
        """(M, L) pure spectra -> (M, P) logits."""
        return self.pure_stream(spectra)

    def abundances(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, P): the unmixing output, the pure stream applied to every pixel.

        In ``"ss"`` not the mixed stream's maps: those are computed at 1/8 of the
        resolution (three 2x2 poolings) and upsampled, so they blur every boundary, and
        their 32 -> P head is not shared with the pure stream, so nothing ties their
        channels to the reference endmembers. The released code made the same choice.
        """
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


class SpatialEncoder(nn.Module):
    """The convolutional mixed stream of EGU-ss: (B, L, H, W) -> (B, P, H, W) logits.

    5x5 conv L->256, BN, dropout, 2x2 avg-pool, tanh; 3x3 conv 256->128, BN, pool, tanh;
    the shared 1x1 block 128->32, pool, ReLU; 1x1 conv 32->P; bilinear upsampling to the
    input size. (The released code upsampled with a 1x1 stride-8 transposed convolution,
    which writes one output pixel in 64 and leaves the others at the bias.)
    """

    def __init__(self, n_bands: int, n_endmembers: int, dropout: float, block3: PointwiseBlock):
        super().__init__()
        w1, w2, w3 = WIDTHS
        self.conv1 = nn.Conv2d(n_bands, w1, 5, padding=2)
        self.norm1 = nn.BatchNorm2d(w1, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(w2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.block3 = block3
        self.head = nn.Conv2d(w3, n_endmembers, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = image.shape[-2:]
        x = torch.tanh(_pool(self.dropout(self.norm1(self.conv1(image)))))
        x = torch.tanh(_pool(self.norm2(self.conv2(x))))
        x = torch.relu(_pool(self.block3(x)))
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


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


class SpatialSpectralEGU(TwoStreamEGU):
    """EGU-ss: a pixel-wise pure stream and a convolutional mixed stream sharing ``block3``."""

    def __init__(self, n_bands: int, n_endmembers: int, dropout: float = 0.1):
        super().__init__()
        shared = PointwiseBlock(WIDTHS[1], WIDTHS[2])
        self.pure_stream = PixelEncoder(n_bands, n_endmembers, dropout, block3=shared)
        self.mixed_stream = SpatialEncoder(n_bands, n_endmembers, dropout, block3=shared)
        self.decoder = SpatialDecoder(n_endmembers, n_bands)
        init_xavier(self)

    def mixed_forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, H, W) -> abundances (B, P, H, W), reconstruction (B, L, H, W)."""
        abundances = torch.softmax(self.mixed_stream(image), dim=1)
        return abundances, self.decoder(abundances)


def _pool(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode keeps the last row / column of odd-sized inputs (95 x 95 Samson) in play.
    return F.avg_pool2d(x, 2, ceil_mode=True)


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
