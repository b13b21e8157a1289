import keras
import numpy as np
import pytest
import tensorflow as tf

from ofa_tf.training import ReferenceSGD


def torch_sgd(params, grads_seq, lrs, momentum, nesterov, l2, decays):
    """torch.optim.SGD's update rule (dampening 0), written out in numpy."""
    params = [p.copy() for p in params]
    bufs = [None] * len(params)
    for grads, lr in zip(grads_seq, lrs):
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + l2 * p if decays[i] else g
            bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + g
            step = g + momentum * bufs[i] if nesterov else bufs[i]
            params[i] = p - lr * step
    return params


@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_sgd_under_a_schedule(nesterov):
    rng = np.random.default_rng(0)
    dense = keras.layers.Dense(3, name="fc")
    dense.build((None, 4))
    bn = keras.layers.BatchNormalization(name="conv_bn")
    bn.build((None, 3))
    variables = [dense.kernel, dense.bias, bn.gamma]
    for v in variables:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    start = [v.numpy() for v in variables]
    lrs = [0.1, 0.05, 0.02, 0.01]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0, 1, 2], lrs)  # lr of step i is lrs[i]
    opt = ReferenceSGD(schedule, momentum=0.9, nesterov=nesterov, l2_decay=0.01)
    assert [opt.decays(v) for v in variables] == [True, False, False]
    grads_seq = [[rng.normal(size=v.shape).astype(np.float32) for v in variables] for _ in lrs]
    step = tf.function(lambda g: opt.apply(g, variables))
    for grads in grads_seq:
        step([tf.constant(g) for g in grads])
    # torch's first step sets buf = g (no momentum term yet); a zero-initialised buffer gives the same.
    expected = torch_sgd(start, grads_seq, lrs, 0.9, nesterov, 0.01, [True, False, False])
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_rejects_bad_arguments_and_round_trips_config():
    with pytest.raises(ValueError, match="momentum"):
        ReferenceSGD(momentum=1.5)
    with pytest.raises(ValueError, match="l2_decay"):
        ReferenceSGD(l2_decay=-1)
    with pytest.raises(ValueError, match="not weight_decay"):
        ReferenceSGD(weight_decay=1e-4)
    opt = ReferenceSGD(0.2, momentum=0.8, nesterov=False, l2_decay=3e-5)
    clone = ReferenceSGD.from_config(opt.get_config())
    assert (clone.momentum, clone.nesterov, clone.l2_decay) == (0.8, False, 3e-5)
