"""Mini-batches of EGU-Net training: pixels for the pure and pw mixed streams, image crops
for the ss mixed stream, and the losses computed on them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol, TypeVar

import torch

Batch = TypeVar("Batch")


class MixedStream(Protocol):
    """A network with a mixed stream: input -> (abundances, reconstruction)."""

    def mixed_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class MixedBatches(Protocol[Batch]):
    """The mixed stream's data: ``steps_per_epoch`` batches per :meth:`epoch`."""

    steps_per_epoch: int

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]: ...

    def reconstruction_error(self, network: MixedStream, batch: Batch) -> torch.Tensor: ...


class PixelBatches:
    """Shuffled batches of rows of ``data`` (M, L), with their ``labels`` (M, P) if given.

    An epoch splits a fresh permutation into ``ceil(M / batch_size)`` near-equal batches,
    so every row is seen once per epoch and no batch is a small remainder (batch-norm
    statistics of a tiny last batch would be noise).
    """

    def __init__(self, data: torch.Tensor, batch_size: int, labels: torch.Tensor | None = None):
        self.data = data
        self.labels = labels
        self.steps_per_epoch = max(1, math.ceil(data.shape[0] / batch_size))

    def _batches(self, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        order = torch.randperm(self.data.shape[0], generator=generator).to(self.data.device)
        return torch.tensor_split(order, self.steps_per_epoch)

    def epoch(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        for rows in self._batches(generator):
            yield self.data[rows]

    def cycle(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (data, labels) batches, reshuffled after each pass."""
        labels = self.labels
        if labels is None:
            raise ValueError("cycle() needs batches built with labels")
        while True:
            for rows in self._batches(generator):
                yield self.data[rows], labels[rows]

    def reconstruction_error(self, network: MixedStream, batch: torch.Tensor) -> torch.Tensor:
        _, reconstruction = network.mixed_forward(batch)
        return torch.mean((reconstruction - batch) ** 2)


class PatchBatches:
    """Random square crops of an image (1, L, H, W) with its validity mask (1, 1, H, W).

    One crop of ``patch_size`` (clipped to the image; ``None``: the whole image, as in the
    paper) per step, ``steps_per_epoch`` steps per epoch.
    """

    def __init__(
        self,
        image_and_mask: tuple[torch.Tensor, torch.Tensor],
        patch_size: int | None,
        steps_per_epoch: int,
    ):
        self.image, self.mask = image_and_mask
        height, width = self.image.shape[-2:]
        side = max(height, width) if patch_size is None else patch_size
        self.crop = (min(side, height), min(side, width))
        self.steps_per_epoch = steps_per_epoch

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        height, width = self.image.shape[-2:]
        for _ in range(self.steps_per_epoch):
            top = int(torch.randint(height - self.crop[0] + 1, (1,), generator=generator))
            left = int(torch.randint(width - self.crop[1] + 1, (1,), generator=generator))
            window = (..., slice(top, top + self.crop[0]), slice(left, left + self.crop[1]))
            yield self.image[window], self.mask[window]

    def reconstruction_error(
        self, network: MixedStream, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Mean squared error over the valid pixels of the crop and all bands."""
        image, mask = batch
        _, reconstruction = network.mixed_forward(image)
        squared = ((reconstruction - image) ** 2 * mask).sum()
        return squared / (mask.sum().clamp(min=1) * image.shape[1])


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_p labels * log softmax(logits)``: (M, P), (M, P) -> scalar."""
    return -(labels * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
