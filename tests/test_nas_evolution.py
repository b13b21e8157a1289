import numpy as np
import pytest

from nas_synthetic import made_up_latency_entries, trained_synthetic_predictor
from ofa_tf.arch.complexity import profile_arch
from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.efficiency import LatencyPredictor, MACsPredictor
from ofa_tf.nas.evolution import AccuracyMemo, EvolutionFinder
from ofa_tf.nas.encoding import ArchBatch
from ofa_tf.nas.latency_table import LatencyTable

SMALL_BUDGET = {"max_time_budget": 60}  # the reference's population and ratios, fewer generations


@pytest.fixture(scope="module")
def space():
    return SearchSpace.tiny()


@pytest.fixture(scope="module")
def accuracy(space):
    return trained_synthetic_predictor(space)


@pytest.fixture(scope="module")
def finder(space, accuracy):
    return EvolutionFinder(MACsPredictor(space, n_classes=10), accuracy, **SMALL_BUDGET)


def test_reference_defaults():
    finder = EvolutionFinder.__init__.__kwdefaults__
    assert {k: finder[k] for k in ("population_size", "max_time_budget", "parent_ratio", "mutation_ratio",
                                   "arch_mutate_prob", "resolution_mutate_prob")} == {
        "population_size": 100, "max_time_budget": 500, "parent_ratio": 0.25, "mutation_ratio": 0.5,
        "arch_mutate_prob": 0.1, "resolution_mutate_prob": 0.5}


def test_search_never_violates_the_constraint(space, finder):
    for constraint in (0.45, 1.0, 2.5, 6.0):
        result = finder.run_evolution_search(constraint, seed=1)
        macs = profile_arch(result.arch, space, n_classes=10).mmacs
        assert macs <= constraint
        assert result.efficiency == pytest.approx(macs, rel=1e-12)
        assert result.accuracy == pytest.approx(float(finder.accuracy_predictor.predict_acc([result.arch])[0]),
                                                abs=1e-6)
        assert len(result.best_valids) == SMALL_BUDGET["max_time_budget"]
        assert all(b <= a for b, a in zip(result.best_valids, result.best_valids[1:]))


def test_same_seed_same_result(finder):
    first, second = (finder.run_evolution_search(2.0, seed=7) for _ in range(2))
    assert first.arch == second.arch and first.accuracy == second.accuracy
    assert first.best_valids == second.best_valids


def test_chunked_costing_gives_the_same_search(finder):
    """Big rounds are drawn and costed COST_CHUNK rows at a time; the draws take their random
    numbers in row order, so any chunk size gives the same search."""
    whole = finder.run_evolution_search(1.0, seed=3)
    finder.COST_CHUNK = 7
    try:
        chunked = finder.run_evolution_search(1.0, seed=3)
    finally:
        del finder.COST_CHUNK
    assert (chunked.arch, chunked.efficiency, chunked.best_valids) == (whole.arch, whole.efficiency, whole.best_valids)


def test_a_looser_constraint_never_gives_a_lower_predicted_accuracy(finder):
    constraints = (0.6, 1.2, 2.5, 5.0, 10.0)
    accuracies = [finder.run_evolution_search(c, seed=0).accuracy for c in constraints]
    for tighter, looser in zip(accuracies, accuracies[1:]):
        assert looser >= tighter - 0.003, accuracies  # search noise: well below the 0.02 steps here
    assert accuracies[-1] - accuracies[0] > 0.05, accuracies


def test_a_constraint_below_the_smallest_subnet_is_an_error_at_once(space, finder):
    smallest = profile_arch(space.smallest(), space, n_classes=10).mmacs
    with pytest.raises(ValueError, match=r"mmacs constraint 0.4 is below the cheapest subnet .*0.43008 MMACs"):
        finder.run_evolution_search(0.4)
    assert smallest == pytest.approx(0.43008)


def test_a_constraint_at_the_smallest_subnet_returns_it(space, accuracy):
    """Random sampling almost never hits the one subnet that fits; the bounded redraw falls
    back to the cheapest subnet instead of looping forever."""
    finder = EvolutionFinder(MACsPredictor(space, n_classes=10), accuracy, max_draws=100, **SMALL_BUDGET)
    result = finder.run_evolution_search(0.43008, seed=0)
    assert result.arch == space.smallest()


def test_mutation_and_crossover_follow_the_probabilities(space, accuracy):
    finder = EvolutionFinder(MACsPredictor(space, 10), accuracy, arch_mutate_prob=0.0,
                             resolution_mutate_prob=0.0)
    rng = np.random.default_rng(0)
    parents = finder.random_batch(rng, 50)
    unchanged = finder.mutate(rng, parents)
    assert all(np.array_equal(getattr(unchanged, f), getattr(parents, f)) for f in ("ks", "e", "d", "r"))
    finder.arch_mutate_prob = finder.resolution_mutate_prob = 1.0
    changed = finder.mutate(rng, parents)
    assert np.mean(changed.ks != parents.ks) > 0.5  # redrawn from 3 choices: 2/3 differ
    other = finder.random_batch(rng, 50)
    child = finder.crossover(rng, parents, other)
    from_first = child.ks == parents.ks
    assert np.all(from_first | (child.ks == other.ks)) and 0.3 < np.mean(from_first) < 0.9
    # A slot's (kernel, expand) pair is redrawn with prob p, uniformly over its 9 choices (so it
    # changes with prob 8/9 p); a depth over 3 choices, the resolution over 5.
    finder.arch_mutate_prob, finder.resolution_mutate_prob = 0.3, 0.2
    one = parents.take(np.zeros(20_000, np.int64))
    mutated = finder.mutate(rng, one)
    pair_changed = (mutated.ks != one.ks) | (mutated.e != one.e)
    assert abs(pair_changed.mean() - 0.3 * 8 / 9) < 0.01
    assert abs((mutated.d != one.d).mean() - 0.3 * 2 / 3) < 0.01
    assert abs((mutated.r != one.r).mean() - 0.2 * 4 / 5) < 0.01
    shift = ((mutated.ks * 3 + mutated.e) - (one.ks * 3 + one.e)) % 9   # 0: the parent's own pair
    assert np.all(np.abs(np.bincount(shift[pair_changed], minlength=9)[1:] / pair_changed.sum() - 1 / 8) < 0.01)


def test_latency_constrained_search_uses_only_resolutions_the_table_covers(space, accuracy):
    latency = LatencyPredictor(LatencyTable(made_up_latency_entries(space, 10, (40, 48))), space, 10)
    finder = EvolutionFinder(latency, accuracy, **SMALL_BUDGET)
    _, cheapest = latency.cheapest()
    result = finder.run_evolution_search(cheapest + 3.0, seed=0)
    assert result.arch["r"][0] in (40, 48)
    assert latency.get_efficiency(result.arch) <= cheapest + 3.0
    with pytest.raises(ValueError, match="latency_ms constraint"):
        finder.run_evolution_search(cheapest * 0.9)
    bare = LatencyPredictor(LatencyTable({"Conv-input:32x32x3-output:16x16x8": {"mean": 1.0}}), space, 10)
    with pytest.raises(ValueError, match="covers no resolution.*no entry for 'expanded_conv-input:16x16x8"):
        EvolutionFinder(bare, accuracy)


def test_accuracy_memo_scores_each_distinct_arch_once(space, accuracy):
    """The same numbers as the predictor, computed once per arch: archs that differ only in the
    genes of skipped slots have the same features, and are the same arch to the memo."""
    finder = EvolutionFinder(MACsPredictor(space, 10), accuracy)
    batch = finder.random_batch(np.random.default_rng(0), 40)
    skipped = ~accuracy.arch_encoder.active_mask(batch)
    hidden = batch.genes.copy()
    hidden[:, : space.n_blocks][skipped] = (hidden[:, : space.n_blocks][skipped] + 1) % len(space.ks_list)
    twins = ArchBatch.concatenate([batch, batch.like(hidden), batch.take(np.arange(10))])
    rows = []
    memo = AccuracyMemo(accuracy)
    memo.predictor = type("Counting", (), {"predict_batch": lambda self, b: rows.append(len(b)) or
                                           accuracy.predict_batch(b)})()
    once = accuracy.predict_batch(batch)
    # (a row's float32 forward pass can differ by 1 ulp with the batch it is in; the memo's twins agree)
    np.testing.assert_array_equal(memo(twins), once[np.r_[0:40, 0:40, 0:10]])
    np.testing.assert_array_equal(memo(batch.take([3, 3, 5])), once[[3, 3, 5]])
    np.testing.assert_allclose(memo(twins), accuracy.predict_batch(twins), rtol=1e-6)
    assert skipped.any() and rows == [40]


@pytest.mark.parametrize("name", ["tiny", "proxyless_tiny", "resnet_tiny"])
def test_new_and_mutated_genes_equal_the_group_tables(name):
    """random_batch writes genes directly and mutate scatters all drawn groups at once; both must
    give what the group tables give group by group (same generator, same draws)."""
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model
    from ofa_tf.nas.efficiency import macs_predictor
    from ofa_tf.nas.encoding import arch_encoder

    space = getattr(SearchSpace, name)()
    accuracy = AccuracyPredictor(space, build_accuracy_model(arch_encoder(space).n_dim, 0.7, 8, 1, seed=0))
    finder = EvolutionFinder(macs_predictor(space, 10), accuracy, arch_mutate_prob=0.3)
    n_groups = len(finder._group_choices)

    def set_group(genes, row, group, choice):
        for i, values in enumerate(finder._group_values):
            genes[row, finder._group_columns[group, i]] = values[finder._group_at[group] + choice]

    rng = np.random.default_rng(0)
    choice = (rng.random((300, n_groups)) * finder._group_choices).astype(np.int64)
    expected = np.zeros((300, finder._n_genes), np.int64)
    for row in range(300):
        for group in range(n_groups):
            set_group(expected, row, group, choice[row, group])
    batch = finder.random_batch(np.random.default_rng(0), 300)
    np.testing.assert_array_equal(batch.genes, expected)

    u = np.random.default_rng(1).random((300, n_groups))
    prob = np.full(n_groups, 0.3)
    prob[-1] = finder.resolution_mutate_prob
    for row, group in zip(*np.nonzero(u < prob)):
        new = min(int(u[row, group] / prob[group] * finder._group_choices[group]), finder._group_choices[group] - 1)
        set_group(expected, row, group, new)
    np.testing.assert_array_equal(finder.mutate(np.random.default_rng(1), batch).genes, expected)
