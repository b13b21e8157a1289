import numpy as np
import pytest

from ofa_tf.arch.space import SearchSpace
from ofa_tf.interop.reference_package import import_reference
from ofa_tf.nas.encoding import ArchBatch, MobileNetArchEncoder, arch_encoder


def _canonical(space, arch):
    """The arch with skipped slots set to the first choice (what decode returns)."""
    out = {k: list(v) for k, v in arch.items()}
    active = set(space.active_slots(arch))
    for i in range(space.n_blocks):
        if i not in active:
            out["ks"][i], out["e"][i] = space.ks_list[0], space.expand_ratio_list[0]
    return out


@pytest.mark.parametrize("space", [SearchSpace.tiny(), SearchSpace.mobilenet_v3(1.0)], ids=["tiny", "w1.0"])
def test_round_trips(space):
    encoder = arch_encoder(space)   # the family's encoder
    assert type(encoder) is MobileNetArchEncoder
    archs = [space.sample(seed) for seed in range(50)] + [space.smallest(), space.largest()]
    archs[-2]["r"], archs[-1]["r"] = [min(space.resolutions)], [max(space.resolutions)]
    batch = encoder.to_batch(archs)
    assert encoder.to_archs(batch) == [space.validate(a) for a in archs]
    features = encoder.encode(batch)
    assert features.shape == (len(archs), encoder.n_dim)
    decoded = encoder.to_archs(encoder.decode(features))
    assert decoded == [_canonical(space, a) for a in archs]
    np.testing.assert_array_equal(encoder.encode(encoder.decode(features)), features)
    assert encoder.feature2arch(encoder.arch2feature(archs[0])) == _canonical(space, archs[0])


def test_layout_is_resolution_then_kernel_then_expand_with_skipped_slots_zero():
    space = SearchSpace.tiny()  # 4 stages x 3 slots, ks (3,5,7), e (3,4,6), r 32..64
    encoder = MobileNetArchEncoder(space)
    assert encoder.n_dim == 5 + 12 * 3 + 12 * 3
    arch = {"ks": [5] * 12, "e": [6] * 12, "d": [1, 2, 3, 1], "r": [48]}
    feature = encoder.arch2feature(arch)
    active = [0, 3, 4, 6, 7, 8, 9]
    expected = np.zeros(encoder.n_dim, np.float32)
    expected[2] = 1                                      # r = 48 is the third resolution
    for slot in active:
        expected[5 + 3 * slot + 1] = 1                   # ks = 5 is the second kernel choice
        expected[5 + 36 + 3 * slot + 2] = 1              # e = 6 is the third expand choice
    np.testing.assert_array_equal(feature, expected)


def test_matches_the_reference_arch_encoder():
    try:
        reference = import_reference("ofa.nas.accuracy_predictor.arch_encoder")
    except ImportError as err:
        pytest.skip(f"reference ofa package not importable: {err}")
    for space in (SearchSpace.mobilenet_v3(1.0), SearchSpace.tiny()):
        theirs = reference.MobileNetArchEncoder(
            image_size_list=list(space.resolutions), ks_list=list(space.ks_list),
            expand_list=list(space.expand_ratio_list), depth_list=list(space.depth_list),
            n_stage=space.n_stages)
        ours = MobileNetArchEncoder(space)
        assert ours.n_dim == theirs.n_dim
        for seed in range(30):
            arch = space.sample(seed)
            reference_arch = {"ks": arch["ks"], "e": arch["e"], "d": arch["d"], "image_size": arch["r"][0]}
            np.testing.assert_array_equal(ours.arch2feature(arch), theirs.arch2feature(reference_arch))


def test_bad_features_and_archs_are_refused():
    space = SearchSpace.tiny()
    encoder = MobileNetArchEncoder(space)
    good = encoder.arch2feature({"ks": [3] * 12, "e": [3] * 12, "d": [2] * 4, "r": [32]})
    gap = good.copy()
    gap[5 + 0 * 3 + 0] = 0                               # slot 0 off while slot 1 of its stage is on
    gap[5 + 36 + 0] = 0
    with pytest.raises(ValueError, match="no gaps"):
        encoder.decode(gap)
    with pytest.raises(ValueError, match="columns"):
        encoder.decode(good[:-1])
    with pytest.raises(ValueError, match="missing 'r'"):
        encoder.to_batch([{"ks": [3] * 12, "e": [3] * 12, "d": [2] * 4}])
    with pytest.raises(ValueError, match=r"arch\['ks'\]\[0\] = 4"):
        encoder.to_batch([{"ks": [4] + [3] * 11, "e": [3] * 12, "d": [2] * 4, "r": [32]}])


def test_batch_rows_can_be_taken_and_replaced():
    space = SearchSpace.tiny()
    encoder = MobileNetArchEncoder(space)
    archs = [space.sample(seed) for seed in range(6)]
    batch = encoder.to_batch(archs)
    assert encoder.to_archs(batch.take([4, 1])) == [space.validate(archs[4]), space.validate(archs[1])]
    replaced = batch.with_rows(np.array([0, 5]), batch.take([2, 3]))
    assert encoder.to_archs(replaced) == [space.validate(a) for a in [archs[2]] + archs[1:5] + [archs[3]]]
    assert encoder.to_archs(batch) == [space.validate(a) for a in archs]  # the original is unchanged
    assert len(ArchBatch.concatenate([batch, batch.take([0])])) == 7


def _random_genes(space, n, seed=0):
    """Any index in every gene's range (skipped slots included), as a search draws them."""
    rng = np.random.default_rng(seed)
    ranges = ([len(space.ks_list)] * space.n_blocks + [len(space.expand_ratio_list)] * space.n_blocks
              + [len(space.depth_list)] * space.n_depths + [len(space.width_mult_list or (1,))] * space.n_widths
              + [len(space.resolutions)])
    genes = (rng.random((n, len(ranges))) * ranges).astype(np.int64)
    return ArchBatch.from_genes(genes, space.n_blocks, space.n_depths, space.n_widths)


@pytest.mark.parametrize("space", [SearchSpace.tiny(), SearchSpace.proxyless_tiny(), SearchSpace.resnet_tiny(),
                                   SearchSpace.mobilenet_v3(1.2)], ids=["tiny", "proxyless", "resnet", "w1.2"])
def test_lookup_tables_give_the_straightforward_masks_and_features(space):
    """active_mask and the feature terms read lookup tables (the search's hot path); they must
    give what the stage lengths give, bit by bit."""
    encoder = arch_encoder(space)
    batch = _random_genes(space, 2000)
    active = encoder.slot_position[None, :] < encoder.stage_lengths(batch)[:, encoder.slot_stage]
    assert 0 < active.mean() < 1
    np.testing.assert_array_equal(encoder.active_mask(batch), active)
    expected = np.zeros((len(batch), encoder.n_dim), np.float32)
    rows = np.arange(len(batch))
    expected[rows, batch.r] = 1
    if encoder.name == "onehot":
        for slot in range(space.n_blocks):
            on = active[:, slot]
            expected[rows[on], encoder.ks_offset + slot * encoder.n_ks + batch.ks[on, slot]] = 1
            expected[rows[on], encoder.e_offset + slot * encoder.n_e + batch.e[on, slot]] = 1
    else:   # resnet_onehot
        expected[rows, encoder.stem_offset + encoder.stem_runs(batch)] = 1
        for entry in range(space.n_widths):
            expected[rows, encoder.w_offset + entry * encoder.n_w + batch.w[:, entry]] = 1
        for slot in range(space.n_blocks):
            on = active[:, slot]
            expected[rows[on], encoder.e_offset + slot * encoder.n_e + batch.e[on, slot]] = 1
    np.testing.assert_array_equal(encoder.encode(batch), expected)


def test_tutorial_features_from_tables_match_the_layout():
    """The tutorial encoder's column tables give spec2feats' layout: per active slot one kernel
    and one expand bit, one resolution bin."""
    from ofa_tf.nas.encoding import TutorialArchEncoder

    space = SearchSpace.mobilenet_v3(1.2)
    encoder = TutorialArchEncoder(space)
    batch = _random_genes(space, 500, seed=1)
    expected = np.zeros((len(batch), 128), np.float32)
    active = encoder.active_mask(batch)
    for row in range(len(batch)):
        for slot in np.flatnonzero(active[row]):
            expected[row, 3 * slot + encoder.KS.index(space.ks_list[batch.ks[row, slot]])] = 1
            expected[row, 60 + 3 * slot + encoder.E.index(space.expand_ratio_list[batch.e[row, slot]])] = 1
        expected[row, 120 + (space.resolutions[batch.r[row]] - 112) // 16] = 1
    np.testing.assert_array_equal(encoder.encode(batch), expected)
    np.testing.assert_array_equal(encoder.encode(batch.take([7])), expected[[7]])
