import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import images, randomize_weights
from ofa_tf.networks import OFAMobileNetV3
from ofa_tf.training import (PHASE_NAMES, OFATrainer, ReferenceSGD, SubnetSampler,
                             progressive_shrinking_phases)
from ofa_tf.training.trainer import soft_cross_entropy


@pytest.fixture()
def nets(tiny_space):
    student = OFAMobileNetV3(n_classes=10, space=tiny_space, dropout_rate=0.0, seed=0)
    teacher = OFAMobileNetV3(n_classes=10, space=tiny_space, dropout_rate=0.0, seed=1)
    randomize_weights(teacher, seed=7)
    return student, teacher


def _data(n=8, size=64, seed=0):
    x = images(n, size, seed)
    y = np.random.default_rng(seed).integers(0, 10, n).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(n // 2)


def _trainer(student, teacher, phase, **kwargs):
    trainer = OFATrainer(student, phase, teacher=teacher if phase.use_kd else None, seed=3, **kwargs)
    trainer.compile(optimizer=ReferenceSGD(0.05, l2_decay=3e-5), jit_compile=False)
    return trainer


def test_phase_table_follows_the_reference(tiny_space):
    phases = progressive_shrinking_phases(tiny_space)
    assert tuple(phases) == PHASE_NAMES[:6]      # no width phases without elastic width
    assert [p.dynamic_batch_size for p in phases.values()] == [1, 1, 2, 2, 4, 4]
    assert phases["depth1"].depth_list == (2, 3) and phases["depth2"].depth_list == (1, 2, 3)
    assert phases["expand1"].expand_ratio_list == (4, 6) and phases["expand1"].sort_channels == 0
    assert phases["expand2"].sort_channels == 1 and not phases["teacher"].use_kd
    assert [p.lr for p in phases.values()][1:] == [3e-2, 2.5e-3, 7.5e-3, 2.5e-3, 7.5e-3]


# One phase of each kind: no KD and no sampling (teacher, in
# test_fit_reduces_the_loss_on_a_fixed_batch), KD with one sampled subnet per step (kernel), KD
# with several subnets summed in the step's loop (expand2, four subnets per step, in
# test_fit_traces_once_across_subnets_and_resolutions). The other phases differ from these only
# in their lists (test_phase_table_follows_the_reference).
def test_one_real_step_of_a_kd_phase_with_one_sampled_subnet(nets, tiny_space):
    student, teacher = nets
    phase = progressive_shrinking_phases(tiny_space)["kernel"]
    trainer = _trainer(student, teacher, phase)
    before = [v.numpy().copy() for v in student.trainable_variables]
    teacher_before = [v.numpy().copy() for v in teacher.weights]
    history = trainer.fit(_data(), epochs=1, steps_per_epoch=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["kd_loss"][0] > 0.0
    changed = sum(not np.array_equal(a, v.numpy()) for a, v in zip(before, student.trainable_variables))
    assert changed > 0
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(teacher_before, teacher.weights))


def test_kd_loss_is_the_soft_cross_entropy_to_the_teacher(nets, tiny_space):
    student, teacher = nets
    phase = progressive_shrinking_phases(tiny_space)["kernel"]
    x = images(4, 48)
    y = np.array([0, 1, 2, 3], np.int32)
    with_kd = OFATrainer(student, phase, teacher=teacher, resolutions=(48,), seed=0)
    loss, kd, _, logits, _ = with_kd.compute_gradients(tf.constant(x), tf.constant(y))
    soft = tf.nn.softmax(teacher(x, training=False))
    np.testing.assert_allclose(kd, soft_cross_entropy(soft, logits), rtol=1e-5)
    ce = keras.losses.categorical_crossentropy(tf.one_hot(y, 10), logits, from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(loss, tf.reduce_mean(ce) + kd, rtol=1e-5)
    without = OFATrainer(student, phase, teacher=None, kd_ratio=0.0, resolutions=(48,), seed=0)
    loss0, kd0, _, _, _ = without.compute_gradients(tf.constant(x), tf.constant(y))
    assert float(kd0) == 0.0 and float(loss0) < float(loss)
    with pytest.raises(ValueError, match="distils from a teacher"):
        OFATrainer(student, phase, teacher=None)


def test_summed_gradient_equals_sum_of_single_subnet_gradients(nets, tiny_space):
    student, teacher = nets
    randomize_weights(student, seed=2)
    phase = progressive_shrinking_phases(tiny_space)["expand2"]      # 4 subnets per step
    trainer = OFATrainer(student, phase, teacher=teacher, seed=11)
    x, y = tf.constant(images(4, 64, 5)), tf.constant([1, 3, 5, 7])
    _, _, summed, _, _ = tf.function(trainer.compute_gradients)(x, y)
    # Replay the sampler with the same seed: resolution first, then one arch per subnet.
    replay = SubnetSampler(tiny_space, phase.ks_list, phase.expand_ratio_list, phase.depth_list,
                           tiny_space.resolutions, keras.random.SeedGenerator(11))
    r = int(replay.sample_resolution())
    xr = tf.image.resize(x, [r, r])
    soft = tf.nn.softmax(teacher(xr, training=False))
    expected, archs = None, set()
    for _ in range(phase.dynamic_batch_size):
        arch = replay.sample_arch()
        assert list(arch) == ["ks", "e", "d"]
        archs.add(tuple(tuple(v.numpy()) for v in arch.values()))
        student.assign_active_subnet(**arch)
        with tf.GradientTape() as tape:
            logits = student(xr, training=True)
            ce = tf.reduce_mean(keras.losses.categorical_crossentropy(
                tf.one_hot(y, 10), logits, from_logits=True, label_smoothing=0.1))
            total = ce + soft_cross_entropy(soft, logits)
        grads = [tf.zeros_like(v) if g is None else g
                 for g, v in zip(tape.gradient(total, student.trainable_variables), student.trainable_variables)]
        expected = grads if expected is None else [a + b for a, b in zip(expected, grads)]
    assert len(archs) == phase.dynamic_batch_size, "the step must sample different subnets"
    for got, want, var in zip(summed, expected, student.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5, err_msg=var.path)


def test_fit_traces_once_across_subnets_and_resolutions(nets, tiny_space):
    student, teacher = nets
    trainer = _trainer(student, teacher, progressive_shrinking_phases(tiny_space)["expand2"])
    before = [v.numpy().copy() for v in student.trainable_variables]
    teacher_before = [v.numpy().copy() for v in teacher.weights]
    history = trainer.fit(_data(16), epochs=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"][0]) and history["kd_loss"][0] > 0.0
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before, student.trainable_variables))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(teacher_before, teacher.weights))
    traces = trainer.trace_count
    seen = set()
    for _ in range(3):
        trainer.fit(_data(16), epochs=1, shuffle=False, verbose=0)
        seen.add(tuple(student.get_active_arch()["d"]))
    print(f"trace count after 4 epochs of 4 subnets x 2 steps: {trainer.trace_count}")
    assert trainer.trace_count == traces <= 2
    assert len(seen) > 1, "subnets must change between steps"


def test_fit_reduces_the_loss_on_a_fixed_batch(tiny_space):
    """The teacher phase (no KD, no sampling). Guards the whole update path (loss scaling, tape,
    optimizer): a few steps on one batch must fit it."""
    net = OFAMobileNetV3(n_classes=10, space=tiny_space, dropout_rate=0.0, seed=0)
    phase = progressive_shrinking_phases(tiny_space)["teacher"]
    trainer = OFATrainer(net, phase, seed=0, resolutions=(48,))
    trainer.compile(optimizer=ReferenceSGD(0.05), jit_compile=False)
    x = images(16, 48, seed=1)
    y = np.arange(16, dtype=np.int32) % 10
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    history = trainer.fit(data, epochs=3, steps_per_epoch=8, shuffle=False, verbose=0).history
    losses = history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert history["kd_loss"] == [0.0, 0.0, 0.0]
    active, largest = net.get_active_arch(), tiny_space.largest()
    assert all(active[k] == largest[k] for k in ("ks", "e", "d")), "the teacher trains the largest subnet"
