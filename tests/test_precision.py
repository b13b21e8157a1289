"""Mixed-precision training (--precision): a few real steps in bfloat16 and float16 on CPU,
float32 variables, the float16 loss-scale path, float32 exports, the workdir guard.

(float32 training is `test_trainer.test_fit_reduces_the_loss_on_a_fixed_batch`.)
"""

import json

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import images
from ofa_tf.arch.space import SearchSpace
from ofa_tf.networks import OFAMobileNetV3
from ofa_tf.networks.extraction import extract_subnet
from ofa_tf.training import OFATrainer, ReferenceSGD, progressive_shrinking_phases
from ofa_tf.training.config import TrainConfig, check_workdir_config
from ofa_tf.training.pipeline import ProgressiveShrinking
from ofa_tf.training.precision import dtype_policy, optimizer_for
from ofa_tf.training.trainer import distillation_loss

MIXED = ("mixed_bfloat16", "mixed_float16")
SIZE = 32


def _net(precision="float32"):
    with dtype_policy(precision):
        return OFAMobileNetV3(n_classes=10, space=SearchSpace.tiny(), dropout_rate=0.0, seed=0)


def _batch():
    x = images(16, SIZE, seed=1)
    y = np.arange(16, dtype=np.int32) % 10
    return x, y


@pytest.fixture(scope="module")
def trained():
    """Per mixed precision: the supernet, its trainer (teacher phase: the largest subnet) and
    the epoch losses of 2 x 4 steps on one fixed batch."""
    data = tf.data.Dataset.from_tensors(_batch()).repeat()
    out = {}
    for precision in MIXED:
        net = _net(precision)
        trainer = OFATrainer(net, progressive_shrinking_phases(net.space)["teacher"], seed=0,
                             resolutions=(SIZE,))
        trainer.compile(optimizer=optimizer_for(ReferenceSGD(0.05), precision), jit_compile=False)
        history = trainer.fit(data, epochs=2, steps_per_epoch=4, shuffle=False, verbose=0).history
        out[precision] = (net, trainer, history["loss"])
    return out


@pytest.mark.parametrize("precision", MIXED)
def test_a_few_steps_fit_the_batch_with_float32_variables(trained, precision):
    net, trainer, losses = trained[precision]
    assert losses[1] < 0.85 * losses[0], losses
    assert {v.dtype for v in net.weights} <= {"float32", "int32"}
    assert keras.config.dtype_policy().name == "float32", "the policy must not leak out of the build"
    # The network computes in the 16-bit type, and agrees with a float32 twin of the same weights.
    x = _batch()[0]
    twin = _net()
    twin.set_weights(net.get_weights())
    logits = net(x, training=False)
    assert logits.dtype == precision.split("_")[1]
    expected = twin(x, training=False).numpy()
    tolerance = 0.05 if precision == "mixed_bfloat16" else 0.01
    np.testing.assert_allclose(np.asarray(tf.cast(logits, tf.float32)), expected,
                               atol=tolerance * np.abs(expected).max())


def test_float16_scales_the_loss_and_skips_an_overflowing_step(trained):
    """The 8 steps above ran at the initial scale 2^15 without overflow (an unscaled update
    would be 2^15 times too large and could not fit the batch). A scale of 2^40 overflows
    float16's gradients: the step is skipped (no weight moves), the scale halves, and the
    step still counts (the schedule and the resume position follow `iterations`)."""
    net, trainer, _ = trained["mixed_float16"]
    optimizer = trainer.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(optimizer.dynamic_scale.numpy()) == 2.0 ** 15 and int(optimizer.iterations.numpy()) == 8
    before = [v.numpy() for v in net.trainable_variables]
    optimizer.dynamic_scale.assign(2.0 ** 40)
    data = tf.data.Dataset.from_tensors(_batch()).repeat()
    trainer.fit(data, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    assert float(optimizer.dynamic_scale.numpy()) == 2.0 ** 39
    assert int(optimizer.iterations.numpy()) == 9
    for a, v in zip(before, net.trainable_variables):
        np.testing.assert_array_equal(a, v.numpy(), err_msg=v.path)
    assert trainer.trace_count == 1


def test_saved_weights_and_the_export_are_float32(trained, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ofa_tf.export import TFLiteModel
    from ofa_tf.export.converter import to_tflite

    net = trained["mixed_bfloat16"][0]
    path = str(tmp_path / "bf16.weights.h5")
    net.save_weights(path)
    dtypes = set()
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: dtypes.add(str(obj.dtype)) if isinstance(obj, h5py.Dataset) else None)
    assert dtypes <= {"float32", "int32"}, dtypes
    arch = net.space.arch(net.space.smallest(), SIZE)
    model = extract_subnet(net, arch)
    assert {w.dtype for w in model.weights} == {"float32"}
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    tflite = TFLiteModel(to_tflite(model, "float32"))
    details = tflite.interpreter.get_tensor_details()
    assert {d["dtype"] for d in details if d["dtype"] not in (np.int32,)} == {np.float32}
    x = images(2, SIZE, seed=2)
    np.testing.assert_allclose(tflite(x), model(x, training=False).numpy(), atol=1e-4)


def test_the_loss_and_kd_are_float32_for_16_bit_logits():
    logits = tf.constant([[2.0, -1.0, 0.5]], tf.bfloat16)
    one_hot = tf.constant([[1.0, 0.0, 0.0]])
    soft = tf.nn.softmax(tf.constant([[1.0, 0.0, 0.0]]))
    total, kd = distillation_loss(one_hot, logits, soft, 1.0, 0.1)
    assert total.dtype == tf.float32 and kd.dtype == tf.float32
    reference, _ = distillation_loss(one_hot, tf.cast(logits, tf.float32), soft, 1.0, 0.1)
    assert float(total) == pytest.approx(float(reference), rel=1e-6)


def test_the_policy_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with dtype_policy("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("build failed")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="precision 'float64' is not one of"):
        TrainConfig(workdir="w", precision="float64")


def test_the_workdir_is_bound_to_its_precision(tmp_path):
    """The pipeline builds its supernet under the policy and records the precision; resuming
    with another precision is refused, naming it; a workdir written before the flag existed
    (no precision in config.json) was float32 and resumes as such."""
    fast = dict(space="tiny", dataset="demo", batch_size=8, steps_per_epoch=3, tensorboard=False,
                verbose=0, phases=("teacher",))
    workdir = tmp_path / "w"
    pipeline = ProgressiveShrinking(TrainConfig(workdir=str(workdir), precision="mixed_bfloat16", **fast))
    assert pipeline.supernet.dtype_policy.name == "mixed_bfloat16"
    assert {v.dtype for v in pipeline.supernet.weights} <= {"float32", "int32"}
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["precision"] == "mixed_bfloat16"
    classes = pipeline.info.class_names

    def resume(precision):
        bound = TrainConfig(workdir=str(workdir), precision=precision, **fast).bound_fields(8, classes)
        check_workdir_config(str(workdir), bound, missing_means=TrainConfig.BOUND_BEFORE)

    resume("mixed_bfloat16")
    with pytest.raises(ValueError, match=r'precision: workdir has "mixed_bfloat16", now "float32"'):
        resume("float32")
    del stored["precision"]
    (workdir / "config.json").write_text(json.dumps(stored))
    resume("float32")
    with pytest.raises(ValueError, match=r'precision: workdir has "float32", now "mixed_float16"'):
        resume("mixed_float16")
