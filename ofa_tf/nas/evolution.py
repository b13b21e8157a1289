"""Evolutionary search under a cost constraint, on whole populations at once.

The reference's regularized evolution (ofa/nas/search_algorithm/evolution.py) with its defaults:
population 100, 500 generations, the best 25 % are parents, 50 % of the children are mutations
(per-slot kernel+expand and per-stage depth mutate with prob 0.1, resolution with prob 0.5), the
rest crossovers (each gene from either parent), and children that break the constraint are
resampled. Here a generation is a handful of numpy operations on :class:`ArchBatch` arrays:
all children are drawn, costed and scored together, and only the ones over budget are redrawn.

Differences from the reference, both to bound the run time: a constraint below the cheapest
subnet is an error at once (the reference loops forever); redrawing stops after
``max_resample_rounds`` rounds, and a child still over budget is replaced by a copy of its
(first) parent, and an initial arch still over budget by the cheapest subnet, all of which
satisfy the constraint. Seeded with a numpy Generator: the same seed gives the same result.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ofa_tf.nas.accuracy_predictor import AccuracyPredictor
from ofa_tf.nas.efficiency import EfficiencyPredictor
from ofa_tf.nas.encoding import ArchBatch


@dataclasses.dataclass
class SearchResult:
    """The best arch found, its predicted accuracy (fraction) and cost, and the best
    predicted accuracy after each generation."""

    arch: dict
    accuracy: float
    efficiency: float
    constraint: float
    metric: str
    unit: str
    best_valids: list
    seed: int

    def to_dict(self) -> dict:
        return {"arch": self.arch, "predicted_accuracy": self.accuracy, self.metric: self.efficiency,
                "constraint": {self.metric: self.constraint}, "seed": self.seed,
                "generations": len(self.best_valids)}


class EvolutionFinder:
    """Finds the arch of highest predicted accuracy whose predicted cost is <= a constraint."""

    def __init__(self, efficiency_predictor: EfficiencyPredictor, accuracy_predictor: AccuracyPredictor,
                 *, population_size: int = 100, max_time_budget: int = 500, parent_ratio: float = 0.25,
                 mutation_ratio: float = 0.5, arch_mutate_prob: float = 0.1,
                 resolution_mutate_prob: float = 0.5, max_resample_rounds: int = 100):
        if efficiency_predictor.space != accuracy_predictor.space:
            raise ValueError("the efficiency and accuracy predictors are for different search spaces")
        self.efficiency_predictor, self.accuracy_predictor = efficiency_predictor, accuracy_predictor
        self.space = efficiency_predictor.space
        self.population_size, self.max_time_budget = int(population_size), int(max_time_budget)
        self.parent_ratio, self.mutation_ratio = parent_ratio, mutation_ratio
        self.arch_mutate_prob, self.resolution_mutate_prob = arch_mutate_prob, resolution_mutate_prob
        self.max_resample_rounds = int(max_resample_rounds)
        self.parents_size = int(round(parent_ratio * population_size))
        self.mutation_numbers = int(round(mutation_ratio * population_size))
        if self.population_size < 2 or not 1 <= self.parents_size <= self.population_size:
            raise ValueError(f"population_size {population_size} with parent_ratio {parent_ratio} "
                             "leaves no parents")
        if not 0 <= self.mutation_numbers <= self.population_size:
            raise ValueError(f"mutation_ratio must be in [0, 1], got {mutation_ratio}")
        if self.max_time_budget < 1 or self.max_resample_rounds < 1:
            raise ValueError("max_time_budget and max_resample_rounds must be >= 1")
        resolutions = efficiency_predictor.supported_resolutions()
        if not resolutions:
            raise ValueError(f"the {efficiency_predictor.metric} predictor covers no resolution of the space "
                             f"{list(self.space.resolutions)}" + self._missing_hint())
        self.resolution_ids = np.array([self.space.resolutions.index(r) for r in resolutions])
        self.cheapest_arch, self.cheapest_cost = efficiency_predictor.cheapest(resolutions)
        self._shape = (len(self.space.ks_list), len(self.space.expand_ratio_list), len(self.space.depth_list))

    def _missing_hint(self) -> str:
        find = getattr(self.efficiency_predictor, "missing_key", None)
        key = find(min(self.space.resolutions)) if find else None
        return f"; e.g. the table has no entry for {key!r}" if key else ""

    # ------------------------------------------------------------ operators
    def random_batch(self, rng: np.random.Generator, n: int) -> ArchBatch:
        n_ks, n_e, n_d = self._shape
        space = self.space
        batch = ArchBatch(rng.integers(n_ks, size=(n, space.n_blocks)), rng.integers(n_e, size=(n, space.n_blocks)),
                          rng.integers(n_d, size=(n, space.n_depths)), rng.choice(self.resolution_ids, n))
        if not space.n_widths:
            return batch
        return dataclasses.replace(batch, w=rng.integers(len(space.width_mult_list), size=(n, space.n_widths)))

    def mutate(self, rng: np.random.Generator, parents: ArchBatch) -> ArchBatch:
        """Resolution with prob ``resolution_mutate_prob``; each slot's (kernel, expand) pair,
        each depth entry and each width entry with prob ``arch_mutate_prob``, as the reference
        mutates."""
        n = len(parents)
        fresh = self.random_batch(rng, n)
        r = np.where(rng.random(n) < self.resolution_mutate_prob, fresh.r, parents.r)
        block_mask = rng.random(parents.ks.shape) < self.arch_mutate_prob
        stage_mask = rng.random(parents.d.shape) < self.arch_mutate_prob
        w = parents.w
        if parents.w.size:
            w = np.where(rng.random(parents.w.shape) < self.arch_mutate_prob, fresh.w, parents.w)
        return ArchBatch(np.where(block_mask, fresh.ks, parents.ks), np.where(block_mask, fresh.e, parents.e),
                         np.where(stage_mask, fresh.d, parents.d), r, w)

    @staticmethod
    def crossover(rng: np.random.Generator, first: ArchBatch, second: ArchBatch) -> ArchBatch:
        """Each gene (slot kernel, slot expand, depth entry, resolution, width entry) from either
        parent."""
        pick = lambda a, b: np.where(rng.random(a.shape) < 0.5, a, b)  # noqa: E731
        w = pick(first.w, second.w) if first.w.size else first.w
        return ArchBatch(pick(first.ks, second.ks), pick(first.e, second.e), pick(first.d, second.d),
                         pick(first.r, second.r), w)

    def _within(self, draw: Callable[[np.ndarray], ArchBatch], n: int, constraint: float,
                fallback: Callable[[np.ndarray], ArchBatch]) -> tuple[ArchBatch, np.ndarray]:
        """``draw(rows)`` for rows 0..n-1, redrawing the rows over budget (bounded), then
        ``fallback(rows)`` (archs known to satisfy the constraint) for the rest."""
        rows = np.arange(n)
        batch = draw(rows)
        cost = self.efficiency_predictor.predict_batch(batch)
        for _ in range(self.max_resample_rounds):
            over = np.flatnonzero(cost > constraint)
            if not over.size:
                return batch, cost
            redo = draw(over)
            batch = batch.with_rows(over, redo)
            cost[over] = self.efficiency_predictor.predict_batch(redo)
        over = np.flatnonzero(cost > constraint)
        if over.size:
            kept = fallback(over)
            batch = batch.with_rows(over, kept)
            cost[over] = self.efficiency_predictor.predict_batch(kept)
        return batch, cost

    # ------------------------------------------------------------ search
    def check_constraint(self, constraint: float) -> None:
        predictor = self.efficiency_predictor
        if not np.isfinite(constraint) or constraint < self.cheapest_cost:
            raise ValueError(
                f"{predictor.metric} constraint {constraint:g} is below the cheapest subnet of the space "
                f"({self.cheapest_cost:.6g} {predictor.unit}: {self.cheapest_arch}); no subnet satisfies it")

    def run_evolution_search(self, constraint: float, seed: int = 0, verbose: bool = False) -> SearchResult:
        """One evolution run (the reference's method name); see the module docstring."""
        self.check_constraint(constraint)
        # A population's matmuls are small: BLAS threads only contend (20x slower on 2 busy cores).
        with threadpool_limits(1):
            return self._evolve(float(constraint), seed, verbose)

    def _evolve(self, constraint: float, seed: int, verbose: bool) -> SearchResult:
        rng = np.random.default_rng(seed)
        predict_acc = self.accuracy_predictor.predict_batch
        cheapest = self.accuracy_predictor.arch_encoder.to_batch([self.cheapest_arch])
        population, cost = self._within(
            lambda rows: self.random_batch(rng, len(rows)), self.population_size, constraint,
            lambda rows: cheapest.take(np.zeros(len(rows), np.int64)))
        accuracy = predict_acc(population)
        best_valids, best = [], None
        n_cross = self.population_size - self.mutation_numbers
        for generation in range(self.max_time_budget):
            order = np.argsort(-accuracy, kind="stable")[: self.parents_size]
            parents, parent_acc, parent_cost = population.take(order), accuracy[order], cost[order]
            if best is None or parent_acc[0] > best[0]:
                best = (float(parent_acc[0]), parents.take([0]), float(parent_cost[0]))
            best_valids.append(best[0])
            if verbose and (generation + 1) % 100 == 0:
                print(f"generation {generation + 1}: best predicted accuracy {100 * best[0]:.2f} %")
            mutate_from = rng.integers(self.parents_size, size=self.mutation_numbers)
            mutated, mutated_cost = self._within(
                lambda rows: self.mutate(rng, parents.take(mutate_from[rows])), self.mutation_numbers,
                constraint, lambda rows: parents.take(mutate_from[rows]))
            first = rng.integers(self.parents_size, size=n_cross)
            second = rng.integers(self.parents_size, size=n_cross)
            crossed, crossed_cost = self._within(
                lambda rows: self.crossover(rng, parents.take(first[rows]), parents.take(second[rows])),
                n_cross, constraint, lambda rows: parents.take(first[rows]))
            children = ArchBatch.concatenate([mutated, crossed])
            population = ArchBatch.concatenate([parents, children])
            accuracy = np.concatenate([parent_acc, predict_acc(children)])
            cost = np.concatenate([parent_cost, mutated_cost, crossed_cost])
        top = int(np.argmax(accuracy))  # the last generation's children count too
        if accuracy[top] > best[0]:
            best = (float(accuracy[top]), population.take([top]), float(cost[top]))
        arch = self.accuracy_predictor.arch_encoder.to_archs(best[1])[0]
        predictor = self.efficiency_predictor
        return SearchResult(arch, best[0], best[2], float(constraint), predictor.metric, predictor.unit,
                            best_valids, seed)
