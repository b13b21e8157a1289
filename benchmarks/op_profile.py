"""Where a TensorFlow step spends its time, by op type, from TF's own profiler trace.

The benchmarks use it to say what a step time is made of: the convolution and batch-norm
kernels (oneDNN here, as in the PyTorch reference) against what our elastic supernet adds
(slicing the active weights, the optimizer's update of every weight). Times are summed over
the executor's compute threads, so on 2 threads they add up to about twice the wall time.
"""

import collections
import glob
import os
import tempfile

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

# Op-type groups, first match wins (each a predicate on (op type, node name)).
GROUPS = (
    ("optimizer update", lambda op, name: op.startswith("ResourceApply") or "_sgd/" in name),
    ("convolutions and matmuls", lambda op, name: "Conv2D" in op or "Depthwise" in op or "MatMul" in op),
    ("batch norm", lambda op, name: "BatchNorm" in op),
    ("slices and pads, with gradients", lambda op, name: op in ("Slice", "StridedSlice", "StridedSliceGrad", "Pad")),
    ("everything else", lambda op, name: True),
)


def group_of(op: str, name: str) -> str:
    return next(group for group, matches in GROUPS if matches(op, name))


def op_times(run, steps: int = 3) -> collections.Counter:
    """Milliseconds per step by op type over ``steps`` calls of ``run`` (warm it up first:
    a trace or compile would count)."""
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(steps):
                run()
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the TensorFlow profiler wrote no trace under {logdir}")
        space = xplane_pb2.XSpace()
        with open(paths[0], "rb") as f:
            space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:   # "node name:OpType", not the executor's "Class::Method"
                    node, op = name.rsplit(":", 1)
                    totals[(op, node)] += event.duration_ps / 1e9 / steps
    return totals


def grouped(totals: collections.Counter) -> dict:
    """{group: ms per step} in `GROUPS` order, from `op_times`."""
    out = {group: 0.0 for group, _ in GROUPS}
    for (op, node), ms in totals.items():
        out[group_of(op, node)] += ms
    return out
