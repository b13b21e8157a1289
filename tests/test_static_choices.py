"""`static_choices`: a supernet traced with its active subnet as constants (what XLA compiles),
and the trainer's refusal to XLA-compile a phase that samples subnets."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import images
from ofa_tf.layers.common import static_choices
from ofa_tf.training import OFATrainer, progressive_shrinking_phases

CONTROL_FLOW = {"If", "StatelessIf", "Case", "StatelessCase"}


def _op_types(graph):
    types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_a_subnet_traced_with_static_choices_is_one_static_graph_xla_compiles(tiny_net, tiny_space):
    arch = {"ks": 5, "e": 4, "d": 2}
    tiny_net.set_active_subnet(**arch)
    x = images(2, 32, seed=4)
    expected = tiny_net(x, training=False).numpy()
    spec = tf.TensorSpec([2, 32, 32, 3], tf.float32)
    dynamic = tf.function(lambda v: tiny_net(v, training=False)).get_concrete_function(spec)
    assert _op_types(dynamic.graph) & CONTROL_FLOW, "without static_choices the choices are read at run time"

    def forward(v):
        with static_choices():
            return tiny_net(v, training=False)

    static = tf.function(forward).get_concrete_function(spec)
    assert not _op_types(static.graph) & CONTROL_FLOW
    assert all(op.outputs[0].shape.is_fully_defined() for op in static.graph.get_operations()
               if op.type in ("Conv2D", "DepthwiseConv2dNative"))
    np.testing.assert_allclose(static(tf.constant(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
    compiled = tf.function(forward, jit_compile=True)
    np.testing.assert_allclose(compiled(tf.constant(x)).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_jit_compile_is_refused_for_a_phase_that_samples_subnets(tiny_net, tiny_space):
    with pytest.raises(ValueError, match="phase 'kernel' samples a subnet every step"):
        OFATrainer(tiny_net, progressive_shrinking_phases(tiny_space)["kernel"], kd_ratio=0.0, jit_compile=True)
