import numpy as np
import keras
import pytest
import tensorflow as tf

from conftest import images, randomize_weights
from ofa_tf.arch.complexity import profile_arch, profile_model
from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace
from ofa_tf.networks import Family, OFAMobileNetV3, family_of, get_family, register_family
from ofa_tf.networks.extraction import extract_subnet
from ofa_tf.networks.static import build_op_model, build_static_model

STANDARD_LAYERS = {"InputLayer", "ZeroPadding2D", "Conv2D", "DepthwiseConv2D", "BatchNormalization",
                   "Activation", "GlobalAveragePooling2D", "Multiply", "Add", "Dropout", "Dense"}


def _max_delta(net, arch, batch=2, seed=0):
    net.set_active_subnet(**arch)
    size = arch["r"][0]
    x = images(batch, size, seed)
    expected = net(x, training=False).numpy()
    sub = net.get_active_subnet(image_size=size)
    got = sub(x, training=False).numpy()
    assert {type(layer).__name__ for layer in sub.layers} <= STANDARD_LAYERS
    return np.abs(got - expected).max(), np.abs(expected).max()


def test_extraction_is_exact_on_tiny_space(tiny_net):
    rng = np.random.default_rng(1)
    deltas = []
    for _ in range(12):
        arch = tiny_net.space.sample(rng)
        delta, scale = _max_delta(tiny_net, arch)
        assert scale > 0.1, "logits too small for the comparison to mean anything"
        deltas.append(delta)
    print(f"tiny: 12 archs, max |delta logits| = {max(deltas):.2e}")
    assert max(deltas) <= 1e-5


def test_extraction_is_exact_on_full_w1_space():
    net = OFAMobileNetV3(n_classes=1000, width_mult=1.0)
    randomize_weights(net, seed=3)
    rng = np.random.default_rng(5)
    archs = [net.space.largest(224), net.space.smallest(128)] + [net.space.sample(rng) for _ in range(2)]
    for arch in archs:
        delta, scale = _max_delta(net, arch, batch=1)
        print(f"w1.0 r={arch['r'][0]}: max |delta logits| = {delta:.2e} (|logits| up to {scale:.1f})")
        assert scale > 0.1 and delta <= 1e-5


def test_extraction_after_kernel_transform_change(tiny_net):
    arch = tiny_net.space.uniform(3, 4, 2, 48)
    block = tiny_net.stage_blocks[1][0]
    before = block.active_weights(3, 4)[f"{block.name}_depthwise"][0]
    tf_matrix = block.depthwise.transforms[(5, 3)]
    tf_matrix.assign(tf_matrix.numpy() + 0.5 * np.random.default_rng(0).normal(size=(9, 9)))
    after = block.active_weights(3, 4)[f"{block.name}_depthwise"][0]
    assert np.abs(after - before).max() > 1e-2
    delta, _ = _max_delta(tiny_net, arch)
    assert delta <= 1e-5


def test_reference_layout_widths():
    layout = build_layout(SearchSpace.mobilenet_v3(1.0))
    assert [s[0].out_channels for s in layout.stages] == [24, 40, 80, 112, 160]
    assert [s[0].stride for s in layout.stages] == [2, 2, 2, 1, 2]
    assert [s[0].use_se for s in layout.stages] == [False, True, False, True, True]
    assert (layout.stem.out_channels, layout.final_expand.out_channels, layout.feature_mix.out_channels) == \
        (16, 960, 1280)
    assert layout.stages[0][0].max_mid_channels == 96 and layout.stages[0][1].max_mid_channels == 144
    assert layout.stages[1][1].max_se_channels == 64          # 240 // 4 = 60 -> 64
    wide = build_layout(SearchSpace.mobilenet_v3(1.2))
    assert [s[0].out_channels for s in wide.stages] == [32, 48, 96, 136, 192]
    assert (wide.stem.out_channels, wide.first_block.out_channels, wide.final_expand.out_channels,
            wide.feature_mix.out_channels) == (24, 24, 1152, 1536)
    assert wide.first_block.residual and len(wide.blocks) == 21


def test_set_active_subnet_forms_and_errors(tiny_net):
    space = tiny_net.space
    tiny_net.set_active_subnet(ks=5, e=4, d=2)
    arch = tiny_net.get_active_arch()
    assert arch["ks"] == [5] * space.n_blocks and arch["e"] == [4] * space.n_blocks and arch["d"] == [2] * 4
    tiny_net.set_active_subnet(d=[1, 2, 3, 1])           # None keeps ks and e
    arch = tiny_net.get_active_arch()
    assert arch["d"] == [1, 2, 3, 1] and arch["ks"] == [5] * space.n_blocks
    sampled = tiny_net.sample_active_subnet(rng=4)
    assert tiny_net.get_active_arch() == sampled
    tiny_net.set_max_net()
    assert tiny_net.get_active_arch()["d"] == [3] * 4
    with pytest.raises(ValueError, match="ks"):
        tiny_net.set_active_subnet(ks=4)
    with pytest.raises(ValueError, match="d has 2 values"):
        tiny_net.set_active_subnet(d=[2, 2])
    with pytest.raises(ValueError, match="unknown argument"):
        tiny_net.set_active_subnet(kernel=3)
    with pytest.raises(ValueError, match="'r'"):
        tiny_net.set_active_subnet(r=33)
    with pytest.raises(ValueError, match="either space"):
        OFAMobileNetV3(space=space, width_mult=1.2)


def test_skipped_blocks_do_not_change_the_output(tiny_net):
    arch = tiny_net.space.sample(9)
    arch["d"] = [1] * 4
    tiny_net.set_active_subnet(**arch)
    x = images(2, 32)
    y = tiny_net(x, training=False).numpy()
    for slot in range(tiny_net.space.n_blocks):
        if slot % tiny_net.space.max_depth:
            arch["ks"][slot], arch["e"][slot] = 3, 3
    tiny_net.set_active_subnet(**arch)
    np.testing.assert_array_equal(tiny_net(x, training=False).numpy(), y)
    sub = tiny_net.get_active_subnet(image_size=32)
    assert len([layer for layer in sub.layers if type(layer).__name__ == "DepthwiseConv2D"]) == 5


def test_sort_channels_keeps_max_expand_outputs_and_permutes(tiny_net):
    x = images(4, 40)
    archs = [tiny_net.space.uniform(k, 6, d, 40) for k, d in ((7, 3), (3, 2), (5, 1))]
    archs.append({**tiny_net.space.sample(2), "e": [6] * tiny_net.space.n_blocks, "r": [40]})
    before = []
    for arch in archs:
        tiny_net.set_active_subnet(**arch)
        before.append(tiny_net(x, training=False).numpy())
    block = tiny_net.stage_blocks[2][1]
    project_before = block.project.kernel.numpy().copy()
    tiny_net.sort_channels()
    for arch, expected in zip(archs, before):
        tiny_net.set_active_subnet(**arch)
        np.testing.assert_allclose(tiny_net(x, training=False).numpy(), expected, atol=1e-5)
    project_after = block.project.kernel.numpy()
    assert not np.array_equal(project_after, project_before)
    importance = np.abs(project_after).sum(axis=(0, 1, 3))
    assert np.all(np.diff(importance) <= 0), "middle channels must be sorted by L1 importance"
    se_importance = np.abs(tiny_net.stage_blocks[1][0].se.expand.kernel.numpy()).sum(axis=(0, 1, 3))
    assert np.all(np.diff(se_importance) <= 0)


def test_sort_channels_protects_earlier_width_phases(tiny_net):
    block = tiny_net.stage_blocks[0][1]
    mids = [block.spec.mid_channels(e) for e in (6, 4, 3)]
    tiny_net.sort_channels()
    kernel = block.project.kernel.numpy()
    rng = np.random.default_rng(0)
    kernel[:, :, mids[1]:, :] *= 50 * rng.uniform(1, 2, kernel[:, :, mids[1]:, :].shape)  # outside e=4 gets big
    block.project.kernel.assign(kernel)
    first_group = set(map(tuple, block.project.kernel.numpy()[0, 0, :mids[1]]))
    block.sort_channels(expand_ratio_stage=1)
    after = block.project.kernel.numpy()[0, 0]
    assert set(map(tuple, after[:mids[1]])) == first_group


def test_one_trace_serves_every_subnet(tiny_net):
    """A compiled train step (forward + gradient) with a free spatial size traces once for
    every subnet at every resolution."""
    optimizer_free_step = tf.function(_grad_step(tiny_net), input_signature=[
        tf.TensorSpec([4, None, None, 3], tf.float32), tf.TensorSpec([4], tf.int64)])
    rng = np.random.default_rng(0)
    for i in range(30):
        tiny_net.sample_active_subnet(rng)
        size = (32, 48)[i % 2]
        loss, n_grads = optimizer_free_step(images(4, size, i), tf.constant(np.arange(4) % 10))
        assert np.isfinite(loss.numpy()) and n_grads > 0
    traces = optimizer_free_step.experimental_get_tracing_count()
    print(f"30 subnets at 2 resolutions: {traces} traces")
    assert traces == 1


def _grad_step(net):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(x, training=True))
        grads = tape.gradient(loss, net.trainable_variables)
        return loss, len([g for g in grads if g is not None])
    return step


def test_small_subnet_gradients_touch_only_active_weights(tiny_net):
    tiny_net.set_min_net()
    x, y = images(2, 32), tf.constant([1, 2])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, tiny_net(x, training=True))
    block = tiny_net.stage_blocks[0][0]
    grads = dict(zip([v.path for v in tiny_net.trainable_variables],
                     tape.gradient(loss, tiny_net.trainable_variables)))
    g_expand = grads[block.expand.kernel.path].numpy()
    mid = block.spec.mid_channels(3)
    assert np.abs(g_expand[..., :mid]).sum() > 0 and np.all(g_expand[..., mid:] == 0)
    g_dw = grads[block.depthwise.kernel.path].numpy()
    assert np.abs(g_dw[2:5, 2:5, :mid]).sum() > 0 and np.all(g_dw[0] == 0)
    skipped = tiny_net.stage_blocks[0][2]
    g_skipped = grads[skipped.project.kernel.path]
    assert g_skipped is None or np.all(g_skipped.numpy() == 0)


def test_profile_agrees_with_extracted_model(tiny_net):
    rng = np.random.default_rng(2)
    for _ in range(5):
        arch = tiny_net.space.sample(rng)
        tiny_net.set_active_subnet(**arch)
        sub = tiny_net.get_active_subnet()
        assert profile_model(sub) == profile_arch(arch, tiny_net.space, n_classes=10)
    full = SearchSpace.mobilenet_v3(1.0)
    big, small = profile_arch(full.largest(224), full), profile_arch(full.smallest(224), full)
    assert big.macs > small.macs and big.params > small.params
    assert profile_arch(full.smallest(224), full).macs > profile_arch(full.smallest(128), full).macs


def test_supernet_saves_and_loads_as_keras_file(tiny_net, tmp_path):
    arch = tiny_net.sample_active_subnet(rng=1)
    x = images(2, 32)
    expected = tiny_net(x, training=False).numpy()
    path = tmp_path / "supernet.keras"
    tiny_net.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, OFAMobileNetV3) and loaded.space == tiny_net.space
    assert loaded.get_active_arch()["ks"] == arch["ks"]
    np.testing.assert_allclose(loaded(x, training=False), expected, atol=1e-6)
    weights = tmp_path / "supernet.weights.h5"
    tiny_net.save_weights(weights)
    fresh = OFAMobileNetV3(n_classes=10, space=tiny_net.space)
    fresh.load_weights(weights)
    np.testing.assert_allclose(fresh(x, training=False), expected, atol=1e-6)


def test_extract_subnet_rejects_bad_input(tiny_net):
    with pytest.raises(ValueError, match="'e'"):
        extract_subnet(tiny_net, {**tiny_net.space.smallest(), "e": [5] * 12})
    with pytest.raises(ValueError, match="image_size"):
        extract_subnet(tiny_net, tiny_net.space.smallest(), image_size="big")


def test_the_registry_finds_a_space_s_family():
    family = family_of(SearchSpace.tiny())
    assert family.supernet_class is OFAMobileNetV3 and family.build_static_model is build_static_model
    assert register_family(Family("mobilenet_v3", OFAMobileNetV3, build_static_model, build_op_model)) == family
    with pytest.raises(ValueError, match="already registered"):
        register_family(Family("mobilenet_v3", OFAMobileNetV3, build_op_model, build_static_model))
    with pytest.raises(ValueError, match="unknown network family 'densenet'; registered: .*mobilenet_v3"):
        get_family("densenet")
