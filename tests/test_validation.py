import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import images
from ofa_tf.evaluation import SubnetValidator, activated_subnet
from ofa_tf.training.phases import phase_validation_archs
from ofa_tf.training.schedule import WarmupCosineDecay


def _validator(net, calibration_batches, eval_batches, n=10_000):
    return SubnetValidator(net, calibration_data=lambda size: iter(calibration_batches(size)),
                           eval_data=lambda size: iter(eval_batches(size)), n_calibration_images=n)


def _batches(seed, size, n_batches=1, batch=16):
    out = []
    for b in range(n_batches):
        x = images(batch, size, seed + b)
        y = np.random.default_rng(seed + b).integers(0, 10, batch).astype(np.int32)
        out.append((tf.constant(x), tf.constant(y)))
    return out


@pytest.fixture()
def net(tiny_space):
    from conftest import randomize_weights
    from ofa_tf.networks import OFAMobileNetV3

    net = OFAMobileNetV3(n_classes=10, space=tiny_space, dropout_rate=0.0, seed=0)
    randomize_weights(net, seed=3)
    return net


def test_recalibration_on_one_batch_gives_that_batchs_statistics(net, tiny_space):
    """After recalibrating on one batch, inference on it equals the training-mode forward pass,
    which normalizes with the batch's own (biased) statistics, for a few subnets."""
    batch = []
    validator = _validator(net, lambda size: batch, lambda size: batch)   # traced once for all
    for seed in range(3):
        arch = tiny_space.sample(seed)
        r = arch["r"][0]
        batch[:] = _batches(seed, r)
        net.set_active_subnet(**arch)
        validator.recalibrate(r)
        inference = net(batch[0][0], training=False).numpy()
        train_mode = net(batch[0][0], training=True).numpy()
        assert np.abs(inference - train_mode).max() < 2e-4 * max(1.0, np.abs(train_mode).max())


def test_recalibration_averages_batch_statistics_and_leaves_inactive_channels(net, tiny_space):
    arch = tiny_space.smallest(48)
    batches = _batches(0, 48, n_batches=3)
    bn = net.stem_bn
    net.set_active_subnet(**arch)
    block = net.blocks[1]
    active = block.spec.mid_channels(min(tiny_space.expand_ratio_list))
    assert active < block.spec.max_mid_channels
    inactive_before = block.expand_bn.moving_mean.numpy()[active:].copy()
    stem = lambda x: net.stem_conv(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])).numpy()  # noqa: E731
    outs = [stem(x) for x, _ in batches]
    validator = _validator(net, lambda size: batches, lambda size: batches)
    assert validator.recalibrate(48) == 48
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([o.mean((0, 1, 2)) for o in outs], 0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([o.var((0, 1, 2)) for o in outs], 0),
                               rtol=1e-4, atol=1e-5)
    # The block's expand BN moved only on the smallest subnet's channels.
    np.testing.assert_array_equal(block.expand_bn.moving_mean.numpy()[active:], inactive_before)
    assert not np.allclose(block.expand_bn.moving_mean.numpy()[:active], 0.0)
    # The cap on images is honoured.
    validator.n_calibration_images = 20
    assert validator.recalibrate(48) == 20


def test_evaluate_counts_top1_top5_and_restores_the_supernet(net, tiny_space):
    data = lambda size: _batches(5, size, n_batches=2)  # noqa: E731
    validator = _validator(net, data, data)
    net.set_active_subnet(**tiny_space.largest())
    before_arch = net.get_active_arch()
    before_stats = [v.numpy().copy() for v in net.non_trainable_weights]
    archs = phase_validation_archs(tiny_space, (3, 5, 7), (3, 4, 6), (1, 2, 3), (32, 40, 48))
    results = validator.evaluate_many(archs)
    assert [a["r"][0] for a in archs.values()] == [32, 40, 48]
    assert archs["middle"]["ks"][0] == 5 and archs["middle"]["e"][0] == 4 and archs["middle"]["d"][0] == 2
    for name, arch in archs.items():
        # Independent count: recalibrate the same way, then top-k in numpy.
        net.set_active_subnet(**arch)
        validator.recalibrate(arch["r"][0])
        x = np.concatenate([b[0].numpy() for b in data(arch["r"][0])])
        y = np.concatenate([b[1].numpy() for b in data(arch["r"][0])])
        logits = net(x, training=False).numpy()
        order = np.argsort(-logits, axis=1)
        assert results[name]["n"] == 32
        assert results[name]["top1"] == pytest.approx(100 * np.mean(order[:, 0] == y))
        assert results[name]["top5"] == pytest.approx(100 * np.mean((order[:, :5] == y[:, None]).any(1)))
    net.set_active_subnet(**before_arch)
    for v, b in zip(net.non_trainable_weights, before_stats):
        v.assign(b)
    validator.evaluate_many(archs)
    assert net.get_active_arch() == before_arch
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(net.non_trainable_weights, before_stats))


def test_activated_subnet_restores_arch_and_statistics_even_on_error(tiny_space):
    from ofa_tf.networks import OFAMobileNetV3

    net = OFAMobileNetV3(n_classes=10, space=tiny_space, dropout_rate=0.1, seed=0)   # with a generator
    net.set_active_subnet(**tiny_space.smallest())
    before = net.get_active_arch()
    mean = net.stem_bn.moving_mean.numpy()
    rng_state = net.dropout.seed_generator.state.numpy()
    arch = tiny_space.arch(tiny_space.largest())
    with pytest.raises(RuntimeError, match="interrupted"):
        with activated_subnet(net, arch):
            assert net.get_active_arch() == arch.to_dict()
            net.stem_bn.moving_mean.assign(mean + 1.0)
            net.dropout.seed_generator.next()     # as a training-mode calibration pass moves it
            assert not np.array_equal(net.dropout.seed_generator.state.numpy(), rng_state)
            raise RuntimeError("interrupted")
    assert net.get_active_arch() == before
    np.testing.assert_array_equal(net.stem_bn.moving_mean.numpy(), mean)
    # The dropout's generator is back too: a run resumed from the checkpoint taken just before
    # a validation draws the same dropout masks as the run that went through it.
    np.testing.assert_array_equal(net.dropout.seed_generator.state.numpy(), rng_state)


def test_validator_rejects_empty_data(net, tiny_space):
    validator = _validator(net, lambda size: [], lambda size: [])
    with pytest.raises(ValueError, match="calibration data yielded no images"):
        validator.evaluate(tiny_space.smallest())
    with pytest.raises(ValueError, match="n_calibration_images"):
        _validator(net, lambda size: [], lambda size: [], n=0)


def test_warmup_cosine_schedule_follows_the_reference():
    schedule = WarmupCosineDecay(0.1, decay_steps=100, warmup_steps=10)
    values = [float(schedule(s)) for s in range(0, 115)]
    for s in range(10):  # OFA: T_cur / T_total * lr with T_cur = step + 1
        assert values[s] == pytest.approx(0.1 * (s + 1) / 10, rel=1e-6)
    for s in range(10, 110):
        assert values[s] == pytest.approx(0.05 * (1 + math.cos(math.pi * (s - 10) / 100)), rel=1e-5, abs=1e-8)
    assert values[110] == pytest.approx(0.0, abs=1e-8) and values[114] == pytest.approx(0.0, abs=1e-8)
    no_warmup = WarmupCosineDecay(0.2, decay_steps=4)
    assert float(no_warmup(0)) == pytest.approx(0.2)
    assert WarmupCosineDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    for bad in ({"base_lr": 0, "decay_steps": 1}, {"base_lr": 0.1, "decay_steps": 0},
                {"base_lr": 0.1, "decay_steps": 5, "warmup_steps": -1}):
        with pytest.raises(ValueError):
            WarmupCosineDecay(**bad)
