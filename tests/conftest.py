"""Shared fixtures: quiet TF logs, small supernets with non-trivial weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ofa_tf.networks import OFAMobileNetV3  # noqa: E402
from ofa_tf.space import SearchSpace  # noqa: E402


def randomize_weights(net, seed=0):
    """Give every weight (BN statistics and kernel transforms included) a random,
    non-trivial value, so equality checks compare real signals rather than an
    initialisation that hides mistakes (identity transforms, unit BN)."""
    rng = np.random.default_rng(seed)
    for var in net.weights:
        if "float" not in str(var.dtype):
            continue
        shape, name = tuple(var.shape), var.path
        if "moving_variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            value = rng.normal(0.0, 0.2, shape)
        elif "transform" in name:
            value = np.eye(shape[0]) + rng.normal(0.0, 0.1, shape)
        else:
            fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.5 / np.sqrt(max(fan_in, 1)), shape)
        var.assign(value.astype(np.float32))


@pytest.fixture(scope="session")
def tiny_space():
    return SearchSpace.tiny()


@pytest.fixture()
def tiny_net(tiny_space):
    net = OFAMobileNetV3(n_classes=10, space=tiny_space, seed=0)
    randomize_weights(net)
    return net


def images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, size, size, 3)).astype(np.float32)
