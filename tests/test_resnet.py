"""OFA-ResNet50D against the reference's ``ofa`` package: the preset's structure, MACs / params
against its counters, imported weights against its logits; the supernet against its extracted
static subnets."""

import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from conftest import images, randomize_weights
from ofa_tf.arch.complexity import Profile, layer_counts, profile_arch, profile_model
from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace
from ofa_tf.networks import OFAResNets, family_of
from ofa_tf.networks.extraction import extract_subnet
from reference_data import randomize_reference_tensors, reference_modules


def _middle(space):
    """Every choice in the middle of its list; the stem's residual conv runs."""
    return space.validate({"d": [max(space.depth_list)] + [1] * space.n_stages, "e": [0.25] * space.n_blocks,
                           "w": [1] * space.n_widths})


def test_resnet50d_preset_is_the_reference_table():
    space = SearchSpace.resnet50d()
    layout = build_layout(space)
    assert (space.n_stages, space.n_blocks, space.n_depths, space.n_widths) == (4, 18, 5, 6)
    assert space.arch_keys == ("d", "e", "w", "r") and space.ks_list == (3,)
    assert [len(stage) for stage in layout.stages] == [4, 4, 6, 4]
    assert [s[0].out_widths for s in layout.stages] == [(168, 208, 256), (336, 408, 512), (664, 816, 1024),
                                                        (1328, 1640, 2048)]
    assert [s[0].stride for s in layout.stages] == [1, 2, 2, 2]
    assert [c.out_widths for c in layout.stem] == [(24, 24, 32), (24, 24, 32), (40, 48, 64)]
    assert all(s[0].downsample and not any(b.downsample for b in s[1:]) for s in layout.stages)
    largest, smallest = space.largest(), space.smallest()
    assert (largest["d"], largest["w"], smallest["d"], smallest["w"]) == ([2] * 5, [2] * 6, [0] * 5, [0] * 6)
    assert len(layout.active_blocks(largest)) == 18 and len(layout.active_blocks(smallest)) == 10
    assert [c.name for c, _, _ in layout.active_stem(smallest)] == ["stem_0", "stem_2"]
    assert len(layout.active_stem(largest)) == 3
    # The largest middle width: 0.35 of 2048.
    assert layout.stages[-1][0].max_mid_channels == 720
    # d[0] is skip (0) or run (2): the reference samples only those.
    with pytest.raises(ValueError, match=r"arch\['d'\]\[0\] = 1 is not in the space's choices \[0, 2\]"):
        space.validate({**largest, "d": [1, 2, 2, 2, 2]})
    with pytest.raises(ValueError, match=r"arch has unknown key 'ks'"):
        space.validate({**largest, "ks": [3] * 18})
    with pytest.raises(ValueError, match=r"arch\['w'\]\[5\] = 3 is not in the space's choices \[0, 1, 2\]"):
        space.validate({**largest, "w": [2] * 5 + [3]})
    # 3 expand ratios per block; depths 0..2 over the base per stage; 2 stem choices; 3^6 widths.
    per_stage = [sum(3 ** (base + d) for d in (0, 1, 2)) for base in (2, 2, 4, 2)]
    assert space.count() == int(np.prod(per_stage)) * 2 * 3 ** 6
    assert all(space.sample(seed)["d"][0] in (0, 2) for seed in range(10))
    assert SearchSpace.from_json(space.to_json()) == space
    arch = space.arch(space.sample(0))
    assert dict(arch) == space.validate(space.sample(0)) and "ks" not in arch
    assert SearchSpace.preset("resnet50d") == space
    # A uniform arch runs the stem's residual conv only at the largest depth.
    assert [space.uniform(3, 0.25, d, w=1)["d"][0] for d in (0, 1, 2)] == [0, 0, 2]
    # MBConv spaces keep their JSON (no ResNet fields).
    assert "width_mult_list" not in SearchSpace.tiny().to_dict()


def test_macs_and_params_equal_the_reference_counters(torch_one_thread):
    """As for ProxylessNAS: `count_net_flops` sums float32 per-layer counts in float32, our exact
    counts summed the same way give its number, and the parameters are equal as integers."""
    networks, utils = reference_modules("ofa.imagenet_classification.elastic_nn.networks", "ofa.utils")
    ref = networks.OFAResNets(n_classes=1000, depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35],
                              width_mult_list=[0.65, 0.8, 1.0])
    space = SearchSpace.resnet50d()
    layout = build_layout(space)
    rng = np.random.default_rng(0)
    cases = [(arch, size) for arch in (space.largest(), space.smallest(), _middle(space)) for size in (224, 128, 192)]
    cases += [(space.sample(rng), int(rng.choice(space.resolutions))) for _ in range(5)]
    for arch, size in cases:   # ~10 s: the reference counts by running each subnet
        ref.set_active_subnet(d=arch["d"], e=arch["e"], w=arch["w"])
        subnet = ref.get_active_subnet(preserve_weight=False)
        counts = layer_counts(layout, arch, size)
        as_float32 = np.float32(0)
        for _, macs, _ in counts:
            as_float32 = np.float32(as_float32 + np.float32(macs))
        ours = profile_arch(arch, space, image_size=size)
        assert float(as_float32) == utils.count_net_flops(subnet, (1, 3, size, size)), (arch, size)
        assert ours.params == utils.count_parameters(subnet)
        assert ours.macs == sum(c[1] for c in counts)
    # The largest at 224 px, exactly (the reference's float32 sum prints 7491642368: 7491.64 MMACs).
    assert profile_arch(space.largest(), space, image_size=224) == Profile(7491643904, 48105992)


def _small_last_gammas(net, seed):
    """Random weights (`randomize_weights`) with each bottleneck's last BN scale in [0.1, 0.4]
    (as ResNets start from a small residual branch), so random logits stay near 1-10, not 1e3."""
    randomize_weights(net, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for var in net.weights:
        if "conv3_bn" in var.path and "gamma" in var.path:
            var.assign(rng.uniform(0.1, 0.4, var.shape).astype(np.float32))


@pytest.fixture(scope="module")
def resnet_net():
    net = OFAResNets(space=SearchSpace.resnet_tiny(), n_classes=10, seed=0)
    _small_last_gammas(net, seed=2)
    return net


def test_supernet_one_trace_and_extraction_are_exact(resnet_net):
    """Every arch: the traced forward equals the eager one, the extracted static subnet equals
    the supernet (to float32 round-off at the logits' scale: 1e-5 + 1e-6 x the largest logit; logits
    reach ~20 here, where one ulp is 2e-6), and its MACs / params are the layout's."""
    net, space = resnet_net, resnet_net.space
    assert family_of(space).supernet_class is OFAResNets
    forward = tf.function(lambda x: net(x, training=False), input_signature=[tf.TensorSpec([None, None, None, 3])])
    rng = np.random.default_rng(1)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(2)]:
        net.set_active_subnet(**arch)
        assert net.get_active_arch() == space.validate(arch)
        size = arch["r"][0]
        x = images(2, size, seed=3)
        expected = net(x, training=False).numpy()
        assert np.abs(expected).max() > 0.5
        tolerance = 1e-5 + 1e-6 * np.abs(expected).max()
        assert np.abs(forward(tf.constant(x)).numpy() - expected).max() <= tolerance
        subnet = net.get_active_subnet(image_size=size)
        assert np.abs(subnet(x, training=False).numpy() - expected).max() <= tolerance
        assert profile_model(subnet) == profile_arch(arch, space, n_classes=10)
    assert forward.experimental_get_tracing_count() == 1
    arch = net.sample_active_subnet()
    assert net.get_active_arch() == space.validate(arch)
    with pytest.raises(ValueError, match=r"arch\['w'\]\[0\] = 3 is not in the space's choices"):
        net.set_active_subnet(w=3)


def test_channel_sorting_keeps_the_largest_and_moves_important_channels_first(resnet_net):
    net = resnet_net
    x = images(2, 48, seed=4)
    net.set_max_net()
    before = net(x, training=False).numpy()
    block = net.blocks[-1]
    importance = lambda: np.abs(block.conv3.kernel.numpy()).sum(axis=(0, 1, 3))  # noqa: E731
    assert not np.all(np.diff(importance()) <= 0)
    net.sort_channels()
    assert np.all(np.diff(importance()) <= 0)
    np.testing.assert_allclose(net(x, training=False).numpy(), before, rtol=1e-5, atol=1e-5)
    # An earlier width phase's groups stay: with stage 1 the largest ratio's extra channels stay last.
    narrow = block.spec.mid_channels(max(block.spec.out_widths), 0.25)
    kept = block.conv3.kernel.numpy()[:, :, narrow:, :].copy()
    block.sort_channels(expand_ratio_stage=1)
    assert np.allclose(np.sort(np.abs(block.conv3.kernel.numpy()[:, :, narrow:, :]).ravel()),
                       np.sort(np.abs(kept).ravel()))


# Width multipliers of the reference networks the weight tests build: ResNet50D's structure, few channels.
NARROW = (0.1, 0.15, 0.2)


def _narrow_reference(torch, seed):
    """The reference's OFAResNets at the `NARROW` widths, 10 classes, every tensor random."""
    (networks,) = reference_modules("ofa.imagenet_classification.elastic_nn.networks")
    ref = networks.OFAResNets(n_classes=10, depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35],
                              width_mult_list=list(NARROW))
    return randomize_reference_tensors(torch, ref, seed=seed, last_bn="conv3")


def test_imported_reference_weights_give_the_reference_logits(torch_one_thread):
    """Random reference weights and BN statistics in a narrow OFAResNets (width 0.1/0.15/0.2),
    imported: 10 random subnets at 2 resolutions give the reference's logits in inference mode,
    2 of them also as float32 .tflite (when LiteRT is installed), and the weights export back to
    the same state_dict."""
    torch = torch_one_thread
    from ofa_tf.interop.reference_mapping import checkpoint_family, load_reference_state_dict, reference_state_dict

    ref = _narrow_reference(torch, seed=0)
    space = SearchSpace.resnet50d(width_mult_list=NARROW, resolutions=(40, 56))
    net = OFAResNets(space=space, n_classes=10)
    load_reference_state_dict(net, ref.state_dict())
    forward = tf.function(lambda x: net(x, training=False), input_signature=[tf.TensorSpec([None, None, None, 3])])
    rng = np.random.default_rng(4)
    deltas, cases = [], []
    for i in range(10):
        arch = space.sample(rng)
        ref.set_active_subnet(d=arch["d"], e=arch["e"], w=arch["w"])
        net.set_active_subnet(**arch)
        for size in space.resolutions:
            x = images(2, size, seed=i)
            with torch.no_grad():
                expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
            assert np.abs(expected).max() > 0.5
            deltas.append(np.abs(forward(tf.constant(x)).numpy() - expected).max())
            cases.append((arch, x, expected))
    print(f"ResNet50D w0.1-0.2: 10 archs x 2 resolutions, max |delta logits| = {max(deltas):.2e}")
    assert max(deltas) <= 1e-4
    # Two of them as float32 .tflite in LiteRT, the shallowest at each resolution.
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ofa_tf.export.converter import to_tflite
        from ofa_tf.export.verify import TFLiteModel, check_graph

        for size in space.resolutions:
            arch, x, expected = min((c for c in cases if c[1].shape[1] == size), key=lambda c: sum(c[0]["d"]))
            tflite = to_tflite(extract_subnet(net, arch, size, batch_size=1), "float32")
            delta = np.abs(TFLiteModel(tflite)(x) - expected).max()
            print(f"float32 .tflite at {size} px: max |delta logits| = {delta:.2e}")
            assert delta <= 1e-4
            # Its operators are the ones the layout implies (the exporter's graph check).
            counts = check_graph(tflite, net.layout, arch, size)
            assert counts["CONV_2D"] == 2 + (arch["d"][0] == 2) + 3 * len(net.layout.active_blocks(arch)) + 4
    exported, original = reference_state_dict(net), ref.state_dict()
    assert checkpoint_family(original) == "resnet"
    assert sorted(exported) == sorted(original)
    assert all(np.array_equal(exported[k], original[k].numpy()) for k in original if "num_batches" not in k)


def test_onehot_features_are_the_reference_resnet_encoders():
    (arch_encoder_module,) = reference_modules("ofa.nas.accuracy_predictor.arch_encoder")
    from ofa_tf.nas.resnet_encoding import ResNetArchEncoder

    space = SearchSpace.resnet50d()
    ours = ResNetArchEncoder(space)
    reference = arch_encoder_module.ResNetArchEncoder(
        image_size_list=list(space.resolutions), depth_list=list(space.depth_list),
        expand_list=list(space.expand_ratio_list), width_mult_list=list(space.width_mult_list))
    assert ours.n_dim == reference.n_dim
    archs = [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(30)]
    features = ours.encode(ours.to_batch(archs))
    assert ours.to_archs(ours.to_batch(archs)) == [space.validate(a) for a in archs]
    for arch, feature in zip(archs, features):
        expected = reference.arch2feature({"d": arch["d"], "e": arch["e"], "w": arch["w"], "image_size": arch["r"][0]})
        np.testing.assert_array_equal(feature, expected)
        back = ours.feature2arch(feature)
        np.testing.assert_array_equal(ours.arch2feature(back), feature)
        assert (back["d"], back["w"], back["r"]) == (arch["d"], arch["w"], arch["r"])
    with pytest.raises(ValueError, match="no gaps"):
        broken = features[0].copy()
        broken[ours.e_offset: ours.e_offset + ours.n_e] = 0   # the first slot of stage 0 off
        ours.feature2arch(broken)


def test_op_models_config_and_weights_file_round_trip(resnet_net, tmp_path):
    """The family's op models (what a latency table would time) build with the static layers,
    a bottleneck block rebuilds from its config, and a Keras weights file holds every weight
    (the stem's and the stage blocks' lists included)."""
    from ofa_tf.layers.bottleneck import ElasticBottleneck

    layout = resnet_net.layout
    family = family_of(layout.space)
    block = layout.active_blocks(layout.space.smallest(), 32)[-1]
    model = family.build_op_model(layout, block, 32)
    assert model.output.shape[1:] == (block.output_size, block.output_size, block.out_channels)
    with pytest.raises(ValueError, match="op must be an ActiveBottleneck or a ResNetPart"):
        family.build_op_model(layout, "classifier", 2)
    layer = resnet_net.blocks[0]
    clone = ElasticBottleneck.from_config(layer.get_config())
    assert clone.spec == layer.spec and clone.get_config() == layer.get_config()
    resnet_net.save_weights(str(tmp_path / "supernet.weights.h5"))
    clone_net = OFAResNets.from_config(resnet_net.get_config())
    clone_net.load_weights(str(tmp_path / "supernet.weights.h5"))
    ours = {w.path: w.numpy() for w in resnet_net.weights}
    theirs = {w.path: w.numpy() for w in clone_net.weights}
    assert sorted(ours) == sorted(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_phases_sample_depth_stem_expand_and_width_in_the_graph(resnet_net):
    """The ResNet schedule (no kernel phase, two width phases) and its in-graph sampler: every
    sampled arch is one of the phase's, assigned as tensors it is the supernet's active arch."""
    import keras

    from ofa_tf.training import PHASE_NAMES, SubnetSampler, progressive_shrinking_phases

    net, space = resnet_net, resnet_net.space
    phases = progressive_shrinking_phases(space)
    assert tuple(phases) == ("teacher",) + PHASE_NAMES[2:]
    assert [phases[p].width_list for p in phases] == [(2,)] * 5 + [(1, 2), (0, 1, 2)]
    assert [phases[p].sort_channels for p in phases] == [None, None, None, 0, 1, 2, None]
    assert phases["teacher"].largest_arch(space) == {k: v for k, v in space.largest().items() if k != "r"}
    seen = {}
    for name in ("teacher", "depth1", "width1"):
        phase = phases[name]
        sampler = SubnetSampler(space, phase.ks_list, phase.expand_ratio_list, phase.depth_list,
                                space.resolutions, keras.random.SeedGenerator(1), phase.width_list)
        assign = tf.function(lambda: net.assign_active_subnet(**sampler.sample_arch()))
        for _ in range(12):
            assign()
            arch = net.get_active_arch()
            assert space.validate(arch) == arch
            seen.setdefault(name, set()).add((arch["d"][0], *arch["w"], *arch["d"][1:]))
        assert assign.experimental_get_tracing_count() == 1
    stem = {n: {s[0] for s in v} for n, v in seen.items()}
    widths = {n: {w for s in v for w in s[1:7]} for n, v in seen.items()}
    assert seen["teacher"] == {(2,) * 11} and stem["depth1"] == {0, 2} and widths["depth1"] == {2}
    assert widths["width1"] == {1, 2} and stem["width1"] == {0, 2}
    with pytest.raises(ValueError, match=r"width_list \[3\] must be a non-empty subset"):
        SubnetSampler(space, (3,), (0.2,), (0,), (32,), keras.random.SeedGenerator(1), (3,))


def test_import_and_export_torch_take_a_resnet_checkpoint(torch_one_thread, tmp_path, monkeypatch):
    """What the import_torch / export_torch command lines run, on a reference OFAResNets
    checkpoint file: the family is recognised, the supernet saved as a workdir that loads with
    the reference's logits, and exported back to the same tensors. The released space is
    swapped for a narrow one (widths 0.1 / 0.15 / 0.2) to keep the test small."""
    torch = torch_one_thread
    from ofa_tf.artifacts import load_supernet
    from ofa_tf.interop import reference_mapping
    from ofa_tf.interop.export_torch import export_reference_checkpoint
    from ofa_tf.interop.import_torch import import_reference_checkpoint

    ref = _narrow_reference(torch, seed=1)
    checkpoint = str(tmp_path / "ofa_resnet_narrow.pth")
    torch.save({"state_dict": ref.state_dict()}, checkpoint)
    narrow = SearchSpace.resnet50d(width_mult_list=NARROW, resolutions=(40,))
    monkeypatch.setitem(reference_mapping.REFERENCE_SPACES, "resnet", lambda width_mult=1.0: narrow)
    with pytest.raises(ValueError, match="no width multiplier 1.2; leave out --width_mult"):
        reference_mapping._resnet50d_space(1.2)
    import_reference_checkpoint(checkpoint, str(tmp_path / "imported"))
    net, info, meta = load_supernet(str(tmp_path / "imported"))
    assert net.space == narrow and info.num_classes == 10 and meta["imported_from"]["width_mult"] == 1.0
    arch = narrow.sample(3)
    ref.set_active_subnet(d=arch["d"], e=arch["e"], w=arch["w"])
    net.set_active_subnet(**arch)
    x = images(2, 40, seed=2)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(net(x, training=False).numpy() - expected).max() <= 1e-4
    out = str(tmp_path / "exported.pth")
    n_tensors = export_reference_checkpoint(str(tmp_path / "imported"), out)
    exported, original = torch.load(out, weights_only=True)["state_dict"], ref.state_dict()
    assert n_tensors == len(exported) and sorted(exported) == sorted(original)
    assert all(torch.equal(exported[k], original[k]) for k in original if "num_batches" not in k)
    # Other input sizes (as an accuracy predictor one-hots): the same weights, that space saved.
    import_reference_checkpoint(checkpoint, str(tmp_path / "resized"), resolutions=(48, 32))
    resized, _, _ = load_supernet(str(tmp_path / "resized"))
    assert resized.space == narrow.with_resolutions((32, 48)) and resized.space.resolutions == (32, 48)
    def learned(model):   # weights and BN statistics, not the active-subnet choices
        return {v.path: v.numpy() for v in model.weights
                if v.path.rsplit("/", 1)[-1] in ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")}

    theirs, ours = learned(net), learned(resized)
    assert len(ours) > 50 and sorted(ours) == sorted(theirs)
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_macs_predictor_and_evolution_operators_on_width_choices(resnet_net):
    """The bottleneck MACs tables give `profile_arch`'s counts for whole populations, and the
    search's random, mutated and crossed archs are valid archs of the space."""
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model
    from ofa_tf.nas.efficiency import BottleneckMACsPredictor, macs_predictor
    from ofa_tf.nas.evolution import EvolutionFinder

    space = resnet_net.space
    predictor = macs_predictor(space, 10)
    assert isinstance(predictor, BottleneckMACsPredictor)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(100)] + [space.largest(), space.smallest()]
    expected = np.array([profile_arch(a, space, 10).macs for a in archs])
    np.testing.assert_array_equal(predictor.predict_macs(predictor.encoder.to_batch(archs)), expected)
    assert predictor.cheapest() == (space.smallest(32), profile_arch(space.smallest(32), space, 10).mmacs)

    accuracy = AccuracyPredictor(space, build_accuracy_model(predictor.encoder.n_dim, 0.5))
    finder = EvolutionFinder(predictor, accuracy)
    encoder = accuracy.arch_encoder
    first, second = finder.random_batch(rng, 50), finder.random_batch(rng, 50)
    for batch in (first, finder.mutate(rng, first), finder.crossover(rng, first, second)):
        decoded = encoder.to_archs(batch)
        assert all(space.validate(a) == a for a in decoded)
        assert {a["d"][0] for a in decoded} == {0, 2} and {w for a in decoded for w in a["w"]} == {0, 1, 2}


def test_latency_table_keys_name_every_op_with_what_changes_its_cost(resnet_net):
    """Our keys for bottleneck ops: one per op in order; a width entry changes the keys of the
    ops it feeds only, a choice in a skipped slot none, the stem's skip drops its residual conv."""
    from ofa_tf.nas.latency_table import op_keys

    layout, space = resnet_net.layout, resnet_net.space
    arch = {"d": [2, 1, 0, 1, 2], "e": [0.25] * space.n_blocks, "w": [1] * space.n_widths, "r": [40]}
    keys = op_keys(layout, arch)
    blocks = layout.active_blocks(arch)
    assert len(keys) == 3 + 1 + len(blocks) + 1 and keys[1].endswith("-residual:1")
    assert keys[3] == "MaxPool2D-input:20x20x40-output:10x10x40" and keys[-1].startswith("Logits-input:2x2x")
    assert keys[4] == (f"bottleneck-input:10x10x40-output:10x10x{blocks[0].out_channels}-mid:"
                       f"{blocks[0].mid_channels}-kernel:3-stride:1-downsample:1")
    stage2 = [i for i, b in enumerate(blocks, start=4) if b.spec.out_entry == 3]
    wider = op_keys(layout, {**arch, "w": arch["w"][:3] + [2] + arch["w"][4:]})
    changed = [i for i, (a, b) in enumerate(zip(keys, wider)) if a != b]
    assert changed == stage2 + [stage2[-1] + 1]             # stage 2's blocks and the next block's input
    skipped_slot = space.stage_slots(1)[-1]                  # stage 1 runs 2 of its 3 slots
    assert op_keys(layout, {**arch, "e": [0.35 if i == skipped_slot else 0.25 for i in range(space.n_blocks)]}) == keys
    assert op_keys(layout, {**arch, "d": [0] + arch["d"][1:]}) == keys[:1] + keys[2:]


def _quadrant_images(n, size, seed):
    """4 classes that a small net learns in a few dozen steps: the class is the quadrant that
    holds a bright square, on noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.uniform(-0.5, 0.5, (n, size, size, 3)).astype(np.float32)
    half = size // 2
    for i, c in enumerate(labels):
        top, left = (c // 2) * half, (c % 2) * half
        x[i, top + 2:top + half - 2, left + 2:left + half - 2, :] += 1.5
    return x, labels.astype(np.int32)


def test_int8_tflite_of_a_trained_resnet_subnet_agrees_with_keras():
    """int8 on a confident model: a static bottleneck subnet (stem residual conv, downsample
    shortcuts, mixed widths) trained until it separates its classes, converted with
    calibrated activation ranges, agrees with Keras on top-1 in LiteRT."""
    import keras

    from ofa_tf.export import to_tflite
    from ofa_tf.export.verify import TFLiteModel, compare

    space = SearchSpace.resnet_tiny()
    net = OFAResNets(space=space, n_classes=4, seed=5)
    arch = _middle(space)
    net.set_active_subnet(**arch)
    model = net.get_active_subnet(image_size=32)
    x, y = _quadrant_images(384, 32, seed=0)
    x_test, y_test = _quadrant_images(64, 32, seed=1)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    keras_top1 = float(np.mean(np.argmax(model.predict(x_test, verbose=0), 1) == y_test))
    assert keras_top1 >= 0.9, f"the fixture did not learn its task ({keras_top1:.2f})"

    tflite = to_tflite(model, "int8", representative_images=lambda: (x[i:i + 1] for i in range(64)))
    agreement = compare(TFLiteModel(tflite), model, [(x_test, y_test)], max_images=64)
    assert agreement.top1_agreement >= 0.95, agreement
    assert agreement.tflite_top1 >= 0.85, agreement
