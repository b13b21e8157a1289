import numpy as np
import keras
import pytest
import tensorflow as tf

from conftest import images
from ofa_tf.layers import (ElasticBatchNormalization, ElasticDepthwiseConv2D, ElasticMBConv,
                           ElasticPointwiseConv2D, ElasticSqueezeExcite)
from ofa_tf.arch.layout import BlockSpec
from ofa_tf.layers.common import leading_slice


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_leading_slice_cuts_the_leading_block_and_pads_its_gradient():
    """Static and run-time sizes give numpy's leading block; the gradient is the upstream
    gradient zero-padded to the full shape (what the optimizer then updates)."""
    full = tf.Variable(_random((3, 3, 8, 6)))
    expected = full.numpy()[:, :, :5, :4]
    np.testing.assert_array_equal(leading_slice(full, (None, None, 5, 4)), expected)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)] * 2)
    def cut_and_grad(c_in, c_out):
        with tf.GradientTape() as tape:
            cut = leading_slice(full, (None, None, c_in, c_out))
            loss = tf.reduce_sum(cut * tf.reshape(tf.range(tf.size(cut), dtype=tf.float32), tf.shape(cut)))
        return cut, tape.gradient(loss, full)

    cut, grad = cut_and_grad(tf.constant(5), tf.constant(4))
    np.testing.assert_array_equal(cut, expected)
    want = np.zeros((3, 3, 8, 6), np.float32)
    want[:, :, :5, :4] = np.arange(expected.size, dtype=np.float32).reshape(expected.shape)
    np.testing.assert_array_equal(grad, want)
    with pytest.raises(ValueError, match="2 sizes for a rank-4 tensor"):
        leading_slice(full, (5, 4))


def test_kernel_transform_identity_gives_centre_crops():
    layer = ElasticDepthwiseConv2D(16, (3, 5, 7), name="dw")
    layer.build()
    layer.kernel.assign(_random((7, 7, 16, 1)))
    full = layer.kernel.numpy()
    np.testing.assert_array_equal(layer.active_kernel(7), full)
    np.testing.assert_allclose(layer.active_kernel(5), full[1:6, 1:6], atol=1e-6)
    np.testing.assert_allclose(layer.active_kernel(3), full[2:5, 2:5], atol=1e-6)
    assert sorted(w.name for w in layer.trainable_weights) == ["kernel", "transform_5to3", "transform_7to5"]


def test_kernel_transform_changes_small_kernels_only_and_is_exact():
    layer = ElasticDepthwiseConv2D(8, (3, 5, 7), name="dw")
    layer.build()
    layer.kernel.assign(_random((7, 7, 8, 1)))
    full = layer.kernel.numpy()
    m75 = np.eye(25, dtype=np.float32) + 0.3 * _random((25, 25), 1)
    layer.transforms[(7, 5)].assign(m75)
    k5 = np.asarray(layer.active_kernel(5))
    # Reference semantics: per channel, flatten the 5x5 centre row-major and apply the matrix.
    expected5 = np.stack([(m75 @ full[1:6, 1:6, c, 0].reshape(25)).reshape(5, 5) for c in range(8)], -1)
    np.testing.assert_allclose(k5[..., 0], expected5, atol=1e-5)
    assert np.abs(k5[..., 0] - full[1:6, 1:6, :, 0]).max() > 1e-2
    # 3x3 comes from the transformed 5x5 (the chain 7 -> 5 -> 3), not from the raw weight.
    k3 = np.asarray(layer.active_kernel(3))
    np.testing.assert_allclose(k3[..., 0], k5[1:4, 1:4, :, 0], atol=1e-6)
    np.testing.assert_array_equal(layer.active_kernel(7), full)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_depthwise_matches_keras_with_symmetric_padding(k, stride):
    layer = ElasticDepthwiseConv2D(12, (3, 5, 7), strides=stride, name="dw")
    layer.build()
    layer.kernel.assign(_random((7, 7, 12, 1)))
    x = _random((2, 16, 16, 8), 2)   # only 8 of the 12 channels active
    ref = keras.layers.DepthwiseConv2D(k, strides=stride, padding="valid", use_bias=False)
    padded = np.pad(x, [(0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)])
    ref.build(padded.shape)
    ref.set_weights(layer.active_weights(k, 8))
    np.testing.assert_allclose(layer(x, kernel_size=k), ref(padded), atol=1e-5)
    # Traced with the kernel size as a tensor the result is the same.
    traced = tf.function(lambda x, ks: layer(x, kernel_size=ks))
    np.testing.assert_allclose(traced(x, tf.constant(k)), ref(padded), atol=1e-5)


def test_pointwise_slices_in_and_out_channels():
    layer = ElasticPointwiseConv2D(16, 24, use_bias=True, name="pw")
    layer.build()
    layer.kernel.assign(_random((1, 1, 16, 24)))
    layer.bias.assign(_random((24,), 1))
    x = _random((2, 4, 4, 10), 2)
    out = layer(x, out_channels=8)
    assert out.shape == (2, 4, 4, 8)
    expected = x @ layer.kernel.numpy()[0, 0, :10, :8] + layer.bias.numpy()[:8]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_batch_norm_updates_only_active_channels():
    bn = ElasticBatchNormalization(16, momentum=0.9, epsilon=1e-5, name="bn")
    bn.build()
    x = 3.0 + 2.0 * _random((8, 5, 5, 6))
    out = bn(x, training=True)
    flat = x.reshape(-1, 6)
    np.testing.assert_allclose(out.numpy().reshape(-1, 6).mean(0), 0.0, atol=1e-4)
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    np.testing.assert_allclose(mean[:6], 0.1 * flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(var[:6], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-4)
    np.testing.assert_array_equal(mean[6:], 0.0)
    np.testing.assert_array_equal(var[6:], 1.0)
    # Inference uses the moving statistics of the active channels.
    y = bn(x, training=False)
    np.testing.assert_allclose(y, (x - mean[:6]) / np.sqrt(var[:6] + 1e-5), atol=1e-4)


def test_squeeze_excite_matches_formula():
    se = ElasticSqueezeExcite(32, 8, name="se")
    se.build()
    for w in se.weights:
        w.assign(_random(tuple(w.shape), len(w.path)))
    x = _random((2, 3, 3, 24), 5)
    out = se(x, se_channels=8).numpy()
    r_k, r_b = se.reduce.active_weights(24, 8)
    e_k, e_b = se.expand.active_weights(8, 24)
    hidden = np.maximum(x.mean((1, 2)) @ r_k[0, 0] + r_b, 0)
    gate = np.clip(hidden @ e_k[0, 0] + e_b + 3, 0, 6) / 6
    np.testing.assert_allclose(out, x * gate[:, None, None, :], atol=1e-5)


def test_layers_round_trip_their_config():
    spec = BlockSpec("expanded_conv_3", 3, 2, 16, 24, 2, "h_swish", True, (3, 5, 7), (3, 4, 6))
    layers = [ElasticDepthwiseConv2D(8, (3, 7), strides=2, name="a"),
              ElasticPointwiseConv2D(4, 6, use_bias=True, name="b"),
              ElasticBatchNormalization(5, momentum=0.8, epsilon=1e-3, name="c"),
              ElasticSqueezeExcite(16, 8, name="d"),
              ElasticMBConv(spec, bn_momentum=0.8)]
    for layer in layers:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is type(layer) and restored.get_config() == config


def test_block_choice_variables_drive_a_single_trace():
    spec = BlockSpec("expanded_conv_1", 1, 0, 16, 16, 1, "relu", True, (3, 5, 7), (3, 4, 6))
    block = ElasticMBConv(spec)
    block.build()
    x = images(2, 8)[..., :1].repeat(16, -1)
    fn = tf.function(lambda x: block(x, training=False))
    for k in (3, 5, 7):
        for e in (3, 4, 6):
            block.set_active(k, e)
            np.testing.assert_allclose(fn(x), block(x, training=False), atol=1e-5)
    assert fn.experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="kernel size 4"):
        block.set_active(kernel_size=4)
