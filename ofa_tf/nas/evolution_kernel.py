"""The evolutionary search compiled (numba): a whole run in one call.

A generation of the reference's search is ~100 children drawn until within budget (300-800
candidates, each mutated or crossed, then costed), a lookup of each child in the memo of scored
archs and a forward pass of the accuracy MLP on the ~13 new ones. In numpy that is ~100 small
array calls a generation, whose overhead alone (~0.3 ms) was more than the arithmetic; here each
candidate is a loop over its genes and the run costs one call (BENCHMARKS.md, "Compiled search").

What the kernels read is described elsewhere, once: the genes' mutation groups by
`ofa_tf.nas.evolution.EvolutionFinder`, costs and feature bits as
`ofa_tf.nas.gather_terms.GatherTerms` by the predictors and encoders, the MLP's weights by
`ofa_tf.nas.accuracy_predictor.AccuracyPredictor`. Random numbers come from the caller's numpy
``Generator`` (numba draws from its bit generator, so the seed gives the same run).

The forward pass works on the bits, not on a dense feature matrix: the first layer is the sum of
the kernel rows of the arch's ~40 set bits, and later layers skip the inputs ReLU zeroed (half of
them or more). Each row's arithmetic is its own, so an arch scores the same in any batch. No fast-math:
the sums are in a fixed order without fused multiply-adds, the same on every CPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# --------------------------------------------------------------------------- genes

@njit(cache=True)
def _set_choice(row, group, choice, columns, pair_values, group_at):
    """Group ``group``'s ``choice``: its (one or two) gene columns get their values."""
    at = group_at[group] + choice
    row[columns[group, 0]] = pair_values[at, 0]
    row[columns[group, 1]] = pair_values[at, 1]


@njit(cache=True)
def _uniform(rng, n):
    return min(int(rng.random() * n), n - 1)


@njit(cache=True)
def _random_row(rng, row, choices, columns, pair_values, group_at):
    for group in range(len(choices)):
        _set_choice(row, group, _uniform(rng, choices[group]), columns, pair_values, group_at)


@njit(cache=True)
def _mutate_row(rng, row, choices, columns, pair_values, group_at, arch_prob, resolution_prob):
    """Each group but the last (the resolution) is redrawn with ``arch_prob``, the last with
    ``resolution_prob``. The groups redrawn are found by geometric skips (one draw per redrawn
    group, not one per group: ~3 instead of ~26 at the reference's 0.1)."""
    last = len(choices) - 1
    if arch_prob >= 1.0:
        for group in range(last):
            _set_choice(row, group, _uniform(rng, choices[group]), columns, pair_values, group_at)
    elif arch_prob > 0.0:
        log_keep = math.log1p(-arch_prob)
        group = -1
        while True:
            # groups passed over before the next redrawn one: geometric, P(k) = (1-p)^k p
            group += 1 + int(math.log(1.0 - rng.random()) / log_keep)
            if group >= last:
                break
            _set_choice(row, group, _uniform(rng, choices[group]), columns, pair_values, group_at)
    if rng.random() < resolution_prob:
        _set_choice(row, last, _uniform(rng, choices[last]), columns, pair_values, group_at)


@njit(cache=True)
def _cross_row(rng, out, first, second):
    """Each gene from either parent, with probability 1/2: one bit of a draw each (a double of
    ``rng.random()`` times 2^52 is 52 fair bits; one draw per gene took 4x as long)."""
    bits, left = 0, 0
    for j in range(len(out)):
        if left == 0:
            bits, left = int(rng.random() * 4503599627370496.0), 52
        out[j] = first[j] if bits & 1 else second[j]
        bits >>= 1
        left -= 1


@njit(cache=True)
def random_rows(rng, n, n_genes, choices, columns, pair_values, group_at):
    genes = np.empty((n, n_genes), np.int64)
    for i in range(n):
        _random_row(rng, genes[i], choices, columns, pair_values, group_at)
    return genes


@njit(cache=True)
def mutate_rows(rng, genes, choices, columns, pair_values, group_at, arch_prob, resolution_prob):
    """Mutates ``genes`` in place, row by row."""
    for i in range(len(genes)):
        _mutate_row(rng, genes[i], choices, columns, pair_values, group_at, arch_prob, resolution_prob)


@njit(cache=True)
def cross_rows(rng, first, second):
    out = np.empty_like(first)
    for i in range(len(first)):
        _cross_row(rng, out[i], first[i], second[i])
    return out


# --------------------------------------------------------------------------- terms

@njit(cache=True)
def _term_index(row, t, offsets, columns, strides):
    index = offsets[t]
    for k in range(columns.shape[1]):
        index += row[columns[t, k]] * strides[t, k]
    return index


@njit(cache=True)
def _cost(row, table, offsets, columns, strides, divisor):
    """The terms summed in term order (as `GatherTerms.total`), over ``divisor``."""
    total = 0.0
    for t in range(len(offsets)):
        total += table[_term_index(row, t, offsets, columns, strides)]
    return total / divisor


@njit(cache=True)
def _bits(row, out, table, offsets, columns, strides):
    for t in range(len(offsets)):
        out[t] = table[_term_index(row, t, offsets, columns, strides)]


# --------------------------------------------------------------------------- the MLP

@njit(cache=True)
def _add_row(y, kernel, k, a):
    for j in range(len(y)):
        y[j] += a * kernel[k, j]


@njit(cache=True)
def _add_rows8(y, kernel, on, values, q):
    """y += the eight kernel rows ``on[q:q+8]`` times ``values[q:q+8]``, in a fixed order. (Its own
    function: inside the layer loop LLVM did not vectorize it.)"""
    k0, k1, k2, k3, k4, k5, k6, k7 = on[q], on[q + 1], on[q + 2], on[q + 3], on[q + 4], on[q + 5], on[q + 6], on[q + 7]
    a0, a1, a2, a3 = values[q], values[q + 1], values[q + 2], values[q + 3]
    a4, a5, a6, a7 = values[q + 4], values[q + 5], values[q + 6], values[q + 7]
    for j in range(len(y)):
        y[j] += (((a0 * kernel[k0, j] + a1 * kernel[k1, j]) + (a2 * kernel[k2, j] + a3 * kernel[k3, j]))
                 + ((a4 * kernel[k4, j] + a5 * kernel[k5, j]) + (a6 * kernel[k6, j] + a7 * kernel[k7, j])))


@njit(cache=True)
def _forward(bits, rows, n, w1, b1, hidden_w, hidden_b, out_w, base, x, y, on, values, out):
    """``out[rows[i]]`` = the predicted accuracy of the arch whose set bits (-1: none) are
    ``bits[rows[i]]``, for i < n. ``x``, ``y``: (>= n, hidden) scratch; ``on``, ``values``: (hidden,).

    Layer by layer over all n rows, so one layer's kernel (640 KB at 400 units) stays in the L2
    cache for all of them. A hidden layer adds the kernel rows of each row's positive inputs (the
    ReLU's zeros add nothing), eight at a time: one pass over the output for eight kernel rows."""
    size = len(b1)
    for i in range(n):
        xi, code = x[i], bits[rows[i]]
        xi[:] = b1
        for t in range(len(code)):
            if code[t] >= 0:
                _add_row(xi, w1, code[t], np.float32(1.0))
    for layer in range(len(hidden_w)):
        kernel = hidden_w[layer]
        for i in range(n):
            xi, yi = x[i], y[i]
            m = 0
            for k in range(size):
                if xi[k] > 0.0:
                    on[m], values[m] = k, xi[k]
                    m += 1
            yi[:] = hidden_b[layer]
            q = 0
            while q + 8 <= m:
                _add_rows8(yi, kernel, on, values, q)
                q += 8
            while q < m:
                _add_row(yi, kernel, on[q], values[q])
                q += 1
        x, y = y, x
    for i in range(n):
        xi = x[i]
        total = np.float32(0.0)
        for j in range(size):
            if xi[j] > 0.0:
                total += xi[j] * out_w[j]
        out[rows[i]] = total + base


@njit(cache=True)
def predict_bits(bits, w1, b1, hidden_w, hidden_b, out_w, base):
    """(N,) float32 predicted accuracies of (N, T) bit rows, 256 rows at a time."""
    chunk, size = 256, len(b1)
    x, y = np.empty((chunk, size), np.float32), np.empty((chunk, size), np.float32)
    on, values = np.empty(size, np.int64), np.empty(size, np.float32)
    out = np.empty(len(bits), np.float32)
    for start in range(0, len(bits), chunk):
        rows = np.arange(start, min(start + chunk, len(bits)))
        _forward(bits, rows, len(rows), w1, b1, hidden_w, hidden_b, out_w, base, x, y, on, values, out)
    return out


# --------------------------------------------------------------------------- memo of scored archs

@njit(cache=True)
def _hash(bits):
    h = np.uint64(14695981039346656037)
    for value in bits:
        h = (h ^ np.uint64(value + 1)) * np.uint64(1099511628211)
    return h


@njit(cache=True)
def _find(slots, keys, bits):
    """The slot of ``bits`` in the open-addressing table ``slots`` (entries index ``keys``; -1
    empty): where it is, or the empty slot where it would go."""
    mask = np.uint64(len(slots) - 1)
    at = _hash(bits) & mask
    while True:
        entry = slots[at]
        if entry < 0:
            return at
        same = True
        for t in range(len(bits)):
            if keys[entry, t] != bits[t]:
                same = False
                break
        if same:
            return at
        at = (at + np.uint64(1)) & mask


@njit(cache=True)
def _rehashed(slots, keys, count):
    bigger = np.full(2 * len(slots), -1, np.int64)
    for entry in range(count):
        bigger[_find(bigger, keys, keys[entry])] = entry
    return bigger


# --------------------------------------------------------------------------- the search

@njit(cache=True)
def _draw_within(rng, child, kind, first, second, constraint, max_draws, choices, columns, pair_values,
                 group_at, arch_prob, resolution_prob, cost_table, cost_offsets, cost_columns, cost_strides,
                 divisor):
    """Draws ``child`` until its cost is within ``constraint``: a random arch (kind 0), a
    mutation of ``first`` (1) or a crossover of ``first`` and ``second`` (2). Returns the cost,
    or -1.0 when ``max_draws`` candidates all cost more (``child`` is then undefined)."""
    for _ in range(max_draws):
        if kind == 0:
            _random_row(rng, child, choices, columns, pair_values, group_at)
        elif kind == 1:
            child[:] = first
            _mutate_row(rng, child, choices, columns, pair_values, group_at, arch_prob, resolution_prob)
        else:
            _cross_row(rng, child, first, second)
        cost = _cost(child, cost_table, cost_offsets, cost_columns, cost_strides, divisor)
        if cost <= constraint:
            return cost
    return -1.0


@njit(cache=True)
def evolve(rng, constraint, population_size, parents_size, n_mutated, generations, max_draws,
           choices, columns, pair_values, group_at, arch_prob, resolution_prob,
           cost_table, cost_offsets, cost_columns, cost_strides, divisor,
           bit_table, bit_offsets, bit_columns, bit_strides,
           w1, b1, hidden_w, hidden_b, out_w, base, fallback):
    """One evolution run (`ofa_tf.nas.evolution` says what it does). ``fallback``: the genes of
    the cheapest arch, for an initial arch with no candidate within budget. Returns the best
    arch's genes, its accuracy and cost, and the best accuracy after each generation."""
    n_genes, n_bits = len(fallback), len(bit_offsets)
    size = parents_size + population_size
    population = np.empty((size, n_genes), np.int64)
    accuracy = np.empty(size, np.float32)
    cost = np.empty(size, np.float64)
    parents = np.empty((parents_size, n_genes), np.int64)
    parent_acc = np.empty(parents_size, np.float32)
    parent_cost = np.empty(parents_size, np.float64)
    # the memo: each distinct arch's bits (its key) and score, found through `slots`
    keys = np.empty((4 * population_size, n_bits), np.int32)
    scores = np.empty(4 * population_size, np.float32)
    slots = np.full(1024, -1, np.int64)
    count = 0
    entry_of = np.empty(population_size, np.int64)
    new_entries = np.empty(population_size, np.int64)
    bits = np.empty(n_bits, np.int32)
    x, y = np.empty((population_size, len(b1)), np.float32), np.empty((population_size, len(b1)), np.float32)
    on, values = np.empty(len(b1), np.int64), np.empty(len(b1), np.float32)

    # the initial population: rows parents_size.. (where each generation's children go)
    fallback_cost = _cost(fallback, cost_table, cost_offsets, cost_columns, cost_strides, divisor)
    _initial_population(rng, population, cost, parents_size, constraint, max_draws, choices, columns,
                        pair_values, group_at, cost_table, cost_offsets, cost_columns, cost_strides, divisor,
                        fallback, fallback_cost)
    start = parents_size
    best_valids = np.empty(generations, np.float64)
    best = np.empty(n_genes, np.int64)
    best_acc, best_cost = -np.inf, 0.0
    for generation in range(generations + 1):
        # ---- score the new rows: from the memo, or the MLP for archs not seen before
        n_new = 0
        if count + population_size > len(keys):   # room for all of them
            keys = np.concatenate((keys, np.empty_like(keys)))
            scores = np.concatenate((scores, np.empty_like(scores)))
        for c in range(population_size):
            _bits(population[start + c], bits, bit_table, bit_offsets, bit_columns, bit_strides)
            at = _find(slots, keys, bits)
            if slots[at] < 0:
                keys[count] = bits
                slots[at] = count
                new_entries[n_new] = count
                n_new += 1
                count += 1
                if 2 * count > len(slots):
                    slots = _rehashed(slots, keys, count)
                entry_of[c] = count - 1
            else:
                entry_of[c] = slots[at]
        _forward(keys, new_entries, n_new, w1, b1, hidden_w, hidden_b, out_w, base, x, y, on, values, scores)
        for c in range(population_size):
            accuracy[start + c] = scores[entry_of[c]]
        if generation == generations:
            break
        # ---- the parents: the best parents_size rows (stable: the first of equals)
        if generation == 0:   # (the initial population only)
            order = np.argsort(-accuracy[start:], kind="mergesort")[:parents_size] + start
        else:
            order = np.argsort(-accuracy, kind="mergesort")[:parents_size]
        for i in range(parents_size):
            parents[i] = population[order[i]]
            parent_acc[i] = accuracy[order[i]]
            parent_cost[i] = cost[order[i]]
        if parent_acc[0] > best_acc:
            best[:] = parents[0]
            best_acc, best_cost = parent_acc[0], parent_cost[0]
        best_valids[generation] = best_acc
        population[:parents_size] = parents
        accuracy[:parents_size] = parent_acc
        cost[:parents_size] = parent_cost
        # ---- the children: mutations, then crossovers, each drawn until within budget
        for c in range(population_size):
            child = population[parents_size + c]
            first = _uniform(rng, parents_size)
            second = _uniform(rng, parents_size) if c >= n_mutated else first
            value = _draw_within(rng, child, 1 if c < n_mutated else 2, parents[first], parents[second],
                                 constraint, max_draws, choices, columns, pair_values, group_at, arch_prob,
                                 resolution_prob, cost_table, cost_offsets, cost_columns, cost_strides, divisor)
            if value < 0.0:   # none within budget: a copy of the (first) parent, which is within
                child[:] = parents[first]
                value = parent_cost[first]
            cost[parents_size + c] = value
    top = np.argmax(accuracy)   # the last generation's children count too (generations >= 1)
    if accuracy[top] > best_acc:
        best[:] = population[top]
        best_acc, best_cost = accuracy[top], cost[top]
    return best, best_acc, best_cost, best_valids


@njit(cache=True)
def _initial_population(rng, population, cost, start, constraint, max_draws, choices, columns, pair_values,
                       group_at, cost_table, cost_offsets, cost_columns, cost_strides, divisor, fallback,
                       fallback_cost):
    """Rows ``start``.. of ``population``: random archs drawn until within budget, the
    ``fallback`` (the cheapest arch) where ``max_draws`` candidates are all over."""
    empty = np.empty(0, np.int64)
    for i in range(start, len(population)):
        value = _draw_within(rng, population[i], 0, empty, empty, constraint, max_draws, choices, columns,
                             pair_values, group_at, 0.0, 0.0, cost_table, cost_offsets, cost_columns,
                             cost_strides, divisor)
        if value < 0.0:
            population[i] = fallback
            value = fallback_cost
        cost[i] = value
