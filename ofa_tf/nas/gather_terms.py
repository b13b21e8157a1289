"""One description of "a sum of table lookups indexed by an arch's genes", read by numpy and
by the compiled search alike.

Both an arch's cost and its one-hot features are made of terms, each an n-d table whose axes
are indexed by some of the arch's gene columns (`ofa_tf.nas.encoding.ArchBatch.genes`): a block
slot's latency by (kernel, expand, its stage's depth index, resolution), a feature bit's column by
(kernel, depth index), and so on. Every term's value is one gather from one flat table,

    value[t] = table[offsets[t] + sum_k genes[columns[t, k]] * strides[t, k]]

so a predictor describes its cost or features once (the terms) and both the numpy path (this
module) and the search kernel (`ofa_tf.nas.evolution_kernel`) read the same arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class GatherTerms:
    """``table`` (flat, one dtype), and per term its ``offsets`` (T,), gene ``columns`` and
    element ``strides`` (both (T, K); unused slots have stride 0)."""

    table: np.ndarray
    offsets: np.ndarray
    columns: np.ndarray
    strides: np.ndarray

    @classmethod
    def build(cls, terms: Sequence[tuple[np.ndarray, Sequence[int]]], dtype) -> "GatherTerms":
        """From ``(table, gene columns)`` pairs: axis ``a`` of a term's n-d table is indexed by
        gene column ``columns[a]`` (a 0-d table is a constant)."""
        if not terms:
            raise ValueError("GatherTerms needs at least one term")
        width = max(1, max(len(columns) for _, columns in terms))
        offsets = np.zeros(len(terms), np.int64)
        all_columns = np.zeros((len(terms), width), np.int64)
        all_strides = np.zeros((len(terms), width), np.int64)
        flat, start = [], 0
        for t, (table, columns) in enumerate(terms):
            table = np.ascontiguousarray(table, dtype)
            if table.ndim != len(columns):
                raise ValueError(f"term {t}: a {table.ndim}-d table indexed by {len(columns)} gene columns")
            offsets[t] = start
            all_columns[t, : len(columns)] = columns
            all_strides[t, : len(columns)] = np.array(table.strides, np.int64) // table.itemsize
            flat.append(table.ravel())
            start += table.size
        return cls(np.concatenate(flat), offsets, all_columns, all_strides)

    @property
    def n_terms(self) -> int:
        return len(self.offsets)

    def indices(self, genes: np.ndarray) -> np.ndarray:
        """(T, N) flat table indices of each term for each gene row."""
        genes = np.asarray(genes)
        index = np.broadcast_to(self.offsets[:, None], (self.n_terms, len(genes))).copy()
        for k in range(self.columns.shape[1]):
            index += genes[:, self.columns[:, k]].T * self.strides[:, k:k + 1]
        return index

    def values(self, genes: np.ndarray) -> np.ndarray:
        """(T, N) each term's value for each gene row."""
        return self.table.take(self.indices(genes))

    def total(self, genes: np.ndarray) -> np.ndarray:
        """(N,) the terms summed in term order, the order the search kernel adds them in (so a
        float sum is the same to the bit in both)."""
        values = self.values(genes)
        total = values[0].copy()
        for value in values[1:]:
            total += value
        return total
