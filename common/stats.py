"""Rank statistics: Kendall's τ-b of two paired samples (used by the fidelity measure and the report)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _inversions(seq: Sequence[int]) -> int:
    """Pairs i < j with seq[i] > seq[j] (strict), by a Fenwick tree over the values 0 … max: O(n log n)."""
    size = max(seq, default=-1) + 1
    tree = [0] * (size + 1)
    inv = 0
    for seen, v in enumerate(seq):
        i, not_greater = v + 1, 0  # count earlier values ≤ v
        while i > 0:
            not_greater += tree[i]
            i -= i & -i
        inv += seen - not_greater
        i = v + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return inv


def _tied_pairs(values: np.ndarray) -> int:
    _, counts = np.unique(values, return_counts=True, axis=0)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two paired samples (Knight's O(n log n) count).

    τ_b = (n_c − n_d) / √((n0 − n1)(n0 − n2)), n0 = n(n−1)/2 pairs, n1 / n2 pairs tied in x / y,
    n_c / n_d concordant / discordant pairs (pairs tied in x or y are neither).

    Returns:
        τ_b in [−1, 1]; NaN when x or y is constant (or n < 2), where τ is undefined.

    Raises:
        ValueError: different lengths or non-finite values.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"kendall_tau needs two 1-D samples of one length, got {xa.shape} and {ya.shape}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("kendall_tau: non-finite values")
    n = xa.size
    n0 = n * (n - 1) // 2
    n1, n2 = _tied_pairs(xa), _tied_pairs(ya)
    n3 = _tied_pairs(np.stack([xa, ya], 1))  # tied in both
    order = np.lexsort((ya, xa))  # by x, then y: pairs tied in x are never inversions
    y_rank = np.unique(ya, return_inverse=True)[1].reshape(-1)[order]
    n_d = _inversions(y_rank.tolist())  # strict inversions of y = discordant pairs
    n_c = n0 - n1 - n2 + n3 - n_d
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    return (n_c - n_d) / denom if denom > 0 else math.nan
