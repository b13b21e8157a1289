import numpy as np
import pytest

from nas_synthetic import made_up_latency_entries, trained_synthetic_predictor
from ofa_tf.arch.complexity import profile_arch
from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.efficiency import LatencyPredictor, MACsPredictor
from ofa_tf.nas import evolution_kernel
from ofa_tf.nas.evolution import EvolutionFinder
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
        # the search scores archs with the predictor's own forward pass: the same number
        assert result.accuracy == float(finder.accuracy_predictor.predict_acc([result.arch])[0])
        assert len(result.best_valids) == SMALL_BUDGET["max_time_budget"]
        assert all(b <= a for b, a in zip(result.best_valids, result.best_valids[1:]))


def test_same_seed_same_result(finder):
    first, second = (finder.run_evolution_search(2.0, seed=7) for _ in range(2))
    assert first.arch == second.arch and first.accuracy == second.accuracy
    assert first.best_valids == second.best_valids


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


def test_an_arch_scores_the_same_in_any_batch_and_as_the_keras_model(space, accuracy):
    """predict_batch (the search's forward pass on feature bits) gives an arch one number
    whatever batch it is in; archs that differ only in the genes of skipped slots have the same
    features, so the same number; and it is the Keras model's forward pass."""
    finder = EvolutionFinder(MACsPredictor(space, 10), accuracy)
    batch = finder.random_batch(np.random.default_rng(0), 40)
    skipped = ~accuracy.arch_encoder.active_mask(batch)
    hidden = batch.genes.copy()
    hidden[:, : space.n_blocks][skipped] = (hidden[:, : space.n_blocks][skipped] + 1) % len(space.ks_list)
    twins = ArchBatch.concatenate([batch, batch.like(hidden), batch.take(np.arange(10))])
    once = accuracy.predict_batch(batch)
    assert skipped.any() and not np.array_equal(hidden, batch.genes)
    np.testing.assert_array_equal(accuracy.predict_batch(twins), once[np.r_[0:40, 0:40, 0:10]])
    np.testing.assert_array_equal(accuracy.predict_batch(batch.take([3, 3, 5])), once[[3, 3, 5]])
    keras = np.asarray(accuracy.model(accuracy.arch_encoder.encode(batch), training=False))[:, 0]
    np.testing.assert_allclose(once, keras, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(once, accuracy.predict_features(accuracy.arch_encoder.encode(batch)), rtol=1e-6)


def test_the_search_memo_finds_every_arch_it_stored():
    """The kernel's open-addressing table of scored archs (many duplicates, growth from 8 slots):
    each distinct key stored once, every repeat found, never a different key."""
    rng = np.random.default_rng(0)
    keys = rng.integers(-1, 3, size=(3000, 5)).astype(np.int32)
    slots, stored, count = np.full(8, -1, np.int64), np.empty_like(keys), 0
    for row in keys:
        at = evolution_kernel._find(slots, stored, row)
        if slots[at] < 0:
            stored[count], slots[at] = row, count
            count += 1
            if 2 * count > len(slots):
                slots = evolution_kernel._rehashed(slots, stored, count)
        else:
            np.testing.assert_array_equal(stored[slots[at]], row)
    distinct = {tuple(row) for row in keys}
    assert count == len(distinct) > 500 and len(slots) >= 2 * count
    assert {tuple(row) for row in stored[:count]} == distinct


@pytest.mark.parametrize("name", ["tiny", "proxyless_tiny", "resnet_tiny"])
def test_new_and_mutated_genes_follow_the_group_tables(name):
    """random_batch and mutate set whole groups from the group tables: each group's choice is
    uniform in a random arch, and a mutation redraws every group (position by position, not just
    on average) with its probability."""
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model
    from ofa_tf.nas.efficiency import macs_predictor
    from ofa_tf.nas.encoding import arch_encoder

    space = getattr(SearchSpace, name)()
    accuracy = AccuracyPredictor(space, build_accuracy_model(arch_encoder(space).n_dim, 0.7, 8, 1, seed=0))
    finder = EvolutionFinder(macs_predictor(space, 10), accuracy, arch_mutate_prob=0.3, resolution_mutate_prob=0.6)
    n = 6000

    def choices(genes):
        """(N, groups) each group's choice index, from its (one or two) gene values."""
        out = np.full((len(genes), len(finder._group_choices)), -1)
        for group, count in enumerate(finder._group_choices):
            pairs = finder._pair_values[finder._group_at[group]: finder._group_at[group] + count]
            values = genes[:, finder._group_columns[group]]
            match = (values[:, None, :] == pairs[None, :, :]).all(axis=2)
            assert match.any(axis=1).all(), f"group {group} holds a value pair outside its table"
            out[:, group] = match.argmax(axis=1)
        return out

    batch = finder.random_batch(np.random.default_rng(0), n)
    drawn = choices(batch.genes)
    for group, count in enumerate(finder._group_choices):
        share = np.bincount(drawn[:, group], minlength=count) / n
        assert np.all(np.abs(share - 1 / count) < 4 * np.sqrt(1 / count / n) + 1e-9), (group, share)
    mutated = finder.mutate(np.random.default_rng(1), batch)
    assert mutated.genes.shape == batch.genes.shape and mutated is not batch
    changed = choices(mutated.genes) != drawn
    prob = np.full(len(finder._group_choices), 0.3)
    prob[-1] = 0.6
    expected = prob * (1 - 1 / finder._group_choices)   # a redraw may give the same choice back
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(changed.mean(axis=0) - expected) <= tolerance), (changed.mean(axis=0), expected)
