"""Evolutionary search under a cost constraint, on whole populations at once.

The reference's regularized evolution (ofa/nas/search_algorithm/evolution.py) with its defaults:
population 100, 500 generations, the best 25 % are parents, 50 % of the children are mutations
(per-slot kernel+expand and per-stage depth mutate with prob 0.1, resolution with prob 0.5), the
rest crossovers (each gene from either parent), and an arch over the constraint is drawn again
until one fits. Here a generation is a handful of numpy operations on :class:`ArchBatch` arrays:
all children are drawn and costed together, several candidates at a time for the ones over
budget, and each distinct arch of a search is scored by the accuracy predictor only once.

Differences from the reference, both to bound the run time: a constraint below the cheapest
subnet is an error at once (the reference loops forever); an arch (initial or child) gets at most
``max_draws`` candidates, and one with none within budget is replaced by a copy of its (first)
parent, an initial arch by the cheapest subnet, all of which satisfy the constraint. Seeded with
a numpy Generator: the same seed gives the same result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import numpy as np
from threadpoolctl import ThreadpoolController

from ofa_tf.nas.accuracy_predictor import AccuracyPredictor
from ofa_tf.nas.efficiency import EfficiencyPredictor
from ofa_tf.nas.encoding import ArchBatch


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The process's BLAS/OpenMP pools, found once (it takes ~2 ms; numpy's BLAS is loaded by then)."""
    return ThreadpoolController()


class AccuracyMemo:
    """An accuracy predictor's ``predict_batch`` that computes each distinct arch once (per
    memo): a converging population's children are mostly archs scored before (84-90 % of them
    in the OFA tutorial's search), and the predictor's forward pass is most of a generation. An
    arch gets the same number wherever it appears (a float32 forward pass can differ by one ulp
    with the batch a row is in)."""

    def __init__(self, predictor: AccuracyPredictor):
        self.predictor, self.encoder = predictor, predictor.arch_encoder
        self.known: dict[bytes, float] = {}
        self._key_type = None   # one feature-code row as one bytes key

    def __call__(self, batch: ArchBatch) -> np.ndarray:
        codes = np.ascontiguousarray(self.encoder.feature_codes(batch))
        if self._key_type is None:
            self._key_type = np.dtype((np.void, codes.shape[1] * codes.itemsize))
        keys = codes.view(self._key_type).ravel().tolist()
        get = self.known.get
        scores = list(map(get, keys))
        if None in scores:
            new = {}
            for row in [row for row, score in enumerate(scores) if score is None]:
                new.setdefault(keys[row], row)   # each new arch's first row, in row order
            rows = np.fromiter(new.values(), np.int64, len(new))
            self.known.update(zip(new, self.predictor.predict_batch(batch.take(rows)).tolist()))
            scores = list(map(get, keys))
        return np.array(scores, np.float32)


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

    MAX_ROUND_DRAWS = 1 << 15   # candidates costed in one call while redrawing (bounds memory)
    REDRAW_MISS = 0.01          # a redraw round aims to leave this fraction of its rows without a fit
    COST_CHUNK = 1024           # candidates drawn and costed together (see _costed)

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
        # _group_columns[g, i] to _group_values[i][g, c] (i = 0, 1; a group of one gene names its
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
        kernel, expand, single = np.tile(choice // n_e, (blocks, 1)), np.tile(choice % n_e, (blocks, 1)), \
            np.tile(choice, (n_singles, 1))
        single[-1, : len(self.resolution_ids)] = self.resolution_ids
        self._group_values = [np.concatenate([kernel, single]).ravel(), np.concatenate([expand, single]).ravel()]
        self._group_at = len(choice) * np.arange(len(self._group_choices))   # group g's values start
        self._pair_values = np.stack(self._group_values, 1)   # both of a choice's values in one gather
        self._group_sizes = self._group_choices.astype(np.float64)   # the same products, no cast per call
        self._kernel_of, self._expand_of = choice // n_e, choice % n_e   # a (kernel, expand) choice's parts
        self._prob_key = self._prob = None
        self._log_miss = np.log(self.REDRAW_MISS)
        self._rounds: dict[tuple, tuple] = {}   # _first_round's layouts

    def _missing_hint(self) -> str:
        find = getattr(self.efficiency_predictor, "missing_key", None)
        key = find(min(self.space.resolutions)) if find else None
        return f"; e.g. the table has no entry for {key!r}" if key else ""

    # ------------------------------------------------------------ operators
    # The search runs on plain gene arrays (ArchBatch.genes); the public operators wrap them.
    def _batch(self, genes: np.ndarray) -> ArchBatch:
        return ArchBatch.from_genes(genes, *self._layout)

    def _random_genes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform archs: the genes that _group_values give each group's uniform choice,
        written directly (the initial population at a tight budget draws ~10^5)."""
        u = rng.random((n, len(self._group_choices)))
        choice = np.multiply(u, self._group_sizes, out=u).astype(np.int64)   # as u * _group_choices
        blocks, pair = self._layout[0], choice[:, : self._layout[0]]
        genes = np.empty((n, self._n_genes), np.int64)
        genes[:, :blocks] = self._kernel_of.take(pair)   # (a lookup: integer division is slower)
        genes[:, blocks: 2 * blocks] = self._expand_of.take(pair)
        genes[:, 2 * blocks: -1] = choice[:, blocks: -1]   # depth and width entries: the choice itself
        genes[:, -1] = self.resolution_ids.take(choice[:, -1])
        return genes

    def random_batch(self, rng: np.random.Generator, n: int) -> ArchBatch:
        return self._batch(self._random_genes(rng, n))

    def _mutate_prob(self) -> np.ndarray:
        """Each group's mutation probability (the resolution's last), rebuilt when the finder's
        probabilities change (tests change them on a finder)."""
        key = (self.arch_mutate_prob, self.resolution_mutate_prob)
        if key != self._prob_key:
            self._prob = np.full(len(self._group_choices), float(self.arch_mutate_prob))
            self._prob[-1] = self.resolution_mutate_prob
            self._prob_key = key
        return self._prob

    def _mutate_rows(self, rng: np.random.Generator, genes: np.ndarray) -> None:
        """Mutates ``genes`` (C-contiguous rows) in place: the search mutates the copies of parents
        it has just taken, a copy fewer of its largest array."""
        if not genes.flags.c_contiguous:
            raise ValueError("_mutate_rows writes through genes.reshape(-1): the rows must be C-contiguous")
        prob = self._mutate_prob()
        u = rng.random((len(genes), len(prob)))
        # (= u < prob, as every group but the last, the resolution, has arch_mutate_prob: a scalar
        # comparison is 4x faster than a broadcast one)
        drawn = u < prob[0]
        drawn[:, -1] = u[:, -1] < prob[-1]
        flat = np.flatnonzero(drawn)
        rows = flat // len(prob)
        groups = flat - rows * len(prob)   # (= np.divmod(flat, len(prob)), 2x faster)
        # Given u < p, u / p is uniform in [0, 1): it draws the group's new choice too.
        choices = self._group_choices[groups]
        choice = np.minimum((u.reshape(-1)[flat] / prob[groups] * choices).astype(np.int64), choices - 1)
        # (take: a 2-D fancy index is several times slower on these sizes)
        columns = self._group_columns.take(groups, axis=0) + (rows * self._n_genes)[:, None]
        genes.reshape(-1)[columns] = self._pair_values.take(self._group_at[groups] + choice, axis=0)

    def mutate(self, rng: np.random.Generator, parents: ArchBatch) -> ArchBatch:
        """Resolution with prob ``resolution_mutate_prob``; each slot's (kernel, expand) pair,
        each depth entry and each width entry with prob ``arch_mutate_prob``, as the reference
        mutates."""
        genes = parents.genes.copy()
        self._mutate_rows(rng, genes)
        return parents.like(genes)

    @staticmethod
    def _cross_genes(rng: np.random.Generator, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return np.where(rng.random(first.shape) < 0.5, first, second)

    @staticmethod
    def crossover(rng: np.random.Generator, first: ArchBatch, second: ArchBatch) -> ArchBatch:
        """Each gene (slot kernel, slot expand, depth entry, width entry, resolution) from either
        parent."""
        return first.like(EvolutionFinder._cross_genes(rng, first.genes, second.genes))

    def _draws_for(self, rate: float) -> int:
        """Candidates per arch for all but ``REDRAW_MISS`` of the archs to get one that fits,
        when each fits with probability ``rate`` > 0."""
        return 1 if rate >= 1 else math.ceil(self._log_miss / np.log1p(-rate))

    def _first_round(self, n: int, n_first: int, first_k: int) -> tuple:
        """A first round's layout, the same in most generations (so built once): each row's
        candidates (``first_k`` for rows < ``n_first``, one for the others) as their rows, each
        row's first candidate, the counts, every candidate's position and the most of any row."""
        key = (n, n_first, first_k)
        if key not in self._rounds:
            counts = np.where(np.arange(n) < n_first, first_k, 1)
            rows = np.repeat(np.arange(n), counts)
            self._rounds[key] = (rows, np.cumsum(counts) - counts, counts, np.arange(rows.size), int(counts.max()))
        return self._rounds[key]

    def _costed(self, draw: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``draw(rows)`` and the candidates' costs, drawn and costed ``COST_CHUNK`` rows at a
        time: a draw takes its random numbers in row order, so the candidates are the same, and
        each chunk's temporaries stay in the cache (the initial population at a tight budget
        draws ~10^5 candidates: 1.45x faster at the tutorial's 15 ms)."""
        predict = self.efficiency_predictor.predict_batch
        if len(rows) <= self.COST_CHUNK:
            candidates = draw(rows)
            return candidates, predict(self._batch(candidates))
        candidates = np.empty((len(rows), self._n_genes), np.int64)
        cost = np.empty(len(rows))
        for start in range(0, len(rows), self.COST_CHUNK):
            chunk = slice(start, start + self.COST_CHUNK)
            candidates[chunk] = draw(rows[chunk])
            cost[chunk] = predict(self._batch(candidates[chunk]))
        return candidates, cost

    def _within(self, draw: Callable[[np.ndarray], np.ndarray], n: int, first_k: int, n_first: int,
                constraint: float, fallback: Callable[[np.ndarray], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each of ``n`` rows, the first of the candidates ``draw(rows)`` (genes; independent
        draws for each entry of ``rows``) that is within the constraint: the reference's
        draw-until-within per arch, in a few batched calls.

        The first round draws ``first_k`` candidates for each row < ``n_first`` and one for each
        other row; each later round as many per row still without one as the acceptance rate seen
        so far needs for all but ``REDRAW_MISS`` of them to succeed (at most ``MAX_ROUND_DRAWS``
        in all). A row with no success in ``max_draws`` candidates gets ``fallback(rows)`` (genes
        of archs known to satisfy the constraint). Returns the genes, their costs, and each row's
        fraction of first-round candidates within the constraint."""
        predict = self.efficiency_predictor.predict_batch
        rows, starts, counts, positions, drawn = self._first_round(n, n_first, first_k)
        candidates, candidate_cost = self._costed(draw, rows)
        fits = candidate_cost <= constraint
        # every row gets a candidate, an over-budget one where none fits (redrawn below)
        first = np.minimum.reduceat(np.where(fits, positions, fits.size), starts)
        found = first < fits.size
        picked = np.where(found, first, starts)
        first_fit = np.add.reduceat(fits, starts) / counts
        genes, cost = candidates.take(picked, axis=0), candidate_cost[picked]
        pending = np.flatnonzero(~found)
        # the rows left are the harder ones: guess half the first round's acceptance for them
        rate = 0.5 * (np.count_nonzero(fits) / fits.size)   # (= 0.5 * fits.mean())
        while pending.size and drawn < self.max_draws:
            k = self._draws_for(rate) if rate > 0 else 2 * drawn   # nothing fits yet: double the draws
            k = max(1, min(k, self.max_draws - drawn, self.MAX_ROUND_DRAWS // pending.size))
            # k candidates for each row left, in consecutive runs
            candidates, candidate_cost = self._costed(draw, np.repeat(pending, k))
            fits = candidate_cost <= constraint
            by_row = fits.reshape(-1, k)
            found = by_row.any(axis=1)
            first = by_row.argmax(axis=1) + k * np.arange(len(by_row))
            genes[pending[found]] = candidates.take(first[found], axis=0)
            cost[pending[found]] = candidate_cost[first[found]]
            rate = np.count_nonzero(fits) / fits.size
            drawn += k
            pending = pending[~found]
        if pending.size:
            kept = fallback(pending)
            genes[pending] = kept
            cost[pending] = predict(self._batch(kept))
        return genes, cost, first_fit

    def _children(self, rng: np.random.Generator, parents: np.ndarray, constraint: float,
                  mutation_fit: float) -> tuple[np.ndarray, np.ndarray, float]:
        n_mutated = self.mutation_numbers
        first, second = rng.integers(len(parents), size=(2, self.population_size))

        def draw(rows):
            """The candidates of ``rows``: copies of their first parents, mutated in place (the
            rows < n_mutated, first) or crossed with their second parents."""
            split = int(np.searchsorted(rows, n_mutated))   # rows ascending: the mutations first
            out = parents.take(first[rows], axis=0)
            if split:
                self._mutate_rows(rng, out[:split])
            if split < len(rows):
                crossed = out[split:]
                crossed[...] = self._cross_genes(rng, crossed, parents.take(second[rows[split:]], axis=0))
            return out

        k = min(self._draws_for(max(mutation_fit, 0.05)), self.max_draws)
        genes, cost, fit = self._within(draw, self.population_size, k, n_mutated, constraint,
                                        lambda rows: parents.take(first[rows], axis=0))
        # the mutations' mean fraction within the constraint (= fit[:n_mutated].mean())
        return genes, cost, float(np.add.reduce(fit[:n_mutated]) / n_mutated) if n_mutated else 1.0

    def children(self, rng: np.random.Generator, parents: ArchBatch, constraint: float,
                 mutation_fit: float) -> tuple[ArchBatch, np.ndarray, float]:
        """One generation's ``population_size`` children and their costs: ``mutation_numbers``
        mutations of random parents, then crossovers of random pairs of parents, each drawn until
        it is within the constraint (the rows of both kinds drawn together). ``mutation_fit``, the
        last generation's share of mutations within the constraint (returned, for the next),
        sets how many candidates each mutation gets at first."""
        genes, cost, fit = self._children(rng, parents.genes, constraint, mutation_fit)
        return parents.like(genes), cost, fit

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
        with _threadpools().limit(limits=1):
            return self._evolve(float(constraint), seed, verbose)

    def _evolve(self, constraint: float, seed: int, verbose: bool) -> SearchResult:
        rng = np.random.default_rng(seed)
        memo = AccuracyMemo(self.accuracy_predictor)
        cheapest = self.accuracy_predictor.arch_encoder.to_batch([self.cheapest_arch]).genes
        population, cost, _ = self._within(
            lambda rows: self._random_genes(rng, len(rows)), self.population_size, 1, 0, constraint,
            lambda rows: cheapest[np.zeros(len(rows), np.int64)])
        accuracy = memo(self._batch(population))
        best_valids, best, mutation_fit = [], None, 0.5
        for generation in range(self.max_time_budget):
            order = np.argsort(-accuracy, kind="stable")[: self.parents_size]
            parents, parent_acc, parent_cost = population.take(order, axis=0), accuracy[order], cost[order]
            if best is None or parent_acc[0] > best[0]:
                best = (float(parent_acc[0]), parents[:1], float(parent_cost[0]))
            best_valids.append(best[0])
            if verbose and (generation + 1) % 100 == 0:
                print(f"generation {generation + 1}: best predicted accuracy {100 * best[0]:.2f} %")
            children, children_cost, mutation_fit = self._children(rng, parents, constraint, mutation_fit)
            population = np.concatenate([parents, children])
            accuracy = np.concatenate([parent_acc, memo(self._batch(children))])
            cost = np.concatenate([parent_cost, children_cost])
        top = int(np.argmax(accuracy))  # the last generation's children count too
        if accuracy[top] > best[0]:
            best = (float(accuracy[top]), population[top: top + 1], float(cost[top]))
        arch = self.accuracy_predictor.arch_encoder.to_archs(self._batch(best[1]))[0]
        predictor = self.efficiency_predictor
        return SearchResult(arch, best[0], best[2], float(constraint), predictor.metric, predictor.unit,
                            best_valids, seed)
