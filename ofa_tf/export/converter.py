"""Keras subnet → TFLite flatbuffer, in each of the precisions phones run.

The modes are TFLite's post-training options plus quantization-aware training:

* ``float32``: the graph as is (BN folded into the convolutions by the converter).
* ``float16``: weights stored in float16, computed in float32 on CPU (GPU delegates use fp16).
* ``dynamic_int8``: weights in int8, activations quantized on the fly (no data needed).
* ``int8``: full integer; activation ranges come from a representative data set. Input and
  output stay float32 unless ``io_type`` is ``int8`` or ``uint8``.
* ``qat_int8``: a model fine-tuned with fake quantization (`ofa_tf.export.qat`), converted to
  integer with the ranges it learnt (calibration data fills in the few it has none for).

What is converted is the subnet wrapped by `pixel_model`: it takes RGB pixel values in
[0, 255] (float32, or uint8 / int8 for integer input) and normalizes them per channel inside
the graph (one MUL and one ADD), and by default ends in a softmax, so clients that only know a
single mean / std (MediaPipe Tasks) feed it camera pixels as they come and show probabilities.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
# TensorFlow's own converter freezes concrete functions with it; it has no public alias.
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

MODES = ("float32", "float16", "dynamic_int8", "int8", "qat_int8")
IO_TYPES = ("float32", "int8", "uint8")
OUTPUTS = ("probabilities", "logits")
_TF_IO_TYPES = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}


def check_mode(mode: str, io_type: str = "float32") -> None:
    """One error naming the bad value; integer input/output only exists for integer models."""
    if mode not in MODES:
        raise ValueError(f"unknown export mode {mode!r}: expected one of {', '.join(MODES)}")
    if io_type not in IO_TYPES:
        raise ValueError(f"unknown io_type {io_type!r}: expected one of {', '.join(IO_TYPES)}")
    if io_type != "float32" and mode not in ("int8", "qat_int8"):
        raise ValueError(f"io_type={io_type} needs a full-integer mode (int8 or qat_int8), not {mode}")


def check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}: expected one of {', '.join(OUTPUTS)}")


def pixel_model(model, mean: Sequence[float], std: Sequence[float], output: str = "probabilities"):
    """``model`` (normalized images in, logits out) taking RGB pixels in [0, 255] instead:
    ``(pixel / 255 - mean) / std`` per channel in front (a `Rescaling` layer, ``mean`` / ``std``
    in [0, 1]-pixel units as `DatasetInfo` keeps them) and, for ``output="probabilities"``, a
    softmax behind. A Keras 3 model gets Keras 3 layers, a tf_keras (QAT) model tf_keras ones."""
    check_output(output)
    if isinstance(model, keras.Model):
        layers, input_layer, model_class = keras.layers, keras.Input, keras.Model
    else:
        import tf_keras

        layers, input_layer, model_class = tf_keras.layers, tf_keras.Input, tf_keras.Model
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    shape = tuple(model.inputs[0].shape)
    pixels = input_layer(shape[1:], batch_size=shape[0], name="pixels")
    x = layers.Rescaling(scale=[float(v) for v in 1.0 / (255.0 * std)],
                         offset=[float(v) for v in -mean / std], name="normalize")(pixels)
    x = model(x)
    if output == "probabilities":
        x = layers.Softmax(name="probabilities")(x)
    return model_class(pixels, x, name=f"{model.name}_pixels")


def to_tflite(model, mode: str = "float32",
              representative_images: Callable[[], Iterable[np.ndarray]] | None = None,
              io_type: str = "float32") -> bytes:
    """Convert a Keras (or, for ``qat_int8``, a tfmot-quantized tf_keras) model.

    ``representative_images()`` yields float32 batches [1, H, W, 3] of model inputs; the
    integer modes need it (``qat_int8`` for the few ops fake quantization leaves without ranges,
    so that the whole graph runs in int8).
    """
    check_mode(mode, io_type)
    if isinstance(model, keras.Model):
        # Keras 3 models: one trace of the inference call, its variables frozen into constants,
        # converted as a graph. The same graph a SavedModel round trip (what from_keras_model
        # does) gives, operator for operator, in a fraction of the time: no SavedModel to
        # trace, write and load again. The input signature keeps the model's (fixed) batch size.
        signature = tf.TensorSpec(model.inputs[0].shape, tf.float32, name="image")
        inference = tf.function(lambda images: model(images, training=False))
        frozen = convert_variables_to_constants_v2(inference.get_concrete_function(signature))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    else:   # tf_keras (tfmot's quantization-aware models)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return _convert(converter, mode, representative_images, io_type)


def _convert(converter, mode, representative_images, io_type) -> bytes:
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "qat_int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative_images is None:
            raise ValueError(f"{mode} export needs representative images (the calibration data)")
        converter.representative_dataset = lambda: ([images] for images in representative_images())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _TF_IO_TYPES[io_type]
        converter.inference_output_type = _TF_IO_TYPES[io_type]
    return converter.convert()
