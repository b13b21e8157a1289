"""Synthetic (arch, accuracy) pairs with a known structure, for predictor and search tests.

Accuracy grows with every active slot's kernel and expand choice, with depth (more active
slots) and with resolution, plus a little noise: a predictor that learned it must rank held-out
archs, and bigger budgets must buy higher predicted accuracy.
"""

import functools

import numpy as np

from ofa_tf.arch.layout import build_layout
from ofa_tf.nas.accuracy_predictor import AccuracyPredictor
from ofa_tf.nas.encoding import MobileNetArchEncoder
from ofa_tf.nas.latency_table import op_keys


def synthetic_accuracy(space, archs, noise=0.003, seed=0):
    encoder = MobileNetArchEncoder(space)
    batch = encoder.to_batch(archs)
    active = encoder.active_mask(batch)
    per_slot = 0.004 * (1 + batch.ks + batch.e)
    clean = 0.30 + (per_slot * active).sum(axis=1) + 0.02 * batch.r
    return clean + np.random.default_rng(seed).normal(0.0, noise, len(archs))


@functools.lru_cache(maxsize=None)
def trained_synthetic_predictor(space, n=800, seed=0):
    """Trained once per session for each (space, n, seed): the predictor, evolution and search
    tests read the same one (none of them changes it)."""
    archs = [space.sample(s) for s in range(seed * 100_000, seed * 100_000 + n)]
    return AccuracyPredictor.fit(space, archs, synthetic_accuracy(space, archs, seed=seed), epochs=80,
                                 patience=15, seed=seed)


def made_up_latency_entries(space, n_classes, resolutions, latency=None):
    """A latency table (reference format) with a made-up latency for every op the space runs at
    ``resolutions``; ``latency(key, rng)`` gives the mean (default: uniform 0.1..3 ms)."""
    layout = build_layout(space, n_classes)
    rng = np.random.default_rng(0)
    latency = latency or (lambda key, rng: float(rng.uniform(0.1, 3.0)))
    entries = {}
    for r in resolutions:
        for k in space.ks_list:
            for e in space.expand_ratio_list:
                for key in op_keys(layout, space.uniform(k, e, space.max_depth, r)):
                    if key not in entries:
                        entries[key] = {"count": 10, "mean": latency(key, rng), "var": 0.01}
    return entries
