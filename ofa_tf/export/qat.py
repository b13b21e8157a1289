"""Quantization-aware fine-tuning of a subnet with tensorflow-model-optimization (tfmot).

tfmot only wraps tf_keras models, so the subnet is rebuilt in tf_keras by the same static
builder (`extract_subnet(..., keras_module=tf_keras)`) with the supernet's weights, then
wrapped with fake-quantization and trained for a few steps so its weights and activation ranges
adapt to int8. tfmot's default registry knows neither the hard-swish / hard-sigmoid activations
nor the SE block's Multiply; those layers get `OutputQuantizeConfig`, which quantizes their
output the way tfmot quantizes a ReLU's.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from ofa_tf.networks.extraction import extract_subnet


def _tfmot():
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as err:
        raise RuntimeError("qat_int8 needs tensorflow-model-optimization and tf-keras: "
                           f"pip install -e \".[export]\" ({err})") from None
    return tfmot, tf_keras


def _output_quantize_config_class():
    tfmot, _ = _tfmot()
    quantization = tfmot.quantization.keras

    class OutputQuantizeConfig(quantization.QuantizeConfig):
        """No weights to quantize; the output gets an 8-bit moving-average range."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantization.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return OutputQuantizeConfig


def quantize_model(model):
    """Wrap a tf_keras subnet with tfmot's fake quantization (weights copied as they are)."""
    tfmot, tf_keras = _tfmot()
    from ofa_tf.layers import activations

    quantization = tfmot.quantization.keras
    output_config = _output_quantize_config_class()
    hard = {"h_swish": activations.function("h_swish"), "h_sigmoid": activations.function("h_sigmoid")}

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        is_hard = (isinstance(layer, tf_keras.layers.Activation)
                   and getattr(layer.activation, "__name__", None) in hard)
        if is_hard or isinstance(layer, tf_keras.layers.Multiply):
            return quantization.quantize_annotate_layer(layer, quantize_config=output_config())
        return quantization.quantize_annotate_layer(layer)

    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with quantization.quantize_scope({"OutputQuantizeConfig": output_config, **hard}):
        return quantization.quantize_apply(annotated)


def qat_finetune(supernet, arch: Mapping, image_size: int, batches: Iterable, steps: int,
                 learning_rate: float = 1e-4, momentum: float = 0.9):
    """Rebuild ``arch`` in tf_keras, fake-quantize it and train ``steps`` steps on ``batches``
    ((normalized images [B, S, S, 3], labels) pairs at ``image_size``).

    Returns ``(quantized_model, losses)``, the losses of the steps in order.
    """
    return qat_finetune_model(
        lambda tf_keras: extract_subnet(supernet, arch, image_size, keras_module=tf_keras, name="ofa_subnet"),
        batches, steps, learning_rate, momentum)


def qat_finetune_model(build_float_model: Callable, batches: Iterable, steps: int,
                       learning_rate: float = 1e-4, momentum: float = 0.9):
    """`qat_finetune` of the subnet ``build_float_model(tf_keras)`` returns (built by the static
    builder with its weights), e.g. a saved, fine-tuned subnet rebuilt in tf_keras."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"qat steps must be a positive int, got {steps!r}")
    _, tf_keras = _tfmot()
    model = quantize_model(build_float_model(tf_keras))
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate, momentum=momentum),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = []
    for images, labels in batches:
        losses.append(float(model.train_on_batch(np.asarray(images, np.float32),
                                                 np.asarray(labels).reshape(-1))))
        if len(losses) == steps:
            break
    if len(losses) < steps:
        raise ValueError(f"the training data ran out after {len(losses)} of {steps} qat steps")
    return model, losses
