"""Evolutionary search under a cost constraint, compiled (`ofa_tf.nas.evolution_kernel`).

The reference's regularized evolution (ofa/nas/search_algorithm/evolution.py) with its defaults:
population 100, 500 generations, the best 25 % are parents, 50 % of the children are mutations
(per-slot kernel+expand and per-stage depth mutate with prob 0.1, resolution with prob 0.5), the
rest crossovers (each gene from either parent), and an arch over the constraint is drawn again
until one fits. Each distinct arch of a search is scored by the accuracy predictor only once (a
converging population's children are mostly archs scored before: 84-90 % of them in the OFA
tutorial's search).

Differences from the reference, both to bound the run time: a constraint below the cheapest
subnet is an error at once (the reference loops forever); an arch (initial or child) gets at most
``max_draws`` candidates, and one with none within budget is replaced by a copy of its (first)
parent, an initial arch by the cheapest subnet, all of which satisfy the constraint. Seeded with
a numpy Generator: the same seed gives the same result.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ofa_tf.nas import evolution_kernel
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
                 resolution_mutate_prob: float = 0.5, max_draws: int = 10_000):
        if efficiency_predictor.space != accuracy_predictor.space:
            raise ValueError("the efficiency and accuracy predictors are for different search spaces")
        self.efficiency_predictor, self.accuracy_predictor = efficiency_predictor, accuracy_predictor
        self.space = efficiency_predictor.space
        self.population_size, self.max_time_budget = int(population_size), int(max_time_budget)
        self.parent_ratio, self.mutation_ratio = parent_ratio, mutation_ratio
        self.arch_mutate_prob, self.resolution_mutate_prob = arch_mutate_prob, resolution_mutate_prob
        self.max_draws = int(max_draws)
        self.parents_size = int(round(parent_ratio * population_size))
        self.mutation_numbers = int(round(mutation_ratio * population_size))
        if self.population_size < 2 or not 1 <= self.parents_size <= self.population_size:
            raise ValueError(f"population_size {population_size} with parent_ratio {parent_ratio} "
                             "leaves no parents")
        if not 0 <= self.mutation_numbers <= self.population_size:
            raise ValueError(f"mutation_ratio must be in [0, 1], got {mutation_ratio}")
        if self.max_time_budget < 1 or self.max_draws < 1:
            raise ValueError("max_time_budget and max_draws must be >= 1")
        resolutions = efficiency_predictor.supported_resolutions()
        if not resolutions:
            raise ValueError(f"the {efficiency_predictor.metric} predictor covers no resolution of the space "
                             f"{list(self.space.resolutions)}" + self._missing_hint())
        self.resolution_ids = np.array([self.space.resolutions.index(r) for r in resolutions])
        self.cheapest_arch, self.cheapest_cost = efficiency_predictor.cheapest(resolutions)
        # The genes in mutation groups, as the reference redraws them: each slot's (kernel, expand)
        # pair, each depth entry (a skippable stem's, then the stages'), each width entry, the
        # resolution. Group g's choice c (uniform in its count) sets ArchBatch.genes column
        # _group_columns[g, i] to _pair_values[_group_at[g] + c, i] (i = 0, 1; a group of one gene names its
        # column twice).
        space = self.space
        blocks, n_e = space.n_blocks, len(space.expand_ratio_list)
        n_singles = space.n_depths + space.n_widths + 1
        self._layout = (blocks, space.n_depths, space.n_widths)
        self._n_genes = 2 * blocks + n_singles
        widths = [len(space.width_mult_list)] * space.n_widths if space.n_widths else []
        self._group_choices = np.array([len(space.ks_list) * n_e] * blocks + [len(space.depth_list)] * space.n_depths
                                       + widths + [len(self.resolution_ids)])
        singles = 2 * blocks + np.arange(n_singles)
        self._group_columns = np.stack([np.r_[np.arange(blocks), singles], np.r_[blocks + np.arange(blocks), singles]], 1)
        choice = np.arange(self._group_choices.max())
        ks, expand, single = np.tile(choice // n_e, (blocks, 1)), np.tile(choice % n_e, (blocks, 1)), \
            np.tile(choice, (n_singles, 1))
        single[-1, : len(self.resolution_ids)] = self.resolution_ids
        self._group_at = len(choice) * np.arange(len(self._group_choices))   # group g's values start
        # both of a choice's values in one row
        self._pair_values = np.stack([np.concatenate([ks, single]).ravel(), np.concatenate([expand, single]).ravel()], 1)
        self._groups = (self._group_choices, self._group_columns, self._pair_values, self._group_at)
        costs, bits = efficiency_predictor.cost_terms, accuracy_predictor.arch_encoder.feature_terms
        self._cost_args = (costs.table.astype(np.float64), costs.offsets, costs.columns, costs.strides,
                           float(efficiency_predictor.divisor))
        self._bit_args = (bits.table, bits.offsets, bits.columns, bits.strides)
        self._cheapest_genes = accuracy_predictor.arch_encoder.to_batch([self.cheapest_arch]).genes[0]

    def _missing_hint(self) -> str:
        find = getattr(self.efficiency_predictor, "missing_key", None)
        key = find(min(self.space.resolutions)) if find else None
        return f"; e.g. the table has no entry for {key!r}" if key else ""

    # ------------------------------------------------------------ operators
    # The compiled ones the search runs, on whole batches.
    def _batch(self, genes: np.ndarray) -> ArchBatch:
        return ArchBatch.from_genes(genes, *self._layout)

    def random_batch(self, rng: np.random.Generator, n: int) -> ArchBatch:
        """``n`` uniform archs (each group's choice uniform, the resolution among those the
        efficiency predictor covers)."""
        return self._batch(evolution_kernel.random_rows(rng, int(n), self._n_genes, *self._groups))

    def mutate(self, rng: np.random.Generator, parents: ArchBatch) -> ArchBatch:
        """Resolution with prob ``resolution_mutate_prob``; each slot's (kernel, expand) pair,
        each depth entry and each width entry with prob ``arch_mutate_prob``, as the reference
        mutates (a mutated group's new choice is uniform, so it may equal the old one)."""
        genes = np.array(parents.genes, np.int64, order="C")
        evolution_kernel.mutate_rows(rng, genes, *self._groups, float(self.arch_mutate_prob),
                           float(self.resolution_mutate_prob))
        return parents.like(genes)

    @staticmethod
    def crossover(rng: np.random.Generator, first: ArchBatch, second: ArchBatch) -> ArchBatch:
        """Each gene (slot kernel, slot expand, depth entry, width entry, resolution) from either
        parent."""
        return first.like(evolution_kernel.cross_rows(rng, np.ascontiguousarray(first.genes, np.int64),
                                            np.ascontiguousarray(second.genes, np.int64)))

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
        rng = np.random.default_rng(seed)
        genes, accuracy, cost, best_valids = evolution_kernel.evolve(
            rng, float(constraint), self.population_size, self.parents_size, self.mutation_numbers,
            self.max_time_budget, self.max_draws, *self._groups, float(self.arch_mutate_prob),
            float(self.resolution_mutate_prob), *self._cost_args, *self._bit_args,
            *self.accuracy_predictor.mlp_weights, self._cheapest_genes)
        if verbose:
            for generation in range(99, len(best_valids), 100):
                print(f"generation {generation + 1}: best predicted accuracy {100 * best_valids[generation]:.2f} %")
        arch = self.accuracy_predictor.arch_encoder.to_archs(self._batch(genes[None]))[0]
        predictor = self.efficiency_predictor
        return SearchResult(arch, float(accuracy), float(cost), float(constraint), predictor.metric, predictor.unit,
                            best_valids.tolist(), seed)
