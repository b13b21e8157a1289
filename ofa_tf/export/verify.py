"""Check an exported .tflite against its Keras subnet, and its graph against its arch.

Numbers: run the flatbuffer in the LiteRT interpreter on real images and compare its outputs
(probabilities or logits) with the Keras model's that has the same input normalization and
output (max |Δ| and top-1 agreement). Graph: count the operators and compare with
the operators the arch implies, so a stray slice, gather or control-flow op, an unfolded BN or
a skipped block that is still present is caught at export time rather than on the phone.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Mapping

import numpy as np

from ofa_tf.arch.layout import Layout, ResNetLayout

# Operators that mean something other than a plain feed-forward conv net reached the graph
# (the slicing of the supernet, dynamic shapes or control flow).
FORBIDDEN_OPS = frozenset({"STRIDED_SLICE", "SLICE", "GATHER", "GATHER_ND", "WHILE", "IF", "SELECT",
                           "SELECT_V2", "SHAPE", "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE",
                           "FLEX_DELEGATE", "CUSTOM"})

# Per-mode acceptance: float32 must match the Keras outputs; the others must agree on top-1.
MAX_ABS_DIFF = {"float32": 1e-4}
MIN_TOP1_AGREEMENT = {"float16": 0.98, "dynamic_int8": 0.90, "int8": 0.90, "qat_int8": 0.90}


class ExportCheckError(RuntimeError):
    """The exported file is not what the Keras subnet computes or what the arch implies."""


def _interpreter(tflite: bytes | str, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = {"model_content": tflite} if isinstance(tflite, (bytes, bytearray)) else {"model_path": tflite}
    # Without the default XNNPACK delegate the interpreter reports every operator by name
    # (with it, delegated ops collapse into one DELEGATE node).
    return Interpreter(**source, num_threads=num_threads,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def op_counts(tflite: bytes | str) -> collections.Counter:
    """How many of each TFLite builtin operator the model's graph holds."""
    interpreter = _interpreter(tflite)
    return collections.Counter(op["op_name"] for op in interpreter._get_ops_details())


def expected_float_op_counts(layout, arch: Mapping, image_size: int, *,
                             pixel_input: bool = False, softmax: bool = False) -> collections.Counter:
    """The operators a float32 export of ``arch`` must consist of, derived from the layout (an
    MBConv `Layout` or a bottleneck `ResNetLayout`, counted by `FLOAT_OP_COUNTERS`). A
    ``pixel_input`` model (`converter.pixel_model`) adds the per-channel normalization, one MUL
    and one ADD (not folded into the stem: its zero padding happens after it), and ``softmax``
    one SOFTMAX."""
    counts = FLOAT_OP_COUNTERS[type(layout)](layout, arch, image_size)
    counts["MUL"] += pixel_input
    counts["ADD"] += pixel_input
    counts["SOFTMAX"] = int(softmax)
    return +counts


def _mbconv_float_ops(layout: Layout, arch: Mapping, image_size: int) -> collections.Counter:
    """An MBConv network's float32 operators.

    BN is folded into the preceding conv and ReLU / ReLU6 into the conv's fused activation, and
    SE's hard sigmoid becomes conv (+3 folded into the bias, ReLU6 fused) then MUL by 1/6; so:
    CONV_2D for the stem, every expand and project conv, the two SE convs and the head's convs
    (final expand and / or feature mix); one DEPTHWISE_CONV_2D per active block; HARD_SWISH per h-swish activation;
    MUL twice per SE; ADD per residual; MEAN per SE plus the global pool and the classifier's
    squeeze of the 1x1 map; PAD per stride-2 conv whose symmetric padding (the reference's)
    differs from "SAME"; one FULLY_CONNECTED.
    """
    blocks = layout.active_blocks(arch, image_size)
    counts = collections.Counter()
    head = (layout.stem,) + layout.head_convs
    counts["CONV_2D"] = len(head) + sum(2 * b.spec.use_se + b.spec.has_expand + 1 for b in blocks)
    counts["DEPTHWISE_CONV_2D"] = len(blocks)
    counts["HARD_SWISH"] = (sum(spec.act == "h_swish" for spec in head)
                            + sum((b.spec.has_expand + 1) * (b.spec.act == "h_swish") for b in blocks))
    counts["MUL"] = sum(2 * b.spec.use_se for b in blocks)
    counts["ADD"] = sum(b.spec.residual for b in blocks)
    counts["MEAN"] = 2 + sum(b.spec.use_se for b in blocks)
    counts["PAD"] = (_needs_pad(image_size, layout.stem.kernel_size, layout.stem.stride)
                     + sum(_needs_pad(b.input_size, b.kernel_size, b.spec.stride) for b in blocks))
    counts["FULLY_CONNECTED"] = 1
    return counts



def _bottleneck_float_ops(layout: ResNetLayout, arch: Mapping, image_size: int) -> collections.Counter:
    """A bottleneck network's float32 operators. BN is folded into the convs and ReLU fused into
    them and into the residual ADDs, so: CONV_2D per active stem conv and per block conv (three,
    plus the shortcut's); ADD per block and for the stem's residual conv when it runs;
    AVERAGE_POOL_2D per strided shortcut ("SAME" padding, no PAD); PAD per stride-2 conv whose
    symmetric padding differs from "SAME", and one before the max pool; one MAX_POOL_2D; MEAN
    for the global pool and the classifier's squeeze, except that on a 1x1 map the converter
    makes the global pool a RESHAPE (batch 1, as exported); one FULLY_CONNECTED."""
    stem = layout.active_stem(arch, image_size)
    blocks = layout.active_blocks(arch, image_size)
    counts = collections.Counter()
    counts["CONV_2D"] = len(stem) + sum(3 + b.spec.downsample for b in blocks)
    counts["ADD"] = len(blocks) + sum(residual for _, _, residual in stem)
    counts["AVERAGE_POOL_2D"] = sum(b.spec.downsample and b.spec.stride > 1 for b in blocks)
    counts["PAD"] = (1 + sum(_needs_pad(size, conv.kernel_size, conv.stride) for conv, size, _ in stem)
                     + sum(_needs_pad(b.input_size, b.spec.kernel_size, b.spec.stride) for b in blocks))
    counts["MAX_POOL_2D"] = 1
    one_pixel = blocks[-1].output_size == 1
    counts["MEAN"] = 2 - one_pixel
    counts["RESHAPE"] = int(one_pixel)
    counts["FULLY_CONNECTED"] = 1
    return counts


def _needs_pad(size: int, kernel_size: int, stride: int) -> bool:
    """Whether a conv keeps its own PAD op: the converter folds the symmetric k // 2 padding
    into the conv when it equals TF's "SAME" padding (stride 1, or an odd input at stride 2)."""
    if stride == 1 or kernel_size == 1:
        return False
    same_total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return same_total != 2 * (kernel_size // 2)


# Layout type -> the operators of its float32 export (see `expected_float_op_counts`).
FLOAT_OP_COUNTERS = {Layout: _mbconv_float_ops, ResNetLayout: _bottleneck_float_ops}


def check_graph(tflite: bytes | str, layout: Layout | None = None, arch: Mapping | None = None,
                image_size: int | None = None, *, pixel_input: bool = False,
                softmax: bool = False) -> collections.Counter:
    """Raise `ExportCheckError` on a forbidden operator, or, given the arch of a float32 export,
    on any difference from `expected_float_op_counts` (same keywords). Returns the counts."""
    counts = op_counts(tflite)
    forbidden = sorted(set(counts) & FORBIDDEN_OPS)
    if forbidden:
        raise ExportCheckError(f"the TFLite graph holds operators a static subnet must not have: "
                               f"{', '.join(f'{op} x{counts[op]}' for op in forbidden)}")
    if layout is not None:
        expected = expected_float_op_counts(layout, arch, image_size, pixel_input=pixel_input,
                                            softmax=softmax)
        if counts != expected:
            diff = {op: (expected.get(op, 0), counts.get(op, 0))
                    for op in sorted(set(counts) | set(expected)) if counts.get(op, 0) != expected.get(op, 0)}
            raise ExportCheckError("the TFLite graph differs from the operators the arch implies "
                                   "(op: expected, found): "
                                   + ", ".join(f"{op}: {e}, {f}" for op, (e, f) in diff.items()))
    return counts


class TFLiteModel:
    """A .tflite file (or its bytes) in the LiteRT interpreter: float inputs in, float outputs out.

    Integer inputs and outputs are quantized and dequantized with the tensors' own scale and
    zero point, so callers always work with float inputs (an export's: pixel values in
    [0, 255]) and float outputs (probabilities or logits).
    """

    def __init__(self, tflite: bytes | str, num_threads: int | None = None):
        self.interpreter = _interpreter(tflite, num_threads)
        self.interpreter.allocate_tensors()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportCheckError(f"expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self.input, self.output = inputs[0], outputs[0]

    @property
    def input_shape(self) -> tuple:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def input_dtype(self):
        return self.input["dtype"]

    def _quantize(self, images: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return images.astype(np.float32)
        scale, zero_point = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        if self.output["dtype"] == np.float32:
            return values
        scale, zero_point = self.output["quantization"]
        return (values.astype(np.float32) - zero_point) * scale

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Outputs for a batch of float inputs [N, H, W, 3], one invoke per image
        (the graph has a fixed batch of 1)."""
        images = np.asarray(images, np.float32)
        expected = self.input_shape[1:]
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must be [N, {', '.join(map(str, expected))}], got {list(images.shape)}")
        logits = []
        for image in images:
            self.interpreter.set_tensor(self.input["index"], self._quantize(image[None]))
            self.interpreter.invoke()
            logits.append(self._dequantize(self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(logits, axis=0)


@dataclasses.dataclass
class Agreement:
    """How a .tflite's outputs compare with its Keras model's on ``n`` images."""

    n: int
    max_abs_diff: float
    top1_agreement: float
    tflite_top1: float | None = None     # accuracy against labels, when labels are given
    keras_top1: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare(tflite_model: TFLiteModel, keras_model, batches: Iterable, max_images: int) -> Agreement:
    """Run both models on up to ``max_images`` images of ``batches`` ((images, labels) pairs)."""
    diffs, agree, hits_tflite, hits_keras, n = [], 0, 0, 0, 0
    for images, labels in batches:
        images = np.asarray(images, np.float32)[: max_images - n]
        labels = np.asarray(labels).reshape(-1)[: len(images)]
        got = tflite_model(images)
        want = np.asarray(keras_model(images, training=False))
        diffs.append(float(np.max(np.abs(got - want))))
        agree += int(np.sum(got.argmax(1) == want.argmax(1)))
        hits_tflite += int(np.sum(got.argmax(1) == labels))
        hits_keras += int(np.sum(want.argmax(1) == labels))
        n += len(images)
        if n >= max_images:
            break
    if not n:
        raise ValueError("no verification images")
    return Agreement(n=n, max_abs_diff=max(diffs), top1_agreement=agree / n,
                     tflite_top1=hits_tflite / n, keras_top1=hits_keras / n)


def check_agreement(mode: str, agreement: Agreement) -> None:
    """Raise `ExportCheckError` when ``agreement`` misses the mode's tolerance."""
    if mode in MAX_ABS_DIFF and agreement.max_abs_diff > MAX_ABS_DIFF[mode]:
        raise ExportCheckError(f"{mode} export is off by max |Δoutput| = {agreement.max_abs_diff:.3g} "
                               f"on {agreement.n} images (allowed {MAX_ABS_DIFF[mode]:g})")
    if mode in MIN_TOP1_AGREEMENT and agreement.top1_agreement < MIN_TOP1_AGREEMENT[mode]:
        raise ExportCheckError(f"{mode} export agrees with the Keras subnet on only "
                               f"{100 * agreement.top1_agreement:.1f} % of top-1 over {agreement.n} images "
                               f"(required {100 * MIN_TOP1_AGREEMENT[mode]:.0f} %)")
