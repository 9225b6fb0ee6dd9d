"""The chunk grid of a cube: where each chunk lies, and the window a task reads for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """One processing chunk: its index in the chunk grid and its pixel ranges.

    Attributes
    ----------
    index : (int, int)
        Chunk row and column.
    rows, cols : (int, int)
        Pixel ranges [start, stop) in the image.
    """

    index: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the chunk."""
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]

    @property
    def location(self) -> str:
        """Where the chunk lies, for messages: pixel rows and columns, inclusive."""
        return (
            f"chunk {self.index} (rows {self.rows[0]}-{self.rows[1] - 1}, "
            f"cols {self.cols[0]}-{self.cols[1] - 1})"
        )

    def window(
        self, context: int, shape: tuple[int, int]
    ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """The window to read (the chunk and up to ``context`` pixels around it, within
        the image ``shape``) and the part of that window that is the chunk itself."""
        top, left = max(self.rows[0] - context, 0), max(self.cols[0] - context, 0)
        bottom, right = min(self.rows[1] + context, shape[0]), min(self.cols[1] + context, shape[1])
        read = (slice(top, bottom), slice(left, right))
        core = (
            slice(self.rows[0] - top, self.rows[1] - top),
            slice(self.cols[0] - left, self.cols[1] - left),
        )
        return read, core


def chunk_grid(row_chunks: tuple[int, ...], col_chunks: tuple[int, ...]) -> list[Chunk]:
    """Every chunk of a grid given by dask-style chunk sizes along rows and columns."""
    row_edges, col_edges = np.cumsum((0,) + tuple(row_chunks)), np.cumsum((0,) + tuple(col_chunks))
    return [
        Chunk(
            (i, j),
            (int(row_edges[i]), int(row_edges[i + 1])),
            (int(col_edges[j]), int(col_edges[j + 1])),
        )
        for i in range(len(row_chunks))
        for j in range(len(col_chunks))
    ]
