"""Batch-size logic shared by the GPU backends, kept free of torch and TensorRT.

A CUDA graph replays fixed shapes, so the torch backend captures one graph per size in a
small ladder (1, 2, 4, ... max) and pads a smaller batch up to the next captured size. A
TensorRT engine accepts any batch inside its optimization profile, so batches bigger than
the profile's max are split. Both are plain arithmetic, tested on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

DEFAULT_MAX_GRAPH_BATCH = 128  # windows; the largest batch the scorer is expected to flush


def graph_batch_sizes(max_batch: int = DEFAULT_MAX_GRAPH_BATCH) -> tuple[int, ...]:
    """Batch sizes to capture: powers of two up to max_batch, plus max_batch itself.

    Padding to the next power of two wastes at most half of a replay, and the ladder
    stays short (8 graphs for 128), which bounds capture time and graph memory.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = []
    b = 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    sizes.append(max_batch)
    return tuple(sizes)


def padded_size(n: int, sizes: tuple[int, ...]) -> int:
    """The smallest captured size that holds n rows (n must not exceed the largest)."""
    if n < 1:
        raise ValueError(f"batch must have at least one row, got {n}")
    for s in sorted(sizes):
        if s >= n:
            return s
    raise ValueError(f"batch {n} exceeds the largest captured size {max(sizes)}; split it")


def split_batch(n: int, max_batch: int) -> Iterator[tuple[int, int]]:
    """[start, stop) row ranges of at most max_batch rows covering n rows."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    for start in range(0, n, max_batch):
        yield start, min(start + max_batch, n)


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with zero rows appended along axis 0 up to `rows` (no copy if already there).

    Zero rows are valid inputs (silence, black crops); their scores are dropped.
    """
    n = array.shape[0]
    if n == rows:
        return array
    if n > rows:
        raise ValueError(f"cannot pad {n} rows down to {rows}")
    out = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    out[:n] = array
    return out


def plan_replays(n: int, sizes: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """How a batch of n rows runs on captured graphs: (start, stop, graph size) per replay.

    Chunks of the largest size first, then the remainder padded up to the next size.
    """
    biggest = max(sizes)
    return [(a, b, padded_size(b - a, sizes)) for a, b in split_batch(n, biggest)]
